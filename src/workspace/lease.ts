/**
 * Leases: a claimed task file carries a proper-lockfile lock, refreshed while its owner
 * lives, plus a small owner note (host, pid, the pid's start time, run id). The claim
 * rename decides who owns a task; the lease only shows that the owner is still alive, so a
 * dead owner's claim can be recovered:
 *
 * - an owner on this host is judged by its pid alone: alive (even SIGSTOPped, however
 *   stale its lock) means never taken over; gone, or reused by another process (its start
 *   time differs, Linux), means dead at once;
 * - an owner on another host (NFS/SMB: its pid cannot be probed) is dead once its lock has
 *   not been refreshed for `staleMs`.
 *
 * A lease that proper-lockfile reports compromised (a refresh came late after a freeze, or
 * the lock's time is not the one it set) is re-taken if nobody else took the task (the
 * owner note is still ours and the task file still in place); otherwise it is lost: its
 * `lost` signal aborts the run, which then files nothing.
 */
import { existsSync, readFileSync, promises as fs } from 'node:fs';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import { MetaAgentError } from '../contract/errors.ts';
import { readJsonFile } from '../contract/readJson.ts';
import { OwnerNoteSchema, type OwnerNote } from '../contract/stateFiles.ts';
import { thisHost } from './faults.ts';

export interface Lease {
  /** False once the lock was lost (taken over, removed by someone else): do nothing irreversible then. */
  owned(): boolean;
  /** Aborted when the lease is lost; its reason says why. */
  lost: AbortSignal;
  /** Checks now (not only when the refresh timer runs) that the task is still ours: the owner note names this run and the file is in place. */
  verify(): Promise<boolean>;
  release(): Promise<void>;
}

export type { OwnerNote } from '../contract/stateFiles.ts';

const lockPath = (file: string) => path.join(path.dirname(file), `.${path.basename(file)}.lock`);
const ownerPath = (file: string) => path.join(path.dirname(file), `.${path.basename(file)}.owner.json`);

function myNote(runId: string): OwnerNote {
  return {
    host: thisHost(),
    pid: process.pid,
    pid_started: processStartTime(process.pid),
    pgid: processGroupOf(process.pid),
    run_id: runId,
    since: new Date().toISOString(),
  };
}

