/**
 * The `codex` preset with the real Codex CLI (installed on demand, see helpers/codexCli.ts)
 * against a scripted Responses API on 127.0.0.1: Codex runs its own shell tool (exec_command)
 * in the worktree, and the run turns the result into a patch, or a scope violation.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runTask } from '../src/run/runTask.ts';
import { ReportSchema } from '../src/contract/report.ts';
import { makeWorkspace, readJson, repoFingerprint, worktreeCount, writeTask, type TestWorkspace } from './helpers/workspace.ts';
import { assistantMessage, functionCall, startResponsesApi, type ResponsesApi, type Turn } from './helpers/responsesApi.ts';
import { codexOrSkip, teardownCodexCase } from './helpers/codexCli.ts';

const API_KEY = 'sk-scripted-codex-key';
const SUMMARY = 'Documented the sizing rules at the top of bot/sizing.py';
const OBJECTIVE = 'Document the sizing rules in bot/sizing.py';
const TASK = `---
project: bot
type: custom
objective: ${OBJECTIVE}
scope: ["bot/sizing.py"]
---
Add one comment line that says where the sizing rules are explained.
`;

const FINAL_MESSAGE = [
  'I added the comment.',
  '',
  '```json',
  JSON.stringify({ summary: SUMMARY, risks: [], risk_level: 'low', next_actions: ['Review the comment'], findings: [] }),
  '```',
].join('\n');

/** Codex's shell edits a file, then Codex ends with its message; the usage of each turn is scripted. */
function editThenFinish(shellCommand: string): Turn[] {
  return [
    { items: [functionCall('exec_command', { cmd: shellCommand })], usage: { input_tokens: 1200, cached_tokens: 200, output_tokens: 40 } },
    { items: [assistantMessage(FINAL_MESSAGE)], usage: { input_tokens: 1300, cached_tokens: 1100, output_tokens: 60 } },
  ];
}

interface Case {
  ws: TestWorkspace;
  api: ResponsesApi;
  before: string;
}

async function setup(codex: string, script: Turn[]): Promise<Case> {
  const api = await startResponsesApi(script);
  try {
    const extra = ['engine: command', 'command:', '  preset: codex', `  program: ${JSON.stringify(codex)}`, '  timeout_s: 240'].join('\n');
    const ws = await makeWorkspace({ extra, llmUrl: api.url, env: { PATH: process.env.PATH, HOME: process.env.HOME, OPENAI_API_KEY: API_KEY } });
    return { ws, api, before: await repoFingerprint(ws.repo) };
  } catch (error) {
    await api.close();
    throw error;
  }
}

const teardown = teardownCodexCase;

test('codex preset: an in-scope edit by the real Codex CLI gives a patch with its summary and usage', async () => {
  const codex = await codexOrSkip('codex in-scope edit');
  if (!codex) return;
  let c: Case | undefined;
  try {
    c = await setup(
      codex,
      editThenFinish(`printf '%s\\n' '# Sizing rules: see the docstring of position_size.' | cat - bot/sizing.py > sizing.tmp && mv sizing.tmp bot/sizing.py`),
    );
    const file = await writeTask(c.ws.settings.layout.inbox, 'codex-edit.md', TASK);
    const result = await runTask(file, { settings: c.ws.settings });
    const report = ReportSchema.parse(await readJson(result.report_path));
    assert.is(report.status, 'ok', report.error?.message);
    assert.is(report.outcome, 'completed', report.engine_output_tail ?? '');
    assert.equal(report.changed_files, ['bot/sizing.py']);
    assert.equal(report.scope_violations, []);

    // The summary is the agent's own message, not the tail of its output.
    assert.ok(report.summary.includes(SUMMARY), report.summary);
    assert.not.match(report.summary, 'Last output');

    // Usage from Codex's turn.completed event: the two scripted responses added up.
    assert.is(report.usage.prompt_tokens, 2500);
    assert.is(report.usage.cached_tokens, 1300);
    assert.is(report.usage.completion_tokens, 100);
    assert.is(report.usage.requests, 1, 'one Codex turn');

    // The patch holds Codex's edit.
    assert.is(report.patch_files.length, 2, JSON.stringify(report.patch_files));
    const patch = await fs.readFile(path.join(c.ws.root, report.patch_files.find((f) => f.endsWith('.patch'))!), 'utf8');
    assert.match(patch, '+# Sizing rules: see the docstring of position_size.');

    // What Codex sent: the task on its prompt, our model and key, and two turns.
    const turns = c.api.turns();
    assert.is(turns.length, 2);
    assert.is(turns[0]!.body.model, 'scripted-model');
    assert.is(turns[0]!.headers.authorization, `Bearer ${API_KEY}`);
    assert.ok(turns[0]!.raw.includes(OBJECTIVE), 'the objective reached the model');
    assert.ok(turns[1]!.raw.includes('function_call_output'), 'Codex sent its shell result back');

    // The real repo is untouched, no worktree and no private HOME is left.
    assert.is(await repoFingerprint(c.ws.repo), c.before);
    assert.is(await worktreeCount(c.ws.repo), 0);
    assert.equal(await fs.readdir(path.join(c.ws.settings.layout.state, 'engine-homes')).catch(() => []), []);
  } finally {
    await teardown(c);
  }
});

test('codex preset: an edit outside the task scope ends as scope_violation with no patch', async () => {
  const codex = await codexOrSkip('codex scope violation');
  if (!codex) return;
  let c: Case | undefined;
  try {
    c = await setup(codex, editThenFinish(`printf 'sneaky\\n' >> README.md`));
    const file = await writeTask(c.ws.settings.layout.inbox, 'codex-scope.md', TASK);
    const result = await runTask(file, { settings: c.ws.settings });
    const report = ReportSchema.parse(await readJson(result.report_path));
    assert.is(report.outcome, 'scope_violation', report.error?.message);
    assert.equal(report.scope_violations, ['README.md']);
    assert.equal(report.patch_files, []);
    assert.equal(await fs.readdir(c.ws.settings.layout.patches.pending), []);
    assert.is(c.api.turns().length, 2, 'Codex did run the scripted edit');
    assert.is(await repoFingerprint(c.ws.repo), c.before);
    assert.is(await worktreeCount(c.ws.repo), 0);
  } finally {
    await teardown(c);
  }
});

test.run();
