/**
 * The git history an agent's commands see (shellTool.ts, the command engine): a repository
 * of the run's own whose objects are a snapshot of the base commit's history, so `git log`,
 * `git blame`, `git diff` and `git status` work without the real `.git`.
 *
 * The snapshot holds every version of every file reachable from the base commit: a file on
 * the deny list that was ever committed would be one `git show` away, so such files are
 * filtered out of all of it (fast-export limited to the other paths, into a fresh
 * repository); the commit ids then differ from the real ones, and the note says so.
 *
 * Fetching a history costs seconds on a large repository, so snapshots are kept in the
 * workspace's cache, one per base commit (and, filtered, per set of denied files), and
 * shared by the runs on that commit through git's alternates: each run gets a small
 * repository of its own (HEAD, refs, index) whose objects are read from the snapshot.
 * A snapshot is built in a temp folder and renamed into place, so two processes building
 * the same one at once waste work, never break it. Snapshots unused for a week are removed
 * when a new one is made.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { toPosix, type PathMatcher } from '../safety/globs.ts';
import { worktreeGitDir } from '../repo/git.ts';
import type { EngineContext } from './types.ts';
import { gitArgs } from '../workspace/gitArgs.ts';

/** Snapshots unused this long are removed when another is made. */
const UNUSED_MS = 7 * 24 * 3600 * 1000;
const EVER_COMMITTED = 'ever-committed';
const TIP = 'tip';

export interface RunHistory {
  /** The run's own repository (HEAD, refs, index; objects from the snapshot). */
  gitDir: string;
  /** The snapshot's folder: the sandbox binds it read-only beside gitDir. */
  snapshotDir: string;
  /** Said to the model when the history differs from the real one; null when it does not. */
  note: string | null;
}

const git = (args: string[], input?: string) =>
  execa('git', gitArgs(args), { env: { GIT_TERMINAL_PROMPT: '0' }, ...(input === undefined ? { stdin: 'ignore' as const } : { input }) });

/** The project's snapshot folder: keyed by the real repository's path. */
function projectCacheDir(ctx: EngineContext): string {
  const key = createHash('sha256').update(path.resolve(ctx.project.repoPath)).digest('hex').slice(0, 16);
  return path.join(ctx.settings.layout.cache, 'history', key);
}

/** Runs `build(tmp)` and renames tmp to `dir`, unless `dir` exists (made by another run, now or before). */
async function buildOnce(dir: string, build: (tmp: string) => Promise<void>): Promise<boolean> {
  if (await fs.stat(dir).catch(() => null)) return false;
  const tmp = `${dir}.tmp-${randomBytes(4).toString('hex')}`;
  try {
    await build(tmp);
    await fs.rename(tmp, dir).catch(async (error: NodeJS.ErrnoException) => {
      if (!(await fs.stat(dir).catch(() => null))) throw error;
    });
    return true;
  } finally {
    await fs.rm(tmp, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined);
  }
}

/** The files on the deny list among those ever committed, per snapshot and deny list (the matcher is shared per list). */
const deniedByMatcher = new WeakMap<PathMatcher, Map<string, string[]>>();

async function deniedInHistory(raw: { dir: string; everCommitted: () => Promise<string[]> }, denied: PathMatcher): Promise<string[]> {
  const known = deniedByMatcher.get(denied) ?? new Map<string, string[]>();
  deniedByMatcher.set(denied, known);
  let secrets = known.get(raw.dir);
  if (!secrets) {
    secrets = (await raw.everCommitted()).filter((rel) => denied(rel)).sort();
    if (known.size >= 8) known.clear();
    known.set(raw.dir, secrets);
  }
  return secrets;
}

/** The base commit's history as fetched (unfiltered), with the list of every path ever committed in it. */
async function rawSnapshot(ctx: EngineContext, cacheDir: string): Promise<{ dir: string; everCommitted: () => Promise<string[]>; built: boolean }> {
  const dir = path.join(cacheDir, `${ctx.baseCommit}.git`);
  const built = await buildOnce(dir, async (tmp) => {
    await git(['init', '--quiet', '--bare', tmp]);
    await git(['--git-dir', tmp, 'config', 'gc.auto', '0']);
    await git(['--git-dir', tmp, 'fetch', '--quiet', '--no-tags', '--no-write-fetch-head', ctx.project.repoPath, ctx.baseCommit]);
    await git(['--git-dir', tmp, 'update-ref', 'refs/heads/base', ctx.baseCommit]);
    // -m: a merge is listed against each parent, so a file that came in with a merge counts too.
    const { stdout } = await git(['--git-dir', tmp, 'log', '-m', '--name-only', '--format=', '-z', 'refs/heads/base']);
    const paths = [...new Set(stdout.split(/\0|\n/).filter(Boolean))];
    await fs.writeFile(path.join(tmp, EVER_COMMITTED), paths.join('\0'));
    await fs.writeFile(path.join(tmp, TIP), `${ctx.baseCommit}\n`);
  });
  const everCommitted = async () => (await fs.readFile(path.join(dir, EVER_COMMITTED), 'utf8')).split('\0').filter(Boolean);
  return { dir, everCommitted, built };
}

