/**
 * Publishing files the Maildir way: write a temp file in the target folder, fsync, then
 * link it to its final name (fails if the name exists, so nothing is ever overwritten),
 * then drop the temp name. Readers never see a half-written file.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import pRetry from 'p-retry';

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

/** Errors of a hard link that mean "this filesystem (or folder) has none": move by rename instead. */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EXDEV', 'ENOSYS']);

/**
 * Moves `from` to `to` only if `to` does not exist. Returns false if it does.
 *
 * A hard link to the new name, then an unlink of the old one. Each step is retried on its own
 * while the file is busy (retryBusy): retrying the whole move after a failed unlink would find
 * its own link (EEXIST) and take the next name, leaving one file under two names (a task that
 * runs twice). If the unlink never succeeds, the new name is removed again: the move did not happen.
 */
export async function renameNoReplace(from: string, to: string): Promise<boolean> {
  try {
    await retryBusy(() => faulty('link', to, () => fs.link(from, to)), to, { hardLink: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    // Filesystems without hard links (some SMB/FAT): check, then rename. The window is tiny
    // and the names we publish are unique per run anyway.
    if (code && NO_HARD_LINKS.has(code)) {
      return retryBusy(async () => {
        if (await exists(to)) return false;
        await faulty('rename', from, () => fs.rename(from, to));
        return true;
      }, from);
    }
    throw error;
  }
  try {
    await retryBusy(() => faulty('unlink', from, () => fs.unlink(from)), from);
  } catch (error) {
    await retryBusy(() => fs.unlink(to), to).catch(() => undefined);
    throw error;
  }
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

/** fs.rename (which replaces `to`), retried while `from` is busy. */
export function renameBusy(from: string, to: string): Promise<void> {
  return retryBusy(() => faulty('rename', from, () => fs.rename(from, to)), from);
}

/** Replaces a file we own (a report being updated) atomically: temp + rename. */
export async function replaceFile(file: string, data: string | Uint8Array): Promise<void> {
  const temp = tempNameFor(file);
  await writeSynced(temp, data);
  try {
    await retryBusy(() => faulty('rename', file, () => fs.rename(temp, file)), file);
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
  return createHash('sha256')
    .update(await fs.readFile(file))
    .digest('hex');
}

/** One step of a move (files.ts and the callers that retry their own fs calls with retryBusy). */
export type MoveStep = 'link' | 'unlink' | 'rename' | 'copy';
type MoveFault = (step: MoveStep, file: string) => void;
let moveFault: MoveFault | null = null;

/** Test hook: called before every step of a move here; it may throw (e.g. EBUSY, as a file an antivirus holds). */
export function injectMoveFault(fault: MoveFault | null): void {
  moveFault = fault;
}

/** Runs one step of a move, after the test hook. */
export function faulty<T>(step: MoveStep, file: string, action: () => Promise<T>): Promise<T> {
  moveFault?.(step, file);
  return action();
}

const busyRetry = { budgetMs: 30_000, platform: process.platform as NodeJS.Platform };

/**
 * How long a busy file is retried (config `queue.busy_retry_s`, set when the settings load)
 * and whose error codes mean "busy" (tests play Windows with `platform: 'win32'`).
 */
export function configureBusyRetry(options: { budgetMs?: number; platform?: NodeJS.Platform }): void {
  Object.assign(busyRetry, options);
}

/**
 * Codes that mean "someone holds this file for a moment". On Windows an antivirus, the indexer,
 * OneDrive, Explorer's preview or a program with the file open make a move fail with EBUSY,
 * EPERM or EACCES. Elsewhere only EBUSY means that (a file locked over SMB, a busy mount);
 * EPERM and EACCES there are lasting permission errors, reported at once.
 */
function busyCodes(platform: NodeJS.Platform, hardLink: boolean): Set<string> {
  if (platform !== 'win32') return new Set(['EBUSY']);
  // A hard link's EPERM means "no hard links here" (renameNoReplace falls back to a rename).
  return new Set(hardLink ? ['EBUSY', 'EACCES'] : ['EBUSY', 'EPERM', 'EACCES']);
}

/**
 * Retries `action` (one step of a move: a rename, a link, an unlink, a copy) while `file` is
 * busy, with backoff, for the configured budget (default 30 s, as long as an antivirus scan of
 * a large file may hold it). Past the budget the error names the file and keeps its code.
 */
export async function retryBusy<T>(action: () => Promise<T>, file?: string, options: { hardLink?: boolean } = {}): Promise<T> {
  const codes = busyCodes(busyRetry.platform, options.hardLink ?? false);
  const isBusy = (error: unknown) => codes.has((error as NodeJS.ErrnoException).code ?? '');
  try {
    return await pRetry(action, {
      retries: Number.POSITIVE_INFINITY,
      minTimeout: 20,
      maxTimeout: 1000,
      factor: 2,
      maxRetryTime: busyRetry.budgetMs,
      shouldRetry: ({ error }) => isBusy(error),
    });
  } catch (error) {
    if (!isBusy(error) || file === undefined) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw Object.assign(
      new Error(
        `${code}: ${file} stayed busy (held open by another program: an antivirus, OneDrive, an editor) for ${busyRetry.budgetMs / 1000} s of retries (queue.busy_retry_s); close it and try again`,
      ),
      { code, path: file, cause: error },
    );
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
