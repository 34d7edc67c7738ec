/**
 * `meta-agent worker`: runs the tasks a folder host queued in BullMQ, on any machine. It
 * never touches the folders: each job runs with runTask, exactly as a local run, in a
 * workspace of its own (jobHandler.ts), on a mirror of the project's git remote fetched
 * before each job (mirrors.ts); the report, trajectory, patch and artifacts go back as the
 * job's result (bundle.ts), which the folder host files.
 *
 * Liveness is BullMQ's: the job lock is renewed while the job runs (execution.lock_s); a
 * worker that dies (kill -9, power loss) stops renewing it, and another worker runs the job
 * again, once (execution.max_stalled), then the job fails. SIGTERM (stop()) aborts the runs
 * and moves their jobs back to wait, which does not count as a stall.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker, WaitingError } from 'bullmq';
import type { Logger } from 'pino';
import { toErrorInfo } from '../../contract/errors.ts';
import type { Engine } from '../../engines/types.ts';
import { redisTarget, type RedisTarget } from '../../queue/bullmq/connection.ts';
import type { Settings } from '../../workspace/config.ts';
import { JobHandler } from './jobHandler.ts';
import { Mirrors } from './mirrors.ts';

export interface WorkerOptions {
  settings: Settings;
  log: Logger;
  /** Jobs at once; default limits.concurrency. */
  concurrency?: number;
  /** Default execution.queue. */
  queue?: string;
  /** Replaces the configured engine (tests, benchmarks). */
  engine?: Engine;
}

export interface RunningWorker {
  /** Resolves once the worker listens for jobs. */
  ready: Promise<void>;
  /** Aborts the running jobs, returns them to the queue (not counted as a crash), and closes. */
  stop(): Promise<void>;
}

export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const { settings, log } = options;
  const { execution } = settings.config;
  const target = redisTarget(settings, true);
  const queueName = options.queue ?? execution.queue;
  const concurrency = options.concurrency ?? settings.config.limits.concurrency;
  const home = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-worker-'));
  const lockMs = execution.lock_s * 1000;
  const mirrors = new Mirrors(path.join(home, 'repos'), settings);
  const handler = new JobHandler({ settings, log, home, mirrors, lockMs, ...(options.engine ? { engine: options.engine } : {}) });

  const worker = new Worker(queueName, handler.handle, {
    connection: target.connection,
    concurrency,
    lockDuration: lockMs,
    stalledInterval: lockMs,
    maxStalledCount: execution.max_stalled,
    autorun: false,
  });
  logWorkerEvents(worker, log, target);
  const running = worker.run().catch((error: unknown) => log.error({ err: toErrorInfo(error) }, 'the worker stopped on an error'));
  const ready = worker.waitUntilReady().then(() => log.info({ queue: queueName, concurrency, redis: target.where }, `worker listening on queue ${queueName}`));
  return {
    ready: ready.then(() => undefined),
    async stop() {
      handler.stop();
      await worker.close();
      await running;
      await fs.rm(home, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}

/** Jobs done and failed, and Redis outages: one line when it goes away, one when it is back. */
function logWorkerEvents(worker: Worker, log: Logger, target: RedisTarget): void {
  let outage = false;
  worker.on('error', (error) => {
    if (outage) return;
    outage = true;
    log.error(
      { redis: target.where, err: toErrorInfo(error).message },
      `Redis at ${target.where}: ${toErrorInfo(error).message}; the worker waits for it and goes on`,
    );
  });
  worker.on('ready', () => {
    if (outage) log.info({ redis: target.where }, `Redis at ${target.where} is reachable again`);
    outage = false;
  });
  worker.on('failed', (job, error) => {
    // A job a stopping worker returned to the queue did not fail.
    if (error instanceof WaitingError || error?.name === 'WaitingError') return;
    log.error({ job: job?.id, err: error?.message }, `job failed: ${error?.message}`);
  });
  worker.on('completed', (job) => log.info({ job: job.id }, 'job done'));
}
