/**
 * `meta-agent watch`, first cut: a single service process that runs every task dropped
 * into inbox/. chokidar events are hints; a periodic scan of inbox/ is the truth. A file
 * is taken once it is complete: published by rename (createTask) or unchanged for
 * `settleMs` (a copy in progress is waited for). Tasks run `concurrency` at a time, in
 * arrival order. SIGINT/SIGTERM stop claiming and let running tasks return to inbox/.
 *
 * Not yet here (see the folder-queue issue): leases for several watchers on one folder,
 * recovery of tasks left in processing/ by a dead worker, the approval gate.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { watch as chokidarWatch, type FSWatcher } from 'chokidar';
import type { Logger } from 'pino';
import type { Settings } from '../workspace/config.ts';
import { runTask, type RunTaskResult } from '../run/runTask.ts';
import type { Engine } from '../engines/types.ts';
import { MetaAgentError } from '../contract/errors.ts';

export interface WatchOptions {
  settings: Settings;
  log: Logger;
  /** How long a file's size and mtime must stay unchanged before it is taken (ms). */
  settleMs?: number;
  /** Period of the reconcile scan (ms). */
  scanMs?: number;
  usePolling?: boolean;
  engine?: Engine;
  onResult?: (result: RunTaskResult) => void;
}

export interface Watcher {
  /** Stops claiming, aborts running tasks (they return to inbox/) and waits for them. */
  stop(): Promise<void>;
  /** Resolves when the first scan is done. */
  ready: Promise<void>;
}

const TEMP_NAME = /^(\.|~\$)|\.(tmp|part|crdownload|swp)$/i;

/** Names the queue never takes: dotfiles, office lock files, partial downloads. */
export function isIgnoredName(name: string): boolean {
  return TEMP_NAME.test(name);
}

export function startWatching(options: WatchOptions): Watcher {
  const { settings, log } = options;
  const { layout } = settings;
  const settleMs = options.settleMs ?? 1500;
  const concurrency = settings.config.limits.concurrency;
  const controller = new AbortController();
  const seen = new Map<string, { size: number; mtimeMs: number; since: number }>();
  const queued: string[] = [];
  const queuedSet = new Set<string>();
  const running = new Set<Promise<void>>();
  const loggedNonTask = new Set<string>();
  let stopping = false;

  const consider = async (name: string): Promise<void> => {
    if (stopping || queuedSet.has(name) || isIgnoredName(name)) return;
    const file = path.join(layout.inbox, name);
    if (!name.toLowerCase().endsWith('.md')) {
      if (!loggedNonTask.has(name)) log.warn({ file: name }, 'not a .md task file; left where it is');
      loggedNonTask.add(name);
      return;
    }
    const stat = await fs.stat(file).catch(() => null);
    if (!stat?.isFile()) return void seen.delete(name);
    // Renamed in after being written (createTask): complete at once. Otherwise wait until it settles.
    const publishedByRename = stat.ctimeMs - stat.mtimeMs > 1;
    const previous = seen.get(name);
    const now = Date.now();
    if (!publishedByRename) {
      if (!previous || previous.size !== stat.size || previous.mtimeMs !== stat.mtimeMs) {
        seen.set(name, { size: stat.size, mtimeMs: stat.mtimeMs, since: now });
        setTimeout(() => void consider(name), settleMs + 50).unref();
        return;
      }
      if (now - previous.since < settleMs) return;
    }
    seen.delete(name);
    queuedSet.add(name);
    queued.push(name);
    pump();
  };

  const pump = () => {
    while (!stopping && running.size < concurrency && queued.length > 0) {
      const name = queued.shift()!;
      const job = runOne(name).finally(() => {
        running.delete(job);
        queuedSet.delete(name);
        pump();
      });
      running.add(job);
    }
  };

  const runOne = async (name: string) => {
    try {
      const result = await runTask(path.join(layout.inbox, name), { settings, log, signal: controller.signal, ...(options.engine ? { engine: options.engine } : {}) });
      options.onResult?.(result);
    } catch (error) {
      // ENOENT on the claim: another worker (or a person) took it first. Not an error.
      if (error instanceof MetaAgentError && error.kind === 'input') log.debug({ file: name }, error.message);
      else log.error({ file: name, err: error }, 'task could not be run');
    }
  };

  const scan = async () => {
    const names = await fs.readdir(layout.inbox).catch(() => [] as string[]);
    // Oldest first keeps arrival order across a restart.
    const withTimes = await Promise.all(names.map(async (n) => ({ n, t: (await fs.stat(path.join(layout.inbox, n)).catch(() => null))?.mtimeMs ?? 0 })));
    for (const { n } of withTimes.sort((a, b) => a.t - b.t)) await consider(n);
  };

  const watcher: FSWatcher = chokidarWatch(layout.inbox, {
    depth: 0,
    ignoreInitial: true,
    usePolling: options.usePolling ?? false,
    ignored: (file) => isIgnoredName(path.basename(file)) && file !== layout.inbox,
  });
  watcher.on('add', (file) => void consider(path.basename(file)));
  watcher.on('change', (file) => void consider(path.basename(file)));
  watcher.on('error', (error) => log.warn({ err: error }, 'watcher error; the periodic scan goes on'));
  const scanTimer = setInterval(() => void scan(), options.scanMs ?? 2000);
  const ready = scan();
  log.info({ inbox: layout.inbox, concurrency }, 'watching inbox/');

  return {
    ready,
    async stop() {
      stopping = true;
      clearInterval(scanTimer);
      await watcher.close();
      controller.abort();
      await Promise.allSettled([...running]);
    },
  };
}
