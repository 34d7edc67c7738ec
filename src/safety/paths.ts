/**
 * Resolving the paths an agent asks for. The worktree is a jail: absolute paths, ".."
 * and symlinks that lead outside are refused with a message the model can act on.
 */
import { constants as fsConstants, promises as fs } from 'node:fs';
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
  // git's own data (in a worktree .git is a file that points into the user's repository).
  if (normalized.split(path.sep).some(isGitName)) {
    throw new PathRefused(`"${raw}" is inside .git, git's own data; it cannot be read, listed or changed`);
  }
  const realRoot = await fs.realpath(root);
  const abs = path.join(realRoot, normalized);
  // Follow symlinks on the longest existing prefix: a link may not lead out of the worktree.
  const real = await realpathOfExistingPrefix(abs).catch((error: unknown) => {
    throw pathErrorRefusal(error, raw) ?? error;
  });
  if (real !== realRoot && !real.startsWith(realRoot + path.sep)) {
    throw new PathRefused(`"${raw}" is a symlink (or inside one) that leads outside the repository`);
  }
  const rel = toPosix(path.relative(realRoot, abs));
  return { abs, rel };
}

/**
 * A name that is `.git` on some file system: any case; on Windows also with trailing dots or
 * spaces (`.git.`, `.git `), with a stream suffix (`.git::$INDEX_ALLOCATION`), or as its 8.3
 * short name (`GIT~1`). Refused everywhere: no real file needs such a name.
 */
function isGitName(segment: string): boolean {
  const name = segment
    .replace(/:.*$/, '')
    .replace(/[. ]+$/, '')
    .toLowerCase();
  return name === '.git' || /^git~\d+$/.test(name);
}

async function realpathOfExistingPrefix(abs: string): Promise<string> {
  let current = abs;
  const rest: string[] = [];
  for (;;) {
    try {
      const real = await fs.realpath(current);
      return path.join(real, ...rest.reverse());
    } catch (error) {
      // ENOTDIR: a file stands where a folder is asked for ("bot/sizing.py/x"); like ENOENT, that part does not exist.
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw error;
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

/**
 * A file-system error on a path the agent asked for, as a refusal it can act on; null for
 * errors that are not about the path (EIO, EMFILE: the machine's trouble, not the model's).
 */
export function pathErrorRefusal(error: unknown, requested: string): PathRefused | null {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  const reason: Record<string, string> = {
    ENOENT: 'does not exist',
    ENOTDIR: 'goes through a file as if it were a folder',
    EISDIR: 'is a folder, not a file',
    ELOOP: 'is a symlink loop (or too many symlinks deep)',
    ENAMETOOLONG: 'is too long a name for the file system',
    EACCES: 'is not accessible (permission denied)',
    EPERM: 'is not accessible (operation not permitted)',
    EEXIST: 'goes through a file as if it were a folder',
    EINVAL: 'is not a valid path on this system',
  };
  return code && reason[code] ? new PathRefused(`"${requested}" ${reason[code]}`) : null;
}

/**
 * Reads a file a sandboxed agent could have written (its last-message file): only a regular
 * file, never through a link (the agent could point one at a secret the service can read),
 * at most `maxBytes`. Null when it is missing, a link, not a regular file, or unreadable.
 */
export async function readAgentWrittenFile(file: string, maxBytes = 256 * 1024): Promise<string | null> {
  let handle: import('node:fs/promises').FileHandle | null = null;
  try {
    // O_NOFOLLOW: a link at the last step fails; the folders above are the service's own.
    handle = await fs.open(file, fsConstants.O_RDONLY | (fsConstants.O_NOFOLLOW ?? 0));
    const stat = await handle.stat();
    if (!stat.isFile()) return null;
    const buffer = Buffer.alloc(Math.min(stat.size, maxBytes));
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    return buffer.subarray(0, bytesRead).toString('utf8');
  } catch {
    return null;
  } finally {
    await handle?.close();
  }
}
