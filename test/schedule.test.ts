/** The off-market scheduler: DST in Europe/Kyiv, trading windows, no overlap, catch-up, OS schedulers. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { localTime, nextRuns, Scheduler, tradingWindowAt, type ScheduleJob } from '../src/supervisor/schedule.ts';
import { printSchedule } from '../src/supervisor/osSchedule.ts';
import { silentLogger } from '../src/log.ts';
import type { CycleReport } from '../src/contract/cycle.ts';
import { makeWorkspace, type TestWorkspace } from './helpers/workspace.ts';
import { waitFor } from './helpers/procs.ts';
import { injectFileFault } from '../src/workspace/files.ts';
import pino from 'pino';

const KYIV = 'Europe/Kyiv';
const iso = (ds: Date[]) => ds.map((d) => d.toISOString());

test('next runs of a 03:30 job across the autumn change: the repeated hour runs once', () => {
  // 2026-10-25 04:00 EEST -> 03:00 EET: 03:30 local happens at 00:30Z and again at 01:30Z.
  const runs = nextRuns('30 3 * * *', KYIV, new Date('2026-10-23T22:00:00Z'), 4);
  assert.equal(iso(runs), ['2026-10-24T00:30:00.000Z', '2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z', '2026-10-27T01:30:00.000Z']);
});

test('next runs across the spring change: a time in the skipped hour runs right after the jump', () => {
  // 2026-03-29 03:00 EET -> 04:00 EEST: 03:30 does not exist that day; it runs at 04:00 local (01:00Z).
  const runs = nextRuns('30 3 * * *', KYIV, new Date('2026-03-27T00:00:00Z'), 4);
  assert.equal(iso(runs), ['2026-03-27T01:30:00.000Z', '2026-03-28T01:30:00.000Z', '2026-03-29T01:00:00.000Z', '2026-03-30T00:30:00.000Z']);
  assert.is(localTime(runs[2]!, KYIV).key, '2026-03-29T04:00');
  // A 02:00 job keeps its local time; its UTC time moves by an hour.
  assert.equal(iso(nextRuns('0 2 * * *', KYIV, new Date('2026-03-28T00:00:00Z'), 3)), [
    '2026-03-29T00:00:00.000Z',
    '2026-03-29T23:00:00.000Z',
    '2026-03-30T23:00:00.000Z',
  ]);
  // Weekdays only.
  const weekdays = nextRuns('0 1 * * 1-5', KYIV, new Date('2026-11-27T12:00:00Z'), 2); // Friday noon
  assert.equal(
    weekdays.map((d) => localTime(d, KYIV).dow),
    [1, 2],
  );
});

test('trading windows: inside, outside, over midnight, by weekday', () => {
  const windows = [
    { days: ['mon', 'tue', 'wed', 'thu', 'fri'] as ('mon' | 'tue' | 'wed' | 'thu' | 'fri')[], start: '09:00', end: '17:00' },
    { days: ['sat' as const], start: '22:00', end: '02:00' },
  ];
  const at = (local: string) => tradingWindowAt(windows, KYIV, new Date(local));
  assert.ok(at('2026-11-23T10:00:00+02:00'), 'Monday 10:00');
  assert.not.ok(at('2026-11-23T17:00:00+02:00'), 'Monday 17:00 is after the window');
  assert.not.ok(at('2026-11-22T10:00:00+02:00'), 'Sunday');
  assert.ok(at('2026-11-28T23:30:00+02:00'), 'Saturday 23:30');
  assert.ok(at('2026-11-29T01:30:00+02:00'), 'Sunday 01:30 belongs to Saturday night');
  assert.not.ok(at('2026-11-29T02:30:00+02:00'));
});

interface Harness {
  ws: TestWorkspace;
  now: Date;
  cycles: Array<{ goal: string; at: string }>;
  release: () => void;
  scheduler(): Scheduler;
}

async function harness(extra: string, options: { hold?: boolean } = {}): Promise<Harness> {
  const ws = await makeWorkspace({ extra });
  const h: Harness = {
    ws,
    now: new Date(),
    cycles: [],
    release: () => undefined,
    scheduler: () =>
      new Scheduler({
        settings: ws.settings,
        log: silentLogger(),
        clock: () => h.now,
        runCycle: (job: ScheduleJob) => {
          h.cycles.push({ goal: job.goal, at: h.now.toISOString() });
          const done = { cycle_id: `c${h.cycles.length}`, status: 'ok' } as CycleReport;
          if (!options.hold) return Promise.resolve(done);
          return new Promise<CycleReport>((resolve) => (h.release = () => resolve(done)));
        },
      }),
  };
  return h;
}

const SCHEDULE = `supervisor:
  timezone: Europe/Kyiv
  catch_up_s: 21600
  schedule:
    - { cron: "30 2 * * *", goal: daily_maintenance }
  trading_windows:
    - { days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:00" }`;

test('ticks start the job once at its minute; a trading window blocks a start', async () => {
  const h = await harness(SCHEDULE.replace('"30 2 * * *"', '"0 * * * *"'));
  try {
    const s = h.scheduler();
    h.now = new Date('2026-11-23T05:58:00+02:00'); // Monday, before the window
    await s.tick();
    h.now = new Date('2026-11-23T06:00:30+02:00');
    assert.is((await s.tick())?.goal, 'daily_maintenance');
    h.now = new Date('2026-11-23T06:00:50+02:00');
    assert.is(await s.tick(), null, 'the same minute does not start it again');
    await s.idle();
    h.now = new Date('2026-11-23T10:00:10+02:00'); // inside the window
    assert.is(await s.tick(), null);
    h.now = new Date('2026-11-23T17:00:10+02:00'); // after it
    assert.ok(await s.tick());
    await s.idle();
    assert.equal(
      h.cycles.map((c) => c.at),
      ['2026-11-23T04:00:30.000Z', '2026-11-23T15:00:10.000Z'],
    );
  } finally {
    await h.ws.cleanup();
  }
});

test('no overlap: a trigger while a cycle runs, and a second scheduler on the same workspace, start nothing', async () => {
  const h = await harness(SCHEDULE.replace('"30 2 * * *"', '"* * * * *"'), { hold: true });
  try {
    const a = h.scheduler();
    const b = h.scheduler(); // e.g. a second watch process
    h.now = new Date('2026-11-24T01:00:05+02:00');
    const [ra, rb] = await Promise.all([a.tick(), b.tick()]);
    assert.is([ra, rb].filter(Boolean).length, 1, 'one of two overlapping triggers starts a cycle');
    h.now = new Date('2026-11-24T01:01:05+02:00');
    assert.is(await a.tick(), null, 'still running: no second cycle');
    assert.is(await b.tick(), null, 'held by the other process: no second cycle');
    h.release();
    await a.idle();
    await b.idle();
    assert.is(h.cycles.length, 1);
  } finally {
    h.release();
    await h.ws.cleanup();
  }
});

test('catch-up: a run missed while the machine slept runs once at start, within the window only', async () => {
  const h = await harness(SCHEDULE);
  try {
    h.now = new Date('2026-11-24T04:00:00+02:00'); // 1.5 h after 02:30
    const s = h.scheduler();
    await s.start();
    await s.stop();
    assert.equal(
      h.cycles.map((c) => c.goal),
      ['daily_maintenance'],
    );
    const again = h.scheduler();
    await again.start(); // restart: already caught up
    await again.stop();
    assert.is(h.cycles.length, 1);
    h.now = new Date('2026-11-25T09:30:00+02:00'); // 7 h after the next 02:30: outside catch_up_s
    const late = h.scheduler();
    await late.start();
    await late.stop();
    assert.is(h.cycles.length, 1);
    const state = JSON.parse(await fs.readFile(path.join(h.ws.settings.layout.state, 'supervisor', 'schedule.json'), 'utf8'));
    assert.equal(Object.values(state.last), ['2026-11-24T02:30']);
  } finally {
    await h.ws.cleanup();
  }
});

// --- a full disk (B13) ---------------------------------------------------------------------------

/** A scheduler ticking every 20 ms on the clock `h.now`, logging into `errors`, with writes of schedule.json failing while `fault` says so. */
function faultyScheduler(h: Harness, errors: string[]): Scheduler {
  const log = pino({ level: 'error' }, { write: (line: string) => void errors.push(JSON.parse(line).msg) });
  return new Scheduler({
    settings: h.ws.settings,
    log,
    clock: () => h.now,
    tickMs: 20,
    runCycle: (job: ScheduleJob) => {
      h.cycles.push({ goal: job.goal, at: h.now.toISOString() });
      return Promise.resolve({ cycle_id: `c${h.cycles.length}`, status: 'ok' } as CycleReport);
    },
  });
}

