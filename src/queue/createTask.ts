/**
 * createTask: the one place where code creates tasks (the GUI, the supervisor, the CLI).
 * It validates, then publishes atomically into inbox/ under a unique name, so a watcher
 * never sees half a file and nothing is overwritten.
 */
import path from 'node:path';
import matter from 'gray-matter';
import { MetaAgentError } from '../contract/errors.ts';
import { TASK_SOURCES, parseTask, type Task, type TaskInput } from '../contract/task.ts';
import { projectFor, type Settings } from '../workspace/config.ts';
import { publishUnique } from '../workspace/files.ts';

export type TaskSource = (typeof TASK_SOURCES)[number];

/**
 * @param name  file name (with or without .md); unsafe characters become "_"
 * @param body  the task file's text (either form), or the task's fields
 * @param source who creates it; recorded in the file
 * @returns the path of the new file in inbox/
 */
export async function createTask(
  settings: Settings,
  name: string,
  body: string | (Omit<TaskInput, 'source' | 'id'> & { id?: string }),
  source: TaskSource,
): Promise<{ path: string; task: Task }> {
  if (!TASK_SOURCES.includes(source)) throw new MetaAgentError('input', `expected one of ${TASK_SOURCES.join(', ')}`, { field: 'source' });
  const stem = safeStem(name);
  const fileName = `${stem}.md`;
  const text = typeof body === 'string' ? withSource(body, source, fileName) : toFrontMatter({ ...body, source } as TaskInput);
  const task = parseTask(text, fileName);
  projectFor(settings, task.project, fileName);
  const file = await publishUnique(settings.layout.inbox, stem, '.md', text);
  // A unique name changes the default id; parse again so the caller sees the real one.
  return { path: file, task: path.basename(file) === fileName ? task : parseTask(text, path.basename(file)) };
}

function safeStem(name: string): string {
  const stem = path
    .basename(name.trim())
    .replace(/\.md$/i, '')
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/^[._]+/, '');
  if (!stem) throw new MetaAgentError('input', 'a task name needs at least one letter or digit', { field: 'name' });
  return stem.slice(0, 100);
}

/** Serializes fields as front matter; the body (if any) becomes the Markdown content. */
export function toFrontMatter(fields: TaskInput): string {
  // No validation here: parseTask below gives the one-line error naming the field.
  const { body, ...data } = fields;
  const clean = Object.fromEntries(Object.entries(data).filter(([, v]) => v !== undefined && !(Array.isArray(v) && v.length === 0)));
  return matter.stringify(typeof body === 'string' && body ? `${body}\n` : '', clean);
}

/** Records `source` in a task text of either form, replacing what it said. */
function withSource(text: string, source: TaskSource, fileName: string): string {
  const normalized = text.replace(/^\uFEFF/, '');
  if (normalized.trimStart().startsWith('---')) {
    parseTask(normalized, fileName); // validate first, for the one-line error
    const parsed = matter(normalized, {});
    return matter.stringify(parsed.content, { ...parsed.data, source });
  }
  const lines = normalized.split(/\r?\n/).filter((line) => !/^\s*SOURCE\s*:/i.test(line));
  return [`SOURCE: ${source}`, ...lines].join('\n');
}
