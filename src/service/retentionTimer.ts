/** Retention (queue/retention.ts) as a step of the reconcile scan: at most hourly by the settings' clock (which a test may move fast). */
import type { Logger } from 'pino';
import { applyRetention } from '../queue/retention.ts';
import type { Settings } from '../workspace/config.ts';
import type { Failures } from './health.ts';
import type { ScanStep } from './reconciler.ts';

const HOUR_MS = 3600_000;

/** Applies retention at the first scan, then once an hour has passed; a failure is logged and the scan goes on. */
export function hourlyRetention(settings: Settings, log: Logger, failures: Failures): ScanStep {
  let last = -Infinity;
  return async () => {
    const now = settings.clock().getTime();
    if (now - last < HOUR_MS) return;
    last = now;
    await applyRetention(settings, log).catch((error: unknown) => failures.fail('retention failed', error));
  };
}
