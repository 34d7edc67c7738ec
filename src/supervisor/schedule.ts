/**
 * The off-market scheduler. Jobs are node-cron expressions in a timezone (default
 * Europe/Kyiv). Time is read through one injectable clock, and the scheduler is driven by
 * `tick(now)`, so a test or the soak harness can move time; in the service a timer ticks.
 *
 * - DST: a time that happens twice (autumn) runs once; a time skipped (spring) runs at
 *   the first minute after the jump.
 * - No overlap: one cycle at a time, across processes too (a lock).
 * - Trading windows: no cycle starts inside one, and a running cycle stops creating tasks.
 * - Catch-up: a run missed while the machine slept runs once at start, if it is not older
 *   than supervisor.catch_up_s.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import cron from 'node-cron';
import { lockActivity } from '../workspace/lease.ts';
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { ScheduleJobSchema, TradingWindowSchema } from '../contract/config.ts';
import type { CycleReport } from '../contract/cycle.ts';
import { MetaAgentError, toErrorInfo } from '../contract/errors.ts';
import { readJsonFileOrNull } from '../contract/readJson.ts';
import { ScheduleStateSchema, type ScheduleState } from '../contract/stateFiles.ts';
import type { Settings } from '../workspace/config.ts';
import { replaceFile, retryWrite } from '../workspace/files.ts';
import type { Clock } from './cycle.ts';
import { orphanedCycles, type CycleJournal } from './journal.ts';

export type ScheduleJob = z.infer<typeof ScheduleJobSchema>;
export type TradingWindow = z.infer<typeof TradingWindowSchema>;

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;

interface LocalTime {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  dow: number;
  /** YYYY-MM-DDTHH:MM, the job's identity for a run. */
  key: string;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

export function localTime(date: Date, timeZone: string): LocalTime {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      weekday: 'short',
    });
    formatters.set(timeZone, f);
  }
  const p = Object.fromEntries(f.formatToParts(date).map((x) => [x.type, x.value]));
  const t = {
    year: Number(p.year),
    month: Number(p.month),
    day: Number(p.day),
    hour: Number(p.hour),
    minute: Number(p.minute),
    dow: DAYS.indexOf(p.weekday!.toLowerCase().slice(0, 3) as (typeof DAYS)[number]),
  };
  const pad = (n: number) => String(n).padStart(2, '0');
  return { ...t, key: `${t.year}-${pad(t.month)}-${pad(t.day)}T${pad(t.hour)}:${pad(t.minute)}` };
}

/** A cron expression compiled to a matcher of local wall-clock minutes. */
export function compileCron(expression: string): (t: Omit<LocalTime, 'key'>) => boolean {
  if (!cron.validate(expression))
    throw new MetaAgentError('config', `"${expression}" is not a valid cron expression`, { file: 'meta-agent.yaml', field: 'supervisor.schedule.cron' });
  const f = cron.parse(expression);
  const has = (list: Array<number | string>, v: number) => list.map(Number).includes(v);
  const domAll = f.dayOfMonth.length >= 31;
  const dowAll = new Set(f.dayOfWeek.map((d) => Number(d) % 7)).size >= 7;
  return (t) => {
    if (!has(f.minute, t.minute) || !has(f.hour, t.hour) || !has(f.month, t.month)) return false;
    const dom = has(f.dayOfMonth, t.day);
    const dow = f.dayOfWeek.map((d) => Number(d) % 7).includes(t.dow);
    // Classic cron: when both day fields are restricted, either may match.
    if (!domAll && !dowAll) return dom || dow;
    return dom && dow;
  };
}

/**
 * The scheduled run times after `from`, as real instants. Autumn's repeated hour runs once;
 * spring's skipped hour runs at the first minute after the jump.
 */
export function nextRuns(expression: string, timeZone: string, from: Date, count: number, limitMinutes = 400 * 24 * 60): Date[] {
  const matches = compileCron(expression);
  const out: Date[] = [];
  let t = Math.floor(from.getTime() / 60_000) * 60_000 + 60_000;
  let previous = localTime(new Date(t - 60_000), timeZone);
  const seen = new Set<string>();
  for (let i = 0; i < limitMinutes && out.length < count; i++, t += 60_000) {
    const local = localTime(new Date(t), timeZone);
    if (dueAt(matches, previous, local, seen)) out.push(new Date(t));
    previous = local;
  }
  return out;
}

/** Whether a run is due at local minute `now`, given the minute before it (handles DST jumps). */
function dueAt(matches: ReturnType<typeof compileCron>, previous: LocalTime, now: LocalTime, seen: Set<string>): boolean {
  if (seen.has(now.key)) return false; // the repeated hour in autumn
  if (matches(now)) {
    seen.add(now.key);
    return true;
  }
  // Spring: local time jumped over minutes; a run scheduled in the gap runs now.
  const gap = minutesBetween(previous, now);
  for (let m = 1; m < gap; m++) {
    const skipped = addMinutes(previous, m);
    if (matches(skipped) && !seen.has(skipped.key)) {
      seen.add(skipped.key);
      return true;
    }
  }
  return false;
}

