/**
 * Leases: a claimed task file carries a proper-lockfile lock, refreshed while its owner
 * lives, plus a small owner note (host, pid). The claim rename decides who owns a task;
 * the lease only shows that the owner is still alive, so a dead owner's claim can be
 * recovered: at once when the owner was on this host and its pid is gone, otherwise when
 * the lock goes stale (NFS/SMB: other hosts' pids cannot be probed).
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import lockfile from 'proper-lockfile';

export interface Lease {
  /** False once the lock was lost (stale, removed by someone else): do nothing irreversible then. */
  owned(): boolean;
  release(): Promise<void>;
}

export interface OwnerNote {
  host: string;
  pid: number;
  run_id: string;
  since: string;
}

const lockPath = (file: string) => path.join(path.dirname(file), `.${path.basename(file)}.lock`);
const ownerPath = (file: string) => path.join(path.dirname(file), `.${path.basename(file)}.owner.json`);

export async function takeLease(file: string, runId: string, staleMs: number): Promise<Lease> {
  let compromised = false;
  const release = await lockfile.lock(file, {
    stale: staleMs,
    update: Math.max(1000, Math.floor(staleMs / 3)),
    realpath: false,
    lockfilePath: lockPath(file),
    retries: 0,
    onCompromised: () => {
      compromised = true;
    },
  });
  const note: OwnerNote = { host: os.hostname(), pid: process.pid, run_id: runId, since: new Date().toISOString() };
  await writeNoteOrUnlock(file, note, release);
  let released = false;
  return {
    owned: () => !compromised && !released,
    release: async () => {
      if (released) return;
      released = true;
      await fs.rm(ownerPath(file), { force: true });
      if (!compromised) await release().catch(() => undefined);
    },
  };
}

/**
 * Writes the owner note of a lock just taken. If it cannot be written (a full disk), the
 * lock is given back: held and refreshed without a note, it would look alive for as long
 * as this process lives, with nobody using it.
 */
async function writeNoteOrUnlock(file: string, note: OwnerNote, release: () => Promise<void>): Promise<void> {
  try {
    await fs.writeFile(ownerPath(file), JSON.stringify(note) + '\n');
  } catch (error) {
    await fs.rm(ownerPath(file), { force: true }).catch(() => undefined);
    await release().catch(() => undefined);
    throw error;
  }
}

/** Whether the owner of a claimed file is alive. */
export async function leaseAlive(file: string, staleMs: number): Promise<boolean> {
  const note = await readOwner(file);
  if (note && note.host === os.hostname() && !pidAlive(note.pid)) return false;
  return lockfile.check(file, { stale: staleMs, realpath: false, lockfilePath: lockPath(file) }).catch(() => false);
}

export async function readOwner(file: string): Promise<OwnerNote | null> {
  try {
    return JSON.parse(await fs.readFile(ownerPath(file), 'utf8')) as OwnerNote;
  } catch {
    return null;
  }
}

/** Removes what a dead owner left behind (its lock folder and owner note). */
export async function clearLease(file: string): Promise<void> {
  await fs.rm(lockPath(file), { recursive: true, force: true });
  await fs.rm(ownerPath(file), { force: true });
}

/** Whether a process with this pid runs on this host (EPERM: it runs, as another user). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A lock that serializes one activity (the gate, the scheduler) across processes. Like a
 * lease, it carries an owner note, so a lock left by a dead process on this host is
 * taken over at once instead of after `staleMs`.
 * @param wait keep trying (up to `waitMs`) instead of failing at once when it is held
 */
export async function lockActivity(target: string, options: { staleMs: number; wait: boolean; waitMs?: number }): Promise<(() => Promise<void>) | null> {
  await fs.mkdir(path.dirname(target), { recursive: true });
  await fs.writeFile(target, '', { flag: 'a' });
  const deadline = Date.now() + (options.waitMs ?? 24 * 3600_000);
  for (let attempt = 0; ; attempt++) {
    try {
      const release = await lockfile.lock(target, { stale: options.staleMs, update: Math.max(1000, Math.floor(options.staleMs / 3)), realpath: false, lockfilePath: lockPath(target), retries: 0 });
      await writeNoteOrUnlock(target, { host: os.hostname(), pid: process.pid, run_id: 'lock', since: new Date().toISOString() }, release);
      return async () => {
        await fs.rm(ownerPath(target), { force: true });
        await release().catch(() => undefined);
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ELOCKED') throw error;
      const note = await readOwner(target);
      if (note && note.host === os.hostname() && !pidAlive(note.pid)) {
        await clearLease(target);
        continue;
      }
      if (!options.wait || Date.now() > deadline) return null;
      await new Promise((r) => setTimeout(r, Math.min(1000, 50 * 2 ** Math.min(attempt, 5))));
    }
  }
}