export async function takeLease(file: string, runId: string, staleMs: number): Promise<Lease> {
  const lostController = new AbortController();
  let released = false;
  const options = () => ({
    stale: staleMs,
    update: Math.max(1000, Math.floor(staleMs / 3)),
    realpath: false,
    lockfilePath: lockPath(file),
    retries: 0,
    onCompromised: (error: Error) => void onCompromised(error),
  });
  const stillOurs = async () => {
    const note = await readOwner(file);
    return Boolean(note && note.run_id === runId && note.host === thisHost() && note.pid === process.pid && existsSync(file));
  };
  const lose = (why: string) => {
    if (!lostController.signal.aborted)
      lostController.abort(
        new MetaAgentError(
          'interrupted',
          `the lease of ${path.basename(file)} was lost (${why}); another worker may have taken the task over, so this run files nothing`,
        ),
      );
  };
  const onCompromised = async (error: Error) => {
    if (released || lostController.signal.aborted) return;
    // Compromised only by the clock (a late refresh after a freeze) while nobody else took
    // the task: take the lock again and keep going.
    if (await stillOurs()) {
      try {
        releaseLock = await lockfile.lock(file, options());
        if (await stillOurs()) return;
        await releaseLock().catch(() => undefined);
      } catch {
        // held by someone else now
      }
    }
    lose(error.message);
  };
  let releaseLock = await lockfile.lock(file, options());
  await writeNoteOrUnlock(file, myNote(runId), releaseLock);
  return {
    owned: () => !lostController.signal.aborted && !released,
    lost: lostController.signal,
    verify: async () => {
      if (lostController.signal.aborted || released) return false;
      if (await stillOurs()) return true;
      lose('the owner note names another run, or the task file is gone');
      return false;
    },
    release: async () => {
      if (released) return;
      released = true;
      if (!lostController.signal.aborted) {
        await fs.rm(ownerPath(file), { force: true });
        await releaseLock().catch(() => undefined);
      }
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
    await fs.writeFile(ownerPath(file), `${JSON.stringify(note)}\n`);
  } catch (error) {
    await fs.rm(ownerPath(file), { force: true }).catch(() => undefined);
    await release().catch(() => undefined);
    throw error;
  }
}

/**
 * Whether the owner a note names is alive, judged on this host: 'unknown' for another
 * host's (only lock staleness can tell then).
 */
export function ownerOnThisHost(note: OwnerNote): 'alive' | 'dead' | 'unknown' {
  if (note.host !== thisHost()) return 'unknown';
  if (!pidAlive(note.pid)) return 'dead';
  const started = note.pid_started ? processStartTime(note.pid) : null;
  // The pid runs, but it is another process that got the same number.
  if (started && started !== note.pid_started) return 'dead';
  return 'alive';
}

/** Whether the owner of a claimed file is alive. */
export async function leaseAlive(file: string, staleMs: number): Promise<boolean> {
  const note = await readOwner(file);
  const local = note ? ownerOnThisHost(note) : 'unknown';
  if (local !== 'unknown') return local === 'alive';
  // A lock time far in the future: the clock went back since its last refresh, and a live
  // owner would have refreshed it with the new time by now (proper-lockfile alone keeps it
  // for as long as the jump: a killed worker's claim stranded for an hour, soak seed 14).
  const stat = await fs.stat(lockPath(file)).catch(() => null);
  if (stat && stat.mtimeMs - Date.now() > staleMs) return false;
  return lockfile.check(file, { stale: staleMs, realpath: false, lockfilePath: lockPath(file) }).catch(() => false);
}

/**
 * The owner note of a claimed file or lock; null when there is none or it cannot be read.
 * A note is written in place (not renamed in), so a reader may see it half-written, and a
 * note that is missing, damaged or unreadable all mean the same: the lock's staleness
 * decides instead of the owner's pid.
 */
export async function readOwner(file: string): Promise<OwnerNote | null> {
  return readJsonFile(ownerPath(file), OwnerNoteSchema).catch(() => null);
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
 * When a process started (Linux: field 22 of /proc/<pid>/stat, in clock ticks since boot),
 * so that a pid reused by a new process is not taken for the old owner. Null where there is
 * no /proc (macOS, Windows): the pid alone is used there.
 */
export function processStartTime(pid: number): string | null {
  if (process.platform !== 'linux') return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (the command name) may hold spaces and parentheses: count from the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/** The process group of a pid (Linux: /proc/<pid>/stat field 5); null elsewhere. */
export function processGroupOf(pid: number): number | null {
  if (process.platform !== 'linux') return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const pgid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
    return Number.isInteger(pgid) && pgid > 0 ? pgid : null;
  } catch {
    return null;
  }
}

/**
 * A dead owner's agent (and checks) may outlive it: a child is not killed with its parent,
 * and Node cannot ask Linux for a parent-death signal. If the dead owner led its own process
 * group (pgid == pid: how `watch` runs as a service, from a shell or detached), whatever is
 * left in that group was started by it: SIGKILL the group. Only when the pid is gone
 * altogether (not reused), so the group cannot be another process's. Returns whether a
 * group was signalled.
 */
export function killLeftoverGroup(note: OwnerNote): boolean {
  if (process.platform === 'win32' || !note.pgid || note.pgid !== note.pid || note.host !== thisHost() || pidAlive(note.pid)) return false;
  try {
    process.kill(-note.pgid, 'SIGKILL');
    return true;
  } catch {
    return false; // no such group: nothing was left
  }
}

/**
 * A lock that serializes one activity (the gate, the scheduler) across processes. Like a
 * lease, it carries an owner note: a lock left by a dead process on this host is taken
 * over at once, and one held by a live process on this host is never taken over, however
 * stale (the holder may be frozen with SIGSTOP, not dead).
 * @param wait keep trying (up to `waitMs`) instead of failing at once when it is held
 * @param onLost called when proper-lockfile finds the lock taken over (this process was
 *   frozen past `staleMs` and another host took it): abort the guarded work there. Never
 *   thrown: an uncaught ECOMPROMISED would kill the whole service.
 */
export async function lockActivity(
  target: string,
  options: { staleMs: number; wait: boolean; waitMs?: number; onLost?: (error: Error) => void },
): Promise<(() => Promise<void>) | null> {
  await fs.mkdir(path.dirname(target), { recursive: true });
  await fs.writeFile(target, '', { flag: 'a' });
  const deadline = performance.now() + (options.waitMs ?? 24 * 3600_000);
  let lost = false;
  const onCompromised = (error: Error) => {
    if (lost) return;
    lost = true;
    options.onLost?.(error);
  };
  for (let attempt = 0; ; attempt++) {
    try {
      const note = await readOwner(target);
      // proper-lockfile would take a stale lock over by itself: not from a live owner on this host.
      if (note && note.pid !== process.pid && ownerOnThisHost(note) === 'alive')
        throw Object.assign(new Error('held by a live process on this host'), { code: 'ELOCKED' });
      const release = await lockfile.lock(target, {
        stale: options.staleMs,
        update: Math.max(1000, Math.floor(options.staleMs / 3)),
        realpath: false,
        lockfilePath: lockPath(target),
        retries: 0,
        onCompromised,
      });
      await writeNoteOrUnlock(target, myNote('lock'), release);
      return async () => {
        if (lost) return; // the lock and its note are someone else's now
        await fs.rm(ownerPath(target), { force: true });
        await release().catch(() => undefined);
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ELOCKED') throw error;
      if (await lockIsDead(target, options.staleMs)) {
        await clearLease(target);
        continue;
      }
      if (!options.wait || performance.now() > deadline) return null;
      await new Promise((r) => setTimeout(r, Math.min(1000, 50 * 2 ** Math.min(attempt, 5))));
    }
  }
}

/**
 * Whether an activity lock (lockActivity) is dead: its owner is gone from this host, or,
 * when that cannot be told (no note, another host), its lock was not refreshed for
 * `staleMs`. A lock time more than `staleMs` in the future counts as old: the clock went
 * back since it was last refreshed, and a live owner would have refreshed it with the new
 * time by now (proper-lockfile alone would keep it for as long as the clock jumped).
 */
export async function lockIsDead(target: string, staleMs: number): Promise<boolean> {
  const note = await readOwner(target);
  if (note && note.pid === process.pid && note.host === thisHost()) return false;
  const local = note ? ownerOnThisHost(note) : 'unknown';
  if (local !== 'unknown') return local === 'dead';
  const stat = await fs.stat(lockPath(target)).catch(() => null);
  if (!stat) return false;
  const age = Date.now() - stat.mtimeMs;
  return age > staleMs || age < -staleMs;
}

/**
 * Removes the dead activity locks in `dir` (lockActivity's `.<name>.lock` and owner note),
 * which nothing else would remove when the same name is never locked again (a task id
 * whose run was killed and that never runs again). Returns the names cleared.
 */
export async function clearDeadLocks(dir: string, staleMs: number): Promise<string[]> {
  const cleared: string[] = [];
  for (const entry of await fs.readdir(dir).catch(() => [] as string[])) {
    const name = /^\.(.+)\.lock$/.exec(entry)?.[1];
    if (!name) continue;
    const target = path.join(dir, name);
    if (!(await lockIsDead(target, staleMs))) continue;
    await clearLease(target);
    cleared.push(name);
  }
  return cleared;
}
