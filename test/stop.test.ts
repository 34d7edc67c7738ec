/**
 * Stop always stops: SIGTERM ends a real `meta-agent watch` (and `schedule`, `ui`) process
 * within the grace period in every state it can be in, and a second signal ends it at once.
 * Running work goes back where it came from: tasks to inbox/, a gated patch to approved/.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeWorkspace, worktreeCount, type TestWorkspace } from './helpers/workspace.ts';
import { BIN, killAll, list, publish, signal, sleep, startWatchReady, waitFor, type WatchProc } from './helpers/procs.ts';
import { startFakeLlm, type FakeLlm, type RecordedRequest, type Reply } from './helpers/fakeLlm.ts';
import { runTask } from '../src/run/runTask.ts';
import { approvePatch } from '../src/gate/decide.ts';

const GRACE_S = 2;
/** What winding down may take after the grace period: an interrupted report, a worktree removed. */
const WIND_DOWN_MS = 8_000;
const QUEUE = `queue:\n  settle_ms: 100\n  scan_interval_ms: 200\n  lease_stale_s: 5\n  shutdown_grace_s: ${GRACE_S}`;
const taskText = (objective: string) => `---\nproject: bot\nobjective: ${objective}\nscope: ["**"]\n---\n`;

/** The doctor's GET /models is answered; every chat request hangs (a model that never answers). */
const hangingModel = (request: RecordedRequest): Reply => (request.path.endsWith('/models') ? { body: { object: 'list', data: [] } } : { hang: true });

/** Sends SIGTERM and asserts the process exits on its own, cleanly, within the grace period (+ wind-down). */
async function stopsWithin(proc: WatchProc, ms = GRACE_S * 1000 + WIND_DOWN_MS, sig: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  signal(proc, sig);
  const outcome = await Promise.race([proc.exited, sleep(ms).then(() => 'still running' as const)]);
  assert.is.not(outcome, 'still running', `the process was still running ${ms} ms after ${sig}:\n${proc.output()}`);
  assert.equal(outcome, { code: 0, signal: null }, proc.output());
  // The bin's last-resort exit did not have to step in: nothing was left open.
  assert.not.match(proc.output(), /still open/);
}

async function withLlm(script: (r: RecordedRequest) => Reply, body: (llm: FakeLlm) => Promise<void>): Promise<void> {
  const llm = await startFakeLlm((request) => script(request));
  try {
    await body(llm);
  } finally {
    await killAll();
    await llm.close();
  }
}

test('idle: SIGTERM ends watch', async () => {
  const ws = await makeWorkspace({ project: '    scope: ["**"]', extra: ['engine: command', 'command:\n  run: ["true"]', QUEUE].join('\n') });
  try {
    const proc = await startWatchReady(ws.root);
    await stopsWithin(proc);
  } finally {
    await killAll();
    await ws.cleanup();
  }
});

test('running a task (the model hangs): SIGTERM ends watch after the grace period; the task is back in inbox/, no worktree left', async () => {
  await withLlm(hangingModel, async (llm) => {
    const ws = await makeWorkspace({ llmUrl: llm.url, extra: QUEUE });
    try {
      const proc = await startWatchReady(ws.root);
      await publish(ws.settings.layout.inbox, 'hang.md', taskText('wait forever'));
      await waitFor(
        'the model asked',
        () => llm.requests.some((r) => r.path.endsWith('/chat/completions')),
        20_000,
        () => proc.output(),
      );
      await stopsWithin(proc);
      assert.equal(await list(ws.settings.layout.inbox), ['hang.md']);
      assert.equal(await list(ws.settings.layout.processing), []);
      assert.is(await worktreeCount(ws.repo), 0);
    } finally {
      await ws.cleanup();
    }
  });
});

