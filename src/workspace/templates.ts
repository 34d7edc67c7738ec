/**
 * Task templates: templates/<name>.md, a task file with {{placeholders}}. `meta-agent new
 * --type T` (or `--template NAME`, for the user's own) starts from one; the supervisor
 * fills them with the period's context.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import matter from 'gray-matter';
import { MetaAgentError } from '../contract/errors.ts';
import { TASK_TYPES, type Task } from '../contract/task.ts';
import type { Settings } from './config.ts';
import { taskTemplate } from './init.ts';

export interface Template {
  name: string;
  type: Task['type'];
  objective: string;
  scope: string[];
  tasks: string[];
  output: string;
  body: string;
}

export async function loadTemplate(settings: Settings, name: string): Promise<Template> {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new MetaAgentError('input', `"${name}" is not a template name`, { field: 'template' });
  const file = path.join(settings.layout.templates, `${name}.md`);
  let text = await fs.readFile(file, 'utf8').catch(() => null);
  if (text === null) {
    if (!(TASK_TYPES as readonly string[]).includes(name)) throw new MetaAgentError('input', `no template templates/${name}.md`, { field: 'template' });
    text = taskTemplate(name as Task['type']);
  }
  let parsed: matter.GrayMatterFile<string>;
  try {
    parsed = matter(text.replace(/^\uFEFF/, '').replace(/\r\n/g, '\n'), {});
  } catch (error) {
    throw new MetaAgentError('input', `front matter is not valid YAML (${(error as Error).message.split('\n')[0]})`, { file: `templates/${name}.md` });
  }
  const data = parsed.data as Partial<Record<string, unknown>>;
  const list = (v: unknown) => (Array.isArray(v) ? v.map(String) : typeof v === 'string' && v ? [v] : []);
  const type = (TASK_TYPES as readonly string[]).includes(String(data.type))
    ? (data.type as Task['type'])
    : (TASK_TYPES as readonly string[]).includes(name)
      ? (name as Task['type'])
      : 'custom';
  return {
    name,
    type,
    objective: typeof data.objective === 'string' ? data.objective : '',
    scope: list(data.scope),
    tasks: list(data.tasks),
    output: typeof data.output === 'string' ? data.output : '',
    body: parsed.content.replace(/<!--[\s\S]*?-->/g, '').trim(),
  };
}

/** Replaces {{name}} with vars[name]; unknown placeholders stay, so a human sees what is missing. */
export function fillTemplate(text: string, vars: Record<string, string>): string {
  return text.replace(/\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g, (whole, key: string) => vars[key] ?? whole);
}
