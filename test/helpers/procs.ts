/**
 * Real `meta-agent watch` processes for queue tests. Each is started in its own process
 * group (detached), so that cleanup can kill it together with anything it started (a slow
 * engine command keeps running after its parent was killed with SIGKILL, like in real life).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { REPO_ROOT } from './workspace.ts';

export const BIN = path.join(REPO_ROOT, 'bin', 'meta-agent.js');

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` until it is true; the error names `what` and, if given, the state seen last. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, ms = 30_000, state?: () => Promise<string> | string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await sleep(50);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${state ? `; state: ${await state()}` : ''}`);
}

/**
 * Like `waitFor`, for long batches: it gives up only when `progress()` has not changed for
 * `stallMs` (a hang), not after a fixed total, so a slow machine is not a failure.
 */
export async function waitForProgress(
  what: string,
  check: () => boolean | Promise<boolean>,
  progress: () => Promise<number> | number,
  stallMs = 30_000,
  state?: () => Promise<string> | string,
): Promise<void> {
  let last = await progress();
  let lastChange = Date.now();
  for (;;) {
    if (await check()) return;
    const now = await progress();
    if (now !== last) [last, lastChange] = [now, Date.now()];
    else if (Date.now() - lastChange > stallMs) {
      throw new Error(`no progress for ${stallMs} ms (stuck at ${now}) waiting for ${what}${state ? `; state: ${await state()}` : ''}`);
    }
    await sleep(100);
  }
}

export interface WatchProc {
  pid: number;
  child: ResultPromise;
  /** stdout + stderr so far. */
  output(): string;
  /** Resolves with the exit code (null when killed by a signal) and the signal. */
  exited: Promise<{ code: number | null; signal: string | null }>;
  alive(): boolean;
}

/** Everything started here, for `killAll`. */
const started = new Set<WatchProc>();

export function startWatch(root: string, env: Record<string, string> = {}): WatchProc {
  return startMetaAgent(['watch', '--root', root], env);
}

/** A `meta-agent <args>` process in its own process group (killHard kills what it started too); tracked for `killAll`. */
export function startMetaAgent(args: string[], env: Record<string, string> = {}): WatchProc {
  const child = execa(process.execPath, [BIN, ...args], {
    reject: false,
    detached: true,
    all: true,
    buffer: false,
    stdin: 'ignore',
    env: { OPENAI_API_KEY: '', ...env },
    extendEnv: true,
  });
  let out = '';
  child.all?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  let running = true;
  const exited = child.then((r) => {
    running = false;
    return { code: r.exitCode ?? null, signal: r.signal ?? null };
  });
  const proc: WatchProc = { pid: child.pid!, child, output: () => out, exited, alive: () => running };
  started.add(proc);
  return proc;
}

/** Starts a watch process and waits until it printed that it is watching (start-up scan done). */
export async function startWatchReady(root: string, env: Record<string, string> = {}, ms = 30_000): Promise<WatchProc> {
  const proc = startWatch(root, env);
  await waitFor(
    '"watching" from the watch process',
    () => proc.output().includes('watching ') || !proc.alive(),
    ms,
    () => proc.output(),
  );
  if (!proc.alive()) throw new Error(`watch exited at start:\n${proc.output()}`);
  return proc;
}

/** Sends `signal` to the process only (not its group): `kill -9 <pid>`. */
export function signal(proc: WatchProc, sig: NodeJS.Signals): void {
  try {
    process.kill(proc.pid, sig);
  } catch {
    // already gone
  }
}

/** SIGKILLs a process and its whole group (with the commands it started), then waits for it. */
export async function killHard(proc: WatchProc): Promise<void> {
  for (const target of [-proc.pid, proc.pid]) {
    try {
      process.kill(target, 'SIGCONT');
      process.kill(target, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await proc.exited;
  started.delete(proc);
}

/** Cleanup for finally blocks: every process started by this module, with its group. */
export async function killAll(): Promise<void> {
  await Promise.all([...started].map((p) => killHard(p)));
}

/** Names in a folder, without the placeholder and (unless asked) without dotfiles. */
export async function list(dir: string, options: { dot?: boolean } = {}): Promise<string[]> {
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  return names.filter((n) => n !== '.gitkeep' && (options.dot || !n.startsWith('.'))).sort();
}

/**
 * Publishes a task the way createTask and well-behaved programs do: write a dotfile in the
 * folder (ignored by the queue), date it a little in the past, then rename it in.
 */
export async function publish(dir: string, name: string, data: string | Uint8Array): Promise<string> {
  const temp = path.join(dir, `.${name}.${process.pid}.partial`);
  const file = path.join(dir, name);
  await fs.writeFile(temp, data);
  const past = new Date(Date.now() - 2000);
  await fs.utimes(temp, past, past);
  await fs.rename(temp, file);
  return file;
}

/** The pid of a process that has exited: what an owner note of a killed worker names. */
export async function deadPid(): Promise<number> {
  const child = execa(process.execPath, ['-e', '0']);
  await child;
  return child.pid!;
}
