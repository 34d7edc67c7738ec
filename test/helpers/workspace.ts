/** Test workspaces: a temp folder with the queue layout, a meta-agent.yaml and a real git repo of the example bot. */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { execa } from 'execa';
import { initWorkspace } from '../../src/workspace/init.ts';
import { loadSettings, type Settings } from '../../src/workspace/config.ts';
import { PatchSidecarSchema, type PatchSidecar } from '../../src/contract/patch.ts';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const EXAMPLE_BOT = path.join(REPO_ROOT, 'examples', 'scalper-bot');

export interface TestWorkspace {
  root: string;
  repo: string;
  settings: Settings;
  cleanup(): Promise<void>;
}

export interface WorkspaceOptions {
  /** YAML for the demo project beyond `repo` (indented under projects.bot). */
  project?: string;
  /** Extra top-level YAML. */
  extra?: string;
  env?: Record<string, string | undefined>;
  llmUrl?: string;
}

export async function makeWorkspace(options: WorkspaceOptions = {}): Promise<TestWorkspace> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-test-'));
  const repo = path.join(root, 'target-repo');
  await fs.cp(EXAMPLE_BOT, repo, { recursive: true, filter: (src) => !/(__pycache__|\.pytest_cache)$/.test(src) });
  await execa('git', ['init', '--quiet', '--initial-branch', 'main'], { cwd: repo });
  await execa('git', ['add', '--all'], { cwd: repo });
  await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-m', 'initial'], { cwd: repo });
  await initWorkspace(root, { withConfig: false });
  const project =
    options.project ??
    `    scope: ["**"]
    test: "python3 -m pytest -q -p no:cacheprovider"
    dry_run: "python3 -m bot.main --dry-run"
    risk:
      - paths: ["bot/execution/**"]
        level: high
        reason: order execution`;
  const yaml = [
    'llm:',
    '  model: scripted-model',
    ...(options.llmUrl ? [`  base_url: ${options.llmUrl}`] : []),
    '  max_retries: 2',
    '  request_timeout_s: 5',
    'projects:',
    '  bot:',
    `    repo: ${JSON.stringify(repo)}`,
    project,
    options.extra ?? '',
  ].join('\n');
  await fs.writeFile(path.join(root, 'meta-agent.yaml'), `${yaml}\n`);
  const env = options.env ?? { PATH: process.env.PATH, HOME: process.env.HOME };
  const settings = await loadSettings(root, env);
  return { root, repo, settings, cleanup: () => fs.rm(root, { recursive: true, force: true }) };
}

export async function writeTask(dir: string, name: string, text: string): Promise<string> {
  const file = path.join(dir, name);
  await fs.writeFile(file, text);
  return file;
}

/** A fingerprint of a repo's working tree (all files, untracked included, .git excluded) and its status. */
export async function repoFingerprint(repo: string): Promise<string> {
  const hash = createHash('sha256');
  const walk = async (dir: string): Promise<void> => {
    const entries = (await fs.readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name));
    for (const entry of entries) {
      const full = path.join(dir, entry.name);
      const rel = path.relative(repo, full);
      if (rel === '.git') continue;
      if (entry.isDirectory()) await walk(full);
      else if (entry.isSymbolicLink()) hash.update(`L ${rel} ${await fs.readlink(full)}\n`);
      else
        hash
          .update(`F ${rel} `)
          .update(await fs.readFile(full))
          .update('\n');
    }
  };
  await walk(repo);
  const status = await execa('git', ['status', '--porcelain', '--untracked-files=all'], { cwd: repo });
  const head = await execa('git', ['rev-parse', 'HEAD'], { cwd: repo });
  hash.update(status.stdout).update(head.stdout);
  return hash.digest('hex');
}

/** Worktrees of `repo` besides its checkout, not counting the reused slots of the worktree pool (.meta-agent/pool-worktrees/). */
export async function worktreeCount(repo: string): Promise<number> {
  const { stdout } = await execa('git', ['worktree', 'list', '--porcelain'], { cwd: repo });
  return stdout.split('\n').filter((l) => l.startsWith('worktree ') && !/[\\/]pool-worktrees[\\/]/.test(l)).length - 1;
}

export async function readJson<T = any>(file: string): Promise<T> {
  return JSON.parse(await fs.readFile(file, 'utf8')) as T;
}

/**
 * Runs a TypeScript script in a child process that is expected to kill -9 itself (from an
 * injectFileFault hook): exactly the state a crash at that point leaves on disk. `body`
 * gets `src(file)`, the import specifier of a source file. Throws if it was not killed.
 */
export async function runUntilKilled(ws: TestWorkspace, what: string, body: (src: (file: string) => string) => string[], args: string[] = []): Promise<void> {
  const script = path.join(ws.root, '..', `${path.basename(ws.root)}.killed-${what.replace(/\W+/g, '-')}.mts`);
  const src = (file: string) => JSON.stringify(path.join(REPO_ROOT, 'src', file));
  await fs.writeFile(script, body(src).join('\n'));
  try {
    const child = await execa(process.execPath, ['--import', 'tsx', script, ws.root, ...args], { cwd: REPO_ROOT, reject: false, all: true });
    if (child.signal !== 'SIGKILL') throw new Error(`${what} was not killed: ${child.all}`);
  } finally {
    await fs.rm(script, { force: true });
  }
}

/**
 * A hand-made patch and its sidecar in patches/approved/ (as a person editing a patch could),
 * based on the repo's main; returns the patch's path.
 */
export async function placeApprovedPatch(ws: TestWorkspace, id: string, patch: string, files: string[] = []): Promise<string> {
  const { approved } = ws.settings.layout.patches;
  // Parsed, so the schema's defaults (fields added later) are filled in.
  const sidecar: PatchSidecar = PatchSidecarSchema.parse({
    task_id: id,
    run_id: `run-${id}`,
    project: 'bot',
    branch: 'main',
    base_commit: (await execa('git', ['rev-parse', 'main'], { cwd: ws.repo })).stdout.trim(),
    files,
    scope: ['**'],
    sha256: createHash('sha256').update(patch).digest('hex'),
    bytes: Buffer.byteLength(patch),
    risk_level: 'low',
    summary: `hand-made ${id}`,
    created_at: new Date().toISOString(),
  });
  await fs.writeFile(path.join(approved, `${id}.patch`), patch);
  await fs.writeFile(path.join(approved, `${id}.patch.json`), JSON.stringify(sidecar));
  return path.join(approved, `${id}.patch`);
}
