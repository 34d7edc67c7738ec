/**
 * The `link:` paths of a project (git-ignored folders and files such as `.venv`, `data/raw`)
 * as they appear inside a worktree or a check copy: made here, and removed here before the
 * folder holding them is deleted.
 *
 * Removal unlinks, never recurses: `git worktree remove --force --force` on Git for Windows
 * before 2.54 follows directory junctions and deletes the target's contents (the user's
 * real `.venv` or data; git-for-windows/git PR 6151), so every link is gone before git runs.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';

export type LinkKind = 'symlink' | 'junction' | 'copy';

/** The fs calls a link is made with; tests replace them to play Windows (EPERM without Developer Mode). */
export interface LinkOps {
  symlink(target: string, file: string, type: 'file' | 'dir' | 'junction'): Promise<void>;
  copyFile(from: string, to: string): Promise<void>;
}

const REAL_OPS: LinkOps = { symlink: (target, file, type) => fs.symlink(target, file, type), copyFile: (from, to) => fs.copyFile(from, to) };

/**
 * Makes `file` lead to `source` (absolute). A folder becomes a junction on Windows (no
 * privilege needed) and a symlink elsewhere. A file becomes a symlink; where Windows refuses
 * file symlinks (EPERM: no Developer Mode, no admin) it becomes a copy. Not a hard link:
 * a hard link is the same file, so a write in the worktree would change the user's original
 * without a review, which the agent's tools refuse for a symlink.
 */
export async function makeLink(source: string, file: string, options: { platform?: NodeJS.Platform; ops?: LinkOps } = {}): Promise<LinkKind> {
  const platform = options.platform ?? process.platform;
  const ops = options.ops ?? REAL_OPS;
  if ((await fs.stat(source)).isDirectory()) {
    const junction = platform === 'win32';
    await ops.symlink(source, file, junction ? 'junction' : 'dir');
    return junction ? 'junction' : 'symlink';
  }
  try {
    await ops.symlink(source, file, 'file');
    return 'symlink';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') throw error;
  }
  await ops.copyFile(source, file);
  return 'copy';
}

/**
 * Removes the links at `rels` (paths relative to `dir`) without following them: a symlink or
 * junction is unlinked, a file (a link's copy) is unlinked, a real folder is left to its owner.
 * Missing paths are fine (a crash before the link was made). Returns the paths removed.
 */
export async function removeLinks(dir: string, rels: readonly string[], platform: NodeJS.Platform = process.platform): Promise<string[]> {
  const removed: string[] = [];
  const root = await fs.realpath(dir).catch(() => null);
  if (!root) return removed;
  for (const rel of rels) {
    const file = path.join(dir, rel);
    // A folder on the way that is itself a link (an agent made `data` one) would lead the
    // lstat and unlink below out of the worktree: only a path whose folders are real is touched.
    const parent = await fs.realpath(path.dirname(file)).catch(() => null);
    if (parent !== path.join(root, path.dirname(rel))) continue;
    const stat = await fs.lstat(file).catch(() => null);
    if (!stat || stat.isDirectory()) continue; // lstat: a junction or symlink reports isSymbolicLink, never isDirectory
    try {
      await fs.unlink(file);
    } catch (error) {
      // A directory junction that unlink() refuses: rmdir removes the reparse point itself, never what it points to.
      if (platform !== 'win32' || !stat.isSymbolicLink()) throw error;
      await fs.rmdir(file);
    }
    removed.push(rel);
  }
  return removed;
}

/** A project's `link:` entries as safe relative paths (invalid ones are refused where worktrees open). */
export function linkRelPaths(entries: readonly string[]): string[] {
  return entries
    .map((entry) => path.normalize(entry.replace(/[\\/]+$/, '')))
    .filter((rel) => rel !== '.' && !path.isAbsolute(rel) && !rel.split(path.sep).includes('..'));
}
