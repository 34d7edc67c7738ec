/**
 * Giving a failed task another chance: the file goes from failed/ back into inbox/ (where
 * `watch` picks it up like any drop), and its `<name>.error.md` goes, so the failure is
 * not counted again. The move comes first: a crash in between leaves only a stale note.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { MetaAgentError } from '../contract/errors.ts';
import type { Layout } from '../workspace/layout.ts';
import { exists, renameNoReplace } from '../workspace/files.ts';
import { pendingPatchesOf } from './pendingPatches.ts';

export const ERROR_NOTE = '.error.md';

/** A task file's name in a queue folder: `.md`, not hidden, and not a failed task's error note (`x.md.error.md`). */
export function isTaskName(name: string): boolean {
  const lower = name.toLowerCase();
  return !name.startsWith('.') && lower.endsWith('.md') && !lower.endsWith(ERROR_NOTE);
}

/** The task files in a queue folder (error notes and hidden files are not tasks); [] when it is missing. */
export async function taskNames(dir: string): Promise<string[]> {
  return (await fs.readdir(dir).catch(() => [] as string[])).filter(isTaskName);
}

/** How many tasks a queue folder holds: tasks, not files (failed/x.md.error.md is the note of x.md). */
export async function countTasks(dir: string): Promise<number> {
  return (await taskNames(dir)).length;
}

/** The file name of a task in failed/ by id (`sizing` or `sizing.md`); error notes are not tasks. */
export async function findFailedTask(layout: Layout, id: string): Promise<string | null> {
  const name = id.endsWith('.md') ? id : `${id}.md`;
  if (path.basename(name) !== name || name.endsWith(ERROR_NOTE)) return null;
  const file = path.join(layout.failed, name);
  return (await exists(file)) ? file : null;
}

/**
 * Moves `failed/<id>.md` back into `inbox/` and removes its error note. Returns both paths.
 * Refused while a patch of the task waits for review (a stopped run's incomplete patch,
 * typically), unless `force`: the new run's patch would be filed beside it.
 */
export async function retryFailedTask(layout: Layout, id: string, options: { force?: boolean } = {}): Promise<{ from: string; to: string }> {
  const from = await findFailedTask(layout, id);
  if (!from) throw new MetaAgentError('input', `no failed task "${id}" in failed/`, { field: 'id' });
  const waiting = options.force ? [] : await pendingPatchesOf(layout, path.basename(from, '.md'));
  if (waiting.length) {
    const names = waiting.map((f) => `patches/pending/${path.basename(f)}`).join(', ');
    throw new MetaAgentError(
      'input',
      `${names} of this task ${waiting.length === 1 ? 'is' : 'are'} waiting for review; approve or reject ${waiting.length === 1 ? 'it' : 'them'} first, or retry with --force (the new patch is then filed beside ${waiting.length === 1 ? 'it' : 'them'})`,
      { field: 'id' },
    );
  }
  const to = path.join(layout.inbox, path.basename(from));
  await fs.mkdir(layout.inbox, { recursive: true });
  if (!(await renameNoReplace(from, to))) {
    throw new MetaAgentError('input', `inbox/ already holds a task named ${path.basename(from)}; wait for it to run, or rename one`, { field: 'id' });
  }
  await removeErrorNote(layout, from);
  return { from, to };
}

/** Removes `failed/<name>.error.md` of a task that is no longer failed. */
export async function removeErrorNote(layout: Layout, taskFile: string): Promise<void> {
  await fs.rm(path.join(layout.failed, `${path.basename(taskFile)}${ERROR_NOTE}`), { force: true });
}