function toUtcMinutes(t: Omit<LocalTime, 'key' | 'dow'>): number {
  return Date.UTC(t.year, t.month - 1, t.day, t.hour, t.minute) / 60_000;
}

function minutesBetween(a: LocalTime, b: LocalTime): number {
  return toUtcMinutes(b) - toUtcMinutes(a);
}

function addMinutes(t: LocalTime, minutes: number): LocalTime {
  const d = new Date((toUtcMinutes(t) + minutes) * 60_000);
  const pad = (n: number) => String(n).padStart(2, '0');
  const x = { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate(), hour: d.getUTCHours(), minute: d.getUTCMinutes(), dow: d.getUTCDay() };
  return { ...x, key: `${x.year}-${pad(x.month)}-${pad(x.day)}T${pad(x.hour)}:${pad(x.minute)}` };
}

/** The trading window `date` falls in (local time of `timeZone`), if any. */
export function tradingWindowAt(windows: readonly TradingWindow[], timeZone: string, date: Date): TradingWindow | null {
  const t = localTime(date, timeZone);
  const minute = t.hour * 60 + t.minute;
  const toMin = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));
  for (const w of windows) {
    const start = toMin(w.start);
    const end = toMin(w.end);
    const today = DAYS[t.dow]!;
    const yesterday = DAYS[(t.dow + 6) % 7]!;
    if (start <= end) {
      if (w.days.includes(today) && minute >= start && minute < end) return w;
    } else if ((w.days.includes(today) && minute >= start) || (w.days.includes(yesterday) && minute < end)) {
      return w; // over midnight: belongs to the day it started
    }
  }
  return null;
}

export interface SchedulerOptions {
  settings: Settings;
  log: Logger;
  clock?: Clock;
  /** Runs one cycle; the service passes runSupervisorCycle. */
  runCycle: (job: ScheduleJob, shouldStop: () => string | null) => Promise<CycleReport>;
  /** Finishes a cycle whose process died (journal.ts); the service passes resumeSupervisorCycle. */
  resumeCycle?: (journal: CycleJournal, shouldStop: () => string | null) => Promise<CycleReport>;
  tickMs?: number;
}

export class Scheduler {
  private readonly jobs: Array<{ job: ScheduleJob; id: string; matches: ReturnType<typeof compileCron>; seen: Set<string> }>;
  private readonly clock: Clock;
  private readonly tz: string;
  private previousMinute: number | null = null;
  private running: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<unknown> | null = null;
  private readonly stateFile: string;
  private readonly lockTarget: string;

  constructor(private readonly options: SchedulerOptions) {
    const { supervisor } = options.settings.config;
    this.clock = options.clock ?? options.settings.clock;
    this.tz = supervisor.timezone;
    localTime(new Date(), this.tz); // throws early on an unknown timezone
    this.jobs = supervisor.schedule.map((job, i) => ({ job, id: `${i}:${job.goal}:${job.cron}`, matches: compileCron(job.cron), seen: new Set() }));
    this.stateFile = path.join(options.settings.layout.state, 'supervisor', 'schedule.json');
    this.lockTarget = path.join(options.settings.layout.state, 'supervisor', 'scheduler');
  }

