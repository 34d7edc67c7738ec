/**
 * The sandbox of checks (test, dry_run, the retrain chain): code an LLM wrote runs here.
 *
 * It fails closed. `sandbox: auto` and `sandbox: bwrap` need a working bubblewrap on Linux,
 * or meta-agent refuses to run checks (a config error naming `sandbox`); only an explicit
 * `sandbox: none` runs them unsandboxed, and then every report says so.
 *
 * Under bubblewrap a check sees: the system folders read-only (/usr, /etc, /opt, ...), the
 * toolchain of its program read-only (pyenv under /root/.pyenv, ...), its throwaway copy
 * and a private empty $HOME writable, the project's `link:` paths read-only, a private /tmp
 * and /proc, no network. Not visible: the user's home, the workspace, the real repository.
 * Limits: RLIMIT_NPROC and RLIMIT_AS through `prlimit`; as root (whom RLIMIT_NPROC does not
 * bind) the check also drops to `nobody` through `setpriv`. `--unshare-pid` with
 * `--die-with-parent` means killing bwrap kills every process of the check.
 */
import { execa } from 'execa';
// Sync lstat/readlink on purpose: a few system folders, while building one command line.
import { constants, lstatSync, promises as fs, readlinkSync as readlink, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MetaAgentError } from '../contract/errors.ts';

export type SandboxSetting = 'auto' | 'bwrap' | 'none';
export type SandboxMode = 'bwrap' | 'none';

/** What the sandbox needs from the settings (Settings fits). */
export interface SandboxSettings {
  config: { sandbox: SandboxSetting };
  /** The service's environment: PATH is where bwrap, prlimit and setpriv are looked up. */
  env: Readonly<Record<string, string | undefined>>;
}

export interface SandboxStatus {
  mode: SandboxMode;
  /** Why checks cannot run (a config error), or null. */
  error: string | null;
  /** Set for `sandbox: none`: checks run unsandboxed. */
  warning: string | null;
}

/** Overrides for tests (and the doctor): the platform, and the PATH searched for bwrap. */
export interface SandboxProbeOptions {
  platform?: NodeJS.Platform;
}

export const NONE_MEANS = 'README.md, section "What `sandbox: none` means"';
const CONFIG_FILE = 'meta-agent.yaml';

/** The user checks run as when meta-agent runs as root (nobody/nogroup on Debian). */
export const CHECK_UID = 65534;
export const CHECK_GID = 65534;

/** Whether checks drop to CHECK_UID (the service is root, whom RLIMIT_NPROC does not bind). */
export function dropsPrivileges(): boolean {
  return process.platform === 'linux' && process.getuid?.() === 0;
}

interface Tools {
  bwrap: string;
  prlimit: string;
  setpriv: string | null;
}

const probes = new Map<string, Promise<{ tools: Tools | null; error: string | null }>>();

/**
 * Whether checks can run, and how: for the doctor at start, and before any check.
 * Never throws; `error` is the one-line config error.
 */
export async function sandboxStatus(settings: SandboxSettings, options: SandboxProbeOptions = {}): Promise<SandboxStatus> {
  const wanted = settings.config.sandbox;
  if (wanted === 'none') {
    return {
      mode: 'none',
      error: null,
      warning: `sandbox: none: checks (test, dry_run, retrain steps) run unsandboxed, with the network and every file this user can read; every report and patch is marked "checks ran unsandboxed" (see ${NONE_MEANS})`,
    };
  }
  const platform = options.platform ?? process.platform;
  if (platform !== 'linux') {
    return {
      mode: 'bwrap',
      error: `sandbox: ${wanted}: checks can only be sandboxed on Linux (bubblewrap), and this is ${platform}; run meta-agent on Linux or in WSL2 with bubblewrap installed, or set "sandbox: none" knowing what it means (${NONE_MEANS})`,
      warning: null,
    };
  }
  const probe = await probeTools(settings.env.PATH ?? '');
  return { mode: 'bwrap', error: probe.error ? `sandbox: ${wanted}: ${probe.error}` : null, warning: null };
}

