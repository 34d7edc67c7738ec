/**
 * One scope for a service's life: it owns every timer, every closer (watchers) and every
 * in-flight promise (a task run, a gate run), so that stop() is one sequence:
 *
 * 1. no new work (`stopping`; timers cleared, a timer asked for later never starts);
 *    what registered with onStop() is asked to stop at once (a scheduler, remote execution);
 * 2. start-up finishes first (it starts nothing more once stopping), then every closer runs;
 * 3. in-flight work gets the grace period (none if nothing is in flight; a second stop, with
 *    `now`, cuts it short), then `signal` aborts it and it gets SETTLE_MS more;
 * 4. what registered with afterStop() puts back what is left (an interrupted gate run).
 *
 * No wait is unbounded: what has not settled by then is logged and left to crash recovery
 * at the next start.
 */
import type { Logger } from 'pino';
import { SETTLE_MS, bounded, hurrySwitch, windDown } from '../queue/windDown.ts';

/** A stopped run's incomplete patch gets 5 s of checks: stop() waits only SETTLE_MS for its report. */
export const STOP_CHECKS_GRACE_S = 5;

export interface LifecycleOptions {
  log: Logger;
  /** How long in-flight work may go on after stop() before it is aborted. */
  graceMs: number;
  /** What is in flight, for the stop's log lines (task and patch names). */
  describe: () => Record<string, unknown>;
}

export class Lifecycle {
  private readonly abort = new AbortController();
  private readonly hurry = hurrySwitch();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly closers: Array<() => unknown> = [];
  private readonly inFlight = new Set<Promise<unknown>>();
  /** What onStop() callbacks returned: waited for with the in-flight work. */
  private readonly stopsUnderWay: Array<Promise<unknown>> = [];
  private readonly onStopCallbacks: Array<() => Promise<unknown>> = [];
  private readonly afterStopCallbacks: Array<() => Promise<unknown>> = [];
  private startup: Promise<unknown> = Promise.resolve();
  private isStopping = false;
  private closed = false;
  private stopped: Promise<void> | null = null;

  constructor(private readonly options: LifecycleOptions) {}

  /** Aborted when the grace period is over: in-flight work stops and puts back what it holds. */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** True from the first stop(): start no new work. */
  get stopping(): boolean {
    return this.isStopping;
  }

  /** Whether work is in flight (a task, a gate run). */
  get busy(): boolean {
    return this.inFlight.size > 0;
  }

  /** The service's start-up: stop() lets it finish (up to SETTLE_MS) before running the closers. */
  starting(startup: Promise<unknown>): void {
    this.startup = startup.catch(() => undefined);
  }

  /** `fn` every `ms` until stop (never, once stopping). */
  every(ms: number, fn: () => unknown): void {
    if (this.stopping) return;
    this.timers.add(setInterval(fn, ms));
  }

  /**
   * Closes something start-up set up (a folder watcher) at stop, once start-up is over (a
   * chokidar watcher closed before it is ready can leave an inotify handle open). Stop waits
   * up to SETTLE_MS for all of them. Added after they ran (a start-up that outlasted SETTLE_MS): closed at once.
   */
  addCloser(close: () => unknown): void {
    if (this.closed)
      void Promise.resolve()
        .then(close)
        .catch(() => undefined);
    else this.closers.push(close);
  }

  /** Asked at once when stop() begins (or now, if it has); stop waits for what it returns like in-flight work. */
  onStop(fn: () => Promise<unknown>): void {
    if (this.stopping) this.askToStop(fn);
    else this.onStopCallbacks.push(fn);
  }

  /** Runs after in-flight work has had its time: puts back what it left. */
  afterStop(fn: () => Promise<unknown>): void {
    this.afterStopCallbacks.push(fn);
  }

  /** In-flight work: stop() gives it the grace period, then aborts it. Returns `work`. */
  track<T>(work: Promise<T>): Promise<T> {
    this.inFlight.add(work);
    const forget = () => void this.inFlight.delete(work);
    work.then(forget, forget);
    return work;
  }

  /** See the module comment. `now`: no grace (a second Ctrl-C); also hurries a stop under way. */
  stop(options: { now?: boolean } = {}): Promise<void> {
    if (options.now) this.hurry.hurry();
    if (!this.stopped) {
      this.isStopping = true;
      this.stopped = this.runStop();
    }
    return this.stopped;
  }

  private async runStop(): Promise<void> {
    const { log, graceMs, describe } = this.options;
    this.clearTimers();
    for (const fn of this.onStopCallbacks.splice(0)) this.askToStop(fn);
    await bounded(this.startup, SETTLE_MS);
    this.closed = true;
    await bounded(Promise.allSettled(this.closers.splice(0).map(async (close) => close())), SETTLE_MS);
    const work = () => Promise.allSettled([...this.inFlight, ...this.stopsUnderWay]);
    const busy = this.busy;
    if (busy && graceMs > 0) log.info({ ...describe(), grace_ms: graceMs }, 'stopping: waiting for running work');
    await windDown(work, busy ? graceMs : 0, this.hurry.hurried, () => this.abort.abort());
    if (this.busy) log.warn(describe(), 'stopping without waiting longer: crash recovery at the next start returns what is left');
    for (const fn of this.afterStopCallbacks) await fn();
  }

  /** Awaited later (with the in-flight work); a rejection is not left unhandled meanwhile. */
  private askToStop(fn: () => Promise<unknown>): void {
    const stopping = fn();
    stopping.catch(() => undefined);
    this.stopsUnderWay.push(stopping);
  }

  private clearTimers(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers.clear();
  }
}
