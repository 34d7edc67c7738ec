/**
 * Failure paths of runTask end as documented: budget, timeout, 429 then success, 500 forever,
 * 401, 404, malformed tool calls, a reply without tool calls, Ctrl-C, no LLM configured, a bad
 * task file, and re-runs of one id. Every run leaves no worktree behind, writes a report that
 * validates, and never touches the real repository.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runTask, type RunTaskResult } from '../src/run/runTask.ts';
import { ReportSchema, type Report } from '../src/contract/report.ts';
import { errorReply, finish, startFakeLlm, textReply, toolCall, type FakeLlm, type Script } from './helpers/fakeLlm.ts';
import { makeWorkspace, readJson, repoFingerprint, worktreeCount, writeTask, type TestWorkspace } from './helpers/workspace.ts';

const TASK = `---
project: bot
type: audit_code
objective: Validate the sizing inputs
scope: ["bot/sizing.py", "tests/**"]
---
Keep it small.
`;

const EDIT_SIZING = { path: 'bot/sizing.py', old: 'def position_size(', new: '# Inputs are validated below.\ndef position_size(' };

interface Case {
  ws: TestWorkspace;
  llm: FakeLlm | null;
  before: string;
}

async function setup(script: Script | null, options: { extra?: string; env?: Record<string, string | undefined> } = {}): Promise<Case> {
  const llm = script ? await startFakeLlm(script) : null;
  try {
    const ws = await makeWorkspace({ ...(llm ? { llmUrl: llm.url } : {}), ...options });
    return { ws, llm, before: await repoFingerprint(ws.repo) };
  } catch (error) {
    await llm?.close();
    throw error;
  }
}

async function teardown(c: Case | undefined): Promise<void> {
  if (!c) return;
  await c.llm?.close();
  await c.ws.cleanup();
}

async function exists(file: string): Promise<boolean> {
  return fs.stat(file).then(
    () => true,
    () => false,
  );
}

async function listDir(dir: string): Promise<string[]> {
  return (await fs.readdir(dir).catch(() => [] as string[])).sort();
}

/** What every run must leave behind: no worktree, a valid report on disk, the real repo untouched. */
async function checkAfterRun(c: Case, result: RunTaskResult): Promise<Report> {
  assert.is(await worktreeCount(c.ws.repo), 0, 'no worktree is left (git worktree list)');
  assert.equal(await listDir(c.ws.settings.layout.worktrees), [], 'the worktrees folder is empty');
  assert.equal(await listDir(c.ws.settings.layout.processing), [], 'nothing is left in processing/');
  const onDisk = await readJson(result.report_path);
  const parsed = ReportSchema.safeParse(onDisk);
  assert.ok(parsed.success, `report validates: ${parsed.success ? '' : parsed.error.message}`);
  const report = parsed.data!;
  assert.is(report.run_id, result.run_id, 'the report on disk is the one of this run');
  assert.equal(report, result.report, 'the returned report equals the one on disk');
  assert.ok(await exists(result.report_md_path), 'the Markdown report exists');
  assert.is(await repoFingerprint(c.ws.repo), c.before, 'the real repo is unchanged');
  return report;
}

/** The task ended in failed/ with `<name>.error.md` that says what went wrong. */
async function assertFailed(c: Case, result: RunTaskResult, name: string, ...mentions: RegExp[]): Promise<string> {
  const { layout } = c.ws.settings;
  assert.is(result.task_file, path.join(layout.failed, name));
  assert.ok(await exists(result.task_file), 'the task file is in failed/');
  assert.not.ok(await exists(path.join(layout.inbox, name)), 'the task is not in inbox/');
  assert.not.ok(await exists(path.join(layout.done, name)), 'the task is not in done/');
  const explanation = await fs.readFile(path.join(layout.failed, `${name}.error.md`), 'utf8');
  assert.match(explanation, result.report.error!.kind);
  for (const m of mentions) assert.match(explanation, m);
  return explanation;
}

