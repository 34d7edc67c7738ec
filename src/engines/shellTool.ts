/**
 * The agent's `run_command`: one shell command in the task's worktree, for exploration
 * (a single test, `python3 -c`, `git log`), in the checks' kind of sandbox.
 *
 * Under bubblewrap (`shell: sandboxed`) a command sees: the system folders and toolchains
 * read-only, the worktree writable at its own path (what it changes, the next command
 * sees), a private empty $HOME, a private /tmp, no network, the checks' process and memory
 * limits. Not visible: the real repository (its `.git` included), the workspace, the
 * user's home. In place of the worktree's `.git` (a file pointing into the real
 * repository) it sees a read-only throwaway repository holding the base commit's history,
 * so `git log`, `git blame`, `git diff` and `git status` work and nothing can be committed.
 * Files on the deny list read as empty (/dev/null is bound over them) and their folders are
 * pinned (a mount point cannot be renamed, so a secret cannot be moved out from under its
 * mask). As root the command runs as `nobody` (like the checks): the worktree is handed to
 * that user while the command runs.
 *
 * After every command, changes outside the task's scope or to denied files are undone
 * (tracked files restored from the base commit, new files deleted; a new nested git
 * repository is deleted wherever it is) and the model is told.
 * A command past its timeout is killed with every process it started.
 *
 * `tools.shell: unsandboxed` runs the command without any of that isolation (`sh -c` on
 * POSIX, `cmd.exe /d /s /c` on Windows) with the same environment, timeout, process-tree
 * kill and scope undo; git there sees the snapshot too (GIT_DIR), not the real repository.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import type { ChatCompletionTool } from 'openai/resources/chat/completions';
import type { ShellMode } from '../contract/report.ts';
import { ALWAYS_EXCLUDED } from '../repo/git.ts';
import { venvInterpreters } from '../repo/checks.ts';
import { scrubbedEnv } from '../safety/env.ts';
import { toPosix } from '../safety/globs.ts';
import { runBounded, type BoundedResult } from '../safety/processes.ts';
import {
  CHECK_GID,
  CHECK_UID,
  bwrapCommand,
  dropsPrivileges,
  findProgram,
  sandboxStatus,
  sandboxTools,
  toolchainDirs,
  userHomes,
  withRealPaths,
  type SandboxPlan,
  type SandboxSettings,
} from '../safety/sandbox.ts';
import { cutOutput } from './toolbox.ts';
import { ToolError } from './tools.ts';
import { openRunHistory } from './historySnapshot.ts';
import type { EngineContext } from './types.ts';
import { gitArgs } from '../workspace/gitArgs.ts';

export const DEFAULT_TIMEOUT_S = 60;
/** Output kept while a command runs: this much of its head and of its tail. */
const KEEP_CHARS = 64_000;
/** Room in the tool result for the header and the notes around the output. */
const NOTES_CHARS = 1500;
const LISTED_FILES = 20;
/** Named like the checks' copies, so checkCopy.ts removes the leftovers of a process that died. */
const PREFIX = `meta-agent-check-${process.pid}-shell-`;

const DESCRIPTION = {
  sandboxed:
    'Run a shell command (sh -c) in the repository root, in a sandbox: no network, an empty $HOME, a private /tmp, no secrets. Use it to reproduce a bug or check a fix quickly: one test (python3 -m pytest -q tests/test_x.py::test_y), a snippet (python3 -c "..."), the history (git log -p FILE, git blame FILE). Files it changes stay changed for the next calls; changes outside the task scope are undone and you are told which. Nothing can be committed. Each call costs one step of your budget; long output keeps its head and tail.',
  unsandboxed:
    'Run a shell command (sh -c; cmd.exe on Windows) in the repository root. It is NOT sandboxed on this machine: never touch the network, files outside the repository, or real orders. Use it to reproduce a bug or check a fix quickly: one test (python3 -m pytest -q tests/test_x.py::test_y), a snippet (python3 -c "..."), the history (git log -p FILE, git blame FILE). Files it changes stay changed for the next calls; changes outside the task scope are undone and you are told which. Each call costs one step of your budget; long output keeps its head and tail.',
} as const;

