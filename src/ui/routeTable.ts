/**
 * The dashboard's routes as a table: method + path pattern -> handler. The table, not the
 * handlers, applies the checks, by the kind of route:
 * - public (the page, its script and style): only the Host check every request gets;
 * - read (GET /api/...): the session token;
 * - change (POST /api/...): the session token, the dashboard's own origin, a JSON body of the
 *   route's schema, and a one-use action token issued for this action on this target.
 * A `:id` in a pattern is a task or patch id, validated before any handler sees it: no path
 * from the browser is trusted.
 */
import type http from 'node:http';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { TaskIdSchema } from '../contract/task.ts';
import type { Settings } from '../workspace/config.ts';
import type { Action, ActionTokens } from './actionTokens.ts';
import type { applyChecker } from './applyCheck.ts';
import { HttpError, readJsonBody, sameSecret, send, type Reply } from './http.ts';
import type { LiveEvents } from './liveEvents.ts';

/** Where the server listens: the port is known once it does. */
export interface Site {
  host: string;
  port: number;
}

/** What every handler may use. */
export interface UiContext {
  settings: Settings;
  log: Logger;
  site: Site;
  sessionToken: string;
  tokens: ActionTokens;
  applyStatus: ReturnType<typeof applyChecker>;
  events: LiveEvents;
  /** The page's static files by name (staticFiles.ts). */
  files: Record<string, Buffer>;
}

/** A request as a handler sees it: the validated ids of its path and its checked body. */
export interface Call<B = undefined> {
  params: Record<string, string>;
  body: B;
  req: http.IncomingMessage;
  res: http.ServerResponse;
}

type Handle<B, R> = (ctx: UiContext, call: Call<B>) => Promise<R> | R;

export type Route =
  | { kind: 'public'; method: 'GET'; path: string; handle: Handle<undefined, Reply> }
  /** `undefined`: the handler answered itself (an event stream). */
  | { kind: 'read'; method: 'GET'; path: string; handle: Handle<undefined, Reply | undefined> }
  | {
      kind: 'change';
      method: 'POST';
      path: string;
      body: z.ZodType;
      action: Action;
      /** What the action token is bound to; may refuse (a patch no longer pending: 409). */
      target: (ctx: UiContext, params: Record<string, string>) => Promise<string> | string;
      handle: Handle<unknown, Reply>;
    };

/** A change route, its body typed by its schema. */
export function change<S extends z.ZodType>(route: {
  path: string;
  body: S;
  action: Action;
  target: (ctx: UiContext, params: Record<string, string>) => Promise<string> | string;
  handle: Handle<z.infer<S>, Reply>;
}): Route {
  return { kind: 'change', method: 'POST', ...route, handle: route.handle as Handle<unknown, Reply> };
}

const segments = (pathname: string) => pathname.split('/').filter(Boolean);

function match(table: readonly Route[], method: string, pathname: string): { route: Route; raw: Record<string, string> } | null {
  const parts = segments(pathname);
  for (const route of table) {
    const pattern = segments(route.path);
    if (route.method !== method || pattern.length !== parts.length) continue;
    if (!pattern.every((p, i) => p.startsWith(':') || p === parts[i])) continue;
    const raw: Record<string, string> = {};
    pattern.forEach((p, i) => {
      if (p.startsWith(':')) raw[p.slice(1)] = parts[i]!;
    });
    return { route, raw };
  }
  return null;
}

function validIds(raw: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(raw).map(([name, value]) => {
      let id: string;
      try {
        id = decodeURIComponent(value);
      } catch {
        id = value;
      }
      if (!TaskIdSchema.safeParse(id).success) throw new HttpError(400, `"${id}" is not a valid id`);
      return [name, id];
    }),
  );
}

/** The Host header must name this server: a page on another name (DNS rebinding) gets nothing. */
function checkHost(site: Site, req: http.IncomingMessage): void {
  const allowed = new Set([`127.0.0.1:${site.port}`, `localhost:${site.port}`, `[::1]:${site.port}`, `${site.host}:${site.port}`]);
  if (!allowed.has(String(req.headers.host ?? ''))) throw new HttpError(421, 'unexpected Host header');
}

export function siteOrigin(site: Site): string {
  return `http://${site.host.includes(':') ? `[${site.host}]` : site.host}:${site.port}`;
}

function checkSession(ctx: UiContext, req: http.IncomingMessage, url: URL): void {
  const given = String(req.headers['x-meta-agent-token'] ?? url.searchParams.get('token') ?? '');
  if (!sameSecret(given, ctx.sessionToken)) throw new HttpError(401, 'missing or wrong token (see the URL meta-agent ui printed)');
}

/** A change comes from the dashboard's own page, as JSON (a form post from another site is neither). */
function checkSameOrigin(site: Site, req: http.IncomingMessage): void {
  const from = req.headers.origin;
  if (from !== undefined && from !== siteOrigin(site) && from !== `http://localhost:${site.port}`)
    throw new HttpError(403, `requests from ${from} are not allowed`);
  if (!String(req.headers['content-type'] ?? '').startsWith('application/json')) throw new HttpError(415, 'send JSON (content-type: application/json)');
}

/** A state-changing request must echo a token issued for this action on this target. */
function checkActionToken(ctx: UiContext, req: http.IncomingMessage, action: Action, target: string): void {
  const given = String(req.headers['x-meta-agent-action'] ?? '');
  if (!ctx.tokens.consume(action, target, given))
    throw new HttpError(403, `this ${action} needs a fresh action token from the dashboard (reload the page and try again)`);
}

/** Answers one request from the table; throws an HttpError (or the handler's error) for the caller to send. */
export async function dispatch(table: readonly Route[], ctx: UiContext, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  checkHost(ctx.site, req);
  const found = match(table, req.method ?? 'GET', url.pathname);
  if (!found) throw new HttpError(404, 'not found');
  const { route } = found;
  if (route.kind === 'public') return send(res, await route.handle(ctx, { params: {}, body: undefined, req, res }));
  checkSession(ctx, req, url);
  if (route.kind === 'change') checkSameOrigin(ctx.site, req);
  const params = validIds(found.raw);
  if (route.kind === 'read') {
    const reply = await route.handle(ctx, { params, body: undefined, req, res });
    return reply ? send(res, reply) : undefined;
  }
  // Target and body before the token: a refused request does not use up the person's token.
  const target = await route.target(ctx, params);
  const body: unknown = await readJsonBody(req, route.body);
  checkActionToken(ctx, req, route.action, target);
  send(res, await route.handle(ctx, { params, body, req, res }));
}