function listFilesForever(): Script {
  return () => toolCall('list_files', { path: 'bot' });
}

// ---------------------------------------------------------------------------------------------
// budgets and time

test('step budget: max_steps 3 with a model that never finishes -> limit_reached / budget after 3 requests', async () => {
  let c: Case | undefined;
  try {
    c = await setup(listFilesForever(), { extra: 'limits:\n  max_steps: 3' });
    const file = await writeTask(c.ws.settings.layout.inbox, 'budget-steps.md', TASK);
    const result = await runTask(file, { settings: c.ws.settings });
    const report = await checkAfterRun(c, result);
    assert.is(report.status, 'error');
    assert.is(report.outcome, 'limit_reached');
    assert.is(report.error?.kind, 'budget');
    assert.match(report.error!.message, /max_steps/);
    assert.is(report.usage.requests, 3);
    assert.is(report.steps, 3, 'the steps spent are reported');
    assert.is(c.llm!.requests.length, 3, 'no 4th request is sent');
    assert.is(c.llm!.requests[0]!.body.max_completion_tokens, undefined, 'no reply cap is sent while max_tokens is far away');
    assert.is(c.llm!.requests[0]!.body.max_tokens, undefined, 'under either name');
    assert.equal(report.changed_files, []);
    assert.equal(report.patch_files, []);
    assert.ok(report.base_commit, 'the run had a worktree');
    assert.ok(report.trajectory, 'the trajectory of the spent steps is kept');
    await assertFailed(c, result, 'budget-steps.md', /max_steps/);
  } finally {
    await teardown(c);
  }
});

test('token budget: max_tokens 500 at 120 tokens a call -> limit_reached / budget after 3 calls, never over; each reply is capped at what remains', async () => {
  let c: Case | undefined;
  try {
    // Before each call: the next request re-sends the last one (120) plus the tool result
    // added since (about 54 tokens of file list); what remains after that caps the reply, and
    // a call whose reply would get less than the last one took (20) is not made.
    // No cached tokens here, so every token counts in full (test/context.test.ts covers the weighting).
    c = await setup(() => toolCall('list_files', { path: 'bot' }, { usage: { cached: 0 } }), { extra: 'limits:\n  max_tokens: 500' });
    const file = await writeTask(c.ws.settings.layout.inbox, 'budget-tokens.md', TASK);
    const result = await runTask(file, { settings: c.ws.settings });
    const report = await checkAfterRun(c, result);
    assert.is(report.status, 'error');
    assert.is(report.outcome, 'limit_reached');
    assert.is(report.error?.kind, 'budget');
    assert.match(report.error!.message, /max_tokens/);
    assert.match(report.error!.message, /360 of 500 spent/, report.error!.message);
    assert.is(report.usage.requests, 3);
    assert.is(report.usage.prompt_tokens, 300);
    assert.is(report.usage.completion_tokens, 60);
    assert.is(c.llm!.requests.length, 3, 'no 4th request is sent');
    const caps = c.llm!.requests.map((r) => r.body.max_tokens as number); // max_tokens: the cap's name for a base_url server (llm.compat.max_tokens_param)
    assert.is(caps[0], 500, 'the first reply may take all there is');
    for (const [i, cap] of caps.entries()) {
      if (i > 0)
        assert.ok(cap >= 20 && cap <= 500 - 120 * i - 120, `request ${i + 1}: the reply is capped at what remains once the conversation is re-sent (${cap})`);
    }
    await assertFailed(c, result, 'budget-tokens.md', /max_tokens/);
  } finally {
    await teardown(c);
  }
});

