/**
 * Issue 12, verification built into `finish`: a model that breaks a test that passed on the
 * base commit is told at `finish` (the failing test named) and given its turn back; if it
 * finishes anyway the run is `completed` with `regressions`, risk high, and the report, the
 * patch sidecar and the CLI line say so first. A model that fixes its breakage gets a plain
 * `ok`, and a test that already failed on the base commit is never counted.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { runTask } from '../src/run/runTask.ts';
import { ReportSchema } from '../src/contract/report.ts';
import { PatchSidecarSchema } from '../src/contract/patch.ts';
import { failedTests, regressionsOf } from '../src/engines/verify.ts';
import { startUi } from '../src/ui/server.ts';
import { silentLogger } from '../src/log.ts';
import { launchBrowser } from './helpers/browser.ts';
import { finish, startFakeLlm, toolCall, type RecordedRequest } from './helpers/fakeLlm.ts';
import { makeWorkspace, readJson, REPO_ROOT, writeTask, type TestWorkspace } from './helpers/workspace.ts';

const BIN = path.join(REPO_ROOT, 'bin', 'meta-agent.js');
const BROKEN_BEFORE = 'tests/test_known_broken.py::test_known_broken';
const BROKEN_BY_AGENT = 'tests/test_backtest.py::test_cli_requires_dry_run';

const TASK = `---
project: bot
type: custom
objective: Tidy the exit code of the CLI
scope: ["bot/**", "tests/**"]
---
`;

/** The example bot with one test that already fails on the base commit. */
async function workspace(llmUrl: string): Promise<TestWorkspace> {
  const ws = await makeWorkspace({ llmUrl });
  await fs.writeFile(path.join(ws.repo, 'tests', 'test_known_broken.py'), 'def test_known_broken():\n    assert 1 == 2, "broken before any agent came"\n');
  await execa('git', ['add', '--all'], { cwd: ws.repo });
  await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-m', 'a known failure'], { cwd: ws.repo });
  return ws;
}

/** The content of the tool message answering the call made in request `i`. */
function toolAnswer(requests: RecordedRequest[], i: number): string {
  const messages = requests[i + 1]!.body.messages as Array<{ role: string; content: string }>;
  return String(messages.at(-1)!.content);
}

// The agent turns `return 2` (live trading refused) into `return 3`, which a test that passes on the base checks.
const BREAK = toolCall('edit_file', { path: 'bot/main.py', old: '        return 2\n', new: '        return 3  # refused\n' });

