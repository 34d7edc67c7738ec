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
  await fs.writeFile(ownerPath(file), JSON.stringify(note) + '\n');
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

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
