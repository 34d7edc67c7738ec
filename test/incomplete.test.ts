/**
 * A run never loses work: whatever stops it after an edit (step limit, token limit, the run's
 * timeout, a model endpoint that answers 500 for good, Ctrl-C of a real `meta-agent run`)
 * saves the change as an `incomplete` patch in patches/pending/, runs the checks on it, and
 * says why in the report. The model is warned once before the end; a run stopped without
 * changes saves nothing; an incomplete patch goes through the gate like any other; a retry
 * does not file a second patch beside it unless asked to.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runTask, type RunTaskResult } from '../src/run/runTask.ts';
import { ReportSchema, type Report } from '../src/contract/report.ts';
import { PatchSidecarSchema, type PatchSidecar } from '../src/contract/patch.ts';
import { approvePatch, rejectPatch } from '../src/gate/decide.ts';
import { processApprovedPatch } from '../src/gate/gate.ts';
import { retryFailedTask } from '../src/queue/retry.ts';
import { silentLogger } from '../src/log.ts';
import { wrapUpWarning } from '../src/engines/wrapUp.ts';
import { errorReply, startFakeLlm, toolCall, type FakeLlm, type Reply, type Script } from './helpers/fakeLlm.ts';
import { BIN, sleep, waitFor } from './helpers/procs.ts';
import { makeWorkspace, readJson, repoFingerprint, worktreeCount, writeTask, type TestWorkspace } from './helpers/workspace.ts';

const TASK = `---
project: bot
type: audit_code
objective: Validate the sizing inputs
scope: ["bot/sizing.py", "tests/**"]
---
Keep it small.
`;

const NOTE = '# Inputs are validated below.';
const EDIT = toolCall('edit_file', { path: 'bot/sizing.py', old: 'def position_size(', new: `${NOTE}\ndef position_size(` });
const WRAP_UP = 'wrap up and call finish';

/** The edit as a run's first call (only the prompt in the conversation), then `rest`. */
function editThen(rest: (index: number) => Reply): Script {
  return (request, index) => ((request.body?.messages?.length ?? 0) <= 2 ? EDIT : rest(index));
}
const listFiles = () => toolCall('list_files', { path: 'bot' });

interface Case {
  ws: TestWorkspace;
  llm: FakeLlm;
  before: string;
}

async function setup(script: Script, extra = ''): Promise<Case> {
  const llm = await startFakeLlm(script);
  try {
    const ws = await makeWorkspace({ llmUrl: llm.url, extra });
    return { ws, llm, before: await repoFingerprint(ws.repo) };
  } catch (error) {
    await llm.close();
    throw error;
  }
}

async function teardown(c: Case | undefined): Promise<void> {
  if (!c) return;
  await c.llm.close();
  await c.ws.cleanup();
}

async function exists(file: string): Promise<boolean> {
  return fs.stat(file).then(
    () => true,
    () => false,
  );
}

/**
 * What every stopped-after-an-edit run leaves: the report (valid, incomplete, the reason),
 * the patch with the edit (applies on the base commit), its sidecar (incomplete), the checks'
 * results, the task in failed/ with a note naming the patch, no worktree, the repo untouched.
 */
