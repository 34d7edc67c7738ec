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
  {
    id: 'B1-cycle-enospc',
    title: 'A full disk for a moment during a cycle aborts it: the task whose report could not be written is not awaited (it is recovered and re-run by the watcher, unlisted), the remaining planned tasks are never created, and if the disk is still full the cycle report itself is lost (no retry).',
    where: "src/supervisor/cycle.ts: runOrAwait rethrows any error of runTask but a lost claim, and writeCycleReport is not retried. Fix: wait for the task's report (the watcher recovers and re-runs it); retry the cycle's own writes on ENOSPC/EIO.",
    matches: (b, ctx) => b.invariant === 'cycle-report' && had(ctx, b.night, 'enospc_window@night'),
  },
  {
    id: 'B2-cycle-crash',
    title: 'kill -9 of the service during a cycle: no cycle report is ever written for that night (the schedule marks the run as done before it starts, so catch-up does not resume it), its remaining planned tasks are never created, and its scheduler lock stays until the next cycle.',
    where: "src/supervisor/schedule.ts marks the run (state.last) before runCycle; nothing records a running cycle. Fix: a journal of the running cycle (.meta-agent/supervisor/running/<id>.json); at start, finish the cycles of dead processes (await their tasks' reports, write the report, name the tasks never created); take over a dead scheduler lock at start.",
    matches: (b, ctx) =>
      (b.invariant === 'cycle-report' && had(ctx, b.night, 'kill_mid_task_night')) ||
      (b.invariant === 'leftover-lock' && b.detail.includes('.scheduler.lock') && had(ctx, b.night, 'kill_mid_task_night')),
  },
  {
    id: 'B10-stuck-claim',
    title: 'A full disk at the moment a task is claimed (the ledger write fails) leaves the task in processing/ with a live lease that is refreshed for as long as the process lives: nobody runs it and recovery never takes it, until the service is restarted.',
    where: 'src/queue/folders.ts claimTask: takeLease, then the ledger write; a throw leaves the lease held. Fix: release the lease when recording the claim fails (recovery then returns the task to inbox/).',
    matches: (b, ctx) => b.invariant === 'stuck-claim' && hadUpTo(ctx, b.night, ['enospc_window']),
  },
  {
    id: 'B13-schedule-tick-crash',
    title: 'A full disk at the moment a scheduled cycle starts crashes the service: the scheduler writes its state (schedule.json) in trigger(), the error escapes tick(), which setInterval calls as `void this.tick()` (an unhandled rejection: exit code 1); the scheduler lock taken just before is not released. The same error during the catch-up at start makes `watch` print `meta-agent: ENOSPC ...` and never finish starting, yet the process does not exit: it goes on running the queue without its schedule and without its SIGTERM handler.',
    where: 'src/supervisor/schedule.ts: start() awaits catchUp() unguarded and then `setInterval(() => void this.tick(), ...)`; trigger() takes the lock, then writeState without try/finally. Fix: catch (and log) catch-up and tick errors; release the lock when the state cannot be written, retrying the write briefly first so the night is not lost.',
    matches: (b, ctx) => (b.invariant === 'service-died' || b.invariant === 'service-start-failed') && /ENOSPC/.test(b.detail) && /schedule\.json/.test(b.detail) && hadUpTo(ctx, b.night, ['enospc_window']),
  },
  {
    id: 'B8-budget-one-step',
    title: "A cycle can spend more than supervisor.budget_tokens: each task gets the remaining budget as max_tokens, but the agent checks it before a model call, so the last call can overshoot it (by at most one model step).",
    where: "src/engines/openai.ts checkLimits compares the tokens spent so far with max_tokens before a call. Fix: also stop when spent + the last call's tokens would cross it.",
    matches: (b) => b.invariant === 'budget' && typeof b.data?.overshoot === 'number' && typeof b.data.maxStep === 'number' && b.data.overshoot <= b.data.maxStep,
  },
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