const failing = (code: string, file: string) => Object.assign(new Error(`${code}: write '${file}'`), { code, path: file });
const schedulerLock = (h: Harness) => path.join(h.ws.settings.layout.state, 'supervisor', '.scheduler.lock');
const exists = (file: string) =>
  fs.stat(file).then(
    () => true,
    () => false,
  );

test('a disk full for a moment as a scheduled cycle starts: the state write is retried and the cycle starts; nothing escapes the timer', async () => {
  const h = await harness(SCHEDULE);
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  let fullUntil = 0;
  injectFileFault((file) => {
    if (!path.basename(file).includes('schedule.json')) return;
    fullUntil ||= Date.now() + 500;
    if (Date.now() < fullUntil) throw failing('ENOSPC', file);
  });
  const errors: string[] = [];
  try {
    h.now = new Date('2026-11-24T02:29:30+02:00');
    const s = faultyScheduler(h, errors);
    await s.start();
    h.now = new Date('2026-11-24T02:30:10+02:00');
    await waitFor('the cycle', () => h.cycles.length > 0, 5000);
    await s.stop();
    assert.ok(fullUntil > 0, 'the state write met the full disk');
    assert.equal(
      h.cycles.map((c) => c.goal),
      ['daily_maintenance'],
    );
    assert.equal(unhandled, []);
    assert.equal(errors, []);
    assert.not.ok(await exists(schedulerLock(h)), 'the lock is released after the cycle');
  } finally {
    injectFileFault(null);
    process.off('unhandledRejection', onUnhandled);
    await h.ws.cleanup();
  }
});

