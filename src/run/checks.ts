/**
 * Running a project's `test` and `dry_run` on code an LLM wrote: never through a shell,
 * with a scrubbed environment, and (where bubblewrap is installed) without network and
 * with everything outside the worktree read-only.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { execa } from 'execa';
import type { Logger } from 'pino';
import type { CheckResult } from '../contract/report.ts';
import type { Check, Project, Settings } from '../workspace/config.ts';
import { scrubbedEnv } from '../safety/env.ts';
import type { Redactor } from '../safety/redact.ts';

const TAIL_LINES = 60;
const TAIL_CHARS = 6000;

let bwrapAvailable: Promise<boolean> | undefined;

/** Whether `bwrap` runs here (installed and allowed to create namespaces). Checked once. */
export function hasBubblewrap(): Promise<boolean> {
  bwrapAvailable ??= execa('bwrap', ['--ro-bind', '/', '/', '--dev', '/dev', '--unshare-net', '--die-with-parent', '--', 'true'], { reject: false, timeout: 10_000 })
    .then((r) => r.exitCode === 0)
    .catch(() => false);
  return bwrapAvailable;
}

export async function sandboxMode(settings: Settings): Promise<'bwrap' | 'none'> {
  const wanted = settings.config.sandbox;
  if (wanted === 'none' || process.platform !== 'linux') return 'none';
  const available = await hasBubblewrap();
  if (wanted === 'bwrap' && !available) throw new Error('sandbox: bwrap is configured but bubblewrap does not run here (apt-get install bubblewrap)');
  return available ? 'bwrap' : 'none';
}

export interface CheckTarget {
  /** The worktree the check runs in (writable inside the sandbox). */
  worktree: string;
  /** Read-only paths that must stay visible even if they live under /tmp (the repo, linked paths). */
  readOnly: string[];
}

/** Runs one check in a worktree; never throws for a failing command. */
export async function runCheck(
  check: Check,
  target: CheckTarget,
  settings: Settings,
  project: Project,
  redact: Redactor,
  signal?: AbortSignal,
): Promise<CheckResult> {
  const started = Date.now();
  const sandbox = await sandboxMode(settings);
  const cwd = path.join(target.worktree, check.cwd);
  const env = scrubbedEnv(settings.env, project.env_allow, check.env);
  const [file, args] = sandbox === 'bwrap' ? bwrapCommand(check.argv, cwd, target) : [check.argv[0], check.argv.slice(1)];
  const result = await execa(file, args, {
    cwd,
    env,
    extendEnv: false,
    stdin: 'ignore',
    all: true,
    reject: false,
    timeout: check.timeoutMs,
    forceKillAfterDelay: 2000,
    maxBuffer: 50_000_000,
    ...(signal ? { cancelSignal: signal } : {}),
  });
  const timedOut = Boolean(result.timedOut);
  const output = typeof result.all === 'string' ? result.all : '';
  const note = timedOut
    ? `\n[meta-agent: killed after ${Math.round(check.timeoutMs / 1000)} s timeout]`
    : result.failed && result.exitCode === undefined
      ? `\n[meta-agent: could not start: ${result.shortMessage ?? result.message}]`
      : '';
  return {
    command: check.command,
    exit_code: result.exitCode ?? null,
    passed: result.exitCode === 0 && !timedOut,
    duration_ms: Date.now() - started,
    output_tail: redact(tail(output) + note),
    baseline_passed: null,
    timed_out: timedOut,
    sandbox,
  };
}

function bwrapCommand(argv: readonly string[], cwd: string, target: CheckTarget): [string, string[]] {
  const args = ['--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--tmpfs', '/tmp'];
  // /tmp is private; re-expose what the check needs from it, read-only, then the worktree.
  for (const p of target.readOnly) args.push('--ro-bind-try', p, p);
  args.push('--bind', target.worktree, target.worktree);
  args.push('--unshare-net', '--unshare-pid', '--unshare-ipc', '--die-with-parent', '--new-session', '--chdir', cwd, '--');
  return ['bwrap', [...args, ...argv]];
}

export function tail(text: string, lines = TAIL_LINES, chars = TAIL_CHARS): string {
  const cut = text.split(/\r?\n/).slice(-lines).join('\n');
  return cut.length > chars ? cut.slice(-chars) : cut;
}

/** Cache of baseline results: the same command on the same commit passes or fails the same way. */
export class BaselineCache {
  constructor(private readonly dir: string) {}

  private fileFor(project: Project, commit: string, check: Check): string {
    const key = createHash('sha256').update(JSON.stringify([project.name, commit, check.argv, check.cwd, check.env])).digest('hex').slice(0, 32);
    return path.join(this.dir, `${key}.json`);
  }

  async get(project: Project, commit: string, check: Check): Promise<boolean | undefined> {
    try {
      const data = JSON.parse(await fs.readFile(this.fileFor(project, commit, check), 'utf8')) as { passed?: unknown };
      return typeof data.passed === 'boolean' ? data.passed : undefined;
    } catch {
      return undefined;
    }
  }

  async set(project: Project, commit: string, check: Check, passed: boolean): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true });
    const file = this.fileFor(project, commit, check);
    const temp = `${file}.${process.pid}.tmp`;
    await fs.writeFile(temp, JSON.stringify({ project: project.name, commit, command: check.command, passed }) + '\n');
    await fs.rename(temp, file);
  }
}

/** A check with a start and a finish event in the log: the progress lines a person follows. */
export async function loggedCheck(log: Pick<Logger, 'info'>, check: Check, run: () => Promise<CheckResult>): Promise<CheckResult> {
  log.info({ check: check.label }, `check started: ${check.label}`);
  const result = await run();
  const tail = result.output_tail.split('\n').slice(-20).join('\n');
  log.info({ check: check.label, passed: result.passed, exit_code: result.exit_code, timed_out: result.timed_out, duration_ms: result.duration_ms, tail }, `check finished: ${check.label}`);
  return result;
}
