/**
 * The throwaway copy checks run in: the worktree's files without `.git`, in a temp folder
 * outside the workspace, so no check has a path to the user's repository (its refs, its
 * hooks, its git-ignored `.env`), with or without a sandbox.
 *
 * Copied: tracked files and untracked files that are not ignored (as `git ls-files` lists
 * them in the worktree), plus the retrain artifacts when present (often git-ignored, the
 * checks need them); never a file on the deny list, tracked or not. The project's `link:` paths are symlinks to the originals (read-only
 * binds under bubblewrap). Plain copies, never hard links: a check may write its copy.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Project } from '../workspace/config.ts';
import type { PathMatcher } from '../safety/globs.ts';
import { ALWAYS_EXCLUDED, git } from './git.ts';
import { pidAlive } from '../workspace/lease.ts';
import { makeLink } from '../workspace/links.ts';

export interface CheckCopy {
  /** The temp folder holding `dir`, `home` and `tmp`. */
  root: string;
  /** The copy of the worktree; checks start here. */
  dir: string;
  /** An empty private $HOME. */
  home: string;
  /** An empty private temp folder ($TMPDIR). */
  tmp: string;
  /** Real paths of the `link:` sources the copy links to (visible read-only in the sandbox). */
  links: string[];
  files: number;
  ms: number;
  remove(): Promise<void>;
}

export interface CopyOptions {
  /** Repo-relative files copied even when git-ignored (retrain artifacts), if present. */
  extra?: string[];
  /** Owner of everything in the copy (the sandbox's uid when meta-agent runs as root). */
  owner?: { uid: number; gid: number } | null;
  /** Files never copied, tracked or not: the deny list the agent's tools obey (a tracked config/secrets.yaml). */
  denied?: PathMatcher;
}

const PREFIX = 'meta-agent-check-';
const PARALLEL = 32;

export async function makeCheckCopy(worktree: string, project: Project, options: CopyOptions = {}): Promise<CheckCopy> {
  const started = performance.now(); // monotonic: the wall clock may be set back meanwhile
  await removeDeadCopies();
  const root = await fs.mkdtemp(path.join(os.tmpdir(), `${PREFIX}${process.pid}-`));
  const dir = path.join(root, 'work');
  const home = path.join(root, 'home');
  const tmp = path.join(root, 'tmp');
  const remove = () => fs.rm(root, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined);
  try {
    await Promise.all([dir, home, tmp].map((d) => fs.mkdir(d)));
    const links = linkEntries(project);
    const listed = await git(worktree, ['ls-files', '-z', '--cached', '--others', '--exclude-standard', ...ALWAYS_EXCLUDED.map((p) => `--exclude=${p}`)]);
    const underLink = (rel: string) => links.some((l) => rel === l || rel.startsWith(`${l}/`));
    const denied = options.denied ?? (() => false);
    const files = [...new Set([...listed.split('\0').filter(Boolean), ...(options.extra ?? [])])].filter(
      (rel) => !underLink(rel) && safeRelative(rel) && !denied(rel),
    );
    let copied = 0;
    const made = new Set<string>([dir]);
    await inBatches(files, async (rel) => {
      const from = path.join(worktree, rel);
      const to = path.join(dir, rel);
      const stat = await fs.lstat(from).catch(() => null);
      if (!stat) return; // deleted by the change, or an extra that is not there
      await mkdirOnce(path.dirname(to), made);
      if (stat.isSymbolicLink()) await fs.symlink(await fs.readlink(from), to);
      else if (stat.isDirectory())
        await mkdirOnce(to, made); // a submodule's folder
      else if (stat.isFile()) await fs.copyFile(from, to);
      else return;
      copied++;
    });
    const linkSources: string[] = [];
    for (const rel of links) {
      const source = await fs.realpath(path.join(project.repoPath, rel)).catch(() => null);
      const target = path.join(dir, rel);
      if (
        !source ||
        (await fs.lstat(target).then(
          () => true,
          () => false,
        ))
      )
        continue;
      await mkdirOnce(path.dirname(target), made);
      await makeLink(source, target); // a junction on Windows; a copy where file symlinks are refused
      linkSources.push(source);
    }
    if (options.owner) await chownTree(root, options.owner);
    return { root, dir, home, tmp, links: linkSources, files: copied, ms: Math.round(performance.now() - started), remove };
  } catch (error) {
    await remove();
    throw error;
  }
}

/** The `link:` entries as repo-relative paths with `/` (invalid ones were refused when the worktree opened). */
function linkEntries(project: Project): string[] {
  return project.link
    .map((entry) => path.normalize(entry.replace(/[\\/]+$/, '')))
    .filter((rel) => !path.isAbsolute(rel) && !rel.split(path.sep).includes('..') && rel !== '.')
    .map((rel) => rel.split(path.sep).join('/'));
}

function safeRelative(rel: string): boolean {
  const norm = path.normalize(rel);
  return !path.isAbsolute(norm) && !norm.split(path.sep).includes('..') && norm.split(path.sep)[0] !== '.git';
}

async function mkdirOnce(dir: string, made: Set<string>): Promise<void> {
  if (made.has(dir)) return;
  await fs.mkdir(dir, { recursive: true });
  made.add(dir);
}

async function inBatches<T>(items: T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, items.length) }, worker));
}

async function chownTree(dir: string, owner: { uid: number; gid: number }): Promise<void> {
  await fs.lchown(dir, owner.uid, owner.gid);
  const entries = await fs.readdir(dir, { recursive: true });
  await inBatches(entries, (rel) => fs.lchown(path.join(dir, rel), owner.uid, owner.gid));
}

/** Copies left by a meta-agent process that died (kill -9, power loss). */
async function removeDeadCopies(): Promise<void> {
  const names = await fs.readdir(os.tmpdir()).catch(() => [] as string[]);
  for (const name of names) {
    const pid = Number(/^meta-agent-check-(\d+)-/.exec(name)?.[1]);
    if (!pid || pid === process.pid || pidAlive(pid)) continue;
    await fs.rm(path.join(os.tmpdir(), name), { recursive: true, force: true }).catch(() => undefined);
  }
}
