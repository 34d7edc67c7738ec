/**
 * The dashboard in a real browser (playwright-core driving a headless Chromium): create a
 * task with the form, watch it go through (scripted LLM), open its report, approve its
 * patch, see the commit. Screenshots of the main views go to docs/screenshots/.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import type { Browser } from 'playwright-core';
import { startUi, type UiServer } from '../src/ui/server.ts';
import { startWatching, type Watcher } from '../src/service/watch.ts';
import { silentLogger } from '../src/log.ts';
import { launchBrowser, teardownDashboard } from './helpers/browser.ts';
import { finish, startFakeLlm, toolCall, type FakeLlm } from './helpers/fakeLlm.ts';
import { makeWorkspace, readJson, REPO_ROOT, repoFingerprint, type TestWorkspace } from './helpers/workspace.ts';

const SHOTS = path.join(REPO_ROOT, 'docs', 'screenshots');

interface Env {
  ws: TestWorkspace;
  llm: FakeLlm;
  watcher: Watcher;
  ui: UiServer;
  browser: Browser;
}

/** Each task's agent edits bot/sizing.py with a marker taken from its objective, then finishes. */
function script(): Parameters<typeof startFakeLlm>[0] {
  return (req) => {
    const messages = req.body.messages as Array<{ role: string; content: string | null }>;
    const marker = /MARK-(\w+)/.exec(String(messages[1]?.content ?? ''))?.[1] ?? 'X';
    const toolResults = messages.filter((m) => m.role === 'tool').length;
    if (toolResults === 0) return toolCall('edit_file', { path: 'bot/sizing.py', old: 'def position_size(', new: `# checked ${marker}\ndef position_size(` });
    return finish(`Documented sizing (${marker}).`, 'low');
  };
}

/** Fills `env` as it goes, so a setup that fails half-way is still torn down (else `npm test` never exits). */
async function setup(env: Partial<Env>): Promise<Env> {
  env.llm = await startFakeLlm(script());
  env.ws = await makeWorkspace({ llmUrl: env.llm.url });
  env.watcher = startWatching({ settings: env.ws.settings, log: silentLogger(), scanMs: 300 });
  await env.watcher.ready;
  env.ui = await startUi({ settings: env.ws.settings, log: silentLogger() });
  env.browser = await launchBrowser();
  return env as Env;
}

async function createViaForm(page: import('playwright-core').Page, name: string, marker: string): Promise<void> {
  await page.click('nav button[data-tab="new"]');
  await page.selectOption('#f-project', 'bot');
  await page.selectOption('#f-type', 'audit_code');
  await page.fill('#f-objective', `Audit sizing MARK-${marker}`);
  await page.fill('#f-scope', 'bot/**');
  await page.fill('#f-name', name);
  await page.click('#new-task button[type=submit]');
  await page.waitForSelector('#form-message.ok');
}

