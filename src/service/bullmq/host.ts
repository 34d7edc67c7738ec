/**
 * The folder host of the BullMQ execution engine (`watch` with `execution.engine: bullmq`).
 * It stays the only writer of the folders: it claims from inbox/ as always (claimTask:
 * processing/, lease, ledger), adds one BullMQ job per ledger run (followJob.ts), and files
 * what the worker returns (fileResult.ts) with the same functions runTask files with.
 * Workers never touch the folders.
 *
 * Crash safety comes from the job id, `<workspace id>-<ledger key>-<run number>`: whatever this process
 * was doing when it died, the next start finds the task in processing/ under a dead lease,
 * takes the lease over for the same run (adopt.ts) and adds the same job again. BullMQ ignores
 * the duplicate; a job already done is filed from its stored result (kept keep_results_days),
 * a job Redis lost (flushed, no persistence) is run again: at most one extra run, and one
 * filed result, since filing is idempotent per run id.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import { toErrorInfo } from '../../contract/errors.ts';
import { artifactPolicy } from '../../queue/bullmq/artifactStore.ts';
import { claimTask } from '../../queue/folders.ts';
import { newRunId, type RunTaskResult } from '../../run/runTask.ts';
import type { Settings } from '../../workspace/config.ts';
import { orphanedClaims } from './adopt.ts';
import { ResultFiler } from './fileResult.ts';
import { JobFollower } from './followJob.ts';
import { HostQueues } from './hostQueues.ts';

export interface RemoteExecution {
  /** How many tasks may be claimed and queued at once. */
  maxInFlight: number;
  /** Claims `inbox/<name>`, runs it on a worker, files the result. Null: nothing to report (a stop, a failed job). */
  run(name: string, options: { expectSha256?: string }): Promise<RunTaskResult | null>;
  /** Takes over the tasks a dead folder host left in processing/ (before crash recovery would return them to inbox/). */
  adopt(): Promise<void>;
  /** Stops following jobs; they stay queued and the next start files them. */
  close(): Promise<void>;
}

export function startRemoteExecution(settings: Settings, log: Logger): RemoteExecution {
  const { layout, config } = settings;
  const staleMs = config.queue.lease_stale_s * 1000;
  const queues = new HostQueues(settings, log);
  const follower = new JobFollower(settings, log, queues, new ResultFiler(layout, log, artifactPolicy(settings).store));
  const adopted = new Set<Promise<unknown>>();
  let adopting: Promise<void> | null = null;

  /** Follows again the tasks a dead or stopped folder host left in processing/. */
  const adoptLeftTasks = async (): Promise<void> => {
    for await (const claim of orphanedClaims(layout, staleMs, (file) => follower.stopped || follower.isFollowing(file))) {
      log.warn({ task_file: claim.name, run_id: claim.runId }, 'a task left in processing/ by a stopped or dead folder host: following its job again');
      const followed = follower
        .follow(claim)
        .catch((error: unknown) => log.error({ err: toErrorInfo(error), task_file: claim.name }, 'filing an adopted task failed'));
      adopted.add(followed);
      void followed.finally(() => adopted.delete(followed));
    }
  };

  return {
    maxInFlight: config.execution.max_in_flight,
    async run(name, options) {
      const claim = await claimTask(layout, path.join(layout.inbox, name), newRunId(), staleMs, options.expectSha256);
      return follower.follow(claim);
    },
    adopt() {
      // One adoption at a time: scans overlap when one takes longer than scan_interval_ms, and
      // two adoptions of one left task followed its run twice (found by the soak's BullMQ mode).
      adopting ??= adoptLeftTasks().finally(() => {
        adopting = null;
      });
      return adopting;
    },
    async close() {
      follower.close();
      await Promise.allSettled([...adopted]);
      await queues.close();
    },
  };
}
