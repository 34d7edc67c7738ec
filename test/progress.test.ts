/**
 * Progress a person can follow: one line per agent step, per check and per gate decision on
 * stdout, also when stdout is a pipe (npm start > log, systemd, Task Scheduler).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeWorkspace } from './helpers/workspace.ts';
import { BIN, list, publish, waitFor } from './helpers/procs.ts';
import { finish, startFakeLlm, toolCall, type Reply } from './helpers/fakeLlm.ts';
import { approvePatch } from '../src/gate/decide.ts';
import { failedTestNames, lineFor, progressStream, pytestCounts } from '../src/service/progress.ts';
import { makeRedactor } from '../src/safety/redact.ts';

test('`watch` with stdout a pipe: step, check, claim, finish and gate lines, read from stdout', async () => {
  const script: Reply[] = [
    toolCall('write_file', { path: 'notes/progress.md', content: '# progress\n' }, { usage: { prompt_tokens: 7000, completion_tokens: 200 } }),
    finish('Added a note.'),
  ];
  let chat = 0;
  const llm = await startFakeLlm((request) => (request.path.endsWith('/models') ? { body: { object: 'list', data: [] } } : (script[chat++] ?? finish())));
  const ws = await makeWorkspace({ llmUrl: llm.url, extra: 'queue:\n  settle_ms: 100\n  scan_interval_ms: 200\n  shutdown_grace_s: 2' });
  const child = execa(process.execPath, [BIN, 'watch', '--root', ws.root], {
    reject: false,
    buffer: false,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
    env: { OPENAI_API_KEY: '' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const state = () => `stdout:\n${stdout}\nstderr:\n${stderr}`;
  try {
    await waitFor('watching', () => stdout.includes('watching '), 30_000, state);
    await publish(ws.settings.layout.inbox, 'prog.md', '---\nproject: bot\nobjective: add a note\nscope: ["notes/**"]\n---\n');
    await waitFor('the pending patch', async () => (await list(ws.settings.layout.patches.pending)).includes('prog.patch'), 60_000, state);
    await waitFor('the finish line', () => /task prog {2}finished/.test(stdout), 10_000, state);
    await approvePatch(ws.settings, 'prog');
    await waitFor('the gate decision', () => /gate prog {2}applied/.test(stdout), 60_000, state);

    const lines = stdout.split('\n');
    const has = (re: RegExp) =>
      assert.ok(
        lines.some((l) => re.test(l)),
        `no line ${re} in:\n${stdout}`,
      );
    has(/^task prog {2}started \(project bot, custom, engine openai\)$/);
    has(/^task prog {2}step 1\/40 {2}write_file notes\/progress\.md {2}tokens 7\.2k$/);
    has(/^task prog {2}step 2\/40 {2}finish {2}tokens 7\.3k$/);
    has(/^task prog {2}tests passed (\d+)\/\1 in \d+\.\d s$/);
    has(/^task prog {2}dry run passed in \d+\.\d s$/);
    has(/^task prog {2}finished: completed \(ok\), risk low, tokens 7\.3k$/);
    has(/^gate prog {2}tests passed (\d+)\/\1 in \d+\.\d s$/);
    has(/^gate prog {2}applied prog as [0-9a-f]{7}$/);
    // No pino-pretty blocks, no JSON on the console; the JSON log is still in logs/.
    assert.not.match(stdout, /"level":|INFO \(/);
    const logs = await fs.readdir(ws.settings.layout.logs);
    const log = await fs.readFile(path.join(ws.settings.layout.logs, logs.find((n) => n.startsWith('meta-agent_'))!), 'utf8');
    assert.match(log, /"msg":"step 1"/);
  } finally {
    child.kill('SIGTERM');
    await child;
    await llm.close();
    await ws.cleanup();
  }
});

test('a failed check and a rejection name the failing tests; a timeout says so', () => {
  const tail =
    'FAILED tests/test_sizing.py::test_negative_equity - assert 1 == 0\nERROR tests/test_x.py::test_setup\n=== 1 failed, 1 error, 28 passed in 2.10s ===';
  assert.equal(pytestCounts(tail), { passed: 28, total: 30 });
  assert.equal(failedTestNames(tail), ['test_negative_equity', 'test_setup']);
  const lines: string[] = [];
  const stream = progressStream({ out: (l) => lines.push(l) });
  const event = (e: Record<string, unknown>) => stream.write(`${JSON.stringify({ level: 30, run_id: 'r1', ...e })}\n`);
  event({ gate: 'sizing', msg: 'check started: test', check: 'test' });
  event({ gate: 'sizing', msg: 'check finished: test', check: 'test', passed: false, exit_code: 1, timed_out: false, duration_ms: 2100, tail });
  event({ gate: 'sizing', level: 40, msg: 'patch rejected by the gate', reason: 'the tests failed on main with the patch applied (exit 1):\n\n```\n...' });
  event({ task_id: 'slow', msg: 'check finished: dry_run', check: 'dry_run', passed: false, exit_code: null, timed_out: true, duration_ms: 300_000, tail: '' });
  event({ task_id: 'ok', msg: 'check finished: test', check: 'test', passed: true, exit_code: 0, timed_out: false, duration_ms: 4800, tail: 'no counts here' });
  assert.equal(lines, [
    'gate sizing  tests FAILED 2/30 (exit 1) in 2.1 s: test_negative_equity, test_setup',
    'gate sizing  rejected sizing: tests failed (test_negative_equity, test_setup)',
    'task slow  dry run TIMED OUT after 5m00s',
    'task ok  tests passed in 4.8 s',
  ]);
  stream.end();
});

test('a long check says it is alive until it finishes', async () => {
  const lines: string[] = [];
  const stream = progressStream({ out: (l) => lines.push(l), aliveEveryMs: 30 });
  stream.write(`${JSON.stringify({ level: 30, task_id: 't', run_id: 'r', msg: 'check started: test', check: 'test' })}\n`);
  await waitFor(
    'an alive line',
    () => lines.some((l) => /^task t {2}tests still running \(\d+s\)$/.test(l)),
    5_000,
    () => lines.join('\n'),
  );
  stream.write(
    `${JSON.stringify({ level: 30, task_id: 't', run_id: 'r', msg: 'check finished: test', check: 'test', passed: true, duration_ms: 100, tail: '' })}\n`,
  );
  const count = lines.length;
  await new Promise((r) => setTimeout(r, 120));
  assert.is(lines.length, count, 'no alive line after the finish');
  stream.end();
});

test('every line goes through the redactor; unknown events print nothing; warnings do', () => {
  const secret = 'sk-test-abcdefghijklmnop';
  const lines: string[] = [];
  const stream = progressStream({ out: (l) => lines.push(l), redact: makeRedactor({ OPENAI_API_KEY: secret }) });
  stream.write(
    `${JSON.stringify({ level: 30, task_id: 't', msg: 'step 1', step: 1, max_steps: 40, tools: ['read_file'], targets: [`x-${secret}`], tokens: 10 })}\n`,
  );
  stream.write(`${JSON.stringify({ level: 30, msg: 'worktree ready' })}\nnot json\n`);
  stream.write(`${JSON.stringify({ level: 50, msg: 'the reconcile scan failed', err: { message: 'EACCES: inbox' } })}\n`);
  assert.is(lines.length, 2, lines.join('\n'));
  assert.not.ok(lines[0]!.includes(secret), lines[0]);
  assert.match(lines[0]!, /^task t {2}step 1\/40 {2}read_file x-/);
  assert.is(lines[1], 'error: the reconcile scan failed: EACCES: inbox');
  assert.is(lineFor({ msg: 'applied as 1a2b3c4d5e on main', gate: 'g', commit: '1a2b3c4d5e6f' }, 'gate g  '), 'gate g  applied g as 1a2b3c4');
  stream.end();
});

test('agent text with escape sequences and control characters reaches the terminal without them', () => {
  const lines: string[] = [];
  const stream = progressStream({ out: (l) => lines.push(l) });
  // Clear screen, an OSC retitle, a hyperlink, a bell, a backspace and a carriage return in a tool target.
  const target = 'bot/\x1b[2Jx\x1b]0;pwned\x07.py\x1b]8;;http://evil/\x1b\\y\x1b]8;;\x1b\\\x08\r\x7f\x00\x9b31m';
  stream.write(
    `${JSON.stringify({ level: 30, task_id: 't\x1b[31m', msg: 'step 1', step: 1, max_steps: 40, tools: ['read_file'], targets: [target], tokens: 10 })}\n`,
  );
  assert.equal(lines, ['task t  step 1/40  read_file bot/x.pyy  tokens 10']);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the assertion is that no control character reaches the terminal
  for (const line of lines) assert.not.match(line, /[\x00-\x08\x0b-\x1f\x7f-\x9f]/);
  stream.end();
});

test.run();