/** The mode checks run in; a config error (field `sandbox`) when the configured sandbox cannot run. */
export async function requireSandbox(settings: SandboxSettings, options: SandboxProbeOptions = {}): Promise<SandboxMode> {
  const status = await sandboxStatus(settings, options);
  if (status.error) throw new MetaAgentError('config', status.error, { file: CONFIG_FILE, field: 'sandbox' });
  return status.mode;
}

async function probeTools(searchPath: string): Promise<{ tools: Tools | null; error: string | null }> {
  let probe = probes.get(searchPath);
  if (!probe) {
    probe = runProbe(searchPath);
    probes.set(searchPath, probe);
  }
  return probe;
}

async function runProbe(searchPath: string): Promise<{ tools: Tools | null; error: string | null }> {
  const fix = `install bubblewrap (apt-get install bubblewrap), or set "sandbox: none" knowing what it means (${NONE_MEANS})`;
  const bwrap = await findOnPath('bwrap', searchPath);
  if (!bwrap) return { tools: null, error: `bubblewrap (bwrap) is not installed (not found on PATH): ${fix}` };
  const prlimit = await findOnPath('prlimit', searchPath);
  const setpriv = await findOnPath('setpriv', searchPath);
  if (!prlimit || (dropsPrivileges() && !setpriv)) {
    return {
      tools: null,
      error: `the sandbox needs ${!prlimit ? 'prlimit' : 'setpriv'} (util-linux) for its process and memory limits: install util-linux, or set "sandbox: none" knowing what it means (${NONE_MEANS})`,
    };
  }
  const tools: Tools = { bwrap, prlimit, setpriv: dropsPrivileges() ? setpriv : null };
  // The real shape of a check (namespaces, limits, the uid drop) running `true`.
  const [file, args] = bwrapCommand(tools, { cwd: '/', writable: [], readOnly: [], hidden: [], limits: { processes: 64, memoryBytes: 1 << 30 } }, [
    tools.prlimit,
    '--version',
  ]);
  const result = await execa(file, args, { reject: false, timeout: 15_000, env: { PATH: searchPath }, extendEnv: false, stdin: 'ignore' }).catch(
    (error: Error) => ({ exitCode: -1, stderr: error.message, stdout: '' }),
  );
  if (result.exitCode !== 0) {
    const why =
      String(result.stderr || result.stdout || '')
        .trim()
        .split('\n')[0] ?? '';
    return {
      tools: null,
      error: `bubblewrap is installed (${bwrap}) but cannot create its sandbox here (${why || `exit ${result.exitCode}`}); allow user namespaces (sysctl kernel.unprivileged_userns_clone=1, or an AppArmor profile for bwrap), or ${fix}`,
    };
  }
  return { tools, error: null };
}

/** bwrap, prlimit and setpriv, probed (call requireSandbox first). */
export async function sandboxTools(settings: SandboxSettings): Promise<Tools> {
  const probe = await probeTools(settings.env.PATH ?? '');
  if (!probe.tools) throw new MetaAgentError('config', `sandbox: ${probe.error}`, { file: CONFIG_FILE, field: 'sandbox' });
  return probe.tools;
}

/**
 * `program` as the OS would find it, without a shell: a path (relative to `cwd`) as is, a
 * bare name on `searchPath`, with the `pathext` extensions on Windows. Null if nowhere.
 * `platform` is the host's; tests pass another to show Windows' rules.
 */
export async function findProgram(
  program: string,
  cwd: string,
  searchPath: string,
  pathext = '',
  platform: NodeJS.Platform = process.platform,
): Promise<string | null> {
  if (program.includes('/') || program.includes('\\')) {
    const file = path.resolve(cwd, program);
    return (await isExecutable(file, platform)) ? file : null;
  }
  return findOnPath(program, searchPath, pathext, platform);
}

