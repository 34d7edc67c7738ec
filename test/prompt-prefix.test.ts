/**
 * Issue 12, prompt caching: every request of a run, and every run of a project, starts with
 * the same bytes (the system message and the tool list), with the task after them; nothing
 * run-specific (ids, dates, paths, scope) is in that prefix.
 */
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { runTask } from '../src/run/runTask.ts';
import { finish, startFakeLlm, toolCall, type RecordedRequest } from './helpers/fakeLlm.ts';
import { makeWorkspace, REPO_ROOT, writeTask } from './helpers/workspace.ts';

const BIN = path.join(REPO_ROOT, 'bin', 'meta-agent.js');

const EXPLORE = [
  toolCall('list_files', { path: '.' }),
  toolCall('read_file', { path: 'bot/sizing.py' }),
  toolCall('search', { pattern: 'def ', path: 'bot' }),
  toolCall('read_file', { path: 'bot/main.py', start_line: 1, end_line: 20 }),
  toolCall('list_files', { path: 'tests' }),
  toolCall('read_file', { path: 'tests/conftest.py' }),
  toolCall('search', { pattern: 'risk_per_trade' }),
  toolCall('read_file', { path: 'bot/config.py' }),
  toolCall('read_file', { path: 'README.md' }),
];

const prefixOf = (r: RecordedRequest) => JSON.stringify({ system: r.body.messages[0], tools: r.body.tools });

test('a 10-step run sends the same system message and tools, byte for byte, in every request, and so does another task of the project in another process', async () => {
  const first = await startFakeLlm([...EXPLORE, finish('Read around; nothing to change.', 'low')]);
  const second = await startFakeLlm([toolCall('read_file', { path: 'bot/strategy.py' }), finish('Looked at the strategy.', 'low')]);
  const ws = await makeWorkspace({ llmUrl: first.url });
  try {
    const file = await writeTask(
      ws.settings.layout.inbox,
      'look-around.md',
      '---\nproject: bot\ntype: audit_code\nobjective: Look around the sizing code\nscope: []\n---\n',
    );
    const run = await runTask(file, { settings: ws.settings });
    assert.is(run.status, 'ok', run.report.error?.message);
    assert.is(first.requests.length, 10);
    const prefix = prefixOf(first.requests[0]!);
    for (const [i, r] of first.requests.entries()) {
      assert.is(prefixOf(r), prefix, `request ${i + 1}: the same system message and tools`);
      // The task message follows, unchanged; each request only appends to the one before.
      const before = i > 0 ? first.requests[i - 1]!.body.messages : [];
      assert.is(JSON.stringify(r.body.messages.slice(0, before.length)), JSON.stringify(before), `request ${i + 1} appends to request ${i}`);
    }
    assert.is(first.requests[0]!.body.messages[1].role, 'user');
    assert.match(first.requests[0]!.body.messages[1].content, 'Look around the sizing code');

    // Nothing of this run or this machine is in the prefix: those belong after it.
    const system = String(first.requests[0]!.body.messages[0].content);
    for (const specific of [
      run.run_id,
      'look-around',
      ws.root,
      ws.repo,
      ws.settings.layout.worktrees,
      new Date().toISOString().slice(0, 10),
      'Look around',
      'bot/**',
    ]) {
      assert.not.ok(prefix.includes(specific), `the prefix holds "${specific}"`);
    }
    assert.match(system, 'run_checks: slow');

    // Another task of the same project, run by the CLI in its own process.
    await writeTask(
      ws.settings.layout.inbox,
      'strategy.md',
      '---\nproject: bot\ntype: custom\nobjective: Review the strategy\nscope: ["bot/strategy.py"]\n---\n',
    );
    const cli = await execa(process.execPath, [BIN, 'run', '--task-id', 'strategy', '--root', ws.root], {
      reject: false,
      env: { OPENAI_API_KEY: '', OPENAI_BASE_URL: second.url },
      extendEnv: true,
      timeout: 120_000,
    });
    assert.is(second.requests.length, 2, cli.stdout + cli.stderr);
    for (const r of second.requests) assert.is(prefixOf(r), prefix, 'the same prefix in another task and process');
    assert.match(second.requests[0]!.body.messages[1].content, 'Review the strategy');
  } finally {
    await first.close();
    await second.close();
    await ws.cleanup();
  }
});

test.run();
