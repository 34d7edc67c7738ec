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
    id: 'B3-gate-worktree-leak',
    title: "kill -9 during a gate run and a restart within a minute: the dead gate's worktree (gate-*) is never removed (start-up pruning sees the dead process's gate lock as held for 60 s and skips gate worktrees, and keeps any worktree younger than lease_stale_s); its lock (.meta-agent/.gate.lock) stays until the next gate run.",
    where: "src/queue/watch.ts start(): gateIdle comes from lockfile.check (stale after 60 s), which ignores the dead owner; src/queue/prune.ts keeps unknown worktrees younger than lease_stale_s. Fix: at start, take the gate lock with lockActivity (which takes over a dead owner's lock), prune every gate-* while holding it, then release it.",
    matches: (b, ctx) =>
      (b.invariant === 'leftover-lock' && b.detail === path.join('.meta-agent', '.gate.lock') + '/' && (hadUpTo(ctx, b.night, KILLS) || ctx.crashedNights.some((n) => n <= b.night))) ||
      (b.invariant === 'leftover-worktree' &&
      (hadUpTo(ctx, b.night, KILLS) || ctx.crashedNights.some((n) => n <= b.night)) &&
      b.detail
        .replace(/^[^:]*: /, '')
        .split(/[;,] /)
        .every((x) => /(^|\/)gate-[0-9a-f]{8}(\.exclude)?$/.test(x.trim().replace(/^worktree /, '')))),
  },
  {
    id: 'B4-gate-evidence-lost',
    title: 'A crash after the gate moved the branch: on restart the gate finds the commit ("already applied") and files patches/applied/<id>.result.json with tests and dry_run null: the record of that commit no longer shows it was tested.',
    where: 'src/gate/gate.ts: the already-applied path calls accept() with tests/dry_run null. Fix: keep the checks next to the snapshot (gate-snapshots/<sha>.checks.json) before update-ref; the already-applied path records them.',
    matches: (b) => b.invariant === 'commit-test-evidence-lost',
  },
  {
    id: 'B5-gate-snapshot-leak',
    title: 'A crash during a gate run leaves .meta-agent/gate-snapshots/<sha256>.patch forever when the next run of that patch takes the "already applied" path (it returns before the step that removes the snapshot).',
    where: 'src/gate/gate.ts: the already-applied branch returns before the try/finally that removes the snapshot. Fix: remove it there too.',
    matches: (b, ctx) => b.invariant === 'leftover-temp' && b.detail.startsWith('gate snapshot ') && (hadUpTo(ctx, b.night, KILLS) || ctx.crashedNights.some((n) => n <= b.night)),
  },
  {
    id: 'B9-gate-error-crashes-service',
    title: "An error while the gate files its decision (a full disk while writing the report's approval, the result or the reason) crashes the whole service: gatePatch returns accept()/reject() un-awaited inside try { } finally { await worktree.remove() }, so the rejection is unhandled while the finally runs (Node exits with code 1).",
    where: 'src/gate/gate.ts gatePatch: `return accept(...)` / `return reject(...)` inside try/finally. Fix: `return await`; and once the branch moved, rethrow instead of rejecting (the next run finds the commit).',
    matches: (b, ctx) => b.invariant === 'service-died' && /ENOSPC/.test(b.detail) && /at (accept|reject|recordApproval)/.test(b.detail) && hadUpTo(ctx, b.night, ['enospc_window']),
  },
  {
    id: 'B10-stuck-claim',
    title: 'A full disk at the moment a task is claimed (the ledger write fails) leaves the task in processing/ with a live lease that is refreshed for as long as the process lives: nobody runs it and recovery never takes it, until the service is restarted.',
    where: 'src/queue/folders.ts claimTask: takeLease, then the ledger write; a throw leaves the lease held. Fix: release the lease when recording the claim fails (recovery then returns the task to inbox/).',
    matches: (b, ctx) => b.invariant === 'stuck-claim' && hadUpTo(ctx, b.night, ['enospc_window']),
  },
  {
    id: 'B11-accept-not-crash-safe',
    title: "A crash inside the gate's filing of an applied patch (after the patch moved into applied/, before its result.json was written: kill -9, or B9) is never finished: the commit stays on the branch with no approval record, and the sidecar stays behind in approved/.",
    where: 'src/gate/gate.ts accept(): moves the patch into applied/, then writes result.json. Fix: write the result first (the patch stays in approved/ until it is recorded, so the next run finishes the move); a .taken-* with a second link is a finished move.',
    matches: (b, ctx) =>
      b.invariant === 'commit-without-record' &&
      /the patch is in applied\/[^,]*$/.test(b.detail) &&
      (hadUpTo(ctx, b.night, ['kill_mid_gate', 'kill_gate_after_commit', 'kill_mid_task_day']) || ctx.crashedNights.some((n) => n <= b.night)),
  },
  {
    id: 'B12-redo-dropped-twice',
    title: "A crash (or B9) between the gate dropping `<id>-redo.md` for a conflicting patch and filing the rejection: on restart the gate processes the patch again and drops the same redo task again, so the agent redoes the change twice.",
    where: 'src/gate/gate.ts: dropRedoTask runs before the rejection is filed and is not idempotent. Fix: a marker per (patch sha, head) in .meta-agent/gate-redo/.',
    matches: (b, ctx) => b.invariant === 'done-twice' && /^\S+-redo(-\d+)?\.md ran /.test(b.detail) && (hadUpTo(ctx, b.night, KILLS) || ctx.crashedNights.some((n) => n <= b.night)),
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
