/**
 * Issue 10: text from the agent, the repository, the tests and task files is hostile in the
 * dashboard. A scripted agent finishes with a summary and a finding full of payloads and
 * writes files whose names are payloads; the project's test prints payloads; a failed task,
 * its error note, a rejected patch's reason and a cycle report carry more. In a real browser
 * all of it renders inert, a click on each does nothing (no flag set, the patch still
 * pending), no element with a handler, script, image or javascript: link reaches the page,
 * and the CSP has no 'unsafe-inline'. A normal https link stays a link (positive control).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Browser, Page } from 'playwright-core';
import { startUi, type UiServer } from '../src/ui/server.ts';
import { runTask } from '../src/run/runTask.ts';
import { silentLogger } from '../src/log.ts';
import { launchBrowser, teardownDashboard } from './helpers/browser.ts';
import { finish, startFakeLlm, toolCall, type FakeLlm } from './helpers/fakeLlm.ts';
import { makeWorkspace, REPO_ROOT, type TestWorkspace } from './helpers/workspace.ts';

const SHOTS = path.join(REPO_ROOT, 'docs', 'screenshots');

const ID = 'hostile';
// Each payload would set window.__pwned (or approve the patch with the session token alone).
const APPROVE = `fetch('/api/patches/${ID}/approve',{method:'POST',headers:{'x-meta-agent-token':localStorage.getItem('meta-agent-token'),'content-type':'application/json'},body:'{}'})`;
const PAYLOADS = [
  `[open notes](javascript:window.__pwned='md-link';${APPROVE})`,
  `<a href="javascript:window.__pwned='a-tag'">raw link</a>`,
  `<img src=x onerror="window.__pwned='img'">`,
  `<script>window.__pwned='script'</script>`,
  `<svg onload="window.__pwned='svg'"><circle r="40"></circle></svg>`,
  `[data link](data:text/html,<script>window.__pwned='data'</script>)`,
  `<iframe src="javascript:window.__pwned='iframe'"></iframe>`,
].join('\n\n');
const SAFE_LINK = 'https://example.com/docs';
const SUMMARY = `Tidied the sizing notes.\n\n${PAYLOADS}\n\nSee [the docs](${SAFE_LINK}).`;
const FINDING = `order sizing <img src=x onerror="window.__pwned='finding'"> [details](javascript:window.__pwned='finding-link')`;
// File names are hostile too (no "/" possible in a name; git does not quote these).
const FILES = [`x<img src=x onerror=window.__pwned=7>.txt`, `y<svg onload=window.__pwned=8>.txt`];
const TEST_OUTPUT = `<script>window.__pwned=9</script><img src=x onerror=window.__pwned=10> [t](javascript:window.__pwned=11)`;

interface Env {
  ws: TestWorkspace;
  llm: FakeLlm;
  ui: UiServer;
  browser: Browser;
}

async function setup(env: Partial<Env>): Promise<Env> {
  env.llm = await startFakeLlm((req) => {
    const done = (req.body.messages as Array<{ role: string }>).filter((m) => m.role === 'tool').length;
    if (done < FILES.length) return toolCall('write_file', { path: FILES[done], content: `${PAYLOADS}\n` });
    return finish(SUMMARY, 'low', { risks: [FINDING], next_actions: [`<img src=x onerror="window.__pwned='next'">`] });
  });
  // The project's test prints payloads: the report's test output tail carries them.
  const printer = `python3 -c "print('${TEST_OUTPUT}')"`;
  env.ws = await makeWorkspace({ llmUrl: env.llm.url, project: `    scope: ["**"]\n    test: ${JSON.stringify(printer)}` });
  const { layout } = env.ws.settings;
  await fs.writeFile(
    path.join(layout.inbox, `${ID}.md`),
    `---\nproject: bot\nobjective: "Tidy up <img src=x onerror=window.__pwned='objective'>"\nscope: ["**"]\n---\n`,
  );
  const run = await runTask(path.join(layout.inbox, `${ID}.md`), { settings: env.ws.settings });
  assert.is(run.outcome, 'completed');
  const report = JSON.parse(await fs.readFile(path.join(layout.reports, `${ID}.json`), 'utf8')) as { tests: { passed: boolean; output_tail: string } };
  assert.ok(report.tests.passed && report.tests.output_tail.includes(TEST_OUTPUT), 'the test output carries the payload');
  // A failed task whose name and error note are payloads, and one with a valid name (it can be opened).
  const failedName = `<img src=x onerror=window.__pwned=12>.md`;
  await fs.writeFile(path.join(layout.failed, failedName), 'objective: x\n');
  await fs.writeFile(
    path.join(layout.failed, `${failedName}.error.md`),
    `# failed\n\n**What went wrong** (input): <script>window.__pwned='reason'</script> [fix](javascript:window.__pwned='reason-link')\n`,
  );
  await fs.writeFile(path.join(layout.failed, 'broken.md'), 'objective: x\n');
  await fs.writeFile(path.join(layout.failed, 'broken.md.error.md'), `# broken failed\n\n**What went wrong** (input): see below\n\n${PAYLOADS}\n`);
  // A rejected patch whose reason is a payload.
  await fs.writeFile(path.join(layout.patches.rejected, 'old.patch'), 'diff --git a/<svg onload=window.__pwned=13>.py b/<svg onload=window.__pwned=13>.py\n');
  await fs.writeFile(path.join(layout.patches.rejected, 'old.reason.md'), `# Rejected\n\n<img src=x onerror="window.__pwned='rejected'">\n`);
  // A supervisor cycle whose summary and report are payloads.
  const cycles = path.join(layout.reports, 'cycles');
  await fs.mkdir(cycles, { recursive: true });
  const usage = { requests: 0, prompt_tokens: 0, cached_tokens: 0, completion_tokens: 0, cost_usd: null };
  const cycle = {
    cycle_id: 'c1',
    goal: `<svg onload="window.__pwned='goal'">`,
    mode: 'daily',
    project: 'bot',
    status: 'ok',
    summary: `<img src=x onerror="window.__pwned='cycle'">`,
    started_at: '2026-01-01T00:00:00.000Z',
    finished_at: '2026-01-01T00:01:00.000Z',
    planner: { source: 'routine', model: null, attempts: 0, usage },
    context: { commits: 0, log_lines: 0, pending_patches: 1, rejected_reasons: 0, open_next_actions: 0, pnl: null },
    tasks: [],
    candidates: [],
    next_actions: [],
    budget: { tokens: 1, usd: null, spent_tokens: 0, spent_usd: null, exhausted: false },
    stopped: null,
    error: null,
  };
  await fs.writeFile(path.join(cycles, 'c1.json'), JSON.stringify(cycle));
  await fs.writeFile(path.join(cycles, 'c1.md'), `# Cycle\n\n${PAYLOADS}\n`);
  env.ui = await startUi({ settings: env.ws.settings, log: silentLogger() });
  env.browser = await launchBrowser();
  return env as Env;
}

/** Nothing a payload could have put into the page is there. */
async function assertInert(page: Page, where: string): Promise<void> {
  const found = await page.evaluate(() => {
    const bad: string[] = [];
    for (const el of Array.from(document.querySelectorAll('*'))) {
      for (const a of Array.from(el.attributes)) if (/^on/i.test(a.name)) bad.push(`${el.tagName} ${a.name}`);
      // (Form fields are the dashboard's own; the browser itself may style them.)
      if (el.hasAttribute('style') && !el.matches('input, textarea, select')) bad.push(`${el.tagName} style`);
    }
    for (const s of Array.from(document.querySelectorAll('script'))) if (s.getAttribute('src') !== '/app.js') bad.push('script');
    for (const tag of ['img', 'iframe', 'object', 'embed', 'form:not(#new-task)', 'circle'])
      for (const el of Array.from(document.querySelectorAll(tag))) bad.push(el.tagName);
    for (const svg of Array.from(document.querySelectorAll('svg'))) if (svg.id !== 'equity-chart') bad.push('svg');
    for (const a of Array.from(document.querySelectorAll('a[href]')))
      if (!/^(https?:|mailto:)/i.test((a as HTMLAnchorElement).href)) bad.push(`a ${a.getAttribute('href')}`);
    return bad;
  });
  assert.equal(found, [], `${where}: injected markup in the page`);
}

