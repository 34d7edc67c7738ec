/**
 * The one clock of the scheduler, the supervisor's cycles and retention. Normally the
 * system time; `META_AGENT_CLOCK_FILE` (a JSON file `{"now": "<ISO time>"}`) lets a test
 * harness move time for a real service process. Nothing else reads it.
 */
import { readJsonFileSync } from '../contract/readJson.ts';
import { ClockFileSchema } from '../contract/stateFiles.ts';

export type Clock = () => Date;

export const systemClock: Clock = () => new Date();

export function clockFromEnv(env: Readonly<Record<string, string | undefined>>): Clock {
  const file = env.META_AGENT_CLOCK_FILE;
  if (!file) return systemClock;
  // A read that catches the harness rewriting the file gives the last time read, not the
  // system's: a report stamped with the real date ten simulated days back would be pruned
  // at once by retention (the soak's night 8, seed 14).
  let last: Date | null = null;
  return () => {
    try {
      const { now } = readJsonFileSync(file, ClockFileSchema);
      const date = now ? new Date(now) : null;
      if (date && !Number.isNaN(date.getTime())) {
        last = date;
        return new Date(date);
      }
    } catch {
      // the harness is rewriting the file (missing, half-written): keep the last reading
    }
    return last ? new Date(last) : new Date();
  };
}
