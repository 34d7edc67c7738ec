/**
 * "Something changed under this folder": the liveness signal of an external agent that
 * works in silence (agentProcess.ts).
 *
 * On Windows and macOS a recursive `fs.watch` is one native watch. On Linux, Node 20's
 * recursive `fs.watch` walks the tree synchronously and watches every file: about a second
 * and 40 MB for 5,000 files, per run. Here a folder-only watch does the same job: one
 * inotify watch per folder (a file change is an event on its folder), made by an async
 * walk, with folders made later watched as they appear. Links are never followed (a
 * `link:` path leads into the real repository's data), `.git` is skipped, and past
 * `MAX_FOLDERS` the deeper folders go unwatched (output still counts as activity).
 */
import { watch, promises as fs, type FSWatcher } from 'node:fs';
import path from 'node:path';

const MAX_FOLDERS = 4000;

export interface ActivityWatch {
  close(): void;
}

export function watchActivity(dir: string, onChange: () => void, platform: NodeJS.Platform = process.platform): ActivityWatch {
  if (platform === 'win32' || platform === 'darwin') {
    try {
      const watcher = watch(dir, { recursive: true }, onChange);
      watcher.on('error', () => undefined);
      return { close: () => watcher.close() };
    } catch {
      // No file watching here: output alone keeps the agent alive.
      return { close: () => undefined };
    }
  }
  return new FolderWatches(dir, onChange);
}

class FolderWatches implements ActivityWatch {
  private readonly watchers = new Map<string, FSWatcher>();
  private closed = false;

  constructor(
    root: string,
    private readonly onChange: () => void,
  ) {
    void this.add(root);
  }

  private async add(dir: string): Promise<void> {
    if (this.closed || this.watchers.has(dir) || this.watchers.size >= MAX_FOLDERS) return;
    try {
      const watcher = watch(dir, (_event, name) => {
        this.onChange();
        // A new folder (or one renamed in): watch it too.
        if (name) void this.addIfFolder(path.join(dir, name.toString()));
      });
      watcher.on('error', () => {
        watcher.close();
        this.watchers.delete(dir);
      });
      this.watchers.set(dir, watcher);
    } catch {
      return; // gone already, or not readable
    }
    const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) if (entry.isDirectory() && entry.name !== '.git') await this.add(path.join(dir, entry.name));
  }

  private async addIfFolder(file: string): Promise<void> {
    if (this.closed || this.watchers.has(file) || path.basename(file) === '.git') return;
    const stat = await fs.lstat(file).catch(() => null);
    if (stat?.isDirectory()) await this.add(file);
  }

  close(): void {
    this.closed = true;
    for (const watcher of this.watchers.values()) watcher.close();
    this.watchers.clear();
  }
}