/** Clicks every element whose own text shows a payload (the escaped or neutered remains). */
async function clickPayloads(page: Page, scope: string): Promise<number> {
  const marks = ['onerror', 'onload', 'javascript', '<script', 'open notes', 'raw link', 'data link', 'details', 'fix'];
  const targets = page.locator(`${scope} *`).filter({ hasText: new RegExp(marks.map((m) => m.replace(/[.*+?^${}()|[\]\\<]/g, '\\$&')).join('|')) });
  const n = await targets.count();
  let clicked = 0;
  for (let i = 0; i < n; i++) {
    const el = targets.nth(i);
    if (!(await el.isVisible())) continue;
    await el.click({ timeout: 2000, force: true }).catch(() => undefined);
    clicked++;
  }
  return clicked;
}

test('hostile report, finding, file names, test output, task names and reasons render inert; clicks do nothing', async () => {
  const env: Partial<Env> = {};
  try {
    await setup(env);
    const { ws, ui, browser } = env as Env;
    const { layout } = ws.settings;
    // The CSP: no inline script or style, no base/form/frame tricks.
    const res = await fetch(ui.url);
    const csp = res.headers.get('content-security-policy') ?? '';
    assert.not.match(csp, 'unsafe-inline');
    assert.not.match(csp, 'unsafe-eval');
    for (const d of ["script-src 'self'", "style-src 'self'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'", "object-src 'none'"])
      assert.match(csp, d);
    assert.not.match(await res.text(), /<script>|<style|\son\w+=|style=/i, 'the page itself has no inline script, style or handler');

    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const violations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/.test(m.text())) violations.push(m.text());
    });
    await page.goto(ui.url);
    await page.waitForSelector('#live.on');

    // The report: summary, finding, test output tail, file names, next actions.
    await page.click('nav button[data-tab="reports"]');
    await page.click(`#reports tr[data-id="${ID}"]`);
    await page.waitForSelector('#report-view .md');
    const md = (await page.textContent('#report-view .md')) ?? '';
    for (const shown of [`${TEST_OUTPUT}\n`, `onerror="window.__pwned='finding'"`, 'x<img src=x onerror=window.__pwned=7>.txt', 'open notes'])
      assert.match(md, shown, 'the payloads are shown as text');
    // Positive control: the ordinary https link is still a working link.
    assert.is(await page.getAttribute(`#report-view .md a[href="${SAFE_LINK}"]`, 'href'), SAFE_LINK);
    assert.is(await page.locator('#report-view .md a').count(), 1, 'the only link left is the https one');
    await assertInert(page, 'report');
    await page.screenshot({ path: path.join(SHOTS, 'report-untrusted.png') });
    assert.ok((await clickPayloads(page, '#report-view .md')) >= 5);

    // The patch view: summary, file names in the diff.
    await page.click('#open-patch');
    await page.waitForSelector('#patch-view .diff .file');
    const files = await page.locator('#patch-view .diff .file').allTextContents();
    for (const f of FILES) assert.ok(files.includes(f), `the file name ${f} is shown as text`);
    await assertInert(page, 'patch');
    assert.ok((await clickPayloads(page, '#patch-view')) >= 2);

    // Queue: a failed task named like a payload, a failed task's note rendered.
    await page.click('nav button[data-tab="queue"]');
    await page.waitForSelector('#q-failed li');
    assert.match((await page.textContent('#q-failed')) ?? '', '<img src=x onerror=window.__pwned=12>.md');
    await page.click('#q-failed [data-act="failed"][data-arg="broken"]');
    await page.waitForSelector('#failed-view .md');
    await assertInert(page, 'queue');
    await clickPayloads(page, '#tab-queue');

    // Rejected patch reason and the cycle report.
    await page.click('nav button[data-tab="patches"]');
    await page.click('#patches-rejected li[data-id="old"]');
    await page.waitForSelector('#patch-view pre.md');
    await assertInert(page, 'rejected patch');
    await clickPayloads(page, '#patch-view');
    await page.click('nav button[data-tab="cycles"]');
    await page.click('#cycles li[data-id="c1"]');
    await page.waitForSelector('#cycle-view .md');
    await assertInert(page, 'cycle');
    await clickPayloads(page, '#tab-cycles');

    await page.waitForTimeout(500); // anything a click started has had its turn
    assert.is(await page.evaluate(() => (window as unknown as { __pwned?: unknown }).__pwned), undefined, 'no payload ran');
    assert.is(page.url().startsWith(`http://127.0.0.1:${ui.port}/`), true, 'no click navigated the dashboard away');
    assert.equal(violations, [], 'no payload even reached the CSP');
    assert.ok(await fs.stat(path.join(layout.patches.pending, `${ID}.patch`)), 'the patch is still pending');
    assert.equal(
      (await fs.readdir(layout.patches.approved)).filter((n) => !n.startsWith('.')),
      [],
    );

    // Positive control for the last point: the dashboard's own Approve button does approve.
    await page.click('nav button[data-tab="patches"]');
    await page.click(`#patches-pending li[data-id="${ID}"]`);
    await page.click('#approve');
    await page.waitForSelector('#patch-message.ok');
    assert.ok(await fs.stat(path.join(layout.patches.approved, `${ID}.patch`)));
  } finally {
    await teardownDashboard(env);
  }
});