function definition(mode: 'sandboxed' | 'unsandboxed'): ChatCompletionTool {
  return {
    type: 'function',
    function: {
      name: 'run_command',
      description: DESCRIPTION[mode],
      parameters: {
        type: 'object',
        properties: {
          command: { type: 'string', description: 'The shell command, e.g. "python3 -m pytest -q tests/test_sizing.py::test_zero_stop"' },
          timeout_s: { type: 'integer', minimum: 1, description: `Seconds before the command and all its processes are killed (default ${DEFAULT_TIMEOUT_S})` },
        },
        required: ['command'],
        additionalProperties: false,
      },
    },
  };
}

/** What the model reads about run_command, per mode (the text never changes within a run). */
export const RUN_COMMAND_DEFINITION = { sandboxed: definition('sandboxed'), unsandboxed: definition('unsandboxed') } as const;

/**
 * Whether a run offers run_command, and how; decided once per run so the tool list stays
 * the same in every request. `sandboxed` (the default) needs a sandbox that runs here
 * (not `sandbox: none`, bubblewrap working); without one the tool is not offered.
 */
export async function decideShell(settings: SandboxSettings & { config: { tools: { shell: ShellMode } } }): Promise<ShellMode> {
  const wanted = settings.config.tools.shell;
  if (wanted !== 'sandboxed') return wanted;
  const status = await sandboxStatus(settings);
  return status.mode === 'bwrap' && !status.error ? 'sandboxed' : 'off';
}

export interface Session {
  /** Private temp folder of this run's commands (removed by disposeShell). */
  root: string;
  /** The worktree's real path (binds and cwd use it). */
  worktree: string;
  /** The throwaway repository with the base commit's history; null if it could not be made. */
  gitDir: string | null;
  /** The cached history the run's repository reads its objects from (historySnapshot.ts); bound read-only. */
  snapshotDir: string | null;
  /** Why there is no history (told to the model with its first command); null when there is. */
  historyNote: string | null;
  /** "gitdir: <gitDir>", bound over the worktree's `.git` in the sandbox. */
  gitFile: string;
  /** What never counts as a change (as in the run's diff). */
  excludesFile: string;
  commands: number;
}

const sessions = new WeakMap<EngineContext, Promise<Session>>();

/** Removes the run's private temp folder; called when the engine ends. Never throws. */
export async function disposeShell(ctx: EngineContext): Promise<void> {
  const session = sessions.get(ctx);
  if (!session) return;
  sessions.delete(ctx);
  const { root } = await session.catch(() => ({ root: null }));
  if (root) await fs.rm(root, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined);
}

/** The run's shell session (private temp folder, history snapshot); the command engine's agent shares it. */
export function sessionFor(ctx: EngineContext): Promise<Session> {
  let session = sessions.get(ctx);
  if (!session) {
    session = openSession(ctx);
    sessions.set(ctx, session);
  }
  return session;
}

async function openSession(ctx: EngineContext): Promise<Session> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), PREFIX));
  const worktree = await fs.realpath(ctx.worktree);
  const gitDir = path.join(root, 'history.git');
  let historyNote: string | null = null;
  let snapshotDir: string | null = null;
  const made = await openRunHistory(ctx, worktree, gitDir).then(
    (history) => {
      historyNote = history.note;
      snapshotDir = history.snapshotDir;
      return true;
    },
    (error: Error) => {
      ctx.log.warn({ err: error.message }, 'run_command: no git history for the sandbox');
      historyNote = 'git history is not available to run_command in this run (it could not be copied): git log, blame and show do not work here';
      return false;
    },
  );
  const gitFile = path.join(root, 'dotgit');
  await fs.writeFile(gitFile, made ? `gitdir: ${gitDir}\n` : '');
  const excludesFile = path.join(root, 'exclude');
  const links = ctx.project.link.map((l) => `/${toPosix(l).replace(/\/+$/, '')}`);
  await fs.writeFile(excludesFile, `${[...ALWAYS_EXCLUDED, ...links].join('\n')}\n`);
  return { root, worktree, gitDir: made ? gitDir : null, snapshotDir, historyNote, gitFile, excludesFile, commands: 0 };
}