/** Starts watch, breaks the repo with `breakIt`, drops a task and waits for it to fail; then SIGTERM. */
async function afterFailure(breakIt: (ws: TestWorkspace) => Promise<void>, expected: RegExp, project?: string): Promise<void> {
  await withLlm(hangingModel, async (llm) => {
    const ws = await makeWorkspace({ llmUrl: llm.url, extra: QUEUE, ...(project ? { project } : {}) });
    try {
      const proc = await startWatchReady(ws.root);
      await breakIt(ws);
      await publish(ws.settings.layout.inbox, 'doomed.md', taskText('anything'));
      await waitFor(
        'the task failed',
        async () => (await list(ws.settings.layout.failed)).includes('doomed.md'),
        20_000,
        () => proc.output(),
      );
      const report = await fs.readFile(path.join(ws.settings.layout.reports, 'doomed.json'), 'utf8');
      assert.match(report, expected);
      await stopsWithin(proc);
    } finally {
      await ws.cleanup();
    }
  });
}

test('after a task failed because the repo does not exist: SIGTERM ends watch', async () => {
  await afterFailure((ws) => fs.rm(ws.repo, { recursive: true, force: true }), /does not exist/);
});

test('after a task failed because the branch does not exist: SIGTERM ends watch', async () => {
  await afterFailure(
    async (ws) => void (await execa('git', ['branch', '-m', 'main', 'renamed'], { cwd: ws.repo })),
    /main/,
    '    branch: main\n    scope: ["**"]\n    test: "python3 -m pytest -q -p no:cacheprovider"',
  );
});

test('during a gate run (slow tests): SIGTERM ends watch; the patch is back in approved/ under its name, not rejected, branch unchanged', async () => {
  const ws = await makeWorkspace({ extra: ['engine: command', `command:\n  run: ["sh", "-c", "echo '# a note' >> README.md"]`, QUEUE].join('\n') });
  const { layout } = ws.settings;
  try {
    await publish(layout.inbox, 'gated.md', taskText('add a note'));
    const run = await runTask(path.join(layout.inbox, 'gated.md'), { settings: ws.settings });
    assert.ok(run.patch_path, run.report.error?.message);
    const yaml = await fs.readFile(layout.config, 'utf8');
    const slow = yaml.replace('test: "python3 -m pytest -q -p no:cacheprovider"', 'test: "sleep 120"');
    assert.is.not(slow, yaml);
    await fs.writeFile(layout.config, slow);
    const head = (await execa('git', ['rev-parse', 'main'], { cwd: ws.repo })).stdout;
    const proc = await startWatchReady(ws.root);
    await approvePatch(ws.settings, 'gated');
    await waitFor(
      'a gate worktree',
      async () => (await list(layout.worktrees)).some((n) => n.startsWith('gate-')),
      20_000,
      () => proc.output(),
    );
    await stopsWithin(proc);
    assert.ok((await list(layout.patches.approved)).includes('gated.patch'), `approved/: ${(await list(layout.patches.approved, { dot: true })).join(', ')}`);
    assert.equal(await list(layout.patches.rejected), []);
    assert.is((await execa('git', ['rev-parse', 'main'], { cwd: ws.repo })).stdout, head);
    assert.is(await worktreeCount(ws.repo), 0);
  } finally {
    await killAll();
    await ws.cleanup();
  }
});

const SCHEDULE = `supervisor:\n  timezone: UTC\n  tick_s: 1\n  schedule: [{ cron: "* * * * *", goal: daily_maintenance }]`;

test('during a scheduled cycle (its task hangs in the model): SIGTERM ends watch; the task is back in inbox/', async () => {
  await withLlm(hangingModel, async (llm) => {
    const ws = await makeWorkspace({ llmUrl: llm.url, extra: [QUEUE, SCHEDULE].join('\n') });
    try {
      const proc = await startWatchReady(ws.root);
      await waitFor(
        "the cycle's task asked the model",
        () => llm.requests.some((r) => r.path.endsWith('/chat/completions')),
        30_000,
        () => proc.output(),
      );
      assert.equal((await list(path.join(ws.settings.layout.state, 'supervisor', 'running'))).length, 1, 'a cycle is running');
      await stopsWithin(proc);
      assert.equal(await list(ws.settings.layout.processing), []);
      assert.is((await list(ws.settings.layout.inbox)).length, 1);
    } finally {
      await ws.cleanup();
    }
  });
});