test('a script holding only the session token cannot approve, reject or retry; fetch-then-POST would, so no injected script may run', async () => {
  const env: Partial<Env> = {};
  try {
    await setup(env);
    const { ws, ui, browser } = env as Env;
    const { layout } = ws.settings;
    const page = await browser.newPage();
    const violations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/.test(m.text())) violations.push(m.text());
    });
    await page.goto(ui.url);
    await page.waitForSelector('#live.on');
    // What an injected script could do with everything the page's storage holds.
    // (A string, not a function: tsx would add helpers the page does not have.)
    const statuses = await page.evaluate(`(async () => {
      const token = localStorage.getItem('meta-agent-token') || sessionStorage.getItem('meta-agent-token') || '';
      const post = (p, body) => fetch(p, { method: 'POST', headers: { 'x-meta-agent-token': token, 'content-type': 'application/json' }, body }).then((r) => r.status);
      return [await post('/api/patches/${ID}/approve', '{}'), await post('/api/patches/${ID}/reject', '{"reason":"x"}'), await post('/api/failed/broken/retry', '{}'), await post('/api/tasks', '{"project":"bot","objective":"x"}')];
    })()`);
    assert.equal(statuses, [403, 403, 403, 403]);
    // Synthetic clicks on the dashboard's own buttons do not act either (no user gesture).
    await page.click('nav button[data-tab="patches"]');
    await page.click(`#patches-pending li[data-id="${ID}"]`);
    await page.waitForSelector('#approve');
    await page.evaluate(() => (document.querySelector('#approve') as HTMLButtonElement).click());
    await page.evaluate(() => (document.querySelector('[data-act="retry"][data-arg="broken"]') as HTMLButtonElement).click());
    await page.waitForTimeout(500);
    assert.ok(await fs.stat(path.join(layout.patches.pending, `${ID}.patch`)));
    assert.ok(await fs.stat(path.join(layout.failed, 'broken.md')));
    // A person's click on Retry works (positive control).
    await page.click('nav button[data-tab="queue"]');
    await page.click('[data-act="retry"][data-arg="broken"]');
    await page.waitForSelector('#queue-message.ok');
    assert.ok(await fs.stat(path.join(layout.inbox, 'broken.md')));
    assert.is(await fs.stat(path.join(layout.failed, 'broken.md.error.md')).catch(() => null), null);

    // Honestly: a script that does run in the page can fetch an action token, then POST with it
    // (GET /api/patches/<id> hands one to any holder of the session token). Action tokens bind an
    // approval to the diff that was shown and stop requests carrying only the session token (CSRF,
    // the POSTs above); what stops injected script is the CSP and the sanitizer: none runs at all.
    await page.click('nav button[data-tab="reports"]');
    await page.click(`#reports tr[data-id="${ID}"]`);
    await page.waitForSelector('#report-view .md');
    await clickPayloads(page, '#report-view .md');
    await page.waitForTimeout(500);
    assert.is(await page.evaluate(() => (window as unknown as { __pwned?: unknown }).__pwned), undefined, 'no injected script ran');
    assert.equal(violations, [], 'no injected script even reached the CSP');
    assert.ok(await fs.stat(path.join(layout.patches.pending, `${ID}.patch`)), 'the patch is still pending');
    const twoStep = await page.evaluate(`(async () => {
      const headers = { 'x-meta-agent-token': localStorage.getItem('meta-agent-token') || sessionStorage.getItem('meta-agent-token') || '', 'content-type': 'application/json' };
      const { actions } = await (await fetch('/api/patches/${ID}', { headers })).json();
      return (await fetch('/api/patches/${ID}/approve', { method: 'POST', headers: { ...headers, 'x-meta-agent-action': actions.approve }, body: '{}' })).status;
    })()`);
    assert.is(twoStep, 200, 'fetch-then-POST works for script that runs: the barrier is that none does');
    assert.ok(await fs.stat(path.join(layout.patches.approved, `${ID}.patch`)));
  } finally {
    await teardownDashboard(env);
  }
});

test.run();