export async function runCommand(ctx: EngineContext, args: { command?: unknown; timeout_s?: unknown }): Promise<string> {
  const mode = ctx.shell ?? 'off';
  if (mode === 'off') throw new ToolError('run_command is not offered in this run');
  if (typeof args.command !== 'string' || !args.command.trim()) throw new ToolError('"command" must be a non-empty string');
  if (args.command.includes('\0')) throw new ToolError('"command" contains a NUL byte');
  const { limits } = ctx.settings.config;
  const asked = args.timeout_s === undefined || args.timeout_s === null ? DEFAULT_TIMEOUT_S : Number(args.timeout_s);
  if (!Number.isFinite(asked) || asked <= 0) throw new ToolError('"timeout_s" must be a positive number of seconds');
  const timeoutS = Math.min(asked, limits.command_timeout_s);
  const session = await sessionFor(ctx);
  const n = ++session.commands;
  const home = path.join(session.root, `home-${n}`);
  const tmp = path.join(session.root, `tmp-${n}`);
  await Promise.all([fs.mkdir(home), fs.mkdir(tmp)]);
  let ran: Ran;
  try {
    ran = await execute(ctx, session, mode, args.command, timeoutS, home, tmp);
  } finally {
    await Promise.all([home, tmp].map((d) => fs.rm(d, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined)));
  }
  const undone = await undoOutOfScope(ctx, session);

  const parts: string[] = [];
  const status = ran.timedOut
    ? `killed after ${timeoutS} s (timeout), with every process it started`
    : ran.aborted
      ? 'stopped: the run was interrupted'
      : `exit code ${ran.exitCode ?? `none (signal ${ran.signal ?? 'unknown'})`}`;
  parts.push(
    `$ ${args.command}\n${status} in ${(ran.ms / 1000).toFixed(1)} s${asked > timeoutS ? ` (timeout_s ${asked} lowered to ${timeoutS}, limits.command_timeout_s)` : ''}`,
  );
  const bodyLimit = Math.max(1000, limits.tool_output_chars - NOTES_CHARS);
  parts.push(ran.output.trim() ? cutOutput(ran.output, bodyLimit) : '(no output)');
  if (ran.output.length > bodyLimit)
    parts.push('[meta-agent: to see the cut part, run the command again with its output narrowed: | head -n N, | tail -n N, | grep PATTERN]');
  if (undone.length) {
    const shown = undone.slice(0, LISTED_FILES).join(', ');
    const more = undone.length > LISTED_FILES ? ` and ${undone.length - LISTED_FILES} more` : '';
    parts.push(
      `[meta-agent undid the command's changes outside this task's scope or to files on the deny list: ${shown}${more}. Only files in the task scope may change.]`,
    );
  }
  if (session.historyNote && /\bgit\b/.test(args.command)) parts.push(`[meta-agent: ${session.historyNote}]`);
  return parts.join('\n');
}

interface Ran {
  exitCode: number | null;
  signal: string | null;
  output: string;
  timedOut: boolean;
  aborted: boolean;
  ms: number;
}

