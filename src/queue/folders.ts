/**
 * The folder protocol, Maildir-style: inbox -> processing -> done | failed. This module
 * owns these moves; nothing else moves task files. A rename is the commit point, and a
 * file that a person or program dropped is never deleted or overwritten.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { MetaAgentError } from '../contract/errors.ts';
import type { Layout } from '../workspace/layout.ts';
import { exists, publishUnique, renameBusy, renameNoReplace } from '../workspace/files.ts';
import { Ledger, ledgerKey } from './ledger.ts';
import { takeLease, type Lease } from '../workspace/lease.ts';
import { thisHost } from '../workspace/faults.ts';

/** True if `file` sits directly in `dir`. */
export function isDirectlyIn(dir: string, file: string): boolean {
  return path.resolve(path.dirname(file)) === path.resolve(dir);
}

export function ledgerFor(layout: Layout): Ledger {
  return new Ledger(path.join(layout.state, 'ledger'));
}

export interface Claim {
  /** Where the task file is now (in processing/). */
  file: string;
  /** Its name in inbox/ (the default task id comes from it). */
  name: string;
  runId: string;
  key: string;
  sha256: string;
  content: Buffer;
  lease: Lease;
}

/**
 * Claims a task: one atomic rename from inbox/ into processing/; ENOENT means another
 * worker won. Then a lease shows the owner is alive, and the ledger records the run. If
 * the claim cannot be recorded (a full disk), the task goes back to inbox/ and the error
 * is thrown: nobody would run it, yet a live lease keeps recovery away.
 */
/** The claimed file is not what was judged complete (its writer was still at it): it went back to inbox/. */
export class ClaimChanged extends MetaAgentError {
  constructor(file: string) {
    super('input', 'changed after it was judged complete (its writer is still at it); put back into inbox/ to settle again', { file });
  }
}

/**
 * @param expectSha256 the hash of the bytes judged complete (a copied-in file): a claim of
 *   other bytes goes back to inbox/ (ClaimChanged) instead of running.
 */
export async function claimTask(layout: Layout, inboxFile: string, runId: string, staleMs: number, expectSha256?: string): Promise<Claim> {
  // A name past the bound is claimed under a shortened one: the lease, the ledger and the
  // reports add to it, and past 255 bytes every write fails (ENAMETOOLONG), for ever.
  const name = safeTaskName(path.basename(inboxFile));
  let target = path.join(layout.processing, name);
  // A re-drop while the first copy still runs gets its own name in processing/.
  if (await exists(target)) target = path.join(layout.processing, `${stem(name)}.${runId}${path.extname(name)}`);
  try {
    await renameBusy(inboxFile, target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new MetaAgentError('input', 'is no longer in inbox/ (another worker claimed it, or it was moved)', { file: name });
    }
    throw error;
  }
  let lease: Lease | null = null;
  try {
    lease = await takeLease(target, runId, staleMs);
    const content = await fs.readFile(target);
    const { key, sha256 } = ledgerKey(name, content);
    if (expectSha256 && sha256 !== expectSha256) throw new ClaimChanged(name);
    await ledgerFor(layout).update(key, { key, name, sha256 }, (entry) => {
      entry.runs.push({ run_id: runId, started_at: new Date().toISOString(), host: thisHost(), pid: process.pid });
    });
    return { file: target, name, runId, key, sha256, content, lease };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code && PERMANENT.has(code)) {
      // Will fail the same way every time: failed/, with the reason, instead of an endless loop through inbox/.
      await moveClaimed(layout, target, name, {
        status: 'error',
        explanation: `# ${name} failed\n\n**What went wrong** (input): the task could not be claimed: ${(error as Error).message}\n\n**How to fix it:** give the file a shorter, plain name and drop it into inbox/ again.\n`,
      }).catch(() => undefined);
      await lease?.release().catch(() => undefined);
      throw new MetaAgentError('input', `could not be claimed (${code}); moved to failed/`, { file: name });
    }
    await giveBack(layout, target, name, lease);
    throw error;
  }
}

/** Errors of a claim that no retry can cure. */
const PERMANENT = new Set(['ENAMETOOLONG', 'EILSEQ']);

/** Task file names longer than this (in bytes) are shortened when claimed (the default task id is at most 120 characters). */
export const MAX_TASK_NAME_BYTES = 120;