test('a cycle budget handed to a task (max_tokens 2800) is not crossed by its last step (1600 a step: stops after one)', async () => {
  let c: Case | undefined;
  try {
    // What a cycle does with the rest of supervisor.budget_tokens (soak B8): the old check let
    // a second 1600-token step start at 1600 spent, ending at 3200.
    const usage = { usage: { prompt_tokens: 1500, completion_tokens: 100 } };
    c = await setup(() => toolCall('list_files', { path: 'bot' }, usage));
    const file = await writeTask(c.ws.settings.layout.inbox, 'budget-handed.md', TASK.replace('scope:', 'max_tokens: 2800\nscope:'));
    const result = await runTask(file, { settings: c.ws.settings });
    const report = await checkAfterRun(c, result);
    assert.is(report.outcome, 'limit_reached');
    assert.is(report.error?.kind, 'budget');
    assert.is(report.usage.prompt_tokens + report.usage.completion_tokens, 1600);
    assert.is(c.llm!.requests.length, 1);
    assert.is(c.llm!.requests[0]!.body.max_tokens, 2800);
  } finally {
    await teardown(c);
  }
});

test('a run after one that died mid-task carries its spent tokens (from the trajectory it left): the task limit counts every attempt', async () => {
  let c: Case | undefined;
  try {
    const usage = { usage: { prompt_tokens: 1500, completion_tokens: 100 } };
    c = await setup(() => toolCall('list_files', { path: 'bot' }, usage));
    // What a worker killed after its first model step leaves: the trajectory (the last line cut short), no report.
    const { layout } = c.ws.settings;
    const trajectory = path.join(layout.reports, 'carried.trajectory.jsonl');
    await fs.mkdir(layout.reports, { recursive: true });
    await fs.writeFile(
      trajectory,
      `${JSON.stringify({ ts: '2026-01-01T00:00:00Z', role: 'assistant', step: 1, usage: usage.usage })}\n{"ts":"2026-01-01T00:00:01Z","role":"to`,
    );
    const file = await writeTask(layout.inbox, 'carried.md', TASK.replace('scope:', 'id: carried\nmax_tokens: 2800\nscope:'));
    const result = await runTask(file, { settings: c.ws.settings });
    const report = await checkAfterRun(c, result);
    // 1600 carried: a 1600-token step would cross 2800, so none is made.
    assert.is(report.error?.kind, 'budget', JSON.stringify(report.error));
    assert.is(c.llm!.requests.length, 0, 'no request: the killed attempt already spent what a step costs');
    assert.is(report.usage.prompt_tokens + report.usage.completion_tokens, 1600, 'the killed attempt is in the usage');
    assert.is(report.usage.requests, 1);
  } finally {
    await teardown(c);
  }
});

test('a run after a finished one of the same id carries nothing (a re-run by a person is a new budget)', async () => {
  let c: Case | undefined;
  try {
    const usage = { usage: { prompt_tokens: 1500, completion_tokens: 100 } };
    c = await setup((_req, index) =>
      index % 2 === 0 ? toolCall('list_files', { path: 'bot' }, usage) : toolCall('finish', { summary: 'Looked around.', risk_level: 'low' }, usage),
    );
    const { layout } = c.ws.settings;
    const first = await runTask(await writeTask(layout.inbox, 'twice.md', TASK.replace('scope:', 'id: twice\nscope:')), { settings: c.ws.settings });
    assert.is(first.report.usage.prompt_tokens + first.report.usage.completion_tokens, 3200);
    const second = await runTask(await writeTask(layout.inbox, 'twice.md', TASK.replace('scope:', 'id: twice\nscope:')), { settings: c.ws.settings });
    assert.is(second.report.usage.prompt_tokens + second.report.usage.completion_tokens, 3200, 'only its own tokens');
  } finally {
    await teardown(c);
  }
});

test('timeout: task_timeout_s 1 with a hanging model -> limit_reached / timeout, quickly', async () => {
  let c: Case | undefined;
  try {
    c = await setup([{ hang: true }], { extra: 'limits:\n  task_timeout_s: 1' });
    const file = await writeTask(c.ws.settings.layout.inbox, 'slow.md', TASK);
    const started = Date.now();
    const result = await runTask(file, { settings: c.ws.settings });
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 15_000, `returned in ${elapsed} ms`);
    assert.ok(elapsed >= 900, `waited for the timeout (${elapsed} ms)`);
    const report = await checkAfterRun(c, result);
    assert.is(report.status, 'error');
    assert.is(report.outcome, 'limit_reached');
    assert.is(report.error?.kind, 'timeout');
    assert.match(report.error!.message, /task_timeout_s/);
    assert.is(report.usage.requests, 0, 'the hanging request never completed');
    assert.ok(c.llm!.requests.length >= 1);
    await assertFailed(c, result, 'slow.md', /task_timeout_s/);
  } finally {
    await teardown(c);
  }
});

