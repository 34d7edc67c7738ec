/**
 * `meta-agent ui`: a local dashboard over the same folders. Every action goes through the
 * library calls and file moves that Explorer and the CLI use, so the folders stay the only
 * truth and the dashboard can be closed at any time.
 *
 * Security: loopback unless configured; a token kept in the workspace (header
 * `x-meta-agent-token` or `?token=`) on every API call; state-changing requests must come
 * from the dashboard's own origin and carry a one-use token issued for that action on that
 * target (see actionTokens.ts); the Host header must name this server (no DNS rebinding);
 * ids from the browser are validated, never used as paths. Everything the agent, the
 * repository or a task wrote is untrusted: Markdown goes through markdown.ts, the page
 * inserts other text escaped, and a strict CSP (no inline script or style) backs both.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { watch as chokidarWatch } from 'chokidar';
import type { Logger } from 'pino';
import { MetaAgentError, toErrorInfo } from '../contract/errors.ts';
import { TaskIdSchema, TASK_TYPES, type Task } from '../contract/task.ts';
import { approvePatch, rejectPatch } from '../gate/decide.ts';
import { createTask } from '../queue/createTask.ts';
import { ERROR_NOTE, findFailedTask, retryFailedTask } from '../queue/retry.ts';
import { PatchSidecarSchema } from '../contract/patch.ts';
import type { Settings } from '../workspace/config.ts';
import { layoutDirs } from '../workspace/layout.ts';
import { fillTemplate, loadTemplate } from '../workspace/templates.ts';
import { dashboardState, readReport, reportOfPatch } from './state.ts';
import { actionTokens, type Action } from './actionTokens.ts';
import { applyChecker } from './applyCheck.ts';
import { renderUntrusted } from './markdown.ts';
import { uiToken } from './token.ts';
import { STATIC_FILES } from './staticFiles.ts';

// Beside this module in src/ui/, or copied beside the bundle in dist/ (scripts/build.ts).
const HERE = path.dirname(fileURLToPath(import.meta.url));
const STATIC: Record<string, { file: string; type: string }> = {
  '/': { file: 'page.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'page.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
};
const MAX_BODY = 256 * 1024;

/** No inline script or style anywhere: text that slips through escaping still cannot run or restyle the page. */
export const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "object-src 'none'",
].join('; ');
const SECURITY_HEADERS = { 'content-security-policy': CSP, 'x-frame-options': 'DENY', 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' };

export interface UiOptions {
  settings: Settings;
  log: Logger;
  /** Default: ui.port in meta-agent.yaml (0: a free one). */
  port?: number;
  /** Default: ui.host in meta-agent.yaml. */
  host?: string;
  /** Default: the workspace's stored token (token.ts). */
  token?: string;
}

export interface UiServer {
  url: string;
  port: number;
  token: string;
  close(): Promise<void>;
}


class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function startUi(options: UiOptions): Promise<UiServer> {
  const { settings, log } = options;
  const host = options.host ?? settings.config.ui.host;
  const token = options.token ?? (await uiToken(settings.layout));
  const files = Object.fromEntries(await Promise.all(STATIC_FILES.map(async (f) => [f, await fs.readFile(path.join(HERE, f))] as const)));
  const tokens = actionTokens();
  const applyStatus = applyChecker(settings);
  const clients = new Set<http.ServerResponse>();
  let port = 0;

  const allowedHosts = () => new Set([`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `${host}:${port}`]);
  const origin = () => `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

  const authorized = (req: http.IncomingMessage, url: URL) => {
    const given = String(req.headers['x-meta-agent-token'] ?? url.searchParams.get('token') ?? '');
    const a = Buffer.from(given);
    const b = Buffer.from(token);
    return a.length === b.length && timingSafeEqual(a, b);
  };

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    try {
      if (!allowedHosts().has(String(req.headers.host ?? ''))) throw new HttpError(421, 'unexpected Host header');
      const asset = STATIC[url.pathname];
      if (req.method === 'GET' && asset) {
        res.writeHead(200, { 'content-type': asset.type, 'cache-control': 'no-store', ...SECURITY_HEADERS });
        return void res.end(files[asset.file]);
      }
      if (!url.pathname.startsWith('/api/')) throw new HttpError(404, 'not found');
      if (!authorized(req, url)) throw new HttpError(401, 'missing or wrong token (see the URL meta-agent ui printed)');
      if (req.method === 'POST') {
        const from = req.headers.origin;
        if (from !== undefined && from !== origin() && from !== `http://localhost:${port}`) throw new HttpError(403, `requests from ${from} are not allowed`);
        if (!String(req.headers['content-type'] ?? '').startsWith('application/json')) throw new HttpError(415, 'send JSON (content-type: application/json)');
      }
      await route(req, res, url);
    } catch (error) {
      const status = error instanceof HttpError ? error.status : error instanceof MetaAgentError && (error.kind === 'input' || error.kind === 'config') ? 400 : 500;
      const message = error instanceof HttpError ? error.message : toErrorInfo(error).message;
      if (status === 500) log.error({ err: toErrorInfo(error), url: url.pathname }, 'dashboard request failed');
      if (!res.headersSent) res.writeHead(status, { 'content-type': 'application/json', ...SECURITY_HEADERS });
      res.end(JSON.stringify({ error: message }));
    }
  });

  const json = (res: http.ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...SECURITY_HEADERS });
    res.end(JSON.stringify(body));
  };

  const readBody = async (req: http.IncomingMessage): Promise<Record<string, unknown>> => {
    let size = 0;
    const chunks: Buffer[] = [];
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > MAX_BODY) throw new HttpError(413, 'request too large');
      chunks.push(chunk as Buffer);
    }
    try {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as unknown;
      if (!body || typeof body !== 'object' || Array.isArray(body)) throw new Error('not an object');
      return body as Record<string, unknown>;
    } catch {
      throw new HttpError(400, 'the body is not a JSON object');
    }
  };

  const idFrom = (value: string | undefined) => {
    const id = decodeURIComponent(value ?? '');
    if (!TaskIdSchema.safeParse(id).success) throw new HttpError(400, `"${id}" is not a valid id`);
    return id;
  };

  /** A state-changing request must echo a token issued for this action on this target. */
  const requireActionToken = (req: http.IncomingMessage, action: Action, target: string) => {
    const given = String(req.headers['x-meta-agent-action'] ?? '');
    if (!tokens.consume(action, target, given)) throw new HttpError(403, `this ${action} needs a fresh action token from the dashboard (reload the page and try again)`);
  };

  /** The pending patch's bytes' hash: an approval is bound to the patch the person was shown. */
  const pendingTarget = async (id: string) => {
    const bytes = await fs.readFile(path.join(settings.layout.patches.pending, `${id}.patch`)).catch(() => null);
    if (!bytes) throw new HttpError(409, `${id} is not pending (already approved or rejected)`);
    return `${id}:${createHash('sha256').update(bytes).digest('hex')}`;
  };

  async function route(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const parts = url.pathname.split('/').filter(Boolean); // ['api', ...]
    const [, resource, rawId, action] = parts;
    if (req.method === 'GET' && resource === 'state' && parts.length === 2) return json(res, 200, await dashboardState(settings));
    if (req.method === 'GET' && resource === 'events' && parts.length === 2) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
      res.write(`retry: 2000\nevent: hello\ndata: {}\n\n`);
      clients.add(res);
      req.on('close', () => clients.delete(res));
      return;
    }
    if (req.method === 'GET' && resource === 'reports' && parts.length === 3) {
      const id = idFrom(rawId);
      const report = await readReport(settings, id);
      if (!report) throw new HttpError(404, `no report ${id}`);
      const md = await fs.readFile(path.join(settings.layout.reports, `${id}_report.md`), 'utf8').catch(() => '');
      return json(res, 200, { report, html: await renderUntrusted(md) });
    }
    if (req.method === 'GET' && resource === 'cycles' && parts.length === 3) {
      const id = idFrom(rawId);
      const md = await fs.readFile(path.join(settings.layout.reports, 'cycles', `${id}.md`), 'utf8').catch(() => null);
      if (md === null) throw new HttpError(404, `no cycle ${id}`);
      return json(res, 200, { html: await renderUntrusted(md) });
    }
    if (resource === 'patches' && rawId) {
      const id = idFrom(rawId);
      if (req.method === 'GET' && parts.length === 3) return json(res, 200, await patchView(id));
      if (req.method === 'POST' && action === 'approve' && parts.length === 4) {
        requireActionToken(req, 'approve', await pendingTarget(id));
        const moved = await approvePatch(settings, id).catch((e: unknown) => {
          // A second tab or a reload: the patch is no longer pending; nothing is repeated.
          throw e instanceof MetaAgentError && e.kind === 'input' ? new HttpError(409, `${id} is not pending (already approved or rejected)`) : e;
        });
        log.info({ patch: id }, 'approved from the dashboard');
        return json(res, 200, { ok: true, moved_to: path.relative(settings.layout.root, moved) });
      }
      if (req.method === 'POST' && action === 'reject' && parts.length === 4) {
        const target = await pendingTarget(id);
        const body = await readBody(req);
        const reason = typeof body.reason === 'string' ? body.reason : '';
        if (!reason.trim()) throw new HttpError(400, 'a rejection needs a reason');
        requireActionToken(req, 'reject', target);
        const moved = await rejectPatch(settings, id, reason).catch((e: unknown) => {
          throw e instanceof MetaAgentError && e.kind === 'input' && /no pending patch/.test(e.message) ? new HttpError(409, `${id} is not pending (already approved or rejected)`) : e;
        });
        log.info({ patch: id }, 'rejected from the dashboard');
        return json(res, 200, { ok: true, moved_to: path.relative(settings.layout.root, moved) });
      }
    }
    if (resource === 'failed' && rawId) {
      const id = idFrom(rawId);
      if (req.method === 'GET' && parts.length === 3) {
        const name = id.endsWith('.md') ? id : `${id}.md`;
        if (!(await findFailedTask(settings.layout, id))) throw new HttpError(404, `no failed task ${id}`);
        const note = await fs.readFile(path.join(settings.layout.failed, `${name}${ERROR_NOTE}`), 'utf8').catch(() => null);
        return json(res, 200, { id, html: note === null ? '' : await renderUntrusted(note), actions: { retry: tokens.issue('retry', id) } });
      }
      if (req.method === 'POST' && action === 'retry' && parts.length === 4) {
        requireActionToken(req, 'retry', id);
        const moved = await retryFailedTask(settings.layout, id).catch((e: unknown) => {
          throw e instanceof MetaAgentError && e.kind === 'input' ? new HttpError(409, e.message) : e;
        });
        log.info({ task: id }, 'retried from the dashboard');
        return json(res, 200, { ok: true, moved_to: path.relative(settings.layout.root, moved.to) });
      }
    }
    if (req.method === 'GET' && resource === 'tasks' && rawId === 'new' && parts.length === 3) return json(res, 200, { actions: { create: tokens.issue('create', 'task') } });
    if (req.method === 'POST' && resource === 'tasks' && parts.length === 2) {
      requireActionToken(req, 'create', 'task');
      const body = await readBody(req);
      const template = await loadTemplate(settings, typeof body.template === 'string' && body.template ? body.template : typeof body.type === 'string' ? body.type : 'custom');
      const list = (v: unknown, fallback: string[]) => (Array.isArray(v) ? v.map(String).map((s) => s.trim()).filter(Boolean) : typeof v === 'string' ? v.split(/[\n,]/).map((s) => s.trim()).filter(Boolean) : fallback);
      const type = (TASK_TYPES as readonly string[]).includes(String(body.type)) ? (body.type as Task['type']) : template.type;
      const objective = typeof body.objective === 'string' ? body.objective : '';
      const name = typeof body.name === 'string' && body.name.trim() ? body.name : `${type}-${new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, '')}`;
      const { path: file, task } = await createTask(
        settings,
        name,
        {
          project: String(body.project ?? ''),
          type,
          objective,
          scope: list(body.scope, template.scope),
          tasks: list(body.tasks, template.tasks),
          output: template.output,
          body: fillTemplate(template.body, { objective, project: String(body.project ?? '') }),
        },
        'gui',
      );
      log.info({ task: task.id }, 'task created from the dashboard');
      return json(res, 201, { ok: true, id: task.id, file: path.relative(settings.layout.root, file) });
    }
    throw new HttpError(404, 'not found');
  }

  async function patchView(id: string) {
    for (const [state, dir] of Object.entries(settings.layout.patches)) {
      const file = path.join(dir, `${id}.patch`);
      const bytes = await fs.readFile(file).catch(() => null);
      if (bytes === null) continue;
      const diff = bytes.toString('utf8');
      const sidecar = JSON.parse((await fs.readFile(`${file}.json`, 'utf8').catch(() => 'null')) ?? 'null') as unknown;
      const parsedSidecar = PatchSidecarSchema.safeParse(sidecar);
      const pending = state === 'pending';
      const target = pending ? `${id}:${createHash('sha256').update(bytes).digest('hex')}` : null;
      const extra = state === 'applied' ? await fs.readFile(path.join(dir, `${id}.result.json`), 'utf8').catch(() => null) : state === 'rejected' ? await fs.readFile(path.join(dir, `${id}.reason.md`), 'utf8').catch(() => null) : null;
      return {
        id,
        state,
        diff,
        sidecar,
        result: state === 'applied' && extra ? JSON.parse(extra) : null,
        reason: state === 'rejected' ? extra : null,
        // `<id>.<run_id>.patch` belongs to task <id>: the report is found through the sidecar.
        report: await reportOfPatch(settings, file),
        // Only while pending: has the branch moved since the base, and does the patch still apply?
        base: pending && parsedSidecar.success ? await applyStatus(parsedSidecar.data, file) : null,
        actions: target ? { approve: tokens.issue('approve', target), reject: tokens.issue('reject', target) } : null,
      };
    }
    throw new HttpError(404, `no patch ${id}`);
  }

  // Live updates: the folders' watchers push a "change" event; the page refetches /api/state.
  let pending: NodeJS.Timeout | null = null;
  const notify = (file: string) => {
    if (pending) return;
    pending = setTimeout(() => {
      pending = null;
      const data = JSON.stringify({ folder: path.relative(settings.layout.root, path.dirname(file)) });
      for (const c of clients) c.write(`event: change\ndata: ${data}\n\n`);
    }, 150);
  };
  const watcher = chokidarWatch([...layoutDirs(settings.layout), path.join(settings.layout.reports, 'cycles')], { depth: 0, ignoreInitial: true });
  watcher.on('all', (_event, file) => notify(file));
  watcher.on('error', (error) => log.warn({ err: toErrorInfo(error) }, 'dashboard watcher error'));
  const heartbeat = setInterval(() => {
    for (const c of clients) c.write(': ping\n\n');
  }, 15_000);
  heartbeat.unref();

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? settings.config.ui.port, host, () => resolve());
  });
  port = (server.address() as AddressInfo).port;
  const url = `${origin()}/?token=${token}`;
  log.info({ url: `${origin()}/` }, 'dashboard listening');
  return {
    url,
    port,
    token,
    close: async () => {
      clearInterval(heartbeat);
      if (pending) clearTimeout(pending);
      await watcher.close();
      for (const c of clients) c.end();
      clients.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections?.();
    },
  };
}
