/**
 * `meta-agent doctor`: what would make the night fail, found before it starts. Run by
 * `watch` at start too: errors refuse the start, warnings are printed.
 *
 * Every finding is one line naming the project and the field, with the fix. The probes that
 * depend on the machine (bubblewrap, disk space, volumes, the network) are injectable, so
 * each bad configuration can be shown without breaking the machine.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { toErrorInfo } from '../contract/errors.ts';
import { COMMAND_EXAMPLE } from '../engines/command.ts';
import { agentSandboxMode, UNSANDBOXED_WARNING } from '../engines/agentSandbox.ts';
import { scrubbedEnv } from '../safety/env.ts';
import { findPython, isPythonProgram, pythonVersion } from '../safety/python.ts';
import { findProgram, sandboxStatus, type SandboxSettings, type SandboxStatus } from '../safety/sandbox.ts';
import { git, isGitRepo, resolveBranch } from '../repo/git.ts';
import { assertOneVolume } from '../queue/volumes.ts';
import { llmMissingMessage, loadSettings, type Check, type Project, type Settings } from '../workspace/config.ts';
import { layoutDirs } from '../workspace/layout.ts';
import { resolveCommand } from '../engines/presets/index.ts';
import { agentNeeds, apiKeyValue } from '../engines/agentNeeds.ts';
import { checkRedis } from './doctorRedis.ts';

export type Level = 'error' | 'warning';

export interface Finding {
  level: Level;
  /** The project the finding is about, if any. */
  project: string | null;
  /** The config field (`projects.bot.repo`, `llm`, `sandbox`) or the workspace fact (`disk`). */
  field: string;
  message: string;
}

export interface DoctorReport {
  ok: boolean;
  errors: number;
  warnings: number;
  findings: Finding[];
  /** What was checked and found fine, for the verdict line. */
  checked: string[];
}

/** The machine, as the doctor sees it. Tests replace single probes. */
export interface DoctorProbes {
  platform: NodeJS.Platform;
  /** Whether checks can run as configured (safety/sandbox.ts); `platform` is the one above. */
  sandbox: (settings: Settings, platform: NodeJS.Platform) => Promise<SandboxStatus>;
  /** Free bytes for an unprivileged user on the volume of `dir`. */
  freeBytes: (dir: string) => Promise<number>;
  /** Throws (with the folders named) when `dirs` are not on one volume. */
  oneVolume: (dirs: string[]) => Promise<void>;
  fetch: typeof fetch;
  modelTimeoutMs: number;
  /** How long Redis may take to answer (execution.engine: bullmq). */
  redisTimeoutMs: number;
}

export const defaultProbes: DoctorProbes = {
  platform: process.platform,
  sandbox: (settings, platform) => sandboxStatus(settings, { platform }),
  freeBytes: async (dir) => {
    const s = await fs.statfs(dir);
    return s.bavail * s.bsize;
  },
  oneVolume: assertOneVolume,
  fetch: (...args) => fetch(...args),
  modelTimeoutMs: 3000,
  redisTimeoutMs: 3000,
};

const MB = 1024 * 1024;
export const DISK_WARN_BYTES = 1024 * MB;
export const DISK_ERROR_BYTES = 100 * MB;

/** Loads the workspace's config and checks everything; a config that does not load is the one finding. */
export async function runDoctor(
  root: string,
  env: Record<string, string | undefined> = process.env,
  probes: Partial<DoctorProbes> = {},
): Promise<DoctorReport> {
  let settings: Settings;
  try {
    settings = await loadSettings(root, env);
  } catch (error) {
    return verdict([{ level: 'error', project: null, field: 'config', message: toErrorInfo(error).message }], []);
  }
  return diagnose(settings, probes);
}

/**
 * Checks loaded settings (for `watch`, which has them already). `starting`: `watch` at start,
 * where an unreachable Redis is a warning (the folder host waits for it), not an error.
 */
export async function diagnose(settings: Settings, overrides: Partial<DoctorProbes> = {}, starting = false): Promise<DoctorReport> {
  const probes = { ...defaultProbes, ...overrides };
  const findings: Finding[] = [];
  const checked: string[] = ['config'];
  const add = (level: Level, project: string | null, field: string, message: string) => findings.push({ level, project, field, message });

  for (const project of Object.values(settings.projects)) {
    const before = findings.length;
    await checkRepo(project, add);
    for (const check of [project.test, project.dry_run]) if (check) await checkProgram(settings, project, check, add);
    if (findings.length === before) checked.push(`project ${project.name}`);
  }
  await checkEngine(settings, probes, add);
  await checkSandbox(settings, probes, add);
  await checkDisk(settings, probes, add);
  if (settings.config.execution.engine === 'bullmq' && (await checkRedis(settings, { timeoutMs: probes.redisTimeoutMs, starting }, add))) checked.push('redis');
  return verdict(findings, checked);
}

