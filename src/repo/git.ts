/** Thin git helpers for the run and the gate: worktrees outside the target repo, diffs. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { MetaAgentError } from '../contract/errors.ts';
import type { ModeChange } from '../safety/modes.ts';
import { removeLinks } from '../workspace/links.ts';
import { gitArgs } from '../workspace/gitArgs.ts';

/** Runs git without a shell; a failure becomes one `git` error with git's own first line. */
export async function git(cwd: string, args: string[], options: { input?: string; encoding?: 'utf8' | 'buffer' } = {}): Promise<string> {
  const result = await execa('git', gitArgs(args), {
    cwd,
    reject: false,
    stripFinalNewline: false,
    ...(options.input !== undefined ? { input: options.input } : {}),
    env: { GIT_TERMINAL_PROMPT: '0', GIT_OPTIONAL_LOCKS: '0' },
  });
  if (result.exitCode !== 0) {
    const reason = (result.stderr || result.stdout || '').trim().split('\n')[0] ?? '';
    throw new MetaAgentError('git', `git ${args.slice(0, 2).join(' ')} failed in ${cwd}: ${reason}`);
  }
  return result.stdout;
}

export async function isGitRepo(dir: string): Promise<boolean> {
  try {
    return (await git(dir, ['rev-parse', '--is-inside-work-tree'])).trim() === 'true';
  } catch {
    return false;
  }
}

/** The branch a project works on: configured, or the repo's current branch. */
export async function resolveBranch(repo: string, configured?: string): Promise<{ branch: string; commit: string }> {
  const branch = configured ?? (await currentBranch(repo));
  if (!branch) throw new MetaAgentError('config', `the repo ${repo} has a detached HEAD; set "branch" for this project`, { field: 'branch' });
  const commit =
    (await branchHead(repo, branch)) ?? (await git(repo, ['rev-parse', '--verify', '--quiet', `refs/heads/${branch}^{commit}`]).catch(() => '')).trim();
  if (!commit) throw new MetaAgentError('config', `branch "${branch}" has no commit in ${repo}`, { field: 'branch' });
  return { branch, commit };
}

/** The branch HEAD is on ('' when detached): read from .git/HEAD when it is a plain repository's, else asked of git. */
async function currentBranch(repo: string): Promise<string> {
  // Every run asks; reading the file saves a git process in the common case.
  const head = await fs.readFile(path.join(repo, '.git', 'HEAD'), 'utf8').catch(() => null);
  const onBranch = head ? /^ref: refs\/heads\/([^\n]+)\n?$/.exec(head) : null;
  if (onBranch) return onBranch[1]!;
  return (await git(repo, ['symbolic-ref', '--quiet', '--short', 'HEAD']).catch(() => '')).trim();
}

/**
 * The commit a branch points at, read from its loose ref file in a plain repository; null
 * when there is none to read (a packed ref, a worktree, a file that is not a plain commit
 * id), and git is asked. Every run asks: this saves a git process in the common case.
 */
async function branchHead(repo: string, branch: string): Promise<string | null> {
  if (branch.split('/').some((part) => part === '..' || part === '.' || part === '')) return null;
  const text = await fs.readFile(path.join(repo, '.git', 'refs', 'heads', ...branch.split('/')), 'utf8').catch(() => null);
  const id = text?.trim() ?? '';
  // A branch holds a commit id (git's own commands keep it so); anything else goes to git.
  return /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/.test(id) ? id : null;
}

/** `git worktree add --detach` outside the target repo. */
export async function addWorktree(repo: string, dir: string, commit: string): Promise<void> {
  await fs.mkdir(path.dirname(dir), { recursive: true });
  // Concurrent `git worktree add`s on one repo (several tasks or watchers) can read another
  // add's half-written .git/worktrees/<name>/commondir and die: retry a few times.
  for (let attempt = 1; ; attempt++) {
    try {
      await git(repo, ['worktree', 'add', '--detach', '--quiet', dir, commit]);
      return;
    } catch (error) {
      if (attempt >= 5 || !String((error as Error).message).includes('.git/worktrees')) throw error;
      await removeWorktree(repo, dir);
      await new Promise((resolve) => setTimeout(resolve, 50 * attempt + Math.random() * 100));
    }
  }
}

/**
 * Removes a worktree; never throws (it runs in `finally` blocks), falls back to rm + prune.
 * `links` (relative to `dir`) are unlinked first: git must never see a junction to the user's
 * files (links.ts). A link that cannot be unlinked keeps the worktree for the next start's pruning.
 */
export async function removeWorktree(repo: string, dir: string, links: readonly string[] = []): Promise<void> {
  try {
    await removeLinks(dir, links);
  } catch {
    return;
  }
  try {
    await git(repo, ['worktree', 'remove', '--force', '--force', dir]);
  } catch {
    await fs.rm(dir, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined);
    await git(repo, ['worktree', 'prune']).catch(() => undefined);
  }
}

