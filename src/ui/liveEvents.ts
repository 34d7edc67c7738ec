/**
 * Live updates for the dashboard (server-sent events): the folders' watchers push a "change"
 * event, at most one per 150 ms, and the page refetches /api/state; a comment every 15 s
 * keeps idle connections open.
 */
import type http from 'node:http';
import path from 'node:path';
import { watch as chokidarWatch, type FSWatcher } from 'chokidar';
import type { Logger } from 'pino';
import { toErrorInfo } from '../contract/errors.ts';
import type { Settings } from '../workspace/config.ts';
import { layoutDirs } from '../workspace/layout.ts';

const COALESCE_MS = 150;
const HEARTBEAT_MS = 15_000;

export class LiveEvents {
  private readonly clients = new Set<http.ServerResponse>();
  private readonly watcher: FSWatcher;
  private readonly heartbeat: NodeJS.Timeout;
  private pending: NodeJS.Timeout | null = null;

  constructor(
    private readonly settings: Settings,
    log: Logger,
  ) {
    const { layout } = settings;
    this.watcher = chokidarWatch([...layoutDirs(layout), path.join(layout.reports, 'cycles')], { depth: 0, ignoreInitial: true });
    this.watcher.on('all', (_event, file) => this.notify(file));
    this.watcher.on('error', (error) => log.warn({ err: toErrorInfo(error) }, 'dashboard watcher error'));
    this.heartbeat = setInterval(() => this.broadcast(': ping\n\n'), HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  /** Keeps `res` open as an event stream until the browser leaves. */
  subscribe(req: http.IncomingMessage, res: http.ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    res.write(`retry: 2000\nevent: hello\ndata: {}\n\n`);
    this.clients.add(res);
    req.on('close', () => this.clients.delete(res));
  }

  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    if (this.pending) clearTimeout(this.pending);
    await this.watcher.close();
    for (const c of this.clients) c.end();
    this.clients.clear();
  }

  private notify(file: string): void {
    if (this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = null;
      const data = JSON.stringify({ folder: path.relative(this.settings.layout.root, path.dirname(file)) });
      this.broadcast(`event: change\ndata: ${data}\n\n`);
    }, COALESCE_MS);
  }

  private broadcast(text: string): void {
    for (const c of this.clients) c.write(text);
  }
}