test('a model that breaks a passing test is refused at finish twice (the test named), then finishes: completed with regressions, risk high, said first in report, sidecar and CLI line', async () => {
  const llm = await startFakeLlm([
    BREAK,
    finish('Tidied the exit code.', 'low'),
    finish('Tidied the exit code.', 'low'),
    finish('Tidied the exit code; a test fails.', 'low'),
  ]);
  const ws = await workspace(llm.url);
  try {
    await writeTask(ws.settings.layout.inbox, 'exit-code.md', TASK);
    // The real CLI, as a person runs it: its summary line is part of what is checked.
    const cli = await execa(process.execPath, [BIN, 'run', '--task-id', 'exit-code', '--root', ws.root], {
      reject: false,
      env: { OPENAI_API_KEY: '' },
      extendEnv: true,
      timeout: 180_000,
    });
    assert.is(llm.requests.length, 4, cli.all ?? cli.stderr);

    // finish #1: refused, the broken test named, the old failure not counted as a regression.
    const first = toolAnswer(llm.requests, 1);
    assert.match(first, 'finish refused (1 of 2)');
    assert.match(first, `- tests: ${BROKEN_BY_AGENT}`);
    assert.not.match(first, `- tests: ${BROKEN_BEFORE}`);
    // finish #2: refused once more (nothing changed, so the checks did not run again); #3 accepted.
    const second = toolAnswer(llm.requests, 2);
    assert.match(second, 'finish refused (2 of 2)');
    assert.match(second, 'it will be accepted');

    const reportPath = path.join(ws.settings.layout.reports, 'exit-code.json');
    const report = ReportSchema.parse(await readJson(reportPath));
    assert.is(report.status, 'ok');
    assert.is(report.outcome, 'completed');
    assert.equal(report.regressions, [{ check: 'tests', test: BROKEN_BY_AGENT }]);
    assert.is(report.risk_level, 'high', 'the agent said low; a regression raises it');
    assert.match(report.risk_reasons.join('\n'), `regressions: ${BROKEN_BY_AGENT}`);
    assert.match(report.risks[0]!, /^REGRESSIONS: /);
    assert.is(report.tests?.passed, false);
    assert.is(report.tests?.baseline_passed, false, 'the base commit failed too (the known failure)');
    // The JSON says so before anything else but the ids and the outcome.
    const keys = Object.keys(await readJson(reportPath));
    assert.ok(keys.indexOf('regressions') < keys.indexOf('summary'), `regressions early in the JSON: ${keys.join(',')}`);

    const md = await fs.readFile(path.join(ws.settings.layout.reports, 'exit-code_report.md'), 'utf8');
    const head = md.split('\n').slice(0, 4).join('\n');
    assert.match(head, '# exit-code: OK (completed, 1 REGRESSION)');
    assert.match(head, '**Regressions: this change breaks a check that passed on the base commit**');
    assert.match(head, `tests: \`${BROKEN_BY_AGENT}\``);

    const sidecar = PatchSidecarSchema.parse(await readJson(path.join(ws.root, report.patch_files[1]!)));
    assert.equal(sidecar.regressions, [{ check: 'tests', test: BROKEN_BY_AGENT }]);
    assert.is(sidecar.risk_level, 'high');

    assert.is(cli.exitCode, 0, "the task ran; the regression is the reviewer's to weigh");
    const firstLine = cli.stdout.split('\n').find((l) => l.startsWith('exit-code: '));
    assert.is(firstLine, `exit-code: OK (completed) WITH 1 REGRESSION: ${BROKEN_BY_AGENT}`);
    assert.match(cli.stdout, '  risk: high;');
    // `status` lists the pending patch with its regression first.
    const status = await execa(process.execPath, [BIN, 'status', '--root', ws.root], {
      reject: false,
      env: { OPENAI_API_KEY: '' },
      extendEnv: true,
      timeout: 60_000,
    });
    assert.match(status.stdout, /^exit-code\S* {2}1 REGRESSION {2}risk high /m);

    // The dashboard: the report list, the report and the patch say so first.
    const ui = await startUi({ settings: ws.settings, log: silentLogger() });
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
      await page.goto(ui.url);
      await page.waitForSelector('#patches-pending li .b-regressions', { state: 'attached' });
      assert.is(await page.locator('#patches-pending li .b-regressions').first().textContent(), '1 regression', 'the review queue says so too');
      await page.click('nav button[data-tab="reports"]');
      assert.is(await page.locator('#reports tr[data-id="exit-code"] .badge').first().textContent(), '1 regression');
      await page.click('#reports tr[data-id="exit-code"]');
      await page.waitForSelector('#report-regressions .notice');
      const firstInView = await page.evaluate(() => document.querySelector('#report-view')!.firstElementChild!.id);
      assert.is(firstInView, 'report-regressions');
      assert.is(await page.locator('#report-regressions li').textContent(), `tests: ${BROKEN_BY_AGENT}`);
      await page.screenshot({ path: path.join(REPO_ROOT, 'docs', 'screenshots', 'regressions.png') });
      await page.click('#open-patch');
      await page.waitForSelector('#patch-regressions');
      // biome-ignore lint/performance/useDomNodeTextContent: a Playwright locator; innerText keeps the rendered line breaks
      assert.match((await page.locator('#patch-head').innerText()).split('\n')[0]!, `Regressions: ${BROKEN_BY_AGENT} passed on the base commit`);
    } finally {
      await browser.close();
      await ui.close();
    }
  } finally {
    await llm.close();
    await ws.cleanup();
  }
});