// ---------------------------------------------------------------------------------------------
// the model endpoint

test('429 twice, then success: the client retries and the run completes', async () => {
  let c: Case | undefined;
  try {
    c = await setup([errorReply(429, 'slow down'), errorReply(429, 'slow down'), toolCall('edit_file', EDIT_SIZING), finish('Noted the validation.')]);
    const file = await writeTask(c.ws.settings.layout.inbox, 'rate-limited.md', TASK);
    const result = await runTask(file, { settings: c.ws.settings });
    const report = await checkAfterRun(c, result);
    assert.is(report.status, 'ok', report.error?.message);
    assert.is(report.outcome, 'completed');
    assert.is(report.error, null);
    assert.is(c.llm!.requests.length, 4, 'two retried requests + two successful ones reached the server');
    assert.is(report.usage.requests, 2, 'usage counts only successful completions');
    assert.is(report.usage.prompt_tokens, 200);
    assert.equal(report.changed_files, ['bot/sizing.py']);
    assert.is(report.patch_files.length, 2);
    assert.ok(report.tests?.passed, 'tests passed');
    // The retried request is the same request.
    assert.equal(c.llm!.requests[0]!.body.messages, c.llm!.requests[2]!.body.messages);
    assert.ok(await exists(path.join(c.ws.settings.layout.done, 'rate-limited.md')), 'task in done/');
    assert.equal(await listDir(c.ws.settings.layout.failed), []);
  } finally {
    await teardown(c);
  }
});

test('500 forever: status error, outcome failed, llm error after max_retries + 1 requests', async () => {
  let c: Case | undefined;
  try {
    c = await setup(() => errorReply(500, 'boom'));
    const file = await writeTask(c.ws.settings.layout.inbox, 'server-down.md', TASK);
    const result = await runTask(file, { settings: c.ws.settings });
    const report = await checkAfterRun(c, result);
    assert.is(report.status, 'error');
    assert.is(report.outcome, 'failed');
    assert.is(report.error?.kind, 'llm');
    assert.match(report.error!.message, /500/);
    assert.match(report.error!.message, /retries/);
    assert.is(c.ws.settings.llm.maxRetries, 2);
    assert.is(c.llm!.requests.length, 3, 'max_retries (2) + 1 requests');
    assert.is(report.usage.requests, 0);
    await assertFailed(c, result, 'server-down.md', /500/);
  } finally {
    await teardown(c);
  }
});

test('401: llm error naming the key variable, no retries, the key never reaches the report', async () => {
  let c: Case | undefined;
  const key = 'sk-test-not-a-real-key-0123456789';
  try {
    c = await setup([errorReply(401, 'invalid api key')], { env: { PATH: process.env.PATH, HOME: process.env.HOME, OPENAI_API_KEY: key } });
    const file = await writeTask(c.ws.settings.layout.inbox, 'bad-key.md', TASK);
    const result = await runTask(file, { settings: c.ws.settings });
    const report = await checkAfterRun(c, result);
    assert.is(report.status, 'error');
    assert.is(report.outcome, 'failed');
    assert.is(report.error?.kind, 'llm');
    assert.is(report.error?.field, 'llm.api_key_env');
    assert.match(report.error!.message, /401/);
    assert.match(report.error!.message, /OPENAI_API_KEY/);
    assert.is(c.llm!.requests.length, 1, 'a 401 is not retried');
    assert.is(c.llm!.requests[0]!.headers.authorization, `Bearer ${key}`);
    assert.not.ok((await fs.readFile(result.report_path, 'utf8')).includes(key), 'the key is not in the report');
    assert.not.ok((await fs.readFile(result.report_md_path, 'utf8')).includes(key));
    const explanation = await assertFailed(c, result, 'bad-key.md', /401/, /OPENAI_API_KEY/);
    assert.not.ok(explanation.includes(key));
  } finally {
    await teardown(c);
  }
});