test('`schedule` in the foreground, during a cycle: SIGTERM ends it', async () => {
  await withLlm(hangingModel, async (llm) => {
    const ws = await makeWorkspace({ llmUrl: llm.url, extra: [QUEUE, SCHEDULE].join('\n') });
    const child = execa(process.execPath, [BIN, 'schedule', '--root', ws.root], { reject: false, all: true, stdin: 'ignore', env: { OPENAI_API_KEY: '' } });
    try {
      await waitFor("the cycle's task asked the model", () => llm.requests.some((r) => r.path.endsWith('/chat/completions')), 30_000);
      const started = Date.now();
      child.kill('SIGTERM');
      const result = await Promise.race([child, sleep(GRACE_S * 1000 + WIND_DOWN_MS).then(() => null)]);
      assert.ok(result, `schedule still running ${Date.now() - started} ms after SIGTERM`);
      assert.is(result!.exitCode, 0, String(result!.all));
      assert.not.match(String(result!.all), /still open/);
    } finally {
      child.kill('SIGKILL');
      await child;
      await ws.cleanup();
    }
  });
});

test('`ui` with a browser connected to its event stream: SIGTERM ends it', async () => {
  const ws = await makeWorkspace({ project: '    scope: ["**"]', extra: QUEUE });
  const child = execa(process.execPath, [BIN, 'ui', '--root', ws.root], { reject: false, all: true, buffer: false, stdin: 'ignore' });
  let out = '';
  child.all?.on('data', (c: Buffer) => (out += c.toString()));
  const events = new AbortController();
  try {
    await waitFor(
      'the dashboard URL',
      () => /dashboard: (\S+)/.test(out),
      20_000,
      () => out,
    );
    const url = new URL(/dashboard: (\S+)/.exec(out)![1]!);
    const stream = await fetch(`${url.origin}/api/events?token=${url.searchParams.get('token')}`, { signal: events.signal });
    assert.is(stream.status, 200, 'the event stream is open (positive control)');
    child.kill('SIGTERM');
    const result = await Promise.race([child, sleep(WIND_DOWN_MS).then(() => null)]);
    assert.ok(result, 'ui still running after SIGTERM');
    assert.is(result!.exitCode, 0, out);
    assert.not.match(out, /still open/);
  } finally {
    events.abort();
    child.kill('SIGKILL');
    await child;
    await ws.cleanup();
  }
});

test('a second signal ends watch at once (no grace) and the running task is back in inbox/', async () => {
  await withLlm(hangingModel, async (llm) => {
    const ws = await makeWorkspace({ llmUrl: llm.url, extra: QUEUE.replace(`shutdown_grace_s: ${GRACE_S}`, 'shutdown_grace_s: 120') });
    try {
      const proc = await startWatchReady(ws.root);
      await publish(ws.settings.layout.inbox, 'hang.md', taskText('wait forever'));
      await waitFor(
        'the model asked',
        () => llm.requests.some((r) => r.path.endsWith('/chat/completions')),
        20_000,
        () => proc.output(),
      );
      signal(proc, 'SIGINT');
      await waitFor(
        'the stop message',
        () => proc.output().includes('stopping:'),
        5_000,
        () => proc.output(),
      );
      await sleep(1000);
      assert.ok(proc.alive(), 'the first signal waits for the grace period (positive control)');
      await stopsWithin(proc, WIND_DOWN_MS, 'SIGINT');
      assert.match(proc.output(), /stopping now/);
      assert.equal(await list(ws.settings.layout.inbox), ['hang.md']);
      assert.equal(await list(ws.settings.layout.processing), []);
    } finally {
      await ws.cleanup();
    }
  });
});

test.after(async () => {
  await killAll();
});

test.run();
