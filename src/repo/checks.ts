/**
 * Running a project's checks (`test`, `dry_run`, the retrain chain) on code an LLM wrote:
 * never through a shell, with a scrubbed environment and a private $HOME, in a throwaway
 * copy of the worktree that has no `.git` (checkCopy.ts), under bubblewrap unless the
 * config says `sandbox: none` (safety/sandbox.ts), and with every process of the check
 * killed when it ends (safety/processes.ts).
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { MetaAgentError } from '../contract/errors.ts';
import { readJsonFile } from '../contract/readJson.ts';
import { BaselineCacheEntrySchema, type BaselineCacheEntry } from '../contract/stateFiles.ts';
import type { CheckResult } from '../contract/report.ts';
import type { Check, Project, Settings } from '../workspace/config.ts';
import { scrubbedEnv } from '../safety/env.ts';
import { denyMatcher } from '../safety/globs.ts';
import type { Redactor } from '../safety/redact.ts';
import {
  CHECK_GID,
  CHECK_UID,
  bwrapCommand,
  dropsPrivileges,
  findProgram,
  requireSandbox,
  sandboxTools,
  toolchainDirs,
  userHomes,
  withRealPaths,
  type SandboxMode,
} from '../safety/sandbox.ts';
import { runBounded } from '../safety/processes.ts';
import { makeCheckCopy, type CheckCopy } from './checkCopy.ts';

const TAIL_LINES = 60;
const TAIL_CHARS = 6000;
/** Output kept while a check runs (the tail is cut from it). */
const KEEP_CHARS = 256_000;

export interface CheckTarget {
  /** The worktree whose files the checks see (copied; the worktree itself is never touched). */
  worktree: string;
}

/**
 * Runs `fn` with a fresh copy of `target.worktree`, removed afterwards. Fails closed first:
 * a sandbox that cannot run is a config error before anything is copied.
 */
export async function withCheckCopy<T>(target: CheckTarget, settings: Settings, project: Project, fn: (copy: CheckCopy) => Promise<T>): Promise<T> {
  const mode = await requireSandbox(settings);
  const copy = await makeCheckCopy(target.worktree, project, {
    extra: project.retrain?.artifacts ?? [],
    owner: mode === 'bwrap' && dropsPrivileges() ? { uid: CHECK_UID, gid: CHECK_GID } : null,
    // The same deny list the agent's tools obey: a tracked secret file is no check's business either.
    denied: denyMatcher([...project.deny, ...settings.config.patch.protected]),
  });
  try {
    return await fn(copy);
  } finally {
    await copy.remove();
  }
}

/**
 * Before a run spends anything: the sandbox runs, and each check's program exists (in the
 * worktree for a path like `./run_tests.sh`, else on the checks' PATH). Config errors otherwise.
 */
export async function preflightChecks(settings: Settings, project: Project, worktree: string, checks: Array<Check | null>): Promise<SandboxMode> {
  const mode = await requireSandbox(settings);
  for (const check of checks) {
    if (!check) continue;
    const env = checkEnv(settings, project, check, { home: os.tmpdir(), tmp: os.tmpdir(), root: os.tmpdir() });
    if (!(await findProgram(check.argv[0], path.join(worktree, check.cwd), env.PATH ?? '', env.PATHEXT))) throw programMissing(check, project);
  }
  return mode;
}

/** Runs one check in `copy`; a failing command is a result, a command that cannot start is a config error. */
export async function runCheck(
  check: Check,
  copy: CheckCopy,
  settings: Settings,
  project: Project,
  redact: Redactor,
  signal?: AbortSignal,
): Promise<CheckResult> {
  // The monotonic clock: a wall clock set back during the check (NTP, a person) would make the
  // duration negative, and a record the gate reads back after a crash would fail its schema.
  const started = performance.now();
  const mode = await requireSandbox(settings);
  const cwd = path.join(copy.dir, check.cwd);
  const env = checkEnv(settings, project, check, copy);
  // Windows programs expect their per-user folders to exist (the private home's, see safety/env.ts).
  for (const dir of [env.APPDATA, env.LOCALAPPDATA]) if (dir && process.platform === 'win32') await fs.mkdir(dir, { recursive: true });
  const program = await findProgram(check.argv[0], cwd, env.PATH ?? '', env.PATHEXT);
  if (!program) throw programMissing(check, project);
  const [file, args] = mode === 'bwrap' ? await sandboxed(check, program, env, copy, settings, project) : [check.argv[0], check.argv.slice(1)];

  let output = '';
  const ran = await runBounded(file, args, {
    cwd,
    env,
    timeoutMs: check.timeoutMs,
    ...(signal ? { signal } : {}),
    onOutput: (text) => {
      output += text;
      if (output.length > KEEP_CHARS) output = output.slice(-KEEP_CHARS / 2);
    },
  });
  if (ran.startError) throw cannotStart(check, project, ran.startError);
  const { exitCode, timedOut } = ran;
  const firstLine = output.trimStart().split('\n')[0] ?? '';
  if (mode === 'bwrap' && exitCode === 1 && firstLine.startsWith('bwrap: ')) throw cannotStart(check, project, `the sandbox could not start it: ${firstLine}`);
  const note = timedOut ? `\n[meta-agent: killed after ${Math.round(check.timeoutMs / 1000)} s timeout]` : '';
  return {
    command: check.command,
    exit_code: exitCode,
    passed: exitCode === 0 && !timedOut,
    duration_ms: Math.round(performance.now() - started),
    output_tail: redact(tail(output) + note),
    baseline_passed: null,
    timed_out: timedOut,
    sandbox: mode,
  };
}