/** The environment of an agent's command: scrubbed, a private home and temp, and git kept inside the worktree. */
function commandEnv(ctx: EngineContext, session: Session, sandboxed: boolean, home: string, tmp: string): Record<string, string> {
  const privateTmp = sandboxed ? '/tmp' : tmp;
  return scrubbedEnv(ctx.settings.env, ctx.project.env_allow, {
    HOME: home,
    TMPDIR: privateTmp,
    TEMP: privateTmp,
    TMP: privateTmp,
    // git never looks above the worktree, never waits for a password or a pager, and takes
    // the sandbox's folders (owned by another user there) as safe.
    GIT_CEILING_DIRECTORIES: path.dirname(session.worktree),
    GIT_TERMINAL_PROMPT: '0',
    GIT_OPTIONAL_LOCKS: '0',
    GIT_PAGER: 'cat',
    PAGER: 'cat',
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: 'safe.directory',
    GIT_CONFIG_VALUE_0: '*',
    // Unsandboxed, the worktree's .git leads into the real repository: git uses the snapshot.
    ...(sandboxed ? {} : { GIT_DIR: session.gitDir ?? path.join(session.root, 'no-history'), GIT_WORK_TREE: session.worktree }),
  });
}

async function execute(
  ctx: EngineContext,
  session: Session,
  mode: 'sandboxed' | 'unsandboxed',
  command: string,
  timeoutS: number,
  home: string,
  tmp: string,
): Promise<Ran> {
  const started = performance.now();
  const windows = process.platform === 'win32';
  const sandboxed = mode === 'sandboxed';
  const env = commandEnv(ctx, session, sandboxed, home, tmp);
  // Windows programs expect their per-user folders (inside the private home, see safety/env.ts) to exist.
  for (const dir of [env.APPDATA, env.LOCALAPPDATA]) if (dir && windows) await fs.mkdir(dir, { recursive: true });
  const shell = windows ? null : await findProgram('sh', session.worktree, env.PATH ?? '');
  if (!windows && !shell) throw new ToolError('no "sh" on the PATH of the commands; run_command cannot run here');
  let file: string;
  let argv: string[];
  let restore: () => Promise<void> = async () => {};
  if (sandboxed) {
    const plan = await sandboxPlan(ctx, session, shell!, env, home);
    [file, argv] = bwrapCommand(await sandboxTools(ctx.settings), plan, [shell!, '-c', command]);
    if (dropsPrivileges()) restore = await handOver(session.worktree, home);
  } else if (windows) {
    // cmd.exe's own quoting: /s strips the outer quotes and keeps the command as written.
    file = env.COMSPEC ?? 'cmd.exe';
    argv = ['/d', '/s', '/c', `"${command}"`];
  } else {
    file = shell!;
    argv = ['-c', command];
  }

  let output = '';
  let head = '';
  let dropped = 0;
  const keep = (text: string) => {
    if (head.length < KEEP_CHARS) {
      const room = KEEP_CHARS - head.length;
      head += text.slice(0, room);
      output += text.slice(room);
    } else output += text;
    if (output.length > 2 * KEEP_CHARS) {
      dropped += output.length - KEEP_CHARS;
      output = output.slice(-KEEP_CHARS);
    }
  };
  let ran: BoundedResult;
  try {
    ran = await runBounded(file, argv, {
      cwd: session.worktree,
      env,
      timeoutMs: timeoutS * 1000,
      signal: ctx.signal,
      onOutput: keep,
      windowsVerbatimArguments: windows && !sandboxed,
    });
  } finally {
    await restore();
  }
  if (ran.startError) throw new ToolError(`the command could not start: ${ran.startError}`);
  const { exitCode, timedOut } = ran;
  const all = dropped ? `${head}\n[... ${dropped} characters of output not kept ...]\n${output}` : head + output;
  if (sandboxed && exitCode === 1 && all.startsWith('bwrap: ')) throw new ToolError(`the sandbox could not start the command: ${all.split('\n')[0]}`);
  return { exitCode, signal: ran.signal, output: all, timedOut, aborted: ran.aborted, ms: Math.round(performance.now() - started) };
}