test('404 unknown model: llm error on field llm.model', async () => {
  let c: Case | undefined;
  try {
    c = await setup([errorReply(404, 'The model does not exist')]);
    const file = await writeTask(c.ws.settings.layout.inbox, 'no-model.md', TASK);
    const result = await runTask(file, { settings: c.ws.settings });
    const report = await checkAfterRun(c, result);
    assert.is(report.status, 'error');
    assert.is(report.outcome, 'failed');
    assert.is(report.error?.kind, 'llm');
    assert.is(report.error?.field, 'llm.model');
    assert.match(report.error!.message, /llm\.model/);
    assert.match(report.error!.message, /not found/);
    assert.match(report.error!.message, /scripted-model/);
    assert.is(c.llm!.requests.length, 1, 'a 404 is not retried');
    await assertFailed(c, result, 'no-model.md', /not found/);
  } finally {
    await teardown(c);
  }
});

// ---------------------------------------------------------------------------------------------
// what the model sends

test('malformed tool arguments and an unknown tool come back as ERROR tool results; the run completes', async () => {
  let c: Case | undefined;
  try {
    c = await setup([
      toolCall('edit_file', null, { rawArguments: '{not json' }),
      toolCall('rm_rf', {}),
      toolCall('edit_file', EDIT_SIZING),
      finish('Recovered from bad calls.'),
    ]);
    const file = await writeTask(c.ws.settings.layout.inbox, 'malformed.md', TASK);
    const result = await runTask(file, { settings: c.ws.settings });
    const report = await checkAfterRun(c, result);
    assert.is(report.status, 'ok', report.error?.message);
    assert.is(report.outcome, 'completed');
    assert.equal(report.changed_files, ['bot/sizing.py']);
    assert.is(report.usage.requests, 4);
    const requests = c.llm!.requests;
    assert.is(requests.length, 4);
    const badJson = requests[1]!.body.messages.at(-1);
    assert.is(badJson.role, 'tool');
    assert.is(badJson.tool_call_id, requests[1]!.body.messages.at(-2).tool_calls[0].id);
    assert.ok(String(badJson.content).startsWith('ERROR:'), badJson.content);
    assert.match(badJson.content, /JSON/);
    assert.match(badJson.content, /edit_file/);
    const unknown = requests[2]!.body.messages.at(-1);
    assert.is(unknown.role, 'tool');
    assert.ok(String(unknown.content).startsWith('ERROR:'), unknown.content);
    assert.match(unknown.content, /unknown tool/);
    assert.match(unknown.content, /rm_rf/);
    const edited = requests[3]!.body.messages.at(-1);
    assert.is(edited.role, 'tool');
    assert.not.ok(String(edited.content).startsWith('ERROR:'), edited.content);
    assert.ok(await exists(path.join(c.ws.settings.layout.done, 'malformed.md')));
  } finally {
    await teardown(c);
  }
});

