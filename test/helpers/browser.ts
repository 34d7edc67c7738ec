/**
 * A headless Chromium for the dashboard's browser tests: the system's (Debian's
 * /usr/bin/chromium, or META_AGENT_TEST_CHROMIUM) when installed, else the one the npm
 * package @sparticuz/chromium ships (unpacked into the temp folder on first use), so the
 * README's test command needs no system browser.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

const SYSTEM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];
// Without the background-networking flags Chromium keeps dialing Google's hosts, which this
// machine's closed network refuses.
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
];

export async function launchBrowser(): Promise<Browser> {
  const wanted = process.env.META_AGENT_TEST_CHROMIUM;
  const system = wanted ?? SYSTEM.find((p) => existsSync(p));
  if (system) return chromium.launch({ executablePath: system, args: ARGS, headless: true, timeout: 60_000 });
  const { default: packaged } = await import('@sparticuz/chromium');
  return chromium.launch({ executablePath: await packaged.executablePath(), args: packaged.args, headless: true, timeout: 60_000 });
}

/** What a dashboard test starts; any part may be missing when its setup failed half-way. */
export interface DashboardParts {
  browser?: Browser;
  ui?: { close(): Promise<void> };
  watcher?: { stop(): Promise<void> };
  llm?: { close(): Promise<void> };
  ws?: { cleanup(): Promise<void> };
}

/** Stops what a dashboard test started, in order, whatever failed, so `npm test` always exits. */
export async function teardownDashboard(env: DashboardParts): Promise<void> {
  await env.browser?.close().catch(() => undefined);
  await env.ui?.close().catch(() => undefined);
  await env.watcher?.stop().catch(() => undefined);
  await env.llm?.close().catch(() => undefined);
  await env.ws?.cleanup().catch(() => undefined);
}
