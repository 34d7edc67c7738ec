/**
 * Resolving the paths an agent asks for. The worktree is a jail: absolute paths, ".."
 * and symlinks that lead outside are refused with a message the model can act on.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { toPosix } from './globs.ts';

export class PathRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PathRefused';
  }
}

export interface ResolvedPath {
  /** Absolute path on disk. */
  abs: string;
  /** Repo-relative, "/"-separated; "" for the root. */
  rel: string;
}

export async function resolveInside(root: string, requested: string): Promise<ResolvedPath> {
  const raw = String(requested ?? '').trim();
  if (raw.includes('\0')) throw new PathRefused('path contains a NUL byte');
  if (path.isAbsolute(raw) || path.win32.isAbsolute(raw) || raw.startsWith('~')) {
    throw new PathRefused(`absolute paths are not allowed ("${raw}"); use a path relative to the repository root`);
  }
  const normalized = path.normalize(toPosix(raw) || '.');
  if (normalized === '..' || normalized.startsWith(`..${path.sep}`) || normalized.split(path.sep).includes('..')) {
    throw new PathRefused(`"${raw}" leads outside the repository; paths must stay inside it`);
  }
  const realRoot = await fs.realpath(root);
  const abs = path.join(realRoot, normalized);
  // Follow symlinks on the longest existing prefix: a link may not lead out of the worktree.
  const real = await realpathOfExistingPrefix(abs);
  if (real !== realRoot && !real.startsWith(realRoot + path.sep)) {
    throw new PathRefused(`"${raw}" is a symlink (or inside one) that leads outside the repository`);
  }
  const rel = toPosix(path.relative(realRoot, abs));
  return { abs, rel };
}

async function realpathOfExistingPrefix(abs: string): Promise<string> {
  let current = abs;
  const rest: string[] = [];
  for (;;) {
    try {
      const real = await fs.realpath(current);
      return path.join(real, ...rest.reverse());
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      // A dangling symlink still decides where a write lands: follow its target.
      const link = await fs.readlink(current).catch(() => undefined);
      if (link !== undefined) return realpathOfExistingPrefix(path.join(path.resolve(path.dirname(current), link), ...rest.reverse()));
      const parent = path.dirname(current);
      if (parent === current) return abs;
      rest.push(path.basename(current));
      current = parent;
    }
  }
}
