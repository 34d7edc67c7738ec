/**
 * Issue 12, structured findings: an audit run's `finish` findings reach the JSON report, the
 * Markdown report (a table) and the dashboard (a table built from text nodes), each location
 * checked against the worktree: an out-of-range line, a missing file, a denied file and a
 * path outside the repository are marked; a finding's hostile text renders inert.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runTask } from '../src/run/runTask.ts';
import { ReportSchema } from '../src/contract/report.ts';
import { startUi } from '../src/ui/server.ts';
import { silentLogger } from '../src/log.ts';
import { launchBrowser, teardownDashboard, type DashboardParts } from './helpers/browser.ts';
import { startFakeLlm, toolCall } from './helpers/fakeLlm.ts';
import { makeWorkspace, readJson, REPO_ROOT, writeTask } from './helpers/workspace.ts';

const SHOTS = path.join(REPO_ROOT, 'docs', 'screenshots');
const HOSTILE = '<img src=x onerror="window.__pwned=1"> | injected cell | **bold**';

const FINDINGS = [
  { file: 'bot/main.py', line: 26, severity: 'info', title: HOSTILE, detail: 'a\nsecond line | with a pipe\n<script>window.__pwned=2</script>' },
  { file: 'bot/sizing.py', line: 900, severity: 'medium', title: 'Line past the end of the file' },
  {
    file: 'bot/sizing.py',
    line: 10,
    severity: 'high',
    title: 'A zero stop distance divides by zero',
    detail: 'position_size() divides by the stop distance without checking it.',
  },
  { file: 'bot/risk_engine.py', line: 3, severity: 'low', title: 'A file that does not exist' },
  { file: '.env', line: 1, severity: 'high', title: 'A denied file' },
  { file: '../outside.py', line: 1, severity: 'bogus', title: 'Outside the repository' },
];

test("an audit run's findings: checked locations in the JSON, a table in the Markdown and in the dashboard (text only), out-of-range and missing marked", async () => {
  const env: DashboardParts = {};
  try {
    const llm = await startFakeLlm([
      toolCall('read_file', { path: 'bot/sizing.py' }),
      toolCall('finish', { summary: 'Audited sizing.', findings: FINDINGS, risks: [], risk_level: 'low', next_actions: ['Fix the zero stop distance.'] }),
    ]);
    env.llm = llm;
    const ws = await makeWorkspace({ llmUrl: llm.url });
    env.ws = ws;
    const file = await writeTask(ws.settings.layout.inbox, 'audit.md', '---\nproject: bot\ntype: audit_code\nobjective: Audit the sizing\nscope: []\n---\n');
    const run = await runTask(file, { settings: ws.settings });
    assert.is(run.status, 'ok', run.report.error?.message);
    assert.is(run.outcome, 'no_changes');

    // The model was asked for them: the audit guidance and the finish tool's schema.
    const first = llm.requests[0]!.body;
    assert.match(first.messages[1].content, 'Give each finding to finish as an entry of "findings"');
    const finishTool = first.tools.find((t: { function: { name: string } }) => t.function.name === 'finish');
    assert.equal(finishTool.function.parameters.properties.findings.items.required, ['file', 'line', 'severity', 'title']);

    // JSON: every finding, each location checked.
    const report = ReportSchema.parse(await readJson(run.report_path));
    const byTitle = new Map(report.findings.map((f) => [f.title, f]));
    assert.is(report.findings.length, 6);
    assert.equal([byTitle.get(HOSTILE)!.location_valid, byTitle.get(HOSTILE)!.location_problem], [true, null]);
    assert.equal(byTitle.get('A zero stop distance divides by zero')!.location_valid, true);
    const lines = (await fs.readFile(path.join(ws.repo, 'bot', 'sizing.py'), 'utf8')).trimEnd().split('\n').length;
    assert.equal(byTitle.get('Line past the end of the file')!.location_problem, `line 900 is outside the file (it has ${lines} lines)`);
    assert.is(byTitle.get('A file that does not exist')!.location_problem, 'no such file in the repository');
    assert.is(byTitle.get('A denied file')!.location_problem, 'the file is on the deny list');
    assert.match(byTitle.get('Outside the repository')!.location_problem ?? '', 'leads outside the repository');
    assert.is(byTitle.get('Outside the repository')!.severity, 'info', 'an unknown severity becomes info');
    assert.is(report.findings.filter((f) => !f.location_valid).length, 4);

    // Markdown: a table, most severe first, one line a row, the agent's pipes and newlines escaped.
    const md = await fs.readFile(run.report_md_path, 'utf8');
    const table = md.slice(md.indexOf('## Findings (6)')).split('\n\n')[1]!.split('\n');
    assert.is(table[0], '| Severity | Location | Finding |');
    assert.is(table.length, 8, 'header, rule and six rows');
    for (const row of table) assert.is(row.split(/(?<!\\)\|/).length, 5, `three cells in ${row}`);
    assert.match(table[2]!, /^\| high \| bot\/sizing\.py:10 \| \*\*A zero stop distance divides by zero\*\*/);
    assert.match(md, `| medium | bot/sizing.py:900 (not found: line 900 is outside the file (it has ${lines} lines)) |`);
    assert.match(md, '| low | bot/risk\\_engine.py:3 (not found: no such file in the repository) |');
    assert.match(md, '\\<img src=x onerror="window.\\_\\_pwned=1"\\> \\| injected cell \\| \\*\\*bold\\*\\*');

    // Dashboard: a real browser.
    const ui = await startUi({ settings: ws.settings, log: silentLogger() });
    env.ui = ui;
    env.browser = await launchBrowser();
    const page = await env.browser.newPage({ viewport: { width: 1200, height: 900 } });
    await page.goto(ui.url);
    await page.click('nav button[data-tab="reports"]');
    await page.click('#reports tr[data-id="audit"]');
    await page.waitForSelector('#report-findings table.findings');
    const rows = page.locator('#report-findings table.findings tbody tr');
    assert.is(await rows.count(), 6);
    assert.is(await rows.first().getAttribute('data-severity'), 'high', 'most severe first');
    assert.is(await page.locator('#report-findings tr.invalid').count(), 4);
    assert.is(
      await page.locator('#report-findings tr.invalid', { hasText: 'bot/sizing.py:900' }).locator('.location-problem').textContent(),
      `not found: line 900 is outside the file (it has ${lines} lines)`,
    );
    assert.is(
      await page.locator('#report-findings tr.invalid', { hasText: 'bot/risk_engine.py:3' }).locator('.location-problem').textContent(),
      'not found: no such file in the repository',
    );
    // The hostile title is text: no element was made from it, nothing ran.
    assert.is(await page.locator('#report-findings strong', { hasText: 'injected cell' }).textContent(), HOSTILE);
    assert.is(await page.locator('#report-view img, #report-view script').count(), 0);
    assert.is(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined);
    await fs.mkdir(SHOTS, { recursive: true });
    // One table: the structured one stands where the Markdown's was (after the summary).
    assert.is(await page.locator('#report-view table.findings').count(), 1);
    assert.is(await page.locator('#report-view .md h2', { hasText: /^Findings/ }).count(), 0);
    assert.ok(await page.locator('#report-view .md #report-findings').count(), 'in the report, after its summary');
    await page.screenshot({ path: path.join(SHOTS, 'findings.png'), fullPage: true });
  } finally {
    await teardownDashboard(env);
  }
});

test.run();
