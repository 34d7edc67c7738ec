/**
 * Product bugs the soak found and that are not fixed yet (repro and proposed fix in
 * docs/soak.md). A breach that matches one is reported as "known" instead of failing the run,
 * unless --strict. Each matcher is narrow (the invariant, the fault that causes it, the exact
 * kind of leftover), so anything else still fails the run. Remove an entry once the product
 * is fixed: the soak then guards the fix.
 */
import path from 'node:path';
import type { Breach } from './invariants.ts';

export interface KnownContext {
  /** Faults injected, by night ("kind (detail)"). */
  faults: Map<number, string[]>;
  /** Pids of the service processes that were killed or died by themselves (their leftovers are the ones at stake). */
  killedPids: Set<number>;
  /** Nights on which the service died by itself (see B9). */
  crashedNights: number[];
}

export interface KnownBug {
  id: string;
  title: string;
  /** Where it goes wrong, and the fix proposed (docs/soak.md). */
  where: string;
  matches: (b: Breach, ctx: KnownContext) => boolean;
}

const had = (ctx: KnownContext, night: number, kind: string) => (ctx.faults.get(night) ?? []).some((f) => f.startsWith(kind));
const hadUpTo = (ctx: KnownContext, night: number, kinds: string[]) => [...ctx.faults.entries()].some(([n, fs]) => n <= night && fs.some((f) => kinds.some((k) => f.startsWith(k))));
const KILLS = ['kill_mid_task_night', 'kill_mid_task_day', 'kill_mid_gate', 'kill_gate_after_commit'];

export const KNOWN_BUGS: KnownBug[] = [
];

export function classify(breaches: Breach[], strict: boolean, ctx: KnownContext): { failing: Breach[]; known: Breach[] } {
  const failing: Breach[] = [];
  const known: Breach[] = [];
  for (const b of breaches) {
    const bug = strict ? undefined : KNOWN_BUGS.find((k) => k.matches(b, ctx));
    if (bug) known.push({ ...b, known: bug.id });
    else failing.push(b);
  }
  return { failing, known };
}
