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
import { promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { toErrorInfo } from '../contract/errors.ts';
import type { Settings } from '../workspace/config.ts';
import { actionTokens } from './actionTokens.ts';
import { applyChecker } from './applyCheck.ts';
import { sendError } from './http.ts';
import { LiveEvents } from './liveEvents.ts';
import { dispatch, siteOrigin, type UiContext } from './routeTable.ts';
import { ROUTES } from './routes.ts';
import { STATIC_FILES } from './staticFiles.ts';
import { uiToken } from './token.ts';

export { CSP } from './http.ts';

// Beside this module in src/ui/, or copied beside the bundle in dist/ (scripts/build.ts).
const HERE = path.dirname(fileURLToPath(import.meta.url));

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

/** Wires the server: the session token, the static files, live events and the route table. */
export async function startUi(options: UiOptions): Promise<UiServer> {
  const { settings, log } = options;
  const ctx: UiContext = {
    settings,
    log,
    site: { host: options.host ?? settings.config.ui.host, port: 0 },
    sessionToken: options.token ?? (await uiToken(settings.layout)),
    tokens: actionTokens(),
    applyStatus: applyChecker(settings),
    files: Object.fromEntries(await Promise.all(STATIC_FILES.map(async (f) => [f, await fs.readFile(path.join(HERE, f))] as const))),
    // Last: from here on, a failure must close its watcher.
    events: new LiveEvents(settings, log),
  };
  const server = http.createServer((req, res) => {
    dispatch(ROUTES, ctx, req, res).catch((error: unknown) =>
      sendError(res, error, () =>
        log.error({ err: toErrorInfo(error), url: new URL(req.url ?? '/', 'http://localhost').pathname }, 'dashboard request failed'),
      ),
    );
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? settings.config.ui.port, ctx.site.host, () => resolve());
    });
  } catch (error) {
    await ctx.events.close();
    throw error;
  }
  ctx.site.port = (server.address() as AddressInfo).port;
  log.info({ url: `${siteOrigin(ctx.site)}/` }, 'dashboard listening');
  return {
    url: `${siteOrigin(ctx.site)}/?token=${ctx.sessionToken}`,
    port: ctx.site.port,
    token: ctx.sessionToken,
    close: async () => {
      await ctx.events.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections?.();
    },
  };
}