/** The checks' sandbox, with the worktree itself writable and the history snapshot as its `.git`. */
export async function sandboxPlan(ctx: EngineContext, session: Session, shell: string, env: Record<string, string>, home: string): Promise<SandboxPlan> {
  const { settings, project } = ctx;
  const realRepo = await fs.realpath(project.repoPath).catch(() => project.repoPath);
  const homes = await withRealPaths(await userHomes(settings.env));
  const workspace = await withRealPaths([settings.layout.root]);
  // The project's `link:` paths (a .venv, data/) stay reachable read-only, unless denied.
  const links: string[] = [];
  for (const rel of project.link) {
    if (ctx.denied(toPosix(rel).replace(/\/+$/, ''))) continue;
    const source = await fs.realpath(path.join(project.repoPath, rel)).catch(() => null);
    if (source) links.push(source);
  }
  const programs = [shell, ...(await venvInterpreters(links))];
  const toolchains = await toolchainDirs(programs, (env.PATH ?? '').split(path.delimiter), homes, [realRepo, ...workspace, session.root]);
  const { limits } = settings.config;
  return {
    cwd: session.worktree,
    writable: [session.worktree, home],
    readOnly: [...links, ...(session.gitDir ? [session.gitDir] : []), ...(session.snapshotDir ? [session.snapshotDir] : []), ...toolchains],
    hidden: [realRepo, ...workspace, ...homes],
    limits: { processes: limits.check_processes, memoryBytes: limits.check_memory_mb * 1024 * 1024 },
    over: [{ source: session.gitFile, target: path.join(session.worktree, '.git') }, ...(await deniedMasks(ctx, session.worktree))],
  };
}

/**
 * /dev/null over every denied file in the worktree (a tracked config/secrets.yaml), and its
 * folders pinned (bound onto themselves), so a command can neither read nor move it.
 */
async function deniedMasks(ctx: EngineContext, worktree: string): Promise<NonNullable<SandboxPlan['over']>> {
  const { stdout } = await execa('git', gitArgs(['ls-files', '-z', '--cached', '--others', '--exclude-standard']), {
    cwd: worktree,
    env: { GIT_OPTIONAL_LOCKS: '0' },
  });
  const pins = new Set<string>();
  const masks: string[] = [];
  for (const rel of new Set(stdout.split('\0').filter(Boolean))) {
    if (!ctx.denied(rel)) continue;
    const abs = path.join(worktree, rel);
    const stat = await fs.lstat(abs).catch(() => null);
    // Only a regular file at its own path (no symlink on the way): that is where it lives.
    if (!stat?.isFile() || (await fs.realpath(abs).catch(() => null)) !== abs) continue;
    masks.push(abs);
    for (let dir = path.dirname(abs); dir !== worktree && dir.startsWith(worktree + path.sep); dir = path.dirname(dir)) pins.add(dir);
  }
  const byDepth = [...pins].sort((a, b) => a.split(path.sep).length - b.split(path.sep).length);
  return [...byDepth.map((dir) => ({ source: dir, target: dir, writable: true })), ...masks.map((target) => ({ source: '/dev/null', target }))];
}

/**
 * As root the command runs as `nobody` (RLIMIT_NPROC does not bind root): it gets the
 * worktree (all but `.git`) and its home while it runs; the worktree's folder goes back
 * to its owner afterwards (git refuses a repository owned by someone else).
 */
export async function handOver(worktree: string, home: string): Promise<() => Promise<void>> {
  const top = await fs.lstat(worktree);
  await fs.lchown(home, CHECK_UID, CHECK_GID);
  await fs.lchown(worktree, CHECK_UID, CHECK_GID);
  const entries = await fs.readdir(worktree, { recursive: true });
  for (const rel of entries) {
    if (rel === '.git') continue;
    const abs = path.join(worktree, rel);
    const stat = await fs.lstat(abs).catch(() => null);
    if (stat && (stat.uid !== CHECK_UID || stat.gid !== CHECK_GID)) await fs.lchown(abs, CHECK_UID, CHECK_GID).catch(() => undefined);
  }
  return () => fs.lchown(worktree, top.uid, top.gid);
}

