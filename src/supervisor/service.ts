/** The schedule as part of a service: `schedule` in the foreground, or inside `watch`. */
import type { Logger } from 'pino';
import type { Settings } from '../workspace/config.ts';
import type { Engine } from '../engines/types.ts';
import { resumeSupervisorCycle, runSupervisorCycle, type Clock } from './cycle.ts';
import { Scheduler } from './schedule.ts';

/** A scheduler for the config's jobs, or null when there are none. */
export function startScheduler(settings: Settings, log: Logger, options: { clock?: Clock; engine?: Engine; signal?: AbortSignal; tickMs?: number } = {}): Scheduler | null {
  if (settings.config.supervisor.schedule.length === 0) return null;
  const cycleOptions = {
    log,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.engine ? { engine: options.engine } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  };
  return new Scheduler({
    settings,
    log,
    ...(options.clock ? { clock: options.clock } : {}),
    tickMs: options.tickMs ?? settings.config.supervisor.tick_s * 1000,
    runCycle: (job, shouldStop) => runSupervisorCycle(settings, job.goal, job.mode, { ...cycleOptions, shouldStop, ...(job.project ? { project: job.project } : {}) }),
    resumeCycle: (journal, shouldStop) => resumeSupervisorCycle(settings, journal, { ...cycleOptions, shouldStop }),
  });
}