test('a state write that keeps failing, at the catch-up and in a tick: start still finishes, both are logged, the lock is released, nothing escapes', async () => {
  const h = await harness(SCHEDULE);
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  // Not a transient error (a read-only disk): no retry, so the test is quick.
  injectFileFault((file) => {
    if (path.basename(file).includes('schedule.json')) throw failing('EROFS', file);
  });
  const errors: string[] = [];
  try {
    h.now = new Date('2026-11-24T04:00:00+02:00'); // the 02:30 run is due for catch-up
    const s = faultyScheduler(h, errors);
    await s.start();
    assert.equal(errors, ['scheduler: catch-up failed']);
    assert.not.ok(await exists(schedulerLock(h)), 'the lock is released when the state cannot be written');
    h.now = new Date('2026-11-25T02:30:10+02:00'); // the next night: a tick triggers it
    await waitFor('the tick to fail', () => errors.length > 1, 5000);
    await s.stop();
    assert.equal(errors, ['scheduler: catch-up failed', 'scheduler: tick failed']);
    assert.equal(h.cycles, []);
    assert.equal(unhandled, []);
    assert.not.ok(await exists(schedulerLock(h)));
    // The disk is writable again: the next night runs.
    injectFileFault(null);
    h.now = new Date('2026-11-26T02:30:10+02:00');
    assert.is((await s.tick())?.goal, 'daily_maintenance');
    await s.idle();
  } finally {
    injectFileFault(null);
    process.off('unhandledRejection', onUnhandled);
    await h.ws.cleanup();
  }
});

test('--print: crontab line, systemd units, schtasks + XML', async () => {
  const ws = await makeWorkspace({ extra: SCHEDULE });
  try {
    const cronText = printSchedule(ws.settings, 'cron');
    assert.match(cronText, 'CRON_TZ=Europe/Kyiv');
    assert.match(cronText, /^30 2 \* \* \* .*bin\/meta-agent\.js supervise --goal daily_maintenance --mode daily --root /m);
    const systemd = printSchedule(ws.settings, 'systemd');
    assert.match(systemd, 'OnCalendar=*-*-* 02:30:00 Europe/Kyiv');
    assert.match(systemd, /ExecStart=.* watch --root /);
    // The task files themselves: test/service.test.ts.
    const windows = printSchedule(ws.settings, 'windows');
    assert.match(windows, /^schtasks \/Create \/F \/XML .*meta-agent-daily_maintenance-1\.xml"? \/TN "meta-agent daily_maintenance 1"$/m);
  } finally {
    await ws.cleanup();
  }
});

test.run();
