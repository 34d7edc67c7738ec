/**
 * Folder watchers: hints that a file arrived (the reconcile scan is the truth, since events
 * get lost on Windows pastes, network shares and queue overflows). Each is closed by the
 * lifecycle at stop.
 */
import { watch as fsWatch } from 'node:fs';
import path from 'node:path';
import { watch as chokidarWatch } from 'chokidar';
import type { Logger } from 'pino';
import { toErrorInfo } from '../contract/errors.ts';
import { type InboxEvent, isIgnoredName } from '../queue/pickup.ts';
import { layoutDirs, type Layout } from '../workspace/layout.ts';
import type { Lifecycle } from './lifecycle.ts';

export interface FolderWatchContext {
  layout: Layout;
  log: Logger;
  lifecycle: Lifecycle;
  /** Poll the folder (network shares) instead of OS events. */
  poll: boolean;
}

const WARNING = 'watcher error; the reconcile scan goes on';

/**
 * Calls `handler` with the name of each file added to or changed in `dir`. Resolves once
 * chokidar has set up its fs watchers (closing one before that can leave an inotify handle
 * open, and the process then never exits).
 */
export function watchFolder(ctx: FolderWatchContext, dir: string, handler: (name: string) => void): Promise<void> {
  const { layout, log, lifecycle, poll } = ctx;
  const w = chokidarWatch(dir, {
    depth: 0,
    ignoreInitial: true,
    usePolling: poll,
    interval: 500,
    ignored: (f: string) => isIgnoredName(path.basename(f)) && !layoutDirs(layout).includes(f),
  });
  w.on('add', (f) => handler(path.basename(f)));
  w.on('change', (f) => handler(path.basename(f)));
  w.on('error', (error) => log.warn({ err: toErrorInfo(error), dir }, WARNING));
  lifecycle.addCloser(() => w.close());
  return new Promise<void>((resolve) => w.once('ready', () => resolve()));
}

/**
 * inbox/ with OS events (not polled): fs.watch names the file, where chokidar reads the
 * whole folder again on each event (seconds of CPU in a burst of 1,000). Our own temps and
 * names that left are sorted out by the pickup; lost events by the scan. The event's kind
 * ("rename": appeared or left; "change": written) goes along; polling has none.
 */
export function watchInbox(ctx: FolderWatchContext, dir: string, handler: (name: string, event?: InboxEvent) => void): Promise<void> {
  if (ctx.poll) return watchFolder(ctx, dir, handler);
  const w = fsWatch(dir, (event, name) => {
    if (name) handler(name.toString(), event === 'change' ? 'change' : 'rename');
  });
  w.on('error', (error) => ctx.log.warn({ err: toErrorInfo(error), dir }, WARNING));
  ctx.lifecycle.addCloser(() => w.close());
  return Promise.resolve();
}
