/**
 * Runs an external agent's process with two clocks: the whole run (`timeoutMs`) and its
 * liveness (`idleMs`: no output and no file change in `watchDir` for that long, as when it
 * retries an unreachable model in silence). Either ends it with every process it started:
 * SIGTERM to it, then after a grace SIGKILL to it and to every process carrying its marker
 * variable (processes.ts killMarked: a grandchild that ignores SIGTERM or left with
 * `setsid`). Under bubblewrap the agent's pid namespace dies with bwrap as well. On Windows
 * the tree is ended with `taskkill /T /F`.
 *
 * It stays in the service's process group on purpose: when the service is killed (-9), the
 * next start's recovery kills that group (queue/recover.ts), the agent with it; bwrap's
 * --die-with-parent ends a sandboxed agent at once.
 */
import { execa } from 'execa';
import { killMarked, killTree } from '../safety/processes.ts';
import { watchActivity } from './activityWatch.ts';

const KILL_GRACE_MS = 2000;
/** Output kept (its tail): enough for the last message and its JSON block. */
const KEEP_CHARS = 256_000;

export interface AgentProcessOptions {
  file: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
  /** Written to stdin, then stdin is closed. */
  input: string;
  timeoutMs: number;
  idleMs: number;
  /** A change to a file under it counts as activity. */
  watchDir: string;
  /** The value of the marker variable in `env` (processes.ts CHECK_MARKER). */
  marker: string;
  signal: AbortSignal;
  platform?: NodeJS.Platform;
}

export interface AgentProcessResult {
  exitCode: number | null;
  signal: string | null;
  /** stdout and stderr interleaved, the tail of it when long. */
  output: string;
  /** Why it was ended by us, or null when it exited on its own. */
  stopped: 'timeout' | 'idle' | 'aborted' | null;
  /** Could not start: the reason (ENOENT, ...). */
  startError: string | null;
  ms: number;
}

export async function runAgentProcess(options: AgentProcessOptions): Promise<AgentProcessResult> {
  const started = performance.now();
  const windows = (options.platform ?? process.platform) === 'win32';
  let output = '';
  let lastActivity = performance.now();
  let stopped: AgentProcessResult['stopped'] = null;
  let killTimer: NodeJS.Timeout | undefined;

  const child = execa(options.file, options.args, {
    cwd: options.cwd,
    env: options.env,
    extendEnv: false,
    input: options.input,
    all: true,
    buffer: false,
    reject: false,
    windowsHide: true,
    cleanup: true,
  });
  child.all?.on('data', (chunk: Buffer | string) => {
    lastActivity = performance.now();
    output += chunk.toString();
    if (output.length > 2 * KEEP_CHARS) output = output.slice(-KEEP_CHARS);
  });
  const watcher = watchActivity(options.watchDir, () => {
    lastActivity = performance.now();
  });
  const kill = async (signal: NodeJS.Signals) => {
    if (windows) return killTree(child.pid, signal); // taskkill /T /F: the whole tree
    signalPid(child.pid, signal);
    if (signal === 'SIGKILL') await killMarked(options.marker);
  };
  const stop = (why: NonNullable<AgentProcessResult['stopped']>) => {
    stopped ??= why;
    void kill('SIGTERM');
    killTimer ??= setTimeout(() => void kill('SIGKILL'), KILL_GRACE_MS);
  };
  const timer = setTimeout(() => stop('timeout'), options.timeoutMs);
  const idleCheck = setInterval(
    () => {
      if (performance.now() - lastActivity >= options.idleMs) stop('idle');
    },
    Math.max(50, Math.min(1000, options.idleMs / 4)),
  );
  const onAbort = () => stop('aborted');
  options.signal.addEventListener('abort', onAbort, { once: true });
  if (options.signal.aborted) onAbort();
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  try {
    await Promise.race([exited, child]);
  } finally {
    clearTimeout(timer);
    clearInterval(idleCheck);
    clearTimeout(killTimer);
    options.signal.removeEventListener('abort', onAbort);
    watcher.close();
    // Whatever it left behind dies with it (a background process of an agent that exited, too).
    await kill('SIGKILL');
  }
  // A process that left the group and cleared its environment may still hold the output pipe.
  let result = await Promise.race([child, sleep(3000).then(() => null)]);
  if (!result) {
    for (const stream of [child.stdout, child.stderr, child.all]) stream?.destroy();
    result = await child;
  }
  const exitCode = typeof result.exitCode === 'number' ? result.exitCode : null;
  const startError = exitCode === null && stopped === null && result.signal === undefined ? (result.shortMessage ?? 'unknown error') : null;
  return { exitCode, signal: result.signal ?? null, output: output.slice(-KEEP_CHARS), stopped, startError, ms: Math.round(performance.now() - started) };
}

function signalPid(pid: number | undefined, signal: NodeJS.Signals): void {
  try {
    if (pid) process.kill(pid, signal);
  } catch {
    // gone already
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