/** The history without `secrets` (every version of them), from the raw snapshot. */
async function filteredSnapshot(raw: string, cacheDir: string, base: string, secrets: string[]): Promise<string> {
  const key = createHash('sha256').update(secrets.join('\0')).digest('hex').slice(0, 16);
  const dir = path.join(cacheDir, `${base}-${key}.git`);
  await buildOnce(dir, async (tmp) => {
    await git(['init', '--quiet', '--bare', tmp]);
    await git(['--git-dir', tmp, 'config', 'gc.auto', '0']);
    const exported = execa(
      'git',
      gitArgs([
        '--git-dir',
        raw,
        'fast-export',
        '--signed-tags=strip',
        '--tag-of-filtered-object=drop',
        '--reencode=yes',
        'refs/heads/base',
        '--',
        '.',
        ...secrets.map((rel) => `:(exclude,literal)${rel}`),
      ]),
      { stdin: 'ignore', buffer: false },
    );
    await exported.pipe('git', gitArgs(['--git-dir', tmp, 'fast-import', '--quiet']));
    const { stdout: tip } = await git(['--git-dir', tmp, 'rev-parse', '--verify', 'refs/heads/base^{commit}']);
    await fs.writeFile(path.join(tmp, TIP), `${tip.trim()}\n`);
  });
  return dir;
}

/** Removes the project's snapshots (and leftover temp folders) unused for a week, except `keep`. */
async function pruneSnapshots(cacheDir: string, keep: Set<string>): Promise<void> {
  const now = Date.now();
  for (const name of await fs.readdir(cacheDir).catch(() => [] as string[])) {
    const dir = path.join(cacheDir, name);
    if (keep.has(dir)) continue;
    const stat = await fs.stat(dir).catch(() => null);
    if (stat && now - stat.mtimeMs > UNUSED_MS) await fs.rm(dir, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined);
  }
}

/** `core.bare = false` in the config `git init --bare` wrote (one process less than `git config`). */
async function unbare(gitDir: string): Promise<void> {
  const file = path.join(gitDir, 'config');
  const text = await fs.readFile(file, 'utf8');
  if (/^\s*bare = true$/m.test(text)) await fs.writeFile(file, text.replace(/^(\s*)bare = true$/m, '$1bare = false'));
  else await git(['--git-dir', gitDir, 'config', 'core.bare', 'false']);
}

/**
 * The worktree's own index, just written by the run's checkout of the base commit, as the
 * run's index when the history is unfiltered (same commit, same tree): it is already
 * refreshed, where `read-tree` + `update-index --refresh` would hash every file again.
 */
async function copyWorktreeIndex(worktree: string, gitDir: string): Promise<boolean> {
  const worktreeGit = worktreeGitDir(worktree, await fs.readFile(path.join(worktree, '.git'), 'utf8').catch(() => null));
  if (!worktreeGit) return false;
  return fs.copyFile(path.join(worktreeGit, 'index'), path.join(gitDir, 'index')).then(
    () => true,
    () => false,
  );
}

/**
 * The run's repository at `gitDir`: the base commit's history (from the cache, made if
 * missing), HEAD on it, and an index of it refreshed against `worktree`, so git in the
 * sandbox works without seeing the real `.git`.
 */
export async function openRunHistory(ctx: EngineContext, worktree: string, gitDir: string): Promise<RunHistory> {
  const cacheDir = projectCacheDir(ctx);
  await fs.mkdir(cacheDir, { recursive: true });
  const raw = await rawSnapshot(ctx, cacheDir);
  const secrets = await deniedInHistory(raw, ctx.denied);
  const snapshotDir = secrets.length ? await filteredSnapshot(raw.dir, cacheDir, ctx.baseCommit, secrets) : raw.dir;
  const now = new Date();
  await fs.utimes(snapshotDir, now, now).catch(() => undefined);
  const tip = (await fs.readFile(path.join(snapshotDir, TIP), 'utf8')).trim();

  // A copy of an empty repository made once (git init's files), not a git process per run.
  const template = path.join(cacheDir, '..', 'empty.git');
  await buildOnce(template, (tmp) => git(['init', '--quiet', '--bare', '--template=', tmp]).then(() => undefined));
  await fs.cp(template, gitDir, { recursive: true });
  await fs.mkdir(path.join(gitDir, 'objects', 'info'), { recursive: true });
  await fs.mkdir(path.join(gitDir, 'refs', 'heads'), { recursive: true });
  const alternates = process.platform === 'win32' ? toPosix(path.join(snapshotDir, 'objects')) : path.join(snapshotDir, 'objects');
  await fs.writeFile(path.join(gitDir, 'objects', 'info', 'alternates'), `${alternates}\n`);
  await fs.writeFile(path.join(gitDir, 'refs', 'heads', 'base'), `${tip}\n`);
  await fs.writeFile(path.join(gitDir, 'HEAD'), 'ref: refs/heads/base\n');
  await unbare(gitDir);
  if (secrets.length) {
    // In the worktree those files are there (empty): git here does not call them new.
    await fs.mkdir(path.join(gitDir, 'info'), { recursive: true });
    await fs.appendFile(path.join(gitDir, 'info', 'exclude'), secrets.map((rel) => `/${rel.replace(/([*?[\]\\!#])/g, '\\$1')}\n`).join(''));
  }
  // The denied files are not in this history at all (-m above), so none is tracked here.
  if (tip !== ctx.baseCommit || !(await copyWorktreeIndex(worktree, gitDir))) {
    await git(['--git-dir', gitDir, '--work-tree', worktree, 'read-tree', 'HEAD']);
    await git(['--git-dir', gitDir, '--work-tree', worktree, 'update-index', '-q', '--refresh']).catch(() => undefined);
  }
  // Only when a new base commit's history was made: not a folder scan on every run.
  if (raw.built) await pruneSnapshots(cacheDir, new Set([raw.dir, snapshotDir]));
  const note = secrets.length
    ? `git history here leaves out the ${secrets.length} file(s) on the deny list that were ever committed, so commit ids differ from the real repository's`
    : null;
  return { gitDir, snapshotDir, note };
}
