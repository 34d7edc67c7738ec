/**
 * A supervisor cycle survives what a night can do to it: a disk full for a moment (its task
 * is recovered and re-run by the watcher, awaited, and the rest of the plan still runs), and
 * kill -9 of its process (the next start finishes it from its journal). Either way the
 * morning's cycle report exists and lists exactly the tasks of that cycle.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CycleReportSchema, type CycleReport } from '../src/contract/cycle.ts';
import { resumeSupervisorCycle, runSupervisorCycle } from '../src/supervisor/cycle.ts';
import { startWatching } from '../src/service/watch.ts';
import { injectFileFault } from '../src/workspace/files.ts';
import { silentLogger } from '../src/log.ts';
import { list, waitFor } from './helpers/procs.ts';
import { makeWorkspace, runUntilKilled, type TestWorkspace } from './helpers/workspace.ts';

const QUEUE = 'queue:\n  settle_ms: 100\n  scan_interval_ms: 200\n  lease_stale_s: 1\n  shutdown_grace_s: 1';
const TWO_TASKS =
  'routines: {daily_maintenance: [{type: custom, objective: "Look around", scope: [], tasks: []}, {type: custom, objective: "Look again", scope: [], tasks: []}]}';
const ENOSPC = (file: string) => Object.assign(new Error(`ENOSPC: no space left on device, write '${file}'`), { code: 'ENOSPC', path: file });

async function cycleReports(ws: TestWorkspace): Promise<CycleReport[]> {
  const dir = path.join(ws.settings.layout.reports, 'cycles');
  const names = (await list(dir)).filter((n) => n.endsWith('.json'));
  return Promise.all(names.map(async (n) => CycleReportSchema.parse(JSON.parse(await fs.readFile(path.join(dir, n), 'utf8')))));
}

/** The task files a cycle created, wherever they are in the queue (as the soak's invariant counts them). */
async function createdTasks(ws: TestWorkspace, cycleId: string): Promise<string[]> {
  const { inbox, processing, done, failed } = ws.settings.layout;
  const names = (await Promise.all([inbox, processing, done, failed].map((d) => list(d)))).flat();
  return names.filter((n) => n.includes(cycleId)).sort();
}

test('a disk full for a moment during a cycle: the task whose report was lost is awaited (re-run by the watcher), the next task is still created, the cycle report is written once the disk is back', async () => {
  const ws = await makeWorkspace({ extra: ['engine: command', 'command:\n  run: ["true"]', QUEUE, `supervisor:\n  ${TWO_TASKS}`].join('\n') });
  // Full from the first report written until one task report has been refused (so exactly one
  // run loses its report, however fast the re-run comes), and for one second from the cycle
  // report's first write (the cycle retries its own writes).
  const windows = new Map<string, number>();
  let taskReportRefused = false;
  injectFileFault((file) => {
    const kind = path.dirname(file) === path.join(ws.settings.layout.reports, 'cycles') ? 'cycle' : file.startsWith(ws.settings.layout.reports) ? 'task' : null;
    if (!kind) return;
    if (!windows.has(kind)) windows.set(kind, Date.now() + 1000);
    if (kind === 'task') {
      if (taskReportRefused) return;
      if (/_report\.md\.|\.json\./.test(path.basename(file)) || /_report\.md$|\.json$/.test(file)) taskReportRefused = true;
      throw ENOSPC(file);
    }
    if (Date.now() < windows.get(kind)!) throw ENOSPC(file);
  });
  const watcher = startWatching({ settings: ws.settings, log: silentLogger(), supervisorLog: silentLogger() });
  try {
    await watcher.ready;
    const report = await runSupervisorCycle(ws.settings, 'daily_maintenance', 'daily', { waitTimeoutMs: 20_000, pollMs: 100 });
    assert.is(report.error, null, report.error?.message);
    assert.is(report.status, 'ok', report.summary);
    assert.equal(
      report.tasks.map((t) => [t.objective, t.status]),
      [
        ['Look around', 'ok'],
        ['Look again', 'ok'],
      ],
    );
    assert.ok(windows.has('task') && windows.has('cycle'), 'both writes met the full disk');
    assert.equal(await cycleReports(ws), [report], 'the cycle report is on disk');
    assert.equal(
      await createdTasks(ws, report.cycle_id),
      report.tasks.map((t) => `${t.task_id}.md`),
    );
    assert.equal(
      await list(ws.settings.layout.done),
      report.tasks.map((t) => `${t.task_id}.md`),
    );
  } finally {
    injectFileFault(null);
    await watcher.stop();
    await ws.cleanup();
  }
});

/**
 * Runs a scheduled cycle in a child process holding the scheduler lock (as `watch` does),
 * which kill -9s itself when the first task's report is written: the state a crash there
 * leaves on disk.
 */
