/**
 * Test-only fault injection for real processes. The CLI sets both from the environment
 * (nothing else reads it), so a test can kill a `meta-agent watch` at an exact moment:
 *
 * - `META_AGENT_FAULT=<point>[,<point>...]`: at a named point the process sends itself
 *   SIGKILL, which is what kill -9 or a power cut at that moment leaves behind. Points:
 *   `after-report` (reports/<id>.json written, the ledger not yet told),
 *   `after-ledger` (the ledger told, the task file not yet moved).
 * - `META_AGENT_FAULT_CLOCK_SKEW_FILE=<file>`: the wall clock of this process (Date) is
 *   moved by the number of milliseconds in that file (e.g. -3600000: an hour back), read
 *   anew every 100 ms, as faketime would; the monotonic clock (performance.now) and the
 *   kernel's file times are not moved, exactly as when NTP or a person sets the clock back.
 * - `META_AGENT_FAULT_HOSTNAME=<name>`: the host name written into owner notes and the
 *   ledger, so two processes on one machine can play two machines (leases of another host
 *   are judged by staleness only, never by pid).
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';

let faultPoints = new Set<string>();
let hostOverride: string | null = null;

export function setFaultPoints(points: string | undefined): void {
  faultPoints = new Set(
    (points ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean),
  );
}

/** Kills this process with SIGKILL if `point` was named in META_AGENT_FAULT. */
export function faultPoint(point: string): void {
  if (faultPoints.has(point)) process.kill(process.pid, 'SIGKILL');
}

export function overrideHostName(name: string | undefined | null): void {
  hostOverride = name || null;
}

/** The host name owner notes carry: os.hostname(), unless a test plays another machine. */
export function thisHost(): string {
  return hostOverride ?? os.hostname();
}

/** Moves this process's wall clock (Date, Date.now) by the offset in `file` (see above). */
export function installClockSkew(file: string | undefined): void {
  if (!file) return;
  const RealDate = Date;
  let cached = { at: -Infinity, skew: 0 };
  const skew = (): number => {
    const now = performance.now();
    if (now - cached.at > 100) {
      let value = 0;
      try {
        value = Number(readFileSync(file, 'utf8').trim()) || 0;
      } catch {
        // no file: no skew
      }
      cached = { at: now, skew: value };
    }
    return cached.skew;
  };
  class SkewedDate extends RealDate {
    constructor(...args: unknown[]) {
      if (args.length === 0) super(RealDate.now() + skew());
      else super(...(args as [string | number | Date]));
    }
    static override now(): number {
      return RealDate.now() + skew();
    }
  }
  globalThis.Date = SkewedDate as DateConstructor;
}
