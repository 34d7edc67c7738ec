/**
 * Ending every process of a check, including the ones that tried to get away: the process
 * group (a check runs detached, as a group leader), and on Linux any process that still
 * carries the check's marker variable (a `setsid` grandchild keeps its environment).
 */
import { promises as fs } from 'node:fs';
import { execa } from 'execa';

/** The variable that marks the processes of one check (its value is a random token). */
export const CHECK_MARKER = 'META_AGENT_CHECK';

/** Signals the process group led by `pid` (POSIX), or the process tree (Windows). Never throws. */
export async function killGroup(pid: number | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!pid) return;
  if (process.platform === 'win32') {
    await execa('taskkill', ['/T', '/F', '/PID', String(pid)], { reject: false, windowsHide: true }).catch(() => undefined);
    return;
  }
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is gone
  }
}

/**
 * SIGKILLs every process whose environment has CHECK_MARKER=token (Linux; elsewhere a no-op).
 * Found processes are stopped first and killed at the end, so a fork loop cannot outrun the scan.
 * Returns how many there were.
 */
export async function killMarked(token: string): Promise<number> {
  if (process.platform !== 'linux') return 0;
  const needle = Buffer.from(`${CHECK_MARKER}=${token}\0`);
  const found = new Set<number>();
  for (let round = 0; round < 50; round++) {
    let added = 0;
    for (const name of await fs.readdir('/proc').catch(() => [] as string[])) {
      const pid = Number(name);
      if (!Number.isInteger(pid) || pid === process.pid || found.has(pid)) continue;
      const environ = await fs.readFile(`/proc/${pid}/environ`).catch(() => null);
      if (!environ || !(environ.indexOf(needle) === 0 || environ.includes(Buffer.concat([Buffer.from('\0'), needle])))) continue;
      found.add(pid);
      added++;
      signalPid(pid, 'SIGSTOP');
    }
    if (added === 0) break;
  }
  for (const pid of found) signalPid(pid, 'SIGKILL');
  return found.size;
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // gone already
  }
}
