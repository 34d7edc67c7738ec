/**
 * The folder protocol, Maildir-style: inbox -> processing -> done | failed. This module
 * owns these moves; nothing else moves task files. A rename is the commit point, and a
 * file that a person or program dropped is never deleted or overwritten.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { MetaAgentError } from '../contract/errors.ts';
import type { Layout } from '../workspace/layout.ts';
import { exists, publishUnique, renameNoReplace } from '../workspace/files.ts';

/** True if `file` sits directly in `dir`. */
export function isDirectlyIn(dir: string, file: string): boolean {
  return path.resolve(path.dirname(file)) === path.resolve(dir);
}

/**
 * Claims a task: one atomic rename from inbox/ into processing/. ENOENT means another
 * worker won. A name already in processing/ (a re-drop while the first still runs) gets a
 * unique suffix, so nothing is replaced.
 */
export async function claimTask(layout: Layout, inboxFile: string, runId: string): Promise<string> {
  const name = path.basename(inboxFile);
  let target = path.join(layout.processing, name);
  if (await exists(target)) target = path.join(layout.processing, `${stem(name)}.${runId}${path.extname(name)}`);
  try {
    await fs.rename(inboxFile, target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new MetaAgentError('input', 'is no longer in inbox/ (another worker claimed it, or it was moved)', { file: name });
    }
    throw error;
  }
  return target;
}

/** Moves a file into `dir` under its name, or `<stem>-2<ext>`, ... if taken. Returns the new path. */
export async function moveUnique(file: string, dir: string, name = path.basename(file)): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  const ext = path.extname(name);
  for (let n = 1; n < 10_000; n++) {
    const candidate = path.join(dir, n === 1 ? name : `${stem(name)}-${n}${ext}`);
    if (await renameNoReplace(file, candidate)) return candidate;
  }
  throw new Error(`no free name for ${name} in ${dir}`);
}

/** The original name of a claimed file (claims may add `.<run_id>` to avoid a clash). */
export function originalName(claimedFile: string, runId: string): string {
  return path.basename(claimedFile).replace(`.${runId}`, '');
}

export async function finishDone(layout: Layout, claimedFile: string, runId: string): Promise<string> {
  return moveUnique(claimedFile, layout.done, originalName(claimedFile, runId));
}

/** Moves the task into failed/ and writes `<name>.error.md` beside it. */
export async function finishFailed(layout: Layout, claimedFile: string, runId: string, explanation: string): Promise<{ file: string; errorFile: string }> {
  const file = await moveUnique(claimedFile, layout.failed, originalName(claimedFile, runId));
  const errorFile = await publishUnique(layout.failed, path.basename(file), '.error.md', explanation);
  return { file, errorFile };
}

/** Puts an interrupted task back into inbox/, unharmed, for the next run. */
export async function returnToInbox(layout: Layout, claimedFile: string, runId: string): Promise<string> {
  return moveUnique(claimedFile, layout.inbox, originalName(claimedFile, runId));
}

function stem(name: string): string {
  const ext = path.extname(name);
  return ext ? name.slice(0, -ext.length) : name;
}
