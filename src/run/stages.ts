/**
 * `--stages stages.yaml`: the seed's old batch file, run in order as tasks. The file is
 * only read, never written. Each stage is a path to a task file (relative to the stages
 * file) or an inline task (its fields), which is created in inbox/ with source "cli".
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { MetaAgentError } from '../contract/errors.ts';
import { createTask } from '../queue/createTask.ts';
import { runTask, type RunTaskOptions, type RunTaskResult } from './runTask.ts';

export interface StagesOptions extends RunTaskOptions {
  /** Run later stages after a failed one (default: stop). */
  keepGoing?: boolean;
  onStage?: (index: number, result: RunTaskResult) => void;
}

export async function runStages(stagesFile: string, options: StagesOptions): Promise<RunTaskResult[]> {
  const name = path.basename(stagesFile);
  let doc: unknown;
  try {
    doc = YAML.parse(await fs.readFile(stagesFile, 'utf8'));
  } catch (error) {
    throw new MetaAgentError('input', `cannot read stages (${(error as Error).message.split('\n')[0]})`, { file: name });
  }
  const stages = Array.isArray(doc) ? doc : (doc as { stages?: unknown } | null)?.stages;
  if (!Array.isArray(stages) || stages.length === 0) {
    throw new MetaAgentError('input', 'expected a list of stages (or "stages:" with a list): task file paths or inline tasks', { file: name, field: 'stages' });
  }
  const results: RunTaskResult[] = [];
  for (const [index, stage] of stages.entries()) {
    const file = await stageFile(stage, index, stagesFile, options);
    const result = await runTask(file, options);
    results.push(result);
    options.onStage?.(index, result);
    if (result.status !== 'ok' && !options.keepGoing) break;
    if (options.signal?.aborted) break;
  }
  return results;
}

async function stageFile(stage: unknown, index: number, stagesFile: string, options: StagesOptions): Promise<string> {
  const name = path.basename(stagesFile);
  if (typeof stage === 'string') return path.resolve(path.dirname(stagesFile), stage);
  if (stage && typeof stage === 'object' && typeof (stage as { task?: unknown }).task === 'string') {
    return path.resolve(path.dirname(stagesFile), (stage as { task: string }).task);
  }
  if (stage && typeof stage === 'object') {
    const fields = { ...(stage as Record<string, unknown>) };
    const id = typeof fields.id === 'string' ? fields.id : `${path.basename(stagesFile, path.extname(stagesFile))}-${index + 1}`;
    const created = await createTask(options.settings, id, fields as never, 'cli');
    return created.path;
  }
  throw new MetaAgentError('input', "a stage is a task file path, {task: path}, or a task's fields", { file: name, field: `stages[${index}]` });
}
