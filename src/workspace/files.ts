/**
 * Publishing files the Maildir way: write a temp file in the target folder, fsync, then
 * link it to its final name (fails if the name exists, so nothing is ever overwritten),
 * then drop the temp name. Readers never see a half-written file.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';

export function tempNameFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/** The pid that wrote a temp file named by tempNameFor, or null for any other name. */
export function tempWriterPid(name: string): number | null {
  const pid = /^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$/.exec(name)?.[1];
  return pid === undefined ? null : Number(pid);
}

type FileFault = (file: string) => void;
let fileFault: FileFault | null = null;

/**
 * Test hook for fault injection (the soak test simulates a full disk): called before every
 * file this module writes; it may throw (e.g. an ENOSPC error). Set by the CLI only.
 */
export function injectFileFault(fault: FileFault | null): void {
  fileFault = fault;
}

async function writeSynced(file: string, data: string | Uint8Array): Promise<void> {
  fileFault?.(file);
  const handle = await fs.open(file, 'wx');
  try {
    await handle.writeFile(data);
    // mtime a little in the past: once renamed in, ctime > mtime tells a watcher the file
    // is complete (a file still being copied in has ctime == mtime).
    const past = new Date(Date.now() - 2000);
    await handle.utimes(past, past);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Moves `from` to `to` only if `to` does not exist. Returns false if it does. */
export async function renameNoReplace(from: string, to: string): Promise<boolean> {
  try {
    await fs.link(from, to);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    // Filesystems without hard links (some SMB/FAT): check, then rename. The window is tiny
    // and the names we publish are unique per run anyway.
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EXDEV' || code === 'ENOSYS') {
      if (await exists(to)) return false;
      await fs.rename(from, to);
      return true;
    }
    throw error;
  }
  await fs.unlink(from);
  return true;
}

/** Writes `file` atomically; throws EEXIST if it is already there. */
export async function publishFile(file: string, data: string | Uint8Array): Promise<void> {
  const temp = tempNameFor(file);
  await writeSynced(temp, data);
  try {
    if (!(await renameNoReplace(temp, file))) {
      throw Object.assign(new Error(`EEXIST: file already exists, publish '${file}'`), { code: 'EEXIST', path: file });
    }
  } finally {
    await fs.rm(temp, { force: true });
  }
}

/**
 * Writes `dir/<stem><ext>`, or `<stem>-2<ext>`, `-3`, ... if taken. Returns the path used.
 */
export async function publishUnique(dir: string, stem: string, ext: string, data: string | Uint8Array): Promise<string> {
  const temp = tempNameFor(path.join(dir, stem + ext));
  await writeSynced(temp, data);
  try {
    for (let n = 1; n < 10_000; n++) {
      const candidate = path.join(dir, n === 1 ? `${stem}${ext}` : `${stem}-${n}${ext}`);
      if (await renameNoReplace(temp, candidate)) return candidate;
    }
    throw new Error(`no free name for ${stem}${ext} in ${dir}`);
  } finally {
    await fs.rm(temp, { force: true });
  }
}

/** Replaces a file we own (a report being updated) atomically: temp + rename. */
export async function replaceFile(file: string, data: string | Uint8Array): Promise<void> {
  const temp = tempNameFor(file);
  await writeSynced(temp, data);
  try {
    await fs.rename(temp, file);
  } catch (error) {
    await fs.rm(temp, { force: true });
    throw error;
  }
}

export async function exists(file: string): Promise<boolean> {
  try {
    await fs.lstat(file);
    return true;
  } catch {
    return false;
  }
}

export async function sha256File(file: string): Promise<string> {
  const { createHash } = await import('node:crypto');
  return createHash('sha256').update(await fs.readFile(file)).digest('hex');
}

const BUSY = new Set(['EPERM', 'EBUSY', 'EACCES']);

/**
 * Windows: a file that an antivirus, the indexer or Explorer holds open cannot be renamed
 * for a moment (EPERM/EBUSY/EACCES). Retry with backoff instead of copy+delete.
 */
export async function retryBusy<T>(action: () => Promise<T>, attempts = 6): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await action();
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (!code || !BUSY.has(code) || i >= attempts - 1 || process.platform !== 'win32') throw error;
      await new Promise((resolve) => setTimeout(resolve, 50 * 2 ** i));
    }
  }
}

const TRANSIENT = new Set(['ENOSPC', 'EIO', 'EDQUOT']);

/**
 * A disk that is full or failing for a moment must not lose a record that matters (a cycle's
 * journal, its tasks and its report, the schedule's state): such a write is retried for a few
 * seconds before its error is let through.
 */
export async function retryWrite<T>(write: () => Promise<T>, totalMs = 10_000): Promise<T> {
  const deadline = Date.now() + totalMs;
  for (let delayMs = 100; ; delayMs = Math.min(delayMs * 2, 2000)) {
    try {
      return await write();
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (!code || !TRANSIENT.has(code) || Date.now() + delayMs > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}
