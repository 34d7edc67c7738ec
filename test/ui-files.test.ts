/**
 * What the dashboard reads goes through the schemas (src/contract/uiFiles.ts and the report,
 * cycle and sidecar schemas): one damaged file is left out and logged, never the whole page;
 * each action's request body is checked by its schema before its one-use token is spent.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { silentLogger } from '../src/log.ts';
import { runTask } from '../src/run/runTask.ts';
import { startUi, type UiServer } from '../src/ui/server.ts';
import { dashboardState } from '../src/ui/state.ts';
import { finish, startFakeLlm, toolCall, type FakeLlm } from './helpers/fakeLlm.ts';
import { capturedLog } from './helpers/llmCalls.ts';
import { makeWorkspace, type TestWorkspace } from './helpers/workspace.ts';

interface Env {
  llm?: FakeLlm;
  ws?: TestWorkspace;
  ui?: UiServer;
}
let env: Env = {};

test.after.each(async () => {
  await env.ui?.close().catch(() => undefined);
  await env.llm?.close().catch(() => undefined);
  await env.ws?.cleanup().catch(() => undefined);
  env = {};
});

/** A workspace with one real run of task `target`: its report and its pending patch. */
async function withPendingPatch(): Promise<TestWorkspace> {
  env.llm = await startFakeLlm([
    toolCall('edit_file', { path: 'bot/sizing.py', old: 'def position_size(', new: '# checked\ndef position_size(' }),
    finish('Documented sizing.', 'low'),
  ]);
  const ws = (env.ws = await makeWorkspace({ llmUrl: env.llm.url }));
  const file = path.join(ws.settings.layout.inbox, 'target.md');
  await fs.writeFile(file, '---\nproject: bot\nobjective: document sizing\nscope: ["bot/**"]\n---\n');
  const run = await runTask(file, { settings: ws.settings });
  assert.is(run.outcome, 'completed', run.report.error?.message);
  return ws;
}

test('one damaged file is left out and logged; the rest of the dashboard is shown', async () => {
  const ws = await withPendingPatch();
  const { layout } = ws.settings;
  await fs.writeFile(path.join(layout.reports, 'truncated.json'), '{"task_id": "truncated", "status": "ok",');
  await fs.writeFile(path.join(layout.reports, 'wrong.json'), '{"task_id": 5}');
  await fs.mkdir(path.join(layout.reports, 'cycles'), { recursive: true });
  await fs.writeFile(path.join(layout.reports, 'cycles', 'c1.json'), '{not json');
  await fs.writeFile(path.join(layout.patches.applied, 'old.patch'), 'diff --git a/x b/x\n');
  await fs.writeFile(path.join(layout.patches.applied, 'old.result.json'), '{"commit": 7}');
  await fs.writeFile(path.join(layout.patches.applied, 'fine.patch'), 'diff --git a/x b/x\n');
  await fs.writeFile(
    path.join(layout.patches.applied, 'fine.result.json'),
    JSON.stringify({ task_id: 'fine', decision: 'applied', commit: 'abc123', at: '2026-01-01T00:00:00Z' }),
  );
  await fs.writeFile(path.join(layout.processing, 'busy.md'), '---\nproject: bot\nobjective: x\n---\n');
  const steps = [
    { role: 'assistant', step: 1, usage: { prompt_tokens: 10, completion_tokens: 5 } },
    { role: 'assistant', step: 2, usage: { prompt_tokens: 20, completion_tokens: 1 } },
  ];
  await fs.writeFile(path.join(layout.reports, 'busy.trajectory.jsonl'), `${steps.map((s) => JSON.stringify(s)).join('\n')}\n{"role":"assistant","step":3,"us`);

  const { log, lines } = capturedLog();
  const state = await dashboardState(ws.settings, log);
  assert.equal(
    state.reports.map((r) => r.task_id),
    ['target'],
    'the good report is shown, the damaged ones are left out',
  );
  assert.equal(state.cycles, []);
  assert.equal(
    state.patches.applied.sort((a, b) => a.id.localeCompare(b.id)),
    [
      { id: 'fine', commit: 'abc123', at: '2026-01-01T00:00:00Z' },
      { id: 'old', commit: null, at: null },
    ],
  );
  assert.equal(
    state.processing.map(({ name, step, tokens }) => ({ name, step, tokens })),
    [{ name: 'busy.md', step: 2, tokens: 36 }],
    'the line being written is skipped',
  );
  const skipped = lines.filter((l) => l.msg === 'the dashboard skipped a damaged file').map((l) => path.basename(String(l.file)));
  assert.equal(skipped.sort(), ['c1.json', 'old.result.json', 'truncated.json', 'wrong.json']);
  assert.match(JSON.stringify(lines), /wrong\.json: field \\"task_id\\"/, 'the log names the file and the field');

  // Through the server too: the page loads, the damaged report is "not there", the applied patch shows without its record.
  env.ui = await startUi({ settings: ws.settings, log: silentLogger() });
  const get = (p: string) => fetch(`http://127.0.0.1:${env.ui!.port}${p}`, { headers: { 'x-meta-agent-token': env.ui!.token } });
  assert.is((await get('/api/state')).status, 200);
  assert.is((await get('/api/reports/truncated')).status, 404);
  assert.is((await get('/api/reports/target')).status, 200);
  const old = (await (await get('/api/patches/old')).json()) as { state: string; result: unknown };
  assert.equal([old.state, old.result], ['applied', null]);
  const fine = (await (await get('/api/patches/fine')).json()) as { result: { commit: string } };
  assert.is(fine.result.commit, 'abc123');
});