type Add = (level: Level, project: string | null, field: string, message: string) => void;

async function checkRepo(project: Project, add: Add): Promise<void> {
  const field = `projects.${project.name}.repo`;
  const stat = await fs.stat(project.repoPath).catch(() => null);
  if (!stat) {
    // The demo project's repo is made from the example bot on first use.
    if (project.initFromPath) return;
    return add('error', project.name, field, `${project.repoPath} does not exist; fix the path in meta-agent.yaml (relative paths start at the workspace)`);
  }
  if (!stat.isDirectory() || !(await isGitRepo(project.repoPath))) {
    return add(
      'error',
      project.name,
      field,
      `${project.repoPath} is not a git repository; point "repo" at the repository's top folder, or run "git init" there and commit`,
    );
  }
  try {
    await resolveBranch(project.repoPath, project.branch);
  } catch (error) {
    const field = `projects.${project.name}.branch`;
    const anyCommit = (await git(project.repoPath, ['rev-list', '-n', '1', '--all']).catch(() => '')).trim();
    if (!anyCommit) add('error', project.name, field, `${project.repoPath} has no commit yet; commit something first (the agent works from a commit)`);
    else if (project.branch)
      add('error', project.name, field, `branch "${project.branch}" does not exist in ${project.repoPath}; create it or fix "branch" in meta-agent.yaml`);
    else add('error', project.name, field, `${toErrorInfo(error).message}`);
  }
}

async function checkProgram(settings: Settings, project: Project, check: Check, add: Add): Promise<void> {
  const program = check.argv[0];
  const cwd = path.join(project.repoPath, check.cwd);
  // The PATH (and PATHEXT) the check itself gets, with a check.env override.
  const env = scrubbedEnv(settings.env, project.env_allow, check.env);
  const found = await findProgram(program, cwd, env.PATH ?? '', env.PATHEXT);
  const field = `projects.${project.name}.${check.label}`;
  if (!isPythonProgram(program)) {
    if (!found)
      add(
        'error',
        project.name,
        field,
        `the program "${program}" of "${check.command}" is not found (on PATH${/[\\/]/.test(program) ? `, or at ${path.resolve(cwd, program)}` : ''}); install it or fix the command`,
      );
    return;
  }
  // Python: found is not enough (Windows' Store alias python.exe only prints "Python was not found").
  const pre =
    path
      .basename(program)
      .toLowerCase()
      .replace(/\.exe$/, '') === 'py' && check.argv[1] === '-3'
      ? ['-3']
      : [];
  if (found && (await pythonVersion(found, pre, env))) return;
  const works = await findPython({ env, repo: project.repoPath });
  const why = found
    ? `"${found} ${[...pre, '--version'].join(' ')}" does not answer "Python 3" (on Windows: the Microsoft Store alias, turned off under Settings > Apps > App execution aliases)`
    : 'is not found';
  const fix = works
    ? `this machine's Python 3 is "${works.command}" (${works.version}): use it in the command`
    : `install Python 3 (python.org; on Windows it installs "python" and "py", not "python3") or fix the command`;
  add('error', project.name, field, `the program "${program}" of "${check.command}" ${found ? 'is there but ' : ''}${why}; ${fix}`);
}

async function checkEngine(settings: Settings, probes: DoctorProbes, add: Add): Promise<void> {
  const { config, llm } = settings;
  if (config.engine === 'command') {
    if (!config.command) return add('error', null, 'command', `engine "command" needs a "command:" section with "preset" or "run" (e.g. ${COMMAND_EXAMPLE})`);
    const resolved = resolveCommand(config.command, llm);
    const program = resolved.argv[0];
    const field = resolved.preset ? 'command.program' : 'command.run';
    if (!(await findProgram(program, settings.layout.root, settings.env.PATH ?? '', settings.env.PATHEXT))) {
      add('error', null, field, `the engine program "${program}" is not found on PATH; install it or fix ${field}`);
    }
    // The agent runs only in its sandbox: said now, not at the first task.
    const probe = (s: SandboxSettings, platform: NodeJS.Platform) =>
      probes.sandbox({ ...settings, env: s.env, config: { ...settings.config, sandbox: s.config.sandbox } }, platform);
    const mode = await agentSandboxMode(settings, config.command!, probes.platform, probe).catch((error: unknown) => toErrorInfo(error).message);
    if (mode === 'none') add('warning', null, 'command.sandbox', UNSANDBOXED_WARNING);
    else if (mode !== 'bwrap') add('error', null, 'command.sandbox', mode);
    const needs = agentNeeds(config.command, llm.apiKeyEnv, resolved.preset ? resolved.needs : null);
    if (resolved.preset && needs.apiKeyEnv && !apiKeyValue(needs, config.command, settings.env, llm)) {
      add(
        'error',
        null,
        config.command.api_key_env ? 'command.api_key_env' : 'llm.api_key_env',
        `the ${resolved.preset} preset reads its API key from ${needs.apiKeyEnv}, which is not set`,
      );
    }
    return;
  }
  if (!llm.model.trim()) return add('error', null, 'llm.model', 'no model configured; set llm.model in meta-agent.yaml (or META_AGENT_MODEL)');
  if (!llm.apiKey && !llm.baseURL) return add('error', null, 'llm', llmMissingMessage(llm));
  const base = (llm.baseURL ?? 'https://api.openai.com/v1').replace(/\/+$/, '');
  if (!llm.apiKey && !isLocal(base))
    return add('error', null, 'llm.api_key_env', `${base} is not on this machine and ${llm.apiKeyEnv} is not set; set it to the API key`);
  const answer = await probes
    .fetch(`${base}/models`, { headers: llm.apiKey ? { authorization: `Bearer ${llm.apiKey}` } : {}, signal: AbortSignal.timeout(probes.modelTimeoutMs) })
    .then(
      (r) => r.status,
      (error: unknown) => whyUnreachable(error, probes.modelTimeoutMs),
    );
  if (answer === 401 || answer === 403) add('error', null, 'llm.api_key_env', `${base} refused the key in ${llm.apiKeyEnv} (HTTP ${answer}); set a valid key`);
  else if (typeof answer === 'string')
    add('warning', null, 'llm.base_url', `the model endpoint ${base} does not answer (${answer}); tasks fail until it does (fine if it is started later)`);
}

