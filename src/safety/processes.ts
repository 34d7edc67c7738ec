/**
 * Running a command that must end, with everything it started: checks (repo/checks.ts) and
 * the agent's run_command (engines/shellTool.ts) run through `runBounded`.
 *
 * Ending is `killTree`: the process group on POSIX (the command runs detached, as a group
 * leader), `taskkill /T /F` on Windows (no groups there; a `.cmd` shim runs its program under
 * cmd.exe, and killing only the direct child leaves that program running, holding the
 * worktree's files). On Linux, any process that still carries the run's marker variable is
 * killed too (a `setsid` grandchild leaves the group but keeps its environment).
 */
import { promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';

/** The variable that marks the processes of one check (its value is a random token). */
export const CHECK_MARKER = 'META_AGENT_CHECK';

/** Longest wait for `taskkill` itself (it must not become the thing that hangs). */
const TASKKILL_TIMEOUT_MS = 10_000;
const KILL_GRACE_MS = 2000;

/** How a program is run to kill a tree (taskkill); tests pass their own to see the argv. */
export type KillSpawner = (file: string, args: string[]) => Promise<unknown>;

export interface TreeKillOptions {
  platform?: NodeJS.Platform;
  spawn?: KillSpawner;
}

const runTaskkill: KillSpawner = (file, args) => execa(file, args, { reject: false, windowsHide: true, stdin: 'ignore', timeout: TASKKILL_TIMEOUT_MS });

/**
 * Signals the process tree led by `pid`: its process group on POSIX (the process must have
 * been started detached), `taskkill /T /F /PID pid` on Windows (always a hard kill there:
 * Windows has no SIGTERM for console programs). Bounded in time; never throws.
 * Exported for every place that runs a command that must die with its children.
 */
export async function killTree(pid: number | undefined, signal: NodeJS.Signals, options: TreeKillOptions = {}): Promise<void> {
  if (!pid) return;
  if ((options.platform ?? process.platform) === 'win32') {
    await (options.spawn ?? runTaskkill)('taskkill', ['/T', '/F', '/PID', String(pid)]).catch(() => undefined);
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

export interface BoundedRun {
  cwd: string;
  /** The whole environment (nothing is inherited); the marker variable is added. */
  env: Record<string, string>;
  timeoutMs: number;
  /** Aborting stops the command like a timeout does (but it is not reported as one). */
  signal?: AbortSignal;
  /** Each piece of stdout and stderr, interleaved, as it arrives. */
  onOutput: (text: string) => void;
  /** Windows: pass the arguments as written (cmd.exe's own quoting). */
  windowsVerbatimArguments?: boolean;
  /** SIGTERM first, SIGKILL this long after (POSIX); default 2 s. */
  graceMs?: number;
}

export interface BoundedResult {
  exitCode: number | null;
  /** The signal that ended it (POSIX), or null. */
  signal: string | null;
  timedOut: boolean;
  aborted: boolean;
  /** Why it could not start at all (not found, not executable), or null. */
  startError: string | null;
}

/**
 * Runs `file args` without a shell and returns when it and every process it started are
 * gone: at its exit, at `timeoutMs`, or when `signal` aborts. Never throws for the
 * command's sake (a command that cannot start is `startError`).
 */
export async function runBounded(file: string, args: readonly string[], run: BoundedRun): Promise<BoundedResult> {
  const posix = process.platform !== 'win32';
  const token = randomBytes(12).toString('hex');
  const child = execa(file, args, {
    cwd: run.cwd,
    env: { ...run.env, [CHECK_MARKER]: token },
    extendEnv: false,
    stdin: 'ignore',
    all: true,
    buffer: false,
    reject: false,
    detached: posix,
    windowsHide: true,
    windowsVerbatimArguments: run.windowsVerbatimArguments ?? false,
    cleanup: true,
  });
  child.all?.on('data', (chunk: Buffer | string) => run.onOutput(chunk.toString()));
  let timedOut = false;
  let killTimer: NodeJS.Timeout | undefined;
  const stop = () => {
    void killTree(child.pid, 'SIGTERM');
    killTimer ??= setTimeout(() => void killTree(child.pid, 'SIGKILL'), run.graceMs ?? KILL_GRACE_MS);
  };
  const timer = setTimeout(() => {
    timedOut = true;
    stop();
  }, run.timeoutMs);
  run.signal?.addEventListener('abort', stop, { once: true });
  if (run.signal?.aborted) stop();
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  try {
    await Promise.race([exited, child]);
  } finally {
    clearTimeout(timer);
    clearTimeout(killTimer);
    run.signal?.removeEventListener('abort', stop);
    // Whatever the command left behind dies with it: its tree, then anything still marked.
    await killTree(child.pid, 'SIGKILL');
    await killMarked(token);
  }
  // A process that left the group and cleared its environment may still hold the output pipe.
  let result = await Promise.race([child, sleep(3000).then(() => null)]);
  if (!result) {
    for (const stream of [child.stdout, child.stderr, child.all]) stream?.destroy();
    result = await child;
  }
  const aborted = Boolean(run.signal?.aborted);
  const exitCode = typeof result.exitCode === 'number' ? result.exitCode : null;
  const signal = result.signal ?? null;
  const startError = exitCode === null && !timedOut && !aborted && signal === null ? (result.shortMessage ?? result.message ?? 'unknown error') : null;
  return { exitCode, signal, timedOut, aborted, startError };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