async function assertKept(
  c: Case,
  result: RunTaskResult,
  name: string,
  why: { kind: string; outcome: Report['outcome']; message: RegExp },
): Promise<{ report: Report; sidecar: PatchSidecar; patch: string }> {
  const { layout } = c.ws.settings;
  const report = ReportSchema.parse(await readJson(result.report_path));
  assert.equal(report, result.report, 'the returned report is the one on disk');
  assert.is(report.status, 'error');
  assert.is(report.outcome, why.outcome);
  assert.is(report.error?.kind, why.kind, report.error?.message);
  assert.match(report.error!.message, why.message);
  assert.is(report.incomplete, true, 'the report says incomplete');
  assert.equal(report.changed_files, ['bot/sizing.py']);
  assert.is(report.patch_files.length, 2, `patch and sidecar: ${report.notes.join(' | ')}`);
  assert.match(report.patch_files[0]!, /^patches\/pending\/.+\.patch$/);
  const patchFile = path.join(c.ws.root, report.patch_files[0]!);
  const patch = await fs.readFile(patchFile, 'utf8');
  assert.match(patch, /\+# Inputs are validated below\./, 'the patch holds the edit');
  await execa('git', ['apply', '--check', patchFile], { cwd: c.ws.repo });
  const sidecar = PatchSidecarSchema.parse(await readJson(path.join(c.ws.root, report.patch_files[1]!)));
  assert.is(sidecar.incomplete, true, 'the sidecar says incomplete');
  assert.is(sidecar.stopped_because, report.error!.message);
  assert.match(sidecar.summary, /^Incomplete change for /);
  // The checks ran on the incomplete change (tests and dry run of the example bot pass with a comment added).
  assert.ok(report.tests, 'tests ran');
  assert.ok(report.dry_run, 'dry run ran');
  assert.is(report.tests!.passed, true, report.tests!.output_tail);
  assert.is(report.dry_run!.passed, true, report.dry_run!.output_tail);
  assert.ok(
    report.notes.some((n) => n.startsWith('Incomplete: the run stopped') && n.includes(report.patch_files[0]!)),
    report.notes.join(' | '),
  );
  assert.ok(
    report.notes.some((n) => n.startsWith('The checks ran on it')),
    report.notes.join(' | '),
  );
  assert.ok(report.next_actions.some((a) => a.includes(report.patch_files[0]!) && a.includes('not a finished change')));
  const md = await fs.readFile(result.report_md_path, 'utf8');
  assert.match(md, /INCOMPLETE patch saved/);
  assert.match(md, /## Patch \(incomplete/);
  // The task waits in failed/ with a note that names the saved work; nothing is left behind.
  assert.is(result.task_file, path.join(layout.failed, name));
  const note = await fs.readFile(path.join(layout.failed, `${name}.error.md`), 'utf8');
  assert.match(note, /\*\*Work saved:\*\*/);
  assert.ok(note.includes(report.patch_files[0]!), note);
  assert.is(await worktreeCount(c.ws.repo), 0, 'no worktree is left');
  assert.is(await repoFingerprint(c.ws.repo), c.before, 'the real repo is unchanged');
  return { report, sidecar, patch };
}

// ---------------------------------------------------------------------------------------------

test('step limit after an edit: an incomplete patch with the edit, checks run, the report says max_steps; the warning came once, in the request before the last', async () => {
  let c: Case | undefined;
  try {
    c = await setup(editThen(listFiles), 'limits:\n  max_steps: 6');
    const result = await runTask(await writeTask(c.ws.settings.layout.inbox, 'steps.md', TASK), { settings: c.ws.settings });
    await assertKept(c, result, 'steps.md', { kind: 'budget', outcome: 'limit_reached', message: /step limit reached .*max_steps/ });
    assert.is(c.llm.requests.length, 6);
    const warnings = (index: number) =>
      (c!.llm.requests[index]!.body.messages as Array<{ role: string; content: unknown }>).filter(
        (m) => m.role === 'user' && String(m.content).includes(WRAP_UP),
      );
    // 3 calls left before the 4th: warned there, and it stays in the conversation.
    for (const i of [0, 1, 2]) assert.is(warnings(i).length, 0, `no warning in request ${i + 1}`);
    for (const i of [3, 4, 5]) assert.is(warnings(i).length, 1, `the warning once in request ${i + 1}`);
    assert.match(String(warnings(4)[0]!.content), /3 model calls left/);
  } finally {
    await teardown(c);
  }
});

test('token limit after an edit: an incomplete patch, checks run, the report says max_tokens', async () => {
  let c: Case | undefined;
  try {
    c = await setup(editThen(listFiles), 'limits:\n  max_tokens: 600');
    const result = await runTask(await writeTask(c.ws.settings.layout.inbox, 'tokens.md', TASK), { settings: c.ws.settings });
    const { report } = await assertKept(c, result, 'tokens.md', { kind: 'budget', outcome: 'limit_reached', message: /token limit reached .*max_tokens/ });
    assert.ok(report.usage.prompt_tokens + report.usage.completion_tokens <= 600, 'the ceiling was not crossed');
    const warned = c.llm.requests.some((r) => (r.body.messages as Array<{ content: unknown }>).some((m) => String(m.content).includes(WRAP_UP)));
    assert.ok(warned, 'the model was warned before the token limit');
  } finally {
    await teardown(c);
  }
});

test("the run's timeout after an edit (the model then hangs): an incomplete patch, checks run in the grace, the report says task_timeout_s", async () => {
  let c: Case | undefined;
  try {
    c = await setup(
      editThen(() => ({ hang: true })),
      'limits:\n  task_timeout_s: 3',
    );
    const started = Date.now();
    const result = await runTask(await writeTask(c.ws.settings.layout.inbox, 'slow.md', TASK), { settings: c.ws.settings });
    assert.ok(Date.now() - started >= 2900, 'it ran until its timeout');
    const { report } = await assertKept(c, result, 'slow.md', { kind: 'timeout', outcome: 'limit_reached', message: /task_timeout_s/ });
    assert.ok(
      report.notes.some((n) => /The checks ran on it \(in a 60 s grace/.test(n)),
      report.notes.join(' | '),
    );
  } finally {
    await teardown(c);
  }
});

test('a model endpoint that answers 500 for good after an edit: an incomplete patch, checks run, the report says llm / 500', async () => {
  let c: Case | undefined;
  try {
    // makeWorkspace sets llm.max_retries 2: three 500s end the run.
    c = await setup(editThen(() => errorReply(500, 'upstream down')));
    const result = await runTask(await writeTask(c.ws.settings.layout.inbox, 'down.md', TASK), { settings: c.ws.settings });
    await assertKept(c, result, 'down.md', { kind: 'llm', outcome: 'failed', message: /500/ });
    assert.is(c.llm.requests.length, 4, 'the edit, then max_retries + 1 failing requests');
  } finally {
    await teardown(c);
  }
});

test('Ctrl-C of a real `meta-agent run` while the model hangs after an edit: an incomplete patch, checks run, the report says interrupted; the task waits in failed/', async () => {
  let c: Case | undefined;
  let child: ReturnType<typeof execa> | undefined;
  try {
    c = await setup(editThen(() => ({ hang: true })));
    const { layout } = c.ws.settings;
    await writeTask(layout.inbox, 'ctrl-c.md', TASK);
    child = execa(process.execPath, [BIN, 'run', '--task-id', 'ctrl-c', '--root', c.ws.root], {
      reject: false,
      all: true,
      stdin: 'ignore',
      env: { OPENAI_API_KEY: '', META_AGENT_LOG: 'none' },
      extendEnv: true,
    });
    const llm = c.llm;
    await waitFor('the model was asked after the edit', () => llm.requests.length >= 2, 30_000);
    await sleep(200);
    child.kill('SIGINT');
    const ended = await Promise.race([child, sleep(30_000).then(() => null)]);
    assert.ok(ended, 'the run ended after Ctrl-C');
    assert.is(ended!.exitCode, 1, ended!.all as string);
    assert.match(String(ended!.all), /ctrl-c: ERROR \(failed\) INCOMPLETE/);
    assert.match(String(ended!.all), /patch: patches\/pending\/ctrl-c\.patch \(incomplete\)/);
    const reportPath = path.join(layout.reports, 'ctrl-c.json');
    const report = ReportSchema.parse(await readJson(reportPath));
    const result = {
      report,
      report_path: reportPath,
      report_md_path: path.join(layout.reports, 'ctrl-c_report.md'),
      task_file: path.join(layout.failed, 'ctrl-c.md'),
    } as RunTaskResult;
    await assertKept(c, result, 'ctrl-c.md', { kind: 'interrupted', outcome: 'failed', message: /interrupted/ });
    assert.ok(await exists(result.task_file), 'the task is in failed/, not back in inbox/ (it would run again and file a second patch)');
    assert.not.ok(await exists(path.join(layout.inbox, 'ctrl-c.md')));
  } finally {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    await teardown(c);
  }
});

test('an incomplete patch that breaks a test that passed on the base: regressions and risk high in the report and the sidecar', async () => {
  let c: Case | undefined;
  try {
    const breaking = toolCall('edit_file', { path: 'bot/sizing.py', old: 'if equity <= 0:', new: 'if equity <= 10**12:' });
    c = await setup((request, _index) => ((request.body?.messages?.length ?? 0) <= 2 ? breaking : listFiles()), 'limits:\n  max_steps: 3');
    const result = await runTask(await writeTask(c.ws.settings.layout.inbox, 'broken.md', TASK), { settings: c.ws.settings });
    const report = ReportSchema.parse(await readJson(result.report_path));
    assert.is(report.incomplete, true);
    assert.is(report.error?.kind, 'budget');
    assert.is(report.tests?.passed, false, 'the broken change fails its tests');
    assert.is(report.tests?.baseline_passed, true, 'they passed on the base');
    assert.ok(report.regressions.length > 0, 'regressions are named');
    assert.ok(
      report.regressions.some((r) => r.check === 'tests' && r.test?.startsWith('tests/test_sizing.py::')),
      JSON.stringify(report.regressions),
    );
    assert.is(report.risk_level, 'high');
    const sidecar = PatchSidecarSchema.parse(await readJson(path.join(c.ws.root, report.patch_files[1]!)));
    assert.equal(sidecar.regressions, report.regressions, 'the sidecar learned of them after the checks');
    assert.is(sidecar.risk_level, 'high');
    assert.match(await fs.readFile(result.report_md_path, 'utf8'), /^# broken: ERROR \(limit reached, INCOMPLETE patch saved, \d+ REGRESSIONS?\)/);
  } finally {
    await teardown(c);
  }
});

test('a limit reached without changes saves no patch (and the task is not marked incomplete)', async () => {
  let c: Case | undefined;
  try {
    c = await setup(() => listFiles(), 'limits:\n  max_steps: 2');
    const result = await runTask(await writeTask(c.ws.settings.layout.inbox, 'idle.md', TASK), { settings: c.ws.settings });
    assert.is(result.outcome, 'limit_reached');
    assert.is(result.report.incomplete, false);
    assert.equal(result.report.patch_files, []);
    assert.is(result.patch_path, null);
    assert.equal(await fs.readdir(c.ws.settings.layout.patches.pending), []);
    assert.is(result.report.tests, null, 'no checks on nothing');
  } finally {
    await teardown(c);
  }
});

test('an incomplete patch, approved, goes through the gate (tested on HEAD) to applied/ and the branch', async () => {
  let c: Case | undefined;
  try {
    c = await setup(editThen(listFiles), 'limits:\n  max_steps: 2');
    const { layout } = c.ws.settings;
    const result = await runTask(await writeTask(layout.inbox, 'gated.md', TASK), { settings: c.ws.settings });
    assert.is(result.report.incomplete, true, result.report.notes.join(' | '));
    const moved = await approvePatch(c.ws.settings, 'gated');
    assert.is(path.dirname(moved), layout.patches.approved);
    const gate = await processApprovedPatch(c.ws.settings, moved, silentLogger());
    assert.is(gate.decision, 'applied', gate.reason ?? '');
    assert.ok(await exists(path.join(layout.patches.applied, 'gated.patch')));
    const shown = (await execa('git', ['show', 'main:bot/sizing.py'], { cwd: c.ws.repo })).stdout;
    assert.ok(shown.includes(NOTE), 'the edit is on the branch');
    const subject = (await execa('git', ['log', '-1', '--format=%s', 'main'], { cwd: c.ws.repo })).stdout;
    assert.match(subject, /^Incomplete change for gated/);
    const report = ReportSchema.parse(await readJson(result.report_path));
    assert.is(report.approval?.decision, 'applied');
    assert.is(report.approval?.tests?.passed, true, 'the gate ran the tests');
  } finally {
    await teardown(c);
  }
});

test('retrying a task whose incomplete patch waits is refused (no silent second patch); --force files beside it; after a rejection it is allowed', async () => {
  let c: Case | undefined;
  try {
    c = await setup(editThen(listFiles), 'limits:\n  max_steps: 2');
    const { layout } = c.ws.settings;
    const first = await runTask(await writeTask(layout.inbox, 'again.md', TASK), { settings: c.ws.settings });
    assert.is(first.report.incomplete, true);
    try {
      await retryFailedTask(layout, 'again');
      assert.unreachable('the retry should be refused');
    } catch (error) {
      assert.match((error as Error).message, /patches\/pending\/again\.patch .*waiting for review.*--force/);
    }
    assert.ok(await exists(path.join(layout.failed, 'again.md')), 'the refused retry left the task in failed/');
    // Forced: the new run's patch is filed beside the first, and its report says so.
    const { to } = await retryFailedTask(layout, 'again', { force: true });
    const second = await runTask(to, { settings: c.ws.settings });
    assert.is(second.report.incomplete, true);
    assert.match(second.report.patch_files[0]!, /^patches\/pending\/again\.\d{8}T\d{6}Z-[0-9a-f]{6}\.patch$/);
    assert.ok(
      second.report.notes.some((n) => n.startsWith('Filed beside patches/pending/again.patch')),
      second.report.notes.join(' | '),
    );
    // Positive control: with no patch waiting, the retry goes through.
    await rejectPatch(c.ws.settings, 'again', 'incomplete');
    await rejectPatch(c.ws.settings, path.basename(second.report.patch_files[0]!, '.patch'), 'incomplete');
    const retried = await retryFailedTask(layout, 'again');
    assert.is(retried.to, path.join(layout.inbox, 'again.md'));
  } finally {
    await teardown(c);
  }
});

test("the wrap-up warning: not on the first call; at 3 calls, 15% (or 3 calls' worth) of the tokens, or 15% of the time left", () => {
  const room = { steps: 1, maxSteps: 40, spentTokens: 1000, maxTokens: 100_000, lastCallTokens: 1000, deadline: 1_000_000, timeoutMs: 1_000_000, now: 0 };
  assert.is(wrapUpWarning(room), null, 'plenty left: no warning');
  assert.is(wrapUpWarning({ ...room, steps: 0, maxSteps: 3 }), null, 'never before the first call');
  assert.match(wrapUpWarning({ ...room, steps: 37 }) ?? '', /3 model calls left.*wrap up and call finish/);
  assert.is(wrapUpWarning({ ...room, steps: 36 }), null, '4 calls left: not yet');
  assert.match(wrapUpWarning({ ...room, spentTokens: 85_000 }) ?? '', /15% of the token budget left/);
  assert.match(
    wrapUpWarning({ ...room, spentTokens: 70_000, lastCallTokens: 10_000 }) ?? '',
    /30% of the token budget left/,
    'three more calls of 10k would not fit',
  );
  assert.is(wrapUpWarning({ ...room, spentTokens: 60_000, lastCallTokens: 10_000 }), null);
  assert.match(wrapUpWarning({ ...room, now: 860_000 }) ?? '', /about 140 s of the time limit left/);
  assert.is(wrapUpWarning({ ...room, now: 800_000 }), null);
  assert.is(wrapUpWarning({ ...room, deadline: undefined, now: 10_000_000 }), null, 'no deadline: no time warning');
});

test.run();