test('create a task with the form, watch it run, open the report, approve the patch, see the commit', async () => {
  const env: Partial<Env> = {};
  try {
    await setup(env);
    const { ws, ui, browser } = env as Env;
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(ui.url);
    await page.waitForSelector('#live.on');
    // Validation messages are the CLI's.
    await page.click('nav button[data-tab="new"]');
    await page.click('#new-task button[type=submit]');
    await page.waitForSelector('#form-message.error');
    assert.match((await page.textContent('#form-message')) ?? '', 'field "objective": must not be empty');
    await createViaForm(page, 'ui-first', 'ONE');
    await page.screenshot({ path: path.join(SHOTS, 'new-task.png') });
    // Live: the queue shows it done without a reload.
    await page.click('nav button[data-tab="queue"]');
    await page.waitForSelector('#q-done li[data-name="ui-first.md"]', { timeout: 90_000 });
    await page.screenshot({ path: path.join(SHOTS, 'queue.png') });
    // The report, with badges.
    await page.click('nav button[data-tab="reports"]');
    await page.click('#reports tr[data-id="ui-first"]');
    await page.waitForSelector('#report-badges');
    const badges = (await page.textContent('#report-badges')) ?? '';
    assert.match(badges, 'ok');
    assert.match(badges, 'tests: passed');
    assert.match((await page.textContent('#report-view .md')) ?? '', 'Documented sizing (ONE).');
    await page.screenshot({ path: path.join(SHOTS, 'report.png') });
    // The patch: a readable diff, then Approve.
    await page.click('#open-patch');
    await page.waitForSelector('#patch-view .diff .add');
    assert.match((await page.textContent('#patch-view .diff')) ?? '', 'checked ONE');
    await page.screenshot({ path: path.join(SHOTS, 'patch.png') });
    const before = (await execa('git', ['rev-list', '--count', 'HEAD'], { cwd: ws.repo })).stdout;
    await page.click('#approve');
    await page.waitForSelector('#patch-message.ok');
    // The gate (run by the watcher) tests and commits it.
    const deadline = Date.now() + 60_000;
    let log = '';
    while (Date.now() < deadline) {
      log = (await execa('git', ['log', '-1', '--format=%B'], { cwd: ws.repo })).stdout;
      if (log.includes('Meta-Agent-Task: ui-first')) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.match(log, 'Meta-Agent-Task: ui-first');
    assert.is(Number((await execa('git', ['rev-list', '--count', 'HEAD'], { cwd: ws.repo })).stdout), Number(before) + 1);
    // Filed as applied once the gate has also updated the checkout (it moves the branch first).
    await page.waitForSelector('#patches-applied li[data-id="ui-first"]', { timeout: 15_000 });
    assert.match(await fs.readFile(path.join(ws.repo, 'bot', 'sizing.py'), 'utf8'), '# checked ONE');
    assert.is((await readJson(path.join(ws.settings.layout.reports, 'ui-first.json'))).source, 'gui');
    // A second tab (or a reload) cannot approve it again.
    const again = await fetch(`http://127.0.0.1:${ui.port}/api/patches/ui-first/approve`, {
      method: 'POST',
      headers: { 'x-meta-agent-token': ui.token, 'content-type': 'application/json' },
      body: '{}',
    });
    assert.is(again.status, 409);
    await page.click('nav button[data-tab="patches"]');
    await page.screenshot({ path: path.join(SHOTS, 'patches.png') });
  } finally {
    await teardownDashboard(env);
  }
});

test('reject with a reason: patches/rejected/ and the report', async () => {
  const env: Partial<Env> = {};
  try {
    await setup(env);
    const { ws, ui, browser } = env as Env;
    const page = await browser.newPage();
    await page.goto(ui.url);
    await createViaForm(page, 'ui-second', 'TWO');
    await page.click('nav button[data-tab="patches"]');
    await page.waitForSelector('#patches-pending li[data-id="ui-second"]', { timeout: 90_000 });
    await page.click('#patches-pending li[data-id="ui-second"]');
    await page.waitForSelector('#reject');
    await page.fill('#reject-reason', 'too risky before the weekend');
    await page.click('#reject');
    await page.waitForSelector('#patch-message.ok');
    const reason = await fs.readFile(path.join(ws.settings.layout.patches.rejected, 'ui-second.reason.md'), 'utf8');
    assert.match(reason, 'too risky before the weekend');
    assert.ok(await fs.stat(path.join(ws.settings.layout.patches.rejected, 'ui-second.patch')));
    const report = await readJson(path.join(ws.settings.layout.reports, 'ui-second.json'));
    assert.is(report.approval.decision, 'rejected');
    assert.is(report.approval.by, 'human');
    assert.match(report.approval.reason, 'too risky before the weekend');
    await page.waitForSelector('#patches-rejected li[data-id="ui-second"]', { timeout: 10_000 });
  } finally {
    await teardownDashboard(env);
  }
});

test('without the token, or from another origin, nothing changes', async () => {
  const llm = await startFakeLlm(script());
  const ws = await makeWorkspace({ llmUrl: llm.url });
  const ui = await startUi({ settings: ws.settings, log: silentLogger() });
  try {
    // A pending patch to aim at.
    const { runTask } = await import('../src/run/runTask.ts');
    await fs.writeFile(path.join(ws.settings.layout.inbox, 'target.md'), '---\nproject: bot\nobjective: MARK-T\nscope: ["bot/**"]\n---\n');
    const run = await runTask(path.join(ws.settings.layout.inbox, 'target.md'), { settings: ws.settings });
    assert.is(run.outcome, 'completed');
    const snapshot = async () =>
      JSON.stringify({
        pending: await fs.readdir(ws.settings.layout.patches.pending),
        approved: await fs.readdir(ws.settings.layout.patches.approved),
        rejected: await fs.readdir(ws.settings.layout.patches.rejected),
        inbox: await fs.readdir(ws.settings.layout.inbox),
        repo: await repoFingerprint(ws.repo),
      });
    const before = await snapshot();
    const base = `http://127.0.0.1:${ui.port}`;
    const post = (p: string, headers: Record<string, string>, body = '{}') =>
      fetch(base + p, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
    assert.is((await post('/api/patches/target/approve', {})).status, 401);
    assert.is((await post('/api/patches/target/approve', { 'x-meta-agent-token': 'wrong' })).status, 401);
    assert.is((await post('/api/patches/target/approve', { 'x-meta-agent-token': ui.token, origin: 'http://evil.example' })).status, 403);
    assert.is((await post('/api/patches/target/reject', { 'x-meta-agent-token': ui.token, origin: 'http://evil.example' }, '{"reason":"x"}')).status, 403);
    assert.is((await post('/api/tasks', { origin: base }, '{"project":"bot","objective":"x"}')).status, 401);
    assert.is((await post('/api/tasks', { 'x-meta-agent-token': ui.token, origin: 'https://attacker.test' }, '{"project":"bot","objective":"x"}')).status, 403);
    // A form post from another site (no JSON content type) is refused too.
    assert.is(
      (await fetch(`${base}/api/patches/target/approve?token=${ui.token}`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' })).status,
      415,
    );
    // Ids are validated; no path from the browser is trusted.
    assert.is((await post('/api/patches/..%2F..%2Fetc/approve', { 'x-meta-agent-token': ui.token })).status, 400);
    assert.is((await fetch(`${base}/api/state`)).status, 401);
    // The session token and the right origin are not enough: a state change needs the action token
    // the patch view issued, for this action on this patch, once.
    assert.is((await post('/api/patches/target/approve', { 'x-meta-agent-token': ui.token, origin: base })).status, 403);
    const view = (await (await fetch(`${base}/api/patches/target`, { headers: { 'x-meta-agent-token': ui.token } })).json()) as {
      actions: { approve: string; reject: string };
    };
    assert.is(
      (await post('/api/patches/target/approve', { 'x-meta-agent-token': ui.token, origin: base, 'x-meta-agent-action': view.actions.reject })).status,
      403,
    );
    assert.is(
      (await post('/api/patches/target/approve', { 'x-meta-agent-token': ui.token, origin: base, 'x-meta-agent-action': `${view.actions.approve}x` })).status,
      403,
    );
    assert.is(
      (
        await post(
          '/api/tasks',
          { 'x-meta-agent-token': ui.token, origin: base, 'x-meta-agent-action': view.actions.approve },
          '{"project":"bot","objective":"x"}',
        )
      ).status,
      403,
    );
    assert.is(await snapshot(), before);
    // With the token, the right origin and the action token it works (the checks are not simply refusing all).
    assert.is(
      (await post('/api/patches/target/approve', { 'x-meta-agent-token': ui.token, origin: base, 'x-meta-agent-action': view.actions.approve })).status,
      200,
    );
    assert.ok(await fs.stat(path.join(ws.settings.layout.patches.approved, 'target.patch')));
  } finally {
    await ui.close();
    await llm.close();
    await ws.cleanup();
  }
});

test.run();
