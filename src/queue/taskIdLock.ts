/**
 * Runs of one task id, one at a time, across processes and machines. Two task files may
 * name the same `id:`; their runs would share reports/<id>.json, <id>_report.md and
 * <id>.trajectory.jsonl. Holding this lock from before the earlier run's outputs are
 * archived until the report is written, each run gets its own report and trajectory, and
 * the earlier one is archived under reports/archive/<id>/<run_id>/ as for a re-run.
 */
import path from 'node:path';
import type { Layout } from '../workspace/layout.ts';
import type { Logger } from 'pino';
import { clearDeadLocks, lockActivity } from '../workspace/lease.ts';

const locksDir = (layout: Layout) => path.join(layout.state, 'runs');

/**
 * Waits (polling) until no other run of `id` is going on; an abort of `signal` ends the wait.
 * After `maxWaitMs` (longer than any run may take) it goes on without the lock, as before it:
 * a lock never released by a bug must not hold back every later run of the id.
 */
export async function holdTaskId(
  layout: Layout,
  id: string,
  staleMs: number,
  signal: AbortSignal | undefined,
  maxWaitMs: number,
): Promise<() => Promise<void>> {
  const target = path.join(locksDir(layout), id);
  const deadline = performance.now() + maxWaitMs;
  for (;;) {
    // Lost only if this process was frozen past staleMs and another host took it: the other
    // run then writes its report beside ours (a `<id>.<ms>.json`), as before this lock.
    const release = await lockActivity(target, { staleMs, wait: false, onLost: () => undefined });
    if (release) return release;
    if (signal?.aborted) throw signal.reason;
    if (performance.now() > deadline) return async () => undefined;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Clears the task-id locks of dead runs (a run killed holding one, whose id never runs again). */
export async function clearDeadTaskIdLocks(layout: Layout, staleMs: number, log: Logger): Promise<void> {
  const cleared = await clearDeadLocks(locksDir(layout), staleMs);
  if (cleared.length) log.info({ task_ids: cleared }, `removed the task-id locks of ${cleared.length} dead run(s)`);
}
