/**
 * The artifact store (execution.artifact_store): a folder shared by the folder host and the
 * workers (an SMB/NFS share), content-addressed, for retrain artifacts too large to travel
 * inside a job result. A worker puts a file and names it in its bundle by sha256 and size;
 * the host copies it out next to the patch, checking both (the worker's bundle is input from
 * another machine). Blobs live at `<store>/sha256/<first 2 hex>/<hash>`; a put writes a temp
 * file in `<store>/incoming/` and renames it in, so a reader never sees half a blob. Files
 * are streamed, never held in memory whole (a model can be hundreds of MiB).
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { MetaAgentError } from '../../contract/errors.ts';
import type { Settings } from '../../workspace/config.ts';
import { tempNameFor } from '../../workspace/files.ts';

export interface BlobRef {
  sha256: string;
  bytes: number;
}

const SHA256 = /^[0-9a-f]{64}$/;
const DAY_MS = 86_400_000;

export class ArtifactStore {
  constructor(readonly dir: string) {}

  /** Where the blob of `sha256` lives (the hash checked first: it becomes a path). */
  blobPath(sha256: string): string {
    if (!SHA256.test(sha256)) throw new MetaAgentError('input', `"${sha256.slice(0, 80)}" is not a sha256 (64 lowercase hex characters)`);
    return path.join(this.dir, 'sha256', sha256.slice(0, 2), sha256);
  }

  /** Stores `file` under its hash; a blob of that hash already there is kept (and marked used now, so retention spares it). */
  async put(file: string): Promise<BlobRef> {
    await this.mustExist();
    const incoming = path.join(this.dir, 'incoming');
    await fs.mkdir(incoming, { recursive: true });
    const temp = tempNameFor(path.join(incoming, 'blob'));
    const counter = new HashCounter(Number.POSITIVE_INFINITY);
    try {
      await pipeline(createReadStream(file), counter, createWriteStream(temp, { flags: 'wx' }));
      const ref = { sha256: counter.digest(), bytes: counter.bytes };
      const target = this.blobPath(ref.sha256);
      const there = await fs.stat(target).catch(() => null);
      if (there?.size === ref.bytes) {
        const now = new Date();
        await fs.utimes(target, now, now);
        return ref;
      }
      await fs.mkdir(path.dirname(target), { recursive: true });
      await renameInto(temp, target);
      return ref;
    } finally {
      await fs.rm(temp, { force: true });
    }
  }

  /**
   * Copies the blob `ref` names to `destination` (which must not exist), checking its size and
   * sha256 on the way; on any mismatch the copy is removed and the error says what differed.
   */
  async copyOut(ref: BlobRef, destination: string): Promise<void> {
    const blob = this.blobPath(ref.sha256);
    if (!Number.isSafeInteger(ref.bytes) || ref.bytes < 0) throw new MetaAgentError('input', `${ref.bytes} is not a byte count`);
    const counter = new HashCounter(ref.bytes);
    try {
      await pipeline(createReadStream(blob), counter, createWriteStream(destination, { flags: 'wx' }));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') await fs.rm(destination, { force: true });
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' && (error as NodeJS.ErrnoException).path === blob) {
        await this.mustExist();
        throw new MetaAgentError('input', `its blob ${ref.sha256} is not in the artifact store ${this.dir}`);
      }
      throw error;
    }
    const problem =
      counter.bytes !== ref.bytes
        ? `its blob in the artifact store has ${counter.bytes} bytes, not ${ref.bytes}`
        : counter.digest() !== ref.sha256
          ? `its blob in the artifact store does not match its sha256 ${ref.sha256} (changed after it was stored?)`
          : null;
    if (problem) {
      await fs.rm(destination, { force: true });
      throw new MetaAgentError('input', problem);
    }
  }

  /** The store's folder is never made here: a share that is not mounted must not become a local folder nobody else sees. */
  private async mustExist(): Promise<void> {
    if ((await fs.stat(this.dir).catch(() => null))?.isDirectory()) return;
    throw new MetaAgentError('config', `the artifact store ${this.dir} is not a folder here (is the share mounted?)`, {
      file: 'meta-agent.yaml',
      field: 'execution.artifact_store',
    });
  }

  /** Removes blobs (and dead workers' temp files) not used for `days`: a blob is needed only until the host filed it. */
  async prune(days: number, now = Date.now()): Promise<string[]> {
    const removed: string[] = [];
    const shards = await fs.readdir(path.join(this.dir, 'sha256')).catch(() => [] as string[]);
    const dirs = [path.join(this.dir, 'incoming'), ...shards.map((s) => path.join(this.dir, 'sha256', s))];
    for (const dir of dirs) {
      for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
        const file = path.join(dir, name);
        const stat = await fs.stat(file).catch(() => null);
        if (!stat?.isFile() || now - stat.mtimeMs < days * DAY_MS) continue;
        if (
          await fs.rm(file).then(
            () => true,
            () => false,
          )
        )
          removed.push(file);
      }
    }
    return removed;
  }
}

/** How a worker sends artifacts: the store (null: none configured) and the size above which an artifact goes there. */
export interface ArtifactPolicy {
  store: ArtifactStore | null;
  inlineBytes: number;
}

/** The configured store: a folder (relative to the workspace root) or a file: URL; null when none is set. */
export function artifactPolicy(settings: Settings): ArtifactPolicy {
  const { artifact_store: where, inline_artifact_bytes: inlineBytes } = settings.config.execution;
  if (!where) return { store: null, inlineBytes };
  let dir: string;
  try {
    dir = /^file:/i.test(where) ? fileURLToPath(where) : path.resolve(settings.layout.root, where);
  } catch (error) {
    throw new MetaAgentError('config', `${where} is not a usable file: URL (${(error as Error).message})`, {
      file: 'meta-agent.yaml',
      field: 'execution.artifact_store',
    });
  }
  return { store: new ArtifactStore(dir), inlineBytes };
}

/** Passes bytes through while hashing and counting them; fails once more than `limit` have passed (a blob larger than claimed). */
class HashCounter extends Transform {
  private readonly hash = createHash('sha256');
  bytes = 0;

  constructor(private readonly limit: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      done(new MetaAgentError('input', `its blob in the artifact store has more than the ${this.limit} bytes named`));
      return;
    }
    this.hash.update(chunk);
    done(null, chunk);
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

/** Renames `temp` to `target`; where a rename does not replace (Windows), a blob someone else put meanwhile stands (same content). */
async function renameInto(temp: string, target: string): Promise<void> {
  try {
    await fs.rename(temp, target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if ((code === 'EEXIST' || code === 'EPERM') && (await fs.stat(target).catch(() => null))) return;
    throw error;
  }
}
