/** The supervisor's schedule inside `watch`: cycles log to their own file, and stop with the service. */
import type { Logger } from 'pino';
import type { Engine } from '../engines/types.ts';
import { createLogger } from '../log.ts';
import { makeRedactor } from '../safety/redact.ts';
import { startScheduler } from '../supervisor/service.ts';
import type { Settings } from '../workspace/config.ts';
import { STOP_CHECKS_GRACE_S, type Lifecycle } from './lifecycle.ts';

export interface ScheduleTimerOptions {
  settings: Settings;
  log: Logger;
  lifecycle: Lifecycle;
  /** Where cycles log; default logs/supervisor_YYYY-MM-DD.log. */
  supervisorLog?: Logger;
  /** The schedule's clock (tests, the soak harness); default: the real time. */
  clock?: () => Date;
  engine?: Engine;
}

/**
 * Starts the config's schedule (nothing when it has no jobs). At stop, a running cycle is
 * asked at once to stop creating tasks; the lifecycle aborts it with the rest after the grace.
 */
export async function startScheduleTimer(options: ScheduleTimerOptions): Promise<void> {
  const { settings, log, lifecycle, clock, engine } = options;
  const { layout, config } = settings;
  const supervisorLog =
    options.supervisorLog ?? createLogger({ logsDir: layout.logs, prefix: 'supervisor', console: 'none', redact: makeRedactor(settings.env) });
  // Like the queue's runs: a stopped cycle task's incomplete patch gets 5 s of checks.
  const scheduler = startScheduler(settings, supervisorLog, {
    signal: lifecycle.signal,
    stopChecksGraceS: STOP_CHECKS_GRACE_S,
    ...(clock ? { clock } : {}),
    ...(engine ? { engine } : {}),
  });
  if (!scheduler) return;
  lifecycle.onStop(() => scheduler.stop());
  await scheduler.start();
  log.info({ jobs: config.supervisor.schedule.map((j) => `${j.cron} ${j.goal}`), timezone: config.supervisor.timezone }, 'supervisor schedule active');
}
