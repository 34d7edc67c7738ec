/** The schedule as part of a service: `schedule` in the foreground, or inside `watch`. */
import type { Logger } from 'pino';
import type { Settings } from '../workspace/config.ts';
import type { Engine } from '../engines/types.ts';
import { resumeSupervisorCycle, runSupervisorCycle, type Clock } from './cycle.ts';
import { Scheduler } from './schedule.ts';
import { hurrySwitch, windDown } from '../queue/windDown.ts';

/** A scheduler for the config's jobs, or null when there are none. */
export function startScheduler(
  settings: Settings,
  log: Logger,
  options: { clock?: Clock; engine?: Engine; signal?: AbortSignal; tickMs?: number; stopChecksGraceS?: number } = {},
): Scheduler | null {
  if (settings.config.supervisor.schedule.length === 0) return null;
  const cycleOptions = {
    log,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.engine ? { engine: options.engine } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.stopChecksGraceS !== undefined ? { stopChecksGraceS: options.stopChecksGraceS } : {}),
  };
  return new Scheduler({
    settings,
    log,
    ...(options.clock ? { clock: options.clock } : {}),
    tickMs: options.tickMs ?? settings.config.supervisor.tick_s * 1000,
    runCycle: (job, shouldStop) =>
      runSupervisorCycle(settings, job.goal, job.mode, { ...cycleOptions, shouldStop, ...(job.project ? { project: job.project } : {}) }),
    resumeCycle: (journal, shouldStop) => resumeSupervisorCycle(settings, journal, { ...cycleOptions, shouldStop }),
  });
}

export interface SchedulerService {
  scheduler: Scheduler;
  /**
   * No new cycles; a running one gets queue.shutdown_grace_s, then is aborted (its task goes
   * back to inbox/). `now` (a second Ctrl-C): no grace, also for a stop under way.
   */
  stop(options?: { now?: boolean }): Promise<void>;
}

/** `meta-agent schedule`: the scheduler with its own abort, stopped like `watch` is. */
export function startSchedulerService(settings: Settings, log: Logger): SchedulerService | null {
  const abort = new AbortController();
  const scheduler = startScheduler(settings, log, { signal: abort.signal });
  if (!scheduler) return null;
  const { hurry, hurried } = hurrySwitch();
  let stopped: Promise<void> | null = null;
  return {
    scheduler,
    stop(options = {}) {
      if (options.now) hurry();
      stopped ??= (async () => {
        const done = scheduler.stop();
        await windDown(
          () => done,
          settings.config.queue.shutdown_grace_s * 1000,
          hurried,
          () => abort.abort(),
        );
      })();
      return stopped;
    },
  };
}