test("each action's body is checked by its schema: a bad one is a 400 naming the field and does not spend the action token", async () => {
  const ws = await withPendingPatch();
  env.ui = await startUi({ settings: ws.settings, log: silentLogger() });
  const base = `http://127.0.0.1:${env.ui.port}`;
  const headers = { 'x-meta-agent-token': env.ui.token, 'content-type': 'application/json', origin: base };
  const post = async (p: string, action: string, body: string) => {
    const res = await fetch(base + p, { method: 'POST', headers: { ...headers, 'x-meta-agent-action': action }, body });
    return { status: res.status, error: String(((await res.json()) as { error?: string }).error ?? '') };
  };
  const { actions } = (await (await fetch(`${base}/api/patches/target`, { headers })).json()) as { actions: { reject: string } };
  const badReason = await post('/api/patches/target/reject', actions.reject, '{"reason": 5}');
  assert.is(badReason.status, 400);
  assert.match(badReason.error, 'field "reason"');
  const blank = await post('/api/patches/target/reject', actions.reject, '{"reason": "  "}');
  assert.equal([blank.status, blank.error.includes('a rejection needs a reason')], [400, true]);
  assert.is((await post('/api/patches/target/reject', actions.reject, '["not", "an", "object"]')).status, 400);
  assert.is((await post('/api/patches/target/reject', actions.reject, '{"reason": "x"')).status, 400);
  assert.ok(await fs.stat(path.join(ws.settings.layout.patches.pending, 'target.patch')), 'still pending');
  // Positive control: the same token, with a good body, works (the refusals above did not spend it).
  assert.is((await post('/api/patches/target/reject', actions.reject, '{"reason": "not now"}')).status, 200);
  assert.ok(await fs.stat(path.join(ws.settings.layout.patches.rejected, 'target.patch')));

  const { actions: form } = (await (await fetch(`${base}/api/tasks/new`, { headers })).json()) as { actions: { create: string } };
  const badProject = await post('/api/tasks', form.create, '{"project": ["bot"], "objective": "x"}');
  assert.is(badProject.status, 400);
  assert.match(badProject.error, 'field "project"');
  assert.equal(await fs.readdir(ws.settings.layout.inbox), []);
  const created = await post(
    '/api/tasks',
    form.create,
    JSON.stringify({ project: 'bot', type: 'custom', objective: 'Check the sizing', scope: 'bot/**', tasks: ['one', ''], name: 'from-form' }),
  );
  assert.is(created.status, 201, created.error);
  const task = await fs.readFile(path.join(ws.settings.layout.inbox, 'from-form.md'), 'utf8');
  assert.match(task, 'Check the sizing');
  assert.match(task, 'bot/**');
});

test('routes outside the table are 404; ids in a path are validated before any handler', async () => {
  env.ws = await makeWorkspace();
  env.ui = await startUi({ settings: env.ws.settings, log: silentLogger() });
  const base = `http://127.0.0.1:${env.ui.port}`;
  const headers = { 'x-meta-agent-token': env.ui.token };
  assert.is((await fetch(`${base}/api/nothing`, { headers })).status, 404);
  assert.is((await fetch(`${base}/api/state`, { method: 'DELETE', headers })).status, 404);
  assert.is((await fetch(`${base}/api/reports/..%2Fsecret`, { headers })).status, 400);
  assert.is((await fetch(`${base}/api/reports/%E0%A4%A`, { headers })).status, 400);
  assert.is((await fetch(`${base}/api/reports/..%2Fsecret`)).status, 401, 'the token is checked first');
  assert.is((await fetch(`${base}/api/state`, { headers })).status, 200);
  const page = await fetch(`${base}/`);
  assert.is(page.status, 200);
  assert.match(String(page.headers.get('content-security-policy')), "script-src 'self'");
});

test.run();