/** Build and cache artefacts that never belong in a patch, whatever the repo's .gitignore says. */
export const ALWAYS_EXCLUDED = ['__pycache__/', '*.pyc', '.pytest_cache/', '.mypy_cache/', '.ruff_cache/', '.DS_Store', 'Thumbs.db'];

export interface Diff {
  patch: Buffer;
  files: string[];
}

/** A checkout whose change is collected. */
export interface DiffSource {
  dir: string;
  baseCommit: string;
  /** Lists paths that are never part of a change. */
  excludesFile: string;
  /**
   * The checkout's indexStamp while its index was the base's (a fresh checkout, a reset pool
   * slot). Still the same at collect time, nothing staged means no change, without a diff.
   * Cleared by collectDiff once it stages anything.
   */
  baseIndex?: string | null;
}

/** The git directory a worktree's `.git` file ("gitdir: <path>") names, resolved from the worktree; null when it names none. */
export function worktreeGitDir(worktree: string, dotGit: string | null): string | null {
  const match = dotGit ? /^gitdir:\s*(.+?)\s*$/m.exec(dotGit) : null;
  return match ? path.resolve(worktree, match[1]!) : null;
}

/**
 * What changes when anything stages, commits or checks out in a worktree: its index file's
 * identity, size and times, and its HEAD. Null when they cannot be read.
 */
export async function indexStamp(dir: string): Promise<string | null> {
  const gitDir = worktreeGitDir(dir, await fs.readFile(path.join(dir, '.git'), 'utf8').catch(() => null));
  if (!gitDir) return null;
  const [index, head] = await Promise.all([
    fs.stat(path.join(gitDir, 'index')).catch(() => null),
    fs.readFile(path.join(gitDir, 'HEAD'), 'utf8').catch(() => null),
  ]);
  return index && head !== null ? `${index.ino}:${index.size}:${index.mtimeMs}:${index.ctimeMs}:${head.trim()}` : null;
}

/**
 * Everything that changed in the checkout since its base, new and deleted files included,
 * as `git diff --binary`.
 */
export async function collectDiff(source: DiffSource): Promise<Diff> {
  const { dir, baseCommit: base } = source;
  // Nobody staged, committed or checked out since the index was the base's (an unsandboxed
  // agent can, through the checkout's own .git): then what `add` stages is the whole change.
  const untouched = typeof source.baseIndex === 'string' && (await indexStamp(dir)) === source.baseIndex;
  // --verbose names each path it stages (content, mode, a deletion): none is no change, and
  // the diff processes are not needed (most no-op runs).
  const staged = await git(dir, ['-c', `core.excludesFile=${source.excludesFile}`, 'add', '--all', '--verbose']);
  if (untouched && staged === '') return { patch: Buffer.alloc(0), files: [] };
  source.baseIndex = null;
  const names = await git(dir, ['diff', '--cached', '--no-renames', '--name-only', '-z', base]);
  const files = names.split('\0').filter(Boolean);
  if (files.length === 0) return { patch: Buffer.alloc(0), files };
  const result = await execa('git', gitArgs(['diff', '--cached', '--binary', '--no-renames', '--no-color', '--no-ext-diff', '--full-index', base]), {
    cwd: dir,
    encoding: 'buffer',
    stripFinalNewline: false,
  });
  return { patch: Buffer.from(result.stdout), files };
}

/**
 * The staged changes' file modes against `base` (`git diff --cached --raw`): what the gate
 * and the run check for symlinks, gitlinks and executable bits, whatever the patch text said.
 */
export async function stagedModeChanges(worktree: string, base: string): Promise<ModeChange[]> {
  const raw = await git(worktree, ['diff', '--cached', '--raw', '-z', '--no-renames', '--no-abbrev', base]);
  const fields = raw.split('\0');
  const changes: ModeChange[] = [];
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const meta = /^:(\d{6}) (\d{6}) /.exec(fields[i]!);
    if (!meta) continue;
    const mode = (m: string) => (/^0+$/.test(m) ? null : m);
    changes.push({ path: fields[i + 1]!, oldMode: mode(meta[1]!), newMode: mode(meta[2]!) });
  }
  return changes;
}

/** Creates the demo repo on first use: copy `from` to `repo`, git init, one commit. */
export async function initRepoFrom(from: string, repo: string, branch = 'main'): Promise<void> {
  await fs.mkdir(path.dirname(repo), { recursive: true });
  const staging = `${repo}.init-${process.pid}`;
  await fs.rm(staging, { recursive: true, force: true });
  await fs.cp(from, staging, { recursive: true, filter: (src) => !/(__pycache__|\.pytest_cache)$/.test(src) });
  await git(staging, ['init', '--quiet', '--initial-branch', branch]);
  await git(staging, ['add', '--all']);
  await git(staging, ['-c', 'user.name=meta-agent', '-c', 'user.email=meta-agent@localhost', 'commit', '--quiet', '-m', 'Initial commit (demo project)']);
  try {
    await fs.rename(staging, repo);
  } catch (error) {
    // Another process made it first: keep theirs.
    await fs.rm(staging, { recursive: true, force: true });
    if (!(await isGitRepo(repo))) throw error;
  }
}