/**
 * Undoes what a command changed outside the task's scope or on the deny list: a tracked
 * file is restored from the base commit, a new file is deleted. Returns "file (restored)"
 * lines. Repeated while something is found: restoring a .gitignore can reveal more.
 */
async function undoOutOfScope(ctx: EngineContext, session: Session): Promise<string[]> {
  const { worktree } = session;
  const undone: string[] = [];
  const git = (args: string[], env: Record<string, string> = {}) =>
    execa('git', gitArgs(['-c', `core.excludesFile=${session.excludesFile}`, ...args]), {
      cwd: worktree,
      stdin: 'ignore',
      env: { GIT_OPTIONAL_LOCKS: '0', GIT_TERMINAL_PROMPT: '0', ...env },
    });
  for (let round = 0; round < 3; round++) {
    const { stdout } = await git(['status', '--porcelain=v1', '-z', '--untracked-files=all', '--no-renames']);
    const entries = stdout
      .split('\0')
      .filter(Boolean)
      .map((entry) => ({ code: entry.slice(0, 2), rel: entry.slice(3) }));
    // A new folder that git lists whole ("dir/") is a nested repository: its .git/config could
    // make the service's own git run a program (core.fsmonitor), and no patch may hold one.
    const nestedRepo = (e: { code: string; rel: string }) => e.code === '??' && e.rel.endsWith('/');
    const bad = entries.filter((e) => nestedRepo(e) || ctx.denied(e.rel.replace(/\/$/, '')) || !ctx.inScope(e.rel.replace(/\/$/, '')));
    if (bad.length === 0) break;
    for (const { rel } of bad.filter((e) => e.code === '??')) {
      const abs = path.join(worktree, rel);
      // git lists a new file under real folders only; never follow a link out of the worktree.
      if ((await fs.realpath(path.dirname(abs)).catch(() => null)) !== path.dirname(abs)) continue;
      await fs.rm(abs, { recursive: true, force: true });
      await removeEmptyParents(worktree, path.dirname(abs));
      undone.push(`${rel.replace(/\/$/, '')} (deleted${rel.endsWith('/') ? ': a git repository inside the worktree' : ''})`);
    }
    const tracked = bad.filter((e) => e.code !== '??').map((e) => e.rel);
    if (tracked.length) {
      for (const rel of tracked) await clearWay(worktree, rel);
      await git(['restore', `--source=${ctx.baseCommit}`, '--worktree', '--', ...tracked], { GIT_LITERAL_PATHSPECS: '1' });
      undone.push(...tracked.map((rel) => `${rel} (restored)`));
    }
  }
  return [...new Set(undone)];
}

/** Before a file is restored: whatever stands in its way (a link or a file where a folder was, a folder where the file was) goes. */
async function clearWay(worktree: string, rel: string): Promise<void> {
  let dir = worktree;
  const parts = rel.split('/');
  for (const part of parts.slice(0, -1)) {
    dir = path.join(dir, part);
    const stat = await fs.lstat(dir).catch(() => null);
    if (!stat) return;
    if (!stat.isDirectory()) {
      await fs.rm(dir, { force: true });
      return;
    }
  }
  const target = path.join(worktree, ...parts);
  const stat = await fs.lstat(target).catch(() => null);
  if (stat?.isDirectory() || stat?.isSymbolicLink()) await fs.rm(target, { recursive: true, force: true });
}

async function removeEmptyParents(worktree: string, dir: string): Promise<void> {
  while (dir !== worktree && dir.startsWith(worktree + path.sep)) {
    if (
      !(await fs.rmdir(dir).then(
        () => true,
        () => false,
      ))
    )
      return;
    dir = path.dirname(dir);
  }
}