/** `ECONNREFUSED`, `no answer in 3 s`, ...: fetch's own message ("fetch failed") says nothing. */
function whyUnreachable(error: unknown, timeoutMs: number): string {
  const e = error as { name?: string; cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return `no answer in ${Math.round(timeoutMs / 1000)} s`;
  return e.cause?.code ?? e.cause?.message ?? toErrorInfo(error).message;
}

function isLocal(url: string): boolean {
  try {
    const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
    return host === 'localhost' || host === '::1' || host.startsWith('127.') || host.endsWith('.localhost');
  } catch {
    return false;
  }
}

/** The sandbox for checks: the same verdict the checks themselves act on (fail closed). */
async function checkSandbox(settings: Settings, probes: DoctorProbes, add: Add): Promise<void> {
  const status = await probes.sandbox(settings, probes.platform);
  if (status.error) add('error', null, 'sandbox', status.error);
  else if (status.warning) add('warning', null, 'sandbox', status.warning);
  // The agent's run_command follows the same rule: unsandboxed only when the config says so, and then loudly.
  if (settings.config.tools.shell === 'unsandboxed') {
    add(
      'warning',
      null,
      'tools.shell',
      "tools.shell: unsandboxed: the agent's run_command runs without a sandbox, with the network and every file this user can read; every report says so (set tools.shell: sandboxed or off to stop it)",
    );
  }
}

async function checkDisk(settings: Settings, probes: DoctorProbes, add: Add): Promise<void> {
  const { layout } = settings;
  const dirs = layoutDirs(layout).filter((d) => d !== layout.templates && d !== layout.logs);
  const existing = (await Promise.all(dirs.map(async (d) => ((await fs.stat(d).catch(() => null)) ? d : null)))).filter((d): d is string => d !== null);
  try {
    await probes.oneVolume(existing);
  } catch (error) {
    add('error', null, 'root', `${toErrorInfo(error).message}; move the workspace onto one drive`);
  }
  const free = await probes.freeBytes(layout.root).catch(() => null);
  if (free === null) return;
  const shown = free >= 1024 * MB ? `${(free / 1024 / MB).toFixed(1)} GB` : `${Math.round(free / MB)} MB`;
  if (free < DISK_ERROR_BYTES)
    add(
      'error',
      null,
      'disk',
      `only ${shown} free on the workspace's drive (${layout.root}); free some space (under 100 MB reports and patches cannot be written)`,
    );
  else if (free < DISK_WARN_BYTES)
    add('warning', null, 'disk', `only ${shown} free on the workspace's drive (${layout.root}); worktrees and logs need room, free some space`);
}

function verdict(findings: Finding[], checked: string[]): DoctorReport {
  const errors = findings.filter((f) => f.level === 'error').length;
  return { ok: errors === 0, errors, warnings: findings.length - errors, findings, checked };
}

/** One line per finding: `error: projects.bot.repo: ...`. */
export function findingLine(f: Finding): string {
  return `${f.level}: ${f.field}: ${f.message}`;
}

/** The short verdict (`watch` prints it at start, `starting` set). */
export function verdictLine(report: DoctorReport, starting = false): string {
  if (report.errors)
    return `doctor: ${report.errors} error(s)${report.warnings ? `, ${report.warnings} warning(s)` : ''}${starting ? '; not starting (fix them, then run "meta-agent doctor")' : ''}`;
  return `doctor: ok${report.warnings ? ` with ${report.warnings} warning(s)` : ''} (${report.checked.join(', ')})`;
}