async function cycleKilledAtFirstReport(ws: TestWorkspace): Promise<void> {
  await runUntilKilled(ws, 'the cycle', (src) => [
    `import path from 'node:path';`,
    `import { injectFileFault } from ${src('workspace/files.ts')};`,
    `import { loadSettings } from ${src('workspace/config.ts')};`,
    `import { lockActivity } from ${src('workspace/lease.ts')};`,
    `import { runSupervisorCycle } from ${src('supervisor/cycle.ts')};`,
    `const settings = await loadSettings(process.argv[2], { PATH: process.env.PATH, HOME: process.env.HOME });`,
    `await lockActivity(path.join(settings.layout.state, 'supervisor', 'scheduler'), { staleMs: 60_000, wait: false });`,
    `injectFileFault((file) => { if (path.dirname(file) === settings.layout.reports && path.basename(file).includes('S1_')) process.kill(process.pid, 'SIGKILL'); });`,
    `await runSupervisorCycle(settings, 'daily_maintenance', 'daily');`,
    `console.log('not killed');`,
  ]);
}

test('kill -9 during a cycle: the next start takes over the dead scheduler lock, finishes the cycle (awaits its task, creates the one never created) and writes its report', async () => {
  const ws = await makeWorkspace({
    extra: [
      'engine: command',
      'command:\n  run: ["true"]',
      QUEUE,
      `supervisor:\n  timezone: Europe/Kyiv\n  catch_up_s: 0\n  schedule: [{cron: "30 2 * * *", goal: daily_maintenance}]\n  ${TWO_TASKS}`,
    ].join('\n'),
  });
  const state = path.join(ws.settings.layout.state, 'supervisor');
  try {
    await cycleKilledAtFirstReport(ws);
    const [journal] = await list(path.join(state, 'running'));
    assert.ok(journal, 'the dead cycle left its journal');
    const cycleId = journal!.replace(/\.json$/, '');
    assert.equal(await list(ws.settings.layout.processing), [`S1_bot_${cycleId}.md`], 'the first task was running');
    assert.equal(await cycleReports(ws), []);
    assert.ok((await list(state, { dot: true })).includes('.scheduler.lock'), 'the dead process holds the scheduler lock');

    // The service starts again (noon, far from the 02:30 job: the schedule itself starts nothing).
    const watcher = startWatching({ settings: ws.settings, log: silentLogger(), supervisorLog: silentLogger(), clock: () => new Date('2026-12-01T10:00:00Z') });
    try {
      await watcher.ready;
      await waitFor('the cycle report', async () => (await cycleReports(ws)).length > 0, 30_000);
    } finally {
      await watcher.stop();
    }
    const [report, ...more] = await cycleReports(ws);
    assert.equal(more, []);
    assert.is(report!.cycle_id, cycleId);
    assert.is(report!.status, 'ok', report!.summary);
    assert.equal(
      report!.tasks.map((t) => [t.task_id, t.objective, t.status]),
      [
        [`S1_bot_${cycleId}`, 'Look around', 'ok'],
        [`S2_bot_${cycleId}`, 'Look again', 'ok'],
      ],
    );
    assert.equal(await createdTasks(ws, cycleId), [`S1_bot_${cycleId}.md`, `S2_bot_${cycleId}.md`]);
    assert.equal(await list(ws.settings.layout.done), [`S1_bot_${cycleId}.md`, `S2_bot_${cycleId}.md`]);
    assert.equal(await list(path.join(state, 'running')), [], 'the journal is removed');
    assert.not.ok((await list(state, { dot: true })).includes('.scheduler.lock'), 'the dead lock is gone');
  } finally {
    await ws.cleanup();
  }
});

test("a resumed cycle whose task is under a recoverer's private name (.taken-*) waits for it instead of creating it again", async () => {
  const ws = await makeWorkspace({ extra: ['engine: command', 'command:\n  run: ["true"]', QUEUE, `supervisor:\n  ${TWO_TASKS}`].join('\n') });
  try {
    const { layout } = ws.settings;
    const cycleId = '20260101T0030-daily-maintenance-beef';
    const id = `S1_bot_${cycleId}`;
    const plan = { tasks: [{ type: 'custom' as const, objective: 'Look around', scope: [], tasks: [] }] };
    const context = { commits: [], logLines: [], pnl: null, openNextActions: [], pending: [], rejectedReasons: [], head: null, logOffsets: {} };
    const journal = {
      cycle_id: cycleId,
      goal: 'daily_maintenance',
      mode: 'daily' as const,
      project: 'bot',
      started_at: '2026-01-01T00:30:00.000Z',
      owner: { host: 'vm', pid: 1 },
      planned: {
        plan,
        planner: {
          source: 'routine' as const,
          model: null,
          attempts: 0,
          usage: { requests: 0, prompt_tokens: 0, cached_tokens: 0, completion_tokens: 0, cost_usd: null },
        },
        context,
        task_ids: [id],
      },
    };
    // A recoverer (of the dead cycle's worker) holds the task under a private name for a moment.
    await fs.writeFile(path.join(layout.processing, `.taken-0badf00d-${id}.md`), `---\nid: ${id}\nproject: bot\nobjective: Look around\n---\n`);
    const report = await resumeSupervisorCycle(ws.settings, journal, { waitTimeoutMs: 300, pollMs: 50 });
    assert.equal(await list(layout.inbox), [], 'not created a second time');
    assert.equal(
      report.tasks.map((t) => t.task_id),
      [id],
    );
    assert.is(report.tasks[0]!.status, 'timeout', 'awaited (no report within the short wait)');
  } finally {
    await ws.cleanup();
  }
});

test.run();