/** The environment of a check: allow-listed variables, a private HOME and TMPDIR, git kept inside the copy. */
function checkEnv(settings: Settings, project: Project, check: Check, copy: Pick<CheckCopy, 'home' | 'tmp' | 'root'>): Record<string, string> {
  return scrubbedEnv(settings.env, project.env_allow, {
    HOME: copy.home,
    TMPDIR: copy.tmp,
    TEMP: copy.tmp,
    TMP: copy.tmp,
    // git never looks above the copy for a repository.
    GIT_CEILING_DIRECTORIES: copy.root,
    ...check.env,
  });
}

async function sandboxed(
  check: Check,
  program: string,
  env: Record<string, string>,
  copy: CheckCopy,
  settings: Settings,
  project: Project,
): Promise<[string, string[]]> {
  const tools = await sandboxTools(settings);
  // Each by its literal and its real path: a workspace or home reached through a symlink
  // (~/bots -> /opt/bots) must not show up under a system folder the sandbox binds.
  const homes = await withRealPaths(await userHomes(settings.env));
  const workspace = await withRealPaths([settings.layout.root]);
  const programs = [program, ...(await venvInterpreters(copy.links))];
  const realRepo = await fs.realpath(project.repoPath).catch(() => project.repoPath);
  const { limits } = settings.config;
  return bwrapCommand(
    tools,
    {
      cwd: path.join(copy.dir, check.cwd),
      writable: [copy.dir, copy.home, copy.tmp],
      readOnly: [...copy.links, ...(await toolchainDirs(programs, (env.PATH ?? '').split(path.delimiter), homes, [realRepo, ...workspace, copy.root]))],
      hidden: [realRepo, ...workspace, ...homes],
      limits: { processes: limits.check_processes, memoryBytes: limits.check_memory_mb * 1024 * 1024 },
    },
    [program, ...check.argv.slice(1)],
  );
}

/** A linked virtualenv's base interpreter (pyvenv.cfg `home =`), which lives outside the venv. */
export async function venvInterpreters(links: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const link of links) {
    const cfg = await fs.readFile(path.join(link, 'pyvenv.cfg'), 'utf8').catch(() => null);
    const home = cfg && /^home\s*=\s*(.+)$/m.exec(cfg)?.[1]?.trim();
    if (home) found.push(path.join(home, 'python3'));
  }
  return found;
}

function fieldOf(check: Check, project: Project): string {
  return ['collect', 'train', 'eval'].includes(check.label) ? `projects.${project.name}.retrain.${check.label}` : `projects.${project.name}.${check.label}`;
}

function programMissing(check: Check, project: Project): MetaAgentError {
  const program = check.argv[0];
  const where = /[\\/]/.test(program) ? `in the repo (relative to cwd "${check.cwd}")` : "on the checks' PATH";
  return cannotStart(check, project, `"${program}" was not found ${where}`);
}

function cannotStart(check: Check, project: Project, why: string): MetaAgentError {
  return new MetaAgentError(
    'config',
    `the ${check.label} command "${check.command}" cannot start: ${why}; fix the command (a missing program is not a failing ${check.label})`,
    {
      file: 'meta-agent.yaml',
      field: fieldOf(check, project),
    },
  );
}

export function tail(text: string, lines = TAIL_LINES, chars = TAIL_CHARS): string {
  const cut = text.split(/\r?\n/).slice(-lines).join('\n');
  return cut.length > chars ? cut.slice(-chars) : cut;
}

/** Cache of baseline results: the same command on the same commit passes or fails the same way. */
export class BaselineCache {
  constructor(private readonly dir: string) {}

  private fileFor(project: Project, commit: string, check: Check): string {
    const key = createHash('sha256')
      .update(JSON.stringify([project.name, commit, check.argv, check.cwd, check.env]))
      .digest('hex')
      .slice(0, 32);
    return path.join(this.dir, `${key}.json`);
  }

  async get(project: Project, commit: string, check: Check): Promise<boolean | undefined> {
    return (await this.detail(project, commit, check))?.passed;
  }

  /** With the tests that failed (null: the output did not say, or an entry written before they were kept). */
  async detail(project: Project, commit: string, check: Check): Promise<{ passed: boolean; failed_tests: string[] | null } | undefined> {
    // A cache: an entry that is missing, damaged or unreadable is a miss (the check runs again).
    const entry = await readJsonFile(this.fileFor(project, commit, check), BaselineCacheEntrySchema).catch(() => null);
    // A failing entry from before failed_tests was kept: run it again to learn which tests.
    if (!entry || (!entry.passed && entry.failed_tests === undefined)) return undefined;
    return { passed: entry.passed, failed_tests: entry.failed_tests ?? null };
  }

  async set(project: Project, commit: string, check: Check, passed: boolean, failedTests: string[] | null = null): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true });
    const file = this.fileFor(project, commit, check);
    const temp = `${file}.${process.pid}.tmp`;
    await fs.writeFile(
      temp,
      `${JSON.stringify({ project: project.name, commit, command: check.command, passed, failed_tests: failedTests } satisfies BaselineCacheEntry)}\n`,
    );
    await fs.rename(temp, file);
  }
}

/** A check with a start and a finish event in the log: the progress lines a person follows. */
export async function loggedCheck(log: Pick<Logger, 'info'>, check: Check, run: () => Promise<CheckResult>): Promise<CheckResult> {
  log.info({ check: check.label }, `check started: ${check.label}`);
  const result = await run();
  const tail = result.output_tail.split('\n').slice(-20).join('\n');
  log.info(
    { check: check.label, passed: result.passed, exit_code: result.exit_code, timed_out: result.timed_out, duration_ms: result.duration_ms, tail },
    `check finished: ${check.label}`,
  );
  return result;
}