test('positive control: a model that fixes its breakage before finishing gets a plain ok; run_checks shows the base beside now and a failure that predates the change is no regression', async () => {
  const llm = await startFakeLlm([
    BREAK,
    toolCall('run_checks', { which: 'tests' }),
    finish('Tidied the exit code.', 'low'),
    toolCall('edit_file', { path: 'bot/main.py', old: '        return 3  # refused\n', new: '        return 2  # refused\n' }),
    finish('Tidied the exit code and kept it 2.', 'low'),
  ]);
  const ws = await workspace(llm.url);
  try {
    const file = await writeTask(ws.settings.layout.inbox, 'exit-code.md', TASK);
    const result = await runTask(file, { settings: ws.settings });
    assert.is(result.status, 'ok', result.report.error?.message);
    assert.is(llm.requests.length, 5);

    const checks = toolAnswer(llm.requests, 1);
    assert.match(checks, /## tests: now FAILED, on the base commit FAILED \(1 failing: tests\/test_known_broken\.py::test_known_broken\)/);
    assert.match(checks, `REGRESSIONS (passed on the base commit, fail now):\n- tests: ${BROKEN_BY_AGENT}`);
    assert.not.match(checks, '## dry run', 'which: "tests" runs the tests only');
    assert.match(toolAnswer(llm.requests, 2), `finish refused (1 of 2)`);
    assert.match(toolAnswer(llm.requests, 2), BROKEN_BY_AGENT);

    const report = result.report;
    assert.is(report.outcome, 'completed');
    assert.equal(report.regressions, []);
    assert.is(report.risk_level, 'low');
    assert.is(report.tests?.passed, false, 'the known failure still fails');
    assert.is(report.tests?.baseline_passed, false);
    assert.match(report.tests!.output_tail, `FAILED ${BROKEN_BEFORE}`);
    assert.equal(report.changed_files, ['bot/main.py']);
    const md = await fs.readFile(result.report_md_path, 'utf8');
    assert.match(md.split('\n')[0]!, /^# exit-code: OK \(completed\)$/);
    assert.not.match(md, 'Regressions');
    const sidecar = PatchSidecarSchema.parse(await readJson(path.join(ws.root, report.patch_files[1]!)));
    assert.equal(sidecar.regressions, []);
  } finally {
    await llm.close();
    await ws.cleanup();
  }
});

const PYTEST_TAIL = `tests/test_a.py:3: AssertionError
=========================== short test summary info ============================
FAILED tests/test_a.py::test_one - assert 1 == 2
FAILED tests/test_a.py::test_two[a - b] - ValueError: x
ERROR tests/test_b.py
2 failed, 5 passed, 1 error in 0.41s`;

test('failedTests reads pytest summaries, and says it cannot tell when the output is cut or from another runner', () => {
  assert.equal(failedTests(PYTEST_TAIL), ['tests/test_a.py::test_one', 'tests/test_a.py::test_two[a - b]', 'tests/test_b.py']);
  assert.equal(failedTests('==== 3 passed in 0.02s ===='), []);
  // The summary counts 3 failures, the cut output names 1: not trusted.
  assert.is(failedTests('FAILED tests/test_a.py::test_one\n3 failed, 1 passed in 1.00s'), null);
  assert.is(failedTests('Ran 4 tests in 0.001s\n\nFAILED (failures=1)'), null, 'unittest: the whole check counts');
  const check = (passed: boolean, output_tail: string) => ({
    command: 't',
    exit_code: passed ? 0 : 1,
    passed,
    duration_ms: 1,
    output_tail,
    baseline_passed: null,
    timed_out: false,
    sandbox: 'none' as const,
  });
  // Whole-check fallback: the base passed, the output names nothing.
  assert.equal(
    regressionsOf(
      { tests: check(false, 'boom'), dry_run: check(false, 'x') },
      { tests: { passed: true, failed_tests: [] }, dry_run: { passed: false, failed_tests: null } },
    ),
    [{ check: 'tests', test: null }],
  );
  // Per test: only what did not fail before.
  assert.equal(
    regressionsOf(
      { tests: check(false, 'FAILED a::x\nFAILED a::y\n2 failed in 1s'), dry_run: null },
      { tests: { passed: false, failed_tests: ['a::x'] }, dry_run: null },
    ),
    [{ check: 'tests', test: 'a::y' }],
  );
  // The base failed and the output cannot be read per test: not blamed on the change.
  assert.equal(regressionsOf({ tests: check(false, 'boom'), dry_run: null }, { tests: { passed: false, failed_tests: null }, dry_run: null }), []);
});

test.run();