/**
 * `name`, or, if it is longer than MAX_TASK_NAME_BYTES, its start plus a hash of the whole
 * name (so two long names that begin alike stay apart): `<start>-<10 hex>.md`.
 */
export function safeTaskName(name: string): string {
  if (Buffer.byteLength(name) <= MAX_TASK_NAME_BYTES) return name;
  const ext = path.extname(name).slice(0, 10);
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 10);
  let start = stem(name);
  while (Buffer.byteLength(start) > MAX_TASK_NAME_BYTES - ext.length - hash.length - 1) start = start.slice(0, -1);
  // A cut may leave half a surrogate pair or a trailing dot/space (Windows drops those).
  start = start.replace(/[\uD800-\uDBFF]$/, '').replace(/[. ]+$/, '');
  return `${start}-${hash}${ext}`;
}

/**
 * Undoes a claim that could not be recorded: back to inbox/ (still under the lease, so no
 * recoverer moves it at the same time), then the lease goes. If even the move fails, the
 * unleased claim is left to recovery, which returns it to inbox/.
 */
async function giveBack(layout: Layout, file: string, name: string, lease: Lease | null): Promise<void> {
  await moveUnique(file, layout.inbox, name).catch(() => undefined);
  await lease?.release().catch(() => undefined);
}

export type Disposition = { status: 'ok' } | { status: 'error'; explanation: string } | { status: 'interrupted' };

/** Records in the ledger that the report is written: from here on a crash finalizes, never re-runs. */
export async function markReported(layout: Layout, claim: Pick<Claim, 'key' | 'name' | 'sha256' | 'runId'>, disposition: Disposition): Promise<void> {
  await ledgerFor(layout).update(claim.key, { key: claim.key, name: claim.name, sha256: claim.sha256 }, (entry) => {
    const run = entry.runs.find((r) => r.run_id === claim.runId);
    if (run)
      run.reported = {
        status: disposition.status,
        at: new Date().toISOString(),
        ...('explanation' in disposition ? { explanation: disposition.explanation } : {}),
      };
  });
}

/** Moves a claimed task to done/, failed/ (+ `<name>.error.md`) or back to inbox/. Returns its new path. */
export async function settleClaim(layout: Layout, claim: Claim, disposition: Disposition): Promise<string> {
  if (!claim.lease.owned()) {
    throw new MetaAgentError('internal', 'the claim was lost (its lease went stale); another worker may have taken the task over, so it is left alone', {
      file: claim.name,
    });
  }
  const final = await moveClaimed(layout, claim.file, claim.name, disposition);
  await ledgerFor(layout).update(claim.key, { key: claim.key, name: claim.name, sha256: claim.sha256 }, (entry) => {
    const run = entry.runs.find((r) => r.run_id === claim.runId);
    if (run) run.finalized_at = new Date().toISOString();
  });
  await claim.lease.release();
  return final;
}

/** The move itself, shared with crash recovery. */
export async function moveClaimed(layout: Layout, file: string, name: string, disposition: Disposition): Promise<string> {
  if (disposition.status === 'ok') return moveUnique(file, layout.done, name);
  if (disposition.status === 'interrupted') return moveUnique(file, layout.inbox, name);
  const moved = await moveUnique(file, layout.failed, name);
  await publishUnique(layout.failed, path.basename(moved), '.error.md', disposition.explanation);
  return moved;
}

/**
 * Takes a file out of a shared folder for this process alone: one rename to a private
 * dot-name, so two recoverers racing for the same file cannot both move it (ENOENT: lost).
 */
export async function takePrivately(file: string): Promise<string | null> {
  const privateName = path.join(path.dirname(file), `.taken-${randomBytes(4).toString('hex')}-${path.basename(file)}`);
  try {
    await renameBusy(file, privateName);
    return privateName;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/** Moves a file into `dir` under `name`, or `<stem>-2<ext>`, ... if taken. Never replaces. */
export async function moveUnique(file: string, dir: string, name = path.basename(file)): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  const ext = path.extname(name);
  for (let n = 1; n < 10_000; n++) {
    const candidate = path.join(dir, n === 1 ? name : `${stem(name)}-${n}${ext}`);
    // renameNoReplace retries each of its steps while the file is busy; false only when the name is taken.
    if (await renameNoReplace(file, candidate)) return candidate;
  }
  throw new Error(`no free name for ${name} in ${dir}`);
}

function stem(name: string): string {
  const ext = path.extname(name);
  return ext ? name.slice(0, -ext.length) : name;
}
