/**
 * Issue 11: the dashboard keeps what a person is doing. A rejection reason typed into the
 * patch view survives periodic refreshes, a change of what the view shows (the branch moves)
 * and a live event, and the rejection carries it. At phone width the whole navigation is on
 * screen. The patch view says when the branch moved and whether the patch still applies,
 * without touching the person's repository. Failed tasks count once, show a failure badge and
 * can be retried. The token and the port stay put across restarts so a bookmark works.
 */
import { promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import type { Browser } from 'playwright-core';
import { startUi, type UiServer } from '../src/ui/server.ts';
import { uiTokenPath } from '../src/ui/token.ts';
import { dashboardState } from '../src/ui/state.ts';
import { runTask } from '../src/run/runTask.ts';
import { silentLogger } from '../src/log.ts';
import { launchBrowser, teardownDashboard } from './helpers/browser.ts';
import { finish, startFakeLlm, toolCall, type FakeLlm } from './helpers/fakeLlm.ts';
import { makeWorkspace, REPO_ROOT, repoFingerprint, type TestWorkspace } from './helpers/workspace.ts';

const SHOTS = path.join(REPO_ROOT, 'docs', 'screenshots');
const ID = 'review';

interface Env {
  ws: TestWorkspace;
  llm: FakeLlm;
  ui: UiServer;
  browser?: Browser;
}

/** A workspace with one pending patch (`review`: a comment above position_size in bot/sizing.py). */
async function setup(env: Partial<Env>, options: { browser?: boolean; extra?: string } = {}): Promise<Env> {
  env.llm = await startFakeLlm((req) => {
    const done = (req.body.messages as Array<{ role: string }>).filter((m) => m.role === 'tool').length;
    if (done === 0)
      return toolCall('edit_file', { path: 'bot/sizing.py', old: 'def position_size(', new: "# reviewed sizing\n'''it's reviewed'''\ndef position_size(" });
    return finish('Documented sizing.', 'low');
  });
  env.ws = await makeWorkspace({ llmUrl: env.llm.url, ...(options.extra ? { extra: options.extra } : {}) });
  const { layout } = env.ws.settings;
  await fs.writeFile(path.join(layout.inbox, `${ID}.md`), '---\nproject: bot\nobjective: Document sizing\nscope: ["bot/**"]\n---\n');
  const run = await runTask(path.join(layout.inbox, `${ID}.md`), { settings: env.ws.settings });
  assert.is(run.outcome, 'completed');
  env.ui = await startUi({ settings: env.ws.settings, log: silentLogger() });
  if (options.browser) env.browser = await launchBrowser();
  return env as Env;
}

async function commit(repo: string, file: string, edit: (text: string) => string, message: string): Promise<void> {
  const full = path.join(repo, file);
  await fs.writeFile(full, edit(await fs.readFile(full, 'utf8')));
  await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-am', message], { cwd: repo });
}

test('a typed rejection reason survives two refreshes, a branch move and a live event, then rejects with it; phone width shows the whole navigation', async () => {
  const env: Partial<Env> = {};
  try {
    await setup(env, { browser: true });
    const { ws, ui, browser } = env as Env & { browser: Browser };
    const { layout } = ws.settings;
    const page = await browser.newPage({ viewport: { width: 1280, height: 420 } });
    await page.goto(ui.url);
    await page.waitForSelector('#live.on');
    await page.click('nav button[data-tab="patches"]');
    await page.click(`#patches-pending li[data-id="${ID}"]`);
    await page.waitForSelector('#reject-reason');
    // Line numbers from the hunk header: the added comment is new line 1 or later, with no old number.
    const addRow = page.locator('#patch-diff .l.add').first();
    assert.match((await addRow.locator('.code').textContent()) ?? '', 'reviewed sizing');
    // An unpaired quote after the highlighter's tokens: the line reads as written (no "&#39;" from a comment match).
    assert.is(await page.locator('#patch-diff .l.add .code').nth(1).textContent(), "'''it's reviewed'''");
    assert.is((await addRow.locator('.ln').nth(0).textContent()) ?? '', '');
    assert.ok(Number(await addRow.locator('.ln').nth(1).textContent()) >= 1);
    assert.ok(Number(await page.locator('#patch-diff .l.ctx .ln').first().textContent()) >= 1);
    assert.is(await page.locator('#base-warning').count(), 0, 'no warning while the branch is where the patch started');

    const reason = 'sizing must stay as is until the audit on Monday';
    await page.click('#reject-reason');
    await page.keyboard.type(reason.slice(0, 20));
    await page.evaluate(() => {
      (document.querySelector('#reject-reason') as HTMLInputElement & { marker?: number }).marker = 1;
    });
    await page.evaluate(() => window.scrollTo(0, 60));
    const scrollY = await page.evaluate(() => window.scrollY);
    assert.ok(scrollY > 0, 'the view is long enough to scroll');
    const refreshes = Number(await page.evaluate(() => document.documentElement.dataset.refreshes));

    // What the view shows changes under the person's hands: the branch moves.
    await commit(ws.repo, 'README.md', (t) => `${t}\nmoved\n`, 'docs: move the branch');
    await page.waitForSelector('#base-warning[data-applies="clean"]', { timeout: 15_000 });
    assert.match((await page.textContent('#base-warning')) ?? '', 'has moved since this patch was made');
    assert.match((await page.textContent('#base-warning')) ?? '', 'still applies cleanly');
    await page.screenshot({ path: path.join(SHOTS, 'patch-moved.png'), fullPage: true });
    // Two periodic refreshes.
    await page.waitForFunction((n) => Number(document.documentElement.dataset.refreshes) >= n + 2, refreshes, { timeout: 20_000 });
    // A live event: a file dropped into a watched folder.
    const events = Number((await page.evaluate(() => document.documentElement.dataset.events)) ?? 0);
    await fs.writeFile(path.join(layout.inbox, 'poke.md'), '---\nproject: bot\nobjective: x\n---\n');
    await page.waitForFunction((n) => Number(document.documentElement.dataset.events ?? 0) > n, events, { timeout: 10_000 });
    await page.waitForSelector('#q-inbox li[data-name="poke.md"]', { state: 'attached' });
    await page.keyboard.type(reason.slice(20));

    const kept = await page.evaluate(() => {
      const input = document.querySelector('#reject-reason') as HTMLInputElement & { marker?: number };
      return { value: input.value, same: input.marker === 1, focused: document.activeElement === input, scrollY: window.scrollY };
    });
    assert.equal(kept, { value: reason, same: true, focused: true, scrollY }, 'the field, its text, the focus and the scroll are kept');
    await page.click('#reject');
    await page.waitForSelector('#patch-message.ok');
    assert.match(await fs.readFile(path.join(layout.patches.rejected, `${ID}.reason.md`), 'utf8'), reason);
    // A bookmark of the bare page (the address bar after the first visit) works in this browser.
    assert.is(new URL(page.url()).search, '', 'the token is not left in the address bar');
    await page.goto(`http://127.0.0.1:${ui.port}/`);
    await page.waitForSelector('#live.on');

    // Phone width: every navigation button is on screen.
    const phone = await browser.newPage({ viewport: { width: 420, height: 860 } });
    await phone.goto(ui.url);
    await phone.waitForSelector('#live.on');
    const boxes = await phone.locator('nav button').evaluateAll((buttons) =>
      buttons.map((b) => {
        const r = b.getBoundingClientRect();
        return { text: b.textContent?.trim(), left: r.left, right: r.right, top: r.top, bottom: r.bottom };
      }),
    );
    assert.is(boxes.length, 5);
    for (const b of boxes)
      assert.ok(b.left >= 0 && b.right <= 420 && b.top >= 0 && b.bottom <= 860, `${b.text} is within the 420 px viewport: ${JSON.stringify(b)}`);
    assert.is(await phone.evaluate(() => document.documentElement.scrollWidth), 420, 'nothing runs off to the side');
    await phone.screenshot({ path: path.join(SHOTS, 'phone.png') });
    await phone.click('nav button[data-tab="patches"]');
    await phone.click(`#patches-rejected li[data-id="${ID}"]`);
    await phone.waitForSelector('#patch-diff .l');
    assert.is(await phone.evaluate(() => document.documentElement.scrollWidth), 420);
    await phone.screenshot({ path: path.join(SHOTS, 'phone-patch.png'), fullPage: true });
  } finally {
    await teardownDashboard(env);
  }
});

test('the patch view says when the branch moved and whether the patch still applies, without touching the repository', async () => {
  const env: Partial<Env> = {};
  try {
    await setup(env);
    const { ws, ui } = env as Env;
    const view = async () => {
      const res = await fetch(`http://127.0.0.1:${ui.port}/api/patches/${ID}`, { headers: { 'x-meta-agent-token': ui.token } });
      return ((await res.json()) as { base: { moved: boolean; applies: string; detail: string; head: string; base_commit: string } }).base;
    };
    const first = await view();
    assert.is(first.moved, false);
    assert.is(first.applies, 'clean');
    // Elsewhere in the repo: moved, still applies.
    await commit(ws.repo, 'README.md', (t) => `${t}\nmore\n`, 'docs');
    const moved = await view();
    assert.is(moved.moved, true);
    assert.is(moved.applies, 'clean');
    assert.is.not(moved.head, moved.base_commit);
    // The very line the patch changes: it no longer applies (the gate would reject it).
    await commit(ws.repo, 'bot/sizing.py', (t) => t.replace('def position_size(', '# another note\ndef position_size('), 'sizing note');
    const uncheckedIndex = await fs.readFile(path.join(ws.repo, '.git', 'index'));
    const before = await repoFingerprint(ws.repo);
    const conflict = await view();
    assert.is(conflict.moved, true);
    assert.is(conflict.applies, 'conflicts');
    assert.match(conflict.detail, 'bot/sizing.py');
    assert.is(await repoFingerprint(ws.repo), before, "the person's working tree and HEAD are untouched");
    assert.equal(await fs.readFile(path.join(ws.repo, '.git', 'index')), uncheckedIndex, 'and so is their index');
  } finally {
    await teardownDashboard(env);
  }
});

test('failed tasks count once, show a failure badge, and retry needs its action token', async () => {
  const env: Partial<Env> = {};
  try {
    await setup(env, { browser: true });
    const { ws, ui, browser } = env as Env & { browser: Browser };
    const { layout } = ws.settings;
    // A run that fails (its branch does not exist): a report with status error.
    await fs.writeFile(path.join(layout.inbox, 'broken.md'), '---\nproject: bot\nobjective: x\nscope: ["bot/**"]\n---\n');
    const failedRun = await runTask(path.join(layout.inbox, 'broken.md'), {
      settings: { ...ws.settings, projects: { bot: { ...ws.settings.projects.bot!, branch: 'no-such-branch' } } },
    });
    assert.is(failedRun.report.status, 'error');
    const page = await browser.newPage();
    await page.goto(ui.url);
    await page.click('nav button[data-tab="reports"]');
    const risk = page.locator('#reports tr[data-id="broken"] td').nth(2);
    assert.match((await risk.textContent()) ?? '', /^failed: config$/);
    assert.is(await risk.locator('.b-failed').count(), 1);
    assert.is(await risk.locator('.b-low').count(), 0, 'no "risk low" for a failed run');
    assert.match((await page.locator(`#reports tr[data-id="${ID}"] td`).nth(2).textContent()) ?? '', 'low', 'a run that worked keeps its risk badge');
    await fs.writeFile(path.join(layout.failed, 'nope.md'), '---\nproject: bot\nobjective: x\n---\n');
    await fs.writeFile(path.join(layout.failed, 'nope.md.error.md'), '# nope failed\n\n**What went wrong** (config): the repo does not exist\n');
    const files = (await fs.readdir(layout.failed)).filter((n) => !n.startsWith('.')).sort();
    assert.equal(files, ['broken.md', 'broken.md.error.md', 'nope.md', 'nope.md.error.md']);
    const state = await dashboardState(ws.settings);
    assert.is(state.counts.failed, 2, 'x.md and x.md.error.md are one failed task');
    assert.equal(
      state.failed.find((f) => f.name === 'nope.md'),
      { name: 'nope.md', age_s: state.failed.find((f) => f.name === 'nope.md')!.age_s, reason: 'the repo does not exist', retry_id: 'nope' },
    );
    await page.click('nav button[data-tab="queue"]');
    await page.waitForSelector('#q-failed li[data-name="nope.md"]');
    assert.is((await page.textContent('#c-failed'))?.trim(), '(2)');
    assert.is(await page.locator('#q-failed li').count(), 2);
    const base = `http://127.0.0.1:${ui.port}`;
    const headers = { 'x-meta-agent-token': ui.token, 'content-type': 'application/json', origin: base };
    assert.is((await fetch(`${base}/api/failed/nope/retry`, { method: 'POST', headers, body: '{}' })).status, 403);
    const { actions } = (await (await fetch(`${base}/api/failed/nope`, { headers })).json()) as { actions: { retry: string } };
    const retried = await fetch(`${base}/api/failed/nope/retry`, { method: 'POST', headers: { ...headers, 'x-meta-agent-action': actions.retry }, body: '{}' });
    assert.is(retried.status, 200);
    assert.ok(await fs.stat(path.join(layout.inbox, 'nope.md')));
    assert.equal(
      (await fs.readdir(layout.failed)).filter((n) => !n.startsWith('.')).sort(),
      ['broken.md', 'broken.md.error.md'],
      'the retried task and its stale note left failed/',
    );
    // The token was for one retry.
    assert.is(
      (await fetch(`${base}/api/failed/nope/retry`, { method: 'POST', headers: { ...headers, 'x-meta-agent-action': actions.retry }, body: '{}' })).status,
      403,
    );
  } finally {
    await teardownDashboard(env);
  }
});

test('the token is kept in the workspace (0600) and reused; ui.port is used; --port wins; --rotate-token makes a new one', async () => {
  const free = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const env: Partial<Env> = {};
  try {
    await setup(env, { extra: `ui:\n  port: ${free}` });
    const { ws, ui } = env as Env;
    assert.is(ui.port, free, 'ui.port from meta-agent.yaml');
    const stored = (await fs.readFile(uiTokenPath(ws.settings.layout), 'utf8')).trim();
    assert.is(stored, ui.token);
    if (process.platform !== 'win32') assert.is((await fs.stat(uiTokenPath(ws.settings.layout))).mode & 0o777, 0o600);
    await ui.close();
    env.ui = undefined;
    // The CLI: same token, --port wins over ui.port; then --rotate-token.
    const cli = async (args: string[]) => {
      const child = execa(process.execPath, [path.join(REPO_ROOT, 'bin', 'meta-agent.js'), '--root', ws.root, 'ui', ...args], { reject: false, all: true });
      let out = '';
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no URL printed: ${out}`)), 60_000);
        child.all!.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /dashboard: (\S+)/.exec(out);
          if (m) {
            clearTimeout(timer);
            resolve(m[1]!);
          }
        });
      });
      const ok = (await fetch(url)).status;
      child.kill('SIGTERM');
      await child;
      return { url: new URL(url), ok, out };
    };
    const other = free === 65535 ? free - 1 : free + 1;
    const again = await cli(['--port', String(other)]);
    assert.is(again.ok, 200);
    assert.is(Number(again.url.port), other, '--port wins over ui.port');
    assert.is(again.url.searchParams.get('token'), stored, 'the same token after a restart: a bookmark works');
    const rotated = await cli(['--rotate-token']);
    assert.is(Number(rotated.url.port), free);
    assert.is.not(rotated.url.searchParams.get('token'), stored);
    assert.is(rotated.url.searchParams.get('token'), (await fs.readFile(uiTokenPath(ws.settings.layout), 'utf8')).trim());
  } finally {
    await teardownDashboard(env);
  }
});

test.run();