test('a reply without tool calls gets a nudge; finish without changes ends as no_changes', async () => {
  let c: Case | undefined;
  try {
    c = await setup([textReply('I think the code looks fine.'), finish('Nothing to change.')]);
    const file = await writeTask(c.ws.settings.layout.inbox, 'chatty.md', TASK);
    const result = await runTask(file, { settings: c.ws.settings });
    const report = await checkAfterRun(c, result);
    assert.is(report.status, 'ok', report.error?.message);
    assert.is(report.outcome, 'no_changes');
    assert.equal(report.changed_files, []);
    assert.equal(report.patch_files, []);
    assert.is(report.tests, null, 'no checks without a change');
    assert.is(report.summary, 'Nothing to change.');
    const messages = c.llm!.requests[1]!.body.messages;
    assert.is(messages.at(-2).role, 'assistant');
    assert.is(messages.at(-2).content, 'I think the code looks fine.');
    const nudge = messages.at(-1);
    assert.is(nudge.role, 'user');
    assert.match(nudge.content, /did not call a tool/);
    assert.equal(await listDir(c.ws.settings.layout.patches.pending), []);
    assert.ok(await exists(path.join(c.ws.settings.layout.done, 'chatty.md')));
  } finally {
    await teardown(c);
  }
});

// ---------------------------------------------------------------------------------------------
// interruption and configuration