async function findOnPath(name: string, searchPath: string, pathext = '', platform: NodeJS.Platform = process.platform): Promise<string | null> {
  const windows = platform === 'win32';
  const exts = windows ? ['', ...(pathext || '.COM;.EXE;.BAT;.CMD').split(';').filter(Boolean)] : [''];
  // Windows allows quoted PATH entries ("C:\Program Files\x").
  for (const dir of searchPath
    .split(windows ? ';' : ':')
    .filter(Boolean)
    .map((d) => d.replace(/^"(.*)"$/, '$1'))) {
    for (const ext of exts) {
      const file = path.join(dir, name + ext);
      if (await isExecutable(file, platform)) return file;
    }
  }
  return null;
}

async function isExecutable(file: string, platform: NodeJS.Platform): Promise<boolean> {
  try {
    const stat = await fs.stat(file);
    if (!stat.isFile()) return false;
    if (platform === 'win32') return true;
    await fs.access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export interface SandboxPlan {
  /** Where the check starts (inside a writable path). */
  cwd: string;
  /** Visible and writable at their own paths: the copy, the private home. */
  writable: string[];
  /** Visible read-only at their own paths: link sources, toolchains. */
  readOnly: string[];
  /** Never visible, even when inside a system folder: the real repo, the workspace, the user's home. */
  hidden: string[];
  limits: { processes: number; memoryBytes: number };
  /** The network stays on (an external agent must reach its model); default: off. */
  network?: boolean;
  /**
   * Bound last, in this order, onto paths inside `writable` (no parent folders are made):
   * the agent's shell puts its own `.git` file over the worktree's, /dev/null over each
   * denied file, and pins their folders (a mount point cannot be renamed or removed).
   */
  over?: Array<{ source: string; target: string; writable?: boolean }>;
}

/** System folders every program needs, bound read-only (symlinks such as /bin -> usr/bin are kept as links). */
const SYSTEM_DIRS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc', '/opt', '/nix', '/snap'];

/** The bwrap command line that runs `argv` under `plan`. */
export function bwrapCommand(tools: Tools, plan: SandboxPlan, argv: readonly string[]): [string, string[]] {
  const args: string[] = [];
  const bound: string[] = [];
  for (const dir of SYSTEM_DIRS) {
    const link = readlinkSync(dir);
    if (link !== null) args.push('--symlink', link, dir);
    else if (isDirSync(dir)) {
      args.push('--ro-bind', dir, dir);
      bound.push(dir);
    }
  }
  const made = new Set<string>(['/', '/tmp', '/dev', '/proc']);
  const parents = (target: string) => {
    // bwrap makes missing mount points 0700: make them 0755, or a dropped uid cannot walk through.
    const chain: string[] = [];
    for (let dir = path.dirname(target); !made.has(dir) && dir !== path.dirname(dir); dir = path.dirname(dir)) chain.unshift(dir);
    for (const dir of chain) {
      args.push('--perms', '0755', '--dir', dir);
      made.add(dir);
    }
  };
  // /tmp and /dev/shm are private and empty; everything below may live under them.
  args.push('--dev', '/dev', '--perms', '01777', '--tmpfs', '/dev/shm', '--proc', '/proc', '--perms', '01777', '--tmpfs', '/tmp');
  const hiddenInside = (dir: string) => plan.hidden.some((h) => inside(dir, h));
  for (const dir of plan.readOnly.filter((d) => !bound.some((b) => inside(d, b)) && !hiddenInside(d))) {
    parents(dir);
    args.push('--ro-bind', dir, dir);
    bound.push(dir);
  }
  // A real repo or workspace that lives inside a bound folder (/opt/bot) is covered by an empty folder.
  for (const dir of plan.hidden) {
    if (bound.some((b) => inside(dir, b) && dir !== b)) args.push('--tmpfs', dir);
  }
  // Then the parts of them that checks may see (the `link:` paths of the repo).
  for (const dir of plan.readOnly.filter(hiddenInside)) {
    parents(dir);
    args.push('--ro-bind', dir, dir);
  }
  for (const dir of plan.writable) {
    parents(dir);
    args.push('--bind', dir, dir);
  }
  for (const { source, target, writable } of plan.over ?? []) args.push(writable ? '--bind' : '--ro-bind', source, target);
  if (!plan.network) args.push('--unshare-net');
  args.push('--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try');
  args.push('--die-with-parent', '--new-session', '--chdir', plan.cwd);
  const inner: string[] = [];
  if (tools.setpriv) {
    // Root is exempt from RLIMIT_NPROC: the check runs as nobody (the copy is chowned to it).
    args.push('--cap-add', 'CAP_SETUID', '--cap-add', 'CAP_SETGID');
    inner.push(tools.setpriv, `--reuid=${CHECK_UID}`, `--regid=${CHECK_GID}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--');
  }
  inner.push(tools.prlimit, `--nproc=${plan.limits.processes}`, `--as=${plan.limits.memoryBytes}`, '--core=0', '--');
  return [tools.bwrap, [...args, '--', ...inner, ...argv]];
}

/**
 * Folders outside the system folders that a check's programs need, read-only: the install
 * prefix of its program and of its PATH's folders when they live in a home folder (pyenv in
 * ~/.pyenv, nvm in ~/.nvm), so `sh -c "python3 ..."` finds python3 too. Never a home folder
 * itself, never the real repository or the workspace (`secret`), only bin/ and lib/ of
 * ~/.local (it also holds keyrings) and bin/ of ~/.cargo (it also holds credentials).
 */
export async function toolchainDirs(programs: string[], pathDirs: string[], homes: string[], secret: string[]): Promise<string[]> {
  const dirs = new Set<string>();
  const candidates = new Set<string>();
  for (const program of programs) {
    candidates.add(path.dirname(program));
    candidates.add(path.dirname(await fs.realpath(program).catch(() => program)));
  }
  for (const dir of pathDirs.filter((d) => path.isAbsolute(d))) {
    const real = await fs.realpath(dir).catch(() => null);
    if (real) candidates.add(dir).add(real);
  }
  for (const binDir of candidates) {
    if (SYSTEM_DIRS.some((d) => inside(binDir, d))) continue;
    let prefix = ['bin', 'sbin', 'shims', 'Scripts'].includes(path.basename(binDir)) ? path.dirname(binDir) : binDir;
    const home = homes.find((h) => inside(prefix, h));
    if (home && prefix === home) prefix = binDir;
    if (home && path.dirname(prefix) === home && ['.local', '.cargo'].includes(path.basename(prefix))) {
      dirs.add(path.join(prefix, 'bin'));
      if (path.basename(prefix) === '.local') dirs.add(path.join(prefix, 'lib'));
      continue;
    }
    if (prefix === path.parse(prefix).root || homes.some((h) => inside(h, prefix))) continue;
    if (secret.some((s) => inside(prefix, s) || inside(s, prefix))) continue;
    dirs.add(prefix);
  }
  return [...dirs];
}

/**
 * The user's home folders: never visible in the sandbox (checks' and run_command's),
 * except a toolchain inside one.
 */
export async function userHomes(env: Readonly<Record<string, string | undefined>>): Promise<string[]> {
  const homes = new Set<string>(['/root', os.homedir()]);
  if (env.HOME) homes.add(path.resolve(env.HOME));
  for (const name of await fs.readdir('/home').catch(() => [] as string[])) homes.add(path.join('/home', name));
  return [...homes];
}

/** The paths and, where it differs, the real path of each (symlinks resolved); a missing one stays literal. */
export async function withRealPaths(paths: string[]): Promise<string[]> {
  const all = new Set(paths);
  for (const p of paths) all.add(await fs.realpath(p).catch(() => p));
  return [...all];
}

export function inside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

function readlinkSync(file: string): string | null {
  try {
    return readlink(file);
  } catch {
    return null;
  }
}

function isDirSync(dir: string): boolean {
  try {
    return lstatSync(dir).isDirectory() && statSync(dir).isDirectory();
  } catch {
    return false;
  }
}
