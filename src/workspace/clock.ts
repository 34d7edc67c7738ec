/**
 * The one clock of the scheduler, the supervisor's cycles and retention. Normally the
 * system time; `META_AGENT_CLOCK_FILE` (a JSON file `{"now": "<ISO time>"}`) lets a test
 * harness move time for a real service process. Nothing else reads it.
 */
import { readFileSync } from 'node:fs';

export type Clock = () => Date;

export const systemClock: Clock = () => new Date();

export function clockFromEnv(env: Readonly<Record<string, string | undefined>>): Clock {
  const file = env.META_AGENT_CLOCK_FILE;
  if (!file) return systemClock;
  return () => {
    try {
      const now = (JSON.parse(readFileSync(file, 'utf8')) as { now?: string }).now;
      const date = now ? new Date(now) : null;
      return date && !Number.isNaN(date.getTime()) ? date : new Date();
    } catch {
      return new Date(); // the harness is rewriting the file
    }
  };
}
