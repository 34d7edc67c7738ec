/** Simulated time: wall-clock times in the schedule's timezone turned into instants, and the clock file. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { localTime } from '../src/supervisor/schedule.ts';

export const DAY_MS = 86_400_000;

/** The instant at which the wall clock of `timeZone` shows `y-m-d hh:mm` (the first one, if twice). */
export function zonedInstant(timeZone: string, y: number, m: number, d: number, hh: number, mm: number): Date {
  const wanted = Date.UTC(y, m - 1, d, hh, mm);
  // Offsets in Europe are within +-14 h: try the candidates and keep the first that matches.
  for (let offsetMin = -14 * 60; offsetMin <= 14 * 60; offsetMin += 15) {
    const candidate = new Date(wanted - offsetMin * 60_000);
    const t = localTime(candidate, timeZone);
    if (Date.UTC(t.year, t.month - 1, t.day, t.hour, t.minute) === wanted) return candidate;
  }
  // Inside a spring gap: the first minute after it.
  return zonedInstant(timeZone, y, m, d, hh + 1, 0);
}

export interface LocalDate {
  y: number;
  m: number;
  d: number;
  /** 0 = Sunday ... 6 = Saturday. */
  dow: number;
}

/** The calendar date `days` after `base` (a pure calendar computation, no timezone). */
export function addDays(base: LocalDate, days: number): LocalDate {
  const t = new Date(Date.UTC(base.y, base.m - 1, base.d + days));
  return { y: t.getUTCFullYear(), m: t.getUTCMonth() + 1, d: t.getUTCDate(), dow: t.getUTCDay() };
}

/** The first Friday on or after the local date of `now`: night 2 is then a Saturday (weekly retrain). */
export function firstFriday(now: Date, timeZone: string): LocalDate {
  const t = localTime(now, timeZone);
  const today: LocalDate = { y: t.year, m: t.month, d: t.day, dow: t.dow };
  return addDays(today, (5 - t.dow + 7) % 7);
}

export const iso = (d: LocalDate) => `${d.y}-${String(d.m).padStart(2, '0')}-${String(d.d).padStart(2, '0')}`;

/** The clock file of META_AGENT_CLOCK_FILE, rewritten atomically (temp + rename). */
export class SimClock {
  private current: Date;
  constructor(
    readonly file: string,
    start: Date,
  ) {
    this.current = start;
  }

  now(): Date {
    return this.current;
  }

  async set(date: Date): Promise<void> {
    this.current = date;
    const temp = path.join(path.dirname(this.file), `.${path.basename(this.file)}.${process.pid}.tmp`);
    await fs.writeFile(temp, `${JSON.stringify({ now: date.toISOString() })}\n`);
    await fs.rename(temp, this.file);
  }
}