  /**
   * Finishes the cycles of processes that died, runs a missed job (catch-up), then ticks
   * every tickMs. Never throws: an error (a full disk) is logged, and the service still
   * starts with its schedule.
   */
  async start(): Promise<void> {
    await this.guarded('finishing the cycles of dead processes', () => this.finishOrphanedCycles());
    await this.guarded('catch-up', () => this.catchUp());
    this.timer = setInterval(() => {
      // One tick at a time: a tick retrying a write must not overlap the next one.
      this.ticking ??= this.guarded('tick', () => this.tick()).finally(() => (this.ticking = null));
    }, this.options.tickMs ?? 15_000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.ticking;
    await this.running;
  }

  private async guarded(what: string, action: () => Promise<unknown>): Promise<void> {
    try {
      await action();
    } catch (error) {
      this.options.log.error({ err: toErrorInfo(error) }, `scheduler: ${what} failed`);
    }
  }

  /** Checks the minutes since the last tick; starts at most one cycle. Returns the job started, if any. */
  async tick(now = this.clock()): Promise<ScheduleJob | null> {
    const minute = Math.floor(now.getTime() / 60_000) * 60_000;
    // Walk every minute since the previous tick, so a slow tick or a clock jump forward loses
    // nothing (bounded to a day; a longer sleep is what catch-up is for).
    const from = this.previousMinute ?? minute - 60_000;
    if (minute <= from) return null;
    this.previousMinute = minute;
    const first = Math.max(from + 60_000, minute - 24 * 3600_000);
    for (const j of this.jobs) {
      let due = false;
      let before = localTime(new Date(first - 60_000), this.tz);
      for (let t = first; t <= minute; t += 60_000) {
        const local = localTime(new Date(t), this.tz);
        if (dueAt(j.matches, before, local, j.seen)) due = true;
        before = local;
      }
      if (due && (await this.trigger(j.job, j.id, localTime(now, this.tz).key, now))) return j.job;
    }
    return null;
  }

  private async trigger(job: ScheduleJob, id: string, key: string, now: Date): Promise<boolean> {
    const log = this.options.log;
    const window = tradingWindowAt(this.options.settings.config.supervisor.trading_windows, this.tz, now);
    if (window) {
      log.info({ job: job.goal, window }, `not starting ${job.goal}: inside a trading window (${window.start}-${window.end})`);
      return false;
    }
    if (this.running) {
      log.warn({ job: job.goal }, `not starting ${job.goal}: a cycle is still running (no overlap)`);
      return false;
    }
    const release = await lockActivity(this.lockTarget, { staleMs: 60_000, wait: false });
    if (!release) {
      log.warn({ job: job.goal }, `not starting ${job.goal}: another process is running a cycle`);
      return false;
    }
    try {
      const state = await this.readState();
      if (state.last[id] === key) {
        await release();
        return false; // another process ran this very occurrence
      }
      state.last[id] = key;
      // Retried: a disk full for a moment must not cost the night's cycle.
      await retryWrite(() => this.writeState(state));
    } catch (error) {
      await release().catch(() => undefined);
      throw error;
    }
    log.info({ job: job.goal, mode: job.mode, at: key }, `starting cycle ${job.goal}`);
    this.running = this.options
      .runCycle(job, this.shouldStop)
      .then((report) => log.info({ job: job.goal, cycle: report.cycle_id, status: report.status }, `cycle ${report.cycle_id}: ${report.status}`))
      .catch((error) => log.error({ job: job.goal, err: toErrorInfo(error) }, 'cycle failed'))
      .finally(async () => {
        this.running = null;
        await release().catch(() => undefined);
      });
    return true;
  }

  /** Polled by a running cycle before each task. */
  private readonly shouldStop = (): string | null => {
    const w = tradingWindowAt(this.options.settings.config.supervisor.trading_windows, this.tz, this.clock());
    return w ? `a trading window began (${w.start}-${w.end})` : null;
  };

  /**
   * At start: takes over the scheduler lock of a dead process (so it is not left until the
   * next cycle), and finishes, while holding it, the cycles whose process died mid-way.
   */
  private async finishOrphanedCycles(): Promise<void> {
    const log = this.options.log;
    const release = await lockActivity(this.lockTarget, { staleMs: 60_000, wait: false });
    if (!release) return; // a live process runs cycles
    const resume = this.options.resumeCycle;
    let orphans: CycleJournal[] = [];
    try {
      if (resume) orphans = await orphanedCycles(this.options.settings);
    } finally {
      if (orphans.length === 0) await release();
    }
    if (!resume || orphans.length === 0) return;
    this.running = (async () => {
      for (const journal of orphans) {
        try {
          const report = await resume(journal, this.shouldStop);
          log.info(
            { job: journal.goal, cycle: report.cycle_id, status: report.status },
            `cycle ${report.cycle_id} (finished after its process died): ${report.status}`,
          );
        } catch (error) {
          log.error({ job: journal.goal, cycle: journal.cycle_id, err: toErrorInfo(error) }, 'finishing a cycle failed');
        }
      }
    })().finally(async () => {
      this.running = null;
      await release().catch(() => undefined);
    });
  }

  /** Resolves when the running cycle (if any) is done. */
  async idle(): Promise<void> {
    await this.running;
  }

  private async catchUp(): Promise<void> {
    const now = this.clock();
    const windowMin = Math.floor(this.options.settings.config.supervisor.catch_up_s / 60);
    const state = await this.readState();
    for (const j of this.jobs) {
      // The most recent scheduled minute inside the catch-up window.
      const from = new Date(now.getTime() - windowMin * 60_000 - 60_000);
      const runs = nextRuns(j.job.cron, this.tz, from, 10_000, windowMin + 1).filter((d) => d.getTime() <= now.getTime());
      const last = runs.at(-1);
      if (!last) continue;
      const key = localTime(last, this.tz).key;
      if (state.last[j.id] && state.last[j.id]! >= key) continue;
      this.options.log.info({ job: j.job.goal, missed: key }, `catching up a missed run of ${j.job.goal} (${key})`);
      if (await this.trigger(j.job, j.id, key, now)) {
        j.seen.add(key);
        return;
      }
    }
  }

  /**
   * The last run of each job. A first start has none; a state that cannot be read is logged
   * and taken as none, as before: a job may then run once more, never be lost.
   */
  private async readState(): Promise<ScheduleState> {
    try {
      return (await readJsonFileOrNull(this.stateFile, ScheduleStateSchema)) ?? { last: {} };
    } catch (error) {
      this.options.log.warn({ err: toErrorInfo(error) }, 'scheduler: its state could not be read; every job counts as not run yet');
      return { last: {} };
    }
  }

  private async writeState(state: ScheduleState): Promise<void> {
    await fs.mkdir(path.dirname(this.stateFile), { recursive: true });
    await replaceFile(this.stateFile, `${JSON.stringify(state, null, 2)}\n`);
  }
}