test('Ctrl-C while the model hangs: interrupted, and the task goes back to inbox/', async () => {
  let c: Case | undefined;
  try {
    c = await setup([{ hang: true }]);
    const file = await writeTask(c.ws.settings.layout.inbox, 'interrupted.md', TASK);
    const controller = new AbortController();
    const llm = c.llm!;
    const running = runTask(file, { settings: c.ws.settings, signal: controller.signal });
    const deadline = Date.now() + 10_000;
    while (llm.requests.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.is(llm.requests.length, 1, 'the request reached the server before the abort');
    const abortedAt = Date.now();
    controller.abort();
    const result = await running;
    assert.ok(Date.now() - abortedAt < 5_000, 'the run stops promptly');
    const report = await checkAfterRun(c, result);
    assert.is(report.status, 'error');
    assert.is(report.error?.kind, 'interrupted');
    assert.is(report.outcome, 'failed');
    const { layout } = c.ws.settings;
    assert.is(result.task_file, path.join(layout.inbox, 'interrupted.md'));
    assert.is(await fs.readFile(result.task_file, 'utf8'), TASK, 'the task is back in inbox/, unchanged');
    assert.equal(await listDir(layout.failed), [], 'nothing in failed/');
    assert.equal(await listDir(layout.done), []);
  } finally {
    await teardown(c);
  }
});

test('no LLM configured: fails fast with a config error, no worktree, task in failed/', async () => {
  let c: Case | undefined;
  try {
    c = await setup(null, { env: { PATH: process.env.PATH, HOME: process.env.HOME } });
    assert.is(c.ws.settings.llm.apiKey, undefined);
    assert.is(c.ws.settings.llm.baseURL, undefined);
    const file = await writeTask(c.ws.settings.layout.inbox, 'no-llm.md', TASK);
    const started = Date.now();
    const result = await runTask(file, { settings: c.ws.settings });
    assert.ok(Date.now() - started < 5_000, 'fails fast');
    const report = await checkAfterRun(c, result);
    assert.is(report.status, 'error');
    assert.is(report.outcome, 'failed');
    assert.is(report.error?.kind, 'config');
    assert.match(report.error!.message, /OPENAI_API_KEY/);
    assert.match(report.error!.message, /base_url/);
    assert.is(report.usage.requests, 0);
    assert.is(report.base_commit, null, 'no worktree was made');
    assert.is(report.trajectory, null);
    await assertFailed(c, result, 'no-llm.md', /OPENAI_API_KEY/);
  } finally {
    await teardown(c);
  }
});

// ---------------------------------------------------------------------------------------------
// bad task files and re-runs

const BAD_PROJECT_TASK = TASK.replace('project: bot', 'project: nope');

test('a bad task file in inbox/ (unknown project): input error on field project, report written, task in failed/', async () => {
  let c: Case | undefined;
  try {
    c = await setup([finish()]);
    const file = await writeTask(c.ws.settings.layout.inbox, 'bad-project.md', BAD_PROJECT_TASK);
    const result = await runTask(file, { settings: c.ws.settings });
    const report = await checkAfterRun(c, result);
    assert.is(report.status, 'error');
    assert.is(report.outcome, 'failed');
    assert.is(report.error?.kind, 'input');
    assert.is(report.error?.field, 'project');
    assert.match(report.error!.message, /nope/);
    assert.is(report.task_id, 'bad-project');
    assert.is(result.report_path, path.join(c.ws.settings.layout.reports, 'bad-project.json'));
    assert.is(c.llm!.requests.length, 0, 'the model is never asked');
    await assertFailed(c, result, 'bad-project.md', /field "project"/, /nope/);
  } finally {
    await teardown(c);
  }
});

test('a bad task file outside inbox/ is reported but left where it is', async () => {
  let c: Case | undefined;
  try {
    c = await setup([finish()]);
    const dir = path.join(c.ws.root, 'elsewhere');
    await fs.mkdir(dir);
    const file = await writeTask(dir, 'outside.md', BAD_PROJECT_TASK);
    const result = await runTask(file, { settings: c.ws.settings });
    const report = await checkAfterRun(c, result);
    assert.is(report.status, 'error');
    assert.is(report.error?.kind, 'input');
    assert.is(report.error?.field, 'project');
    assert.is(result.task_file, file);
    assert.is(await fs.readFile(file, 'utf8'), BAD_PROJECT_TASK, 'the file is untouched');
    assert.is(report.task_file, 'elsewhere/outside.md');
    assert.equal(await listDir(c.ws.settings.layout.failed), [], 'nothing moved into failed/');
    assert.ok(await exists(path.join(c.ws.settings.layout.reports, 'outside.json')));
  } finally {
    await teardown(c);
  }
});

test('re-running a task id keeps both reports: the first goes to reports/archive/<id>/<run_id>/', async () => {
  let c: Case | undefined;
  try {
    c = await setup(() => finish('Nothing to do.'));
    const { layout } = c.ws.settings;
    const first = await runTask(await writeTask(layout.inbox, 'twice.md', TASK), { settings: c.ws.settings });
    await checkAfterRun(c, first);
    assert.is(first.outcome, 'no_changes');
    const second = await runTask(await writeTask(layout.inbox, 'twice.md', TASK), { settings: c.ws.settings });
    await checkAfterRun(c, second);
    assert.is(second.outcome, 'no_changes');
    assert.is.not(first.run_id, second.run_id);
    const archived = path.join(layout.reportArchive, 'twice', first.run_id);
    const old = ReportSchema.parse(await readJson(path.join(archived, 'twice.json')));
    const current = ReportSchema.parse(await readJson(path.join(layout.reports, 'twice.json')));
    assert.is(old.run_id, first.run_id);
    assert.is(current.run_id, second.run_id);
    assert.ok(await exists(path.join(archived, 'twice_report.md')), 'the Markdown report is archived too');
    assert.ok(await exists(path.join(archived, 'twice.trajectory.jsonl')), 'the trajectory is archived too');
    assert.match(await fs.readFile(path.join(layout.reports, 'twice_report.md'), 'utf8'), second.run_id);
    // Both task files ended in done/, the second under a unique name.
    assert.equal(await listDir(layout.done), ['twice-2.md', 'twice.md']);
  } finally {
    await teardown(c);
  }
});

test('a re-run that fails before it starts (unknown project) still keeps the earlier report', async () => {
  let c: Case | undefined;
  try {
    c = await setup(null);
    const { layout } = c.ws.settings;
    const first = await runTask(await writeTask(layout.inbox, 'again.md', BAD_PROJECT_TASK), { settings: c.ws.settings });
    const second = await runTask(await writeTask(layout.inbox, 'again.md', BAD_PROJECT_TASK), { settings: c.ws.settings });
    assert.is.not(first.run_id, second.run_id);
    assert.is((await readJson(second.report_path)).run_id, second.run_id);
    assert.is((await readJson(path.join(layout.reports, 'again.json'))).run_id, second.run_id);
    assert.is((await readJson(path.join(layout.reportArchive, 'again', first.run_id, 'again.json'))).run_id, first.run_id);
  } finally {
    await teardown(c);
  }
});

test.run();
