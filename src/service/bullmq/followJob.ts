/**
 * The folder host follows the job of one ledger run: it adds the job under the id the ledger
 * gives (`<workspace id>-<ledger key>-<run number>`, so the same run always adds the same job and BullMQ
 * ignores a duplicate), polls Redis until the job is finished (adding it again if Redis lost
 * it), then hands the failure or the worker's bundle to the filer.
 */
import type { Job } from 'bullmq';
import { setMaxListeners } from 'node:events';
import type { Logger } from 'pino';
import { MetaAgentError } from '../../contract/errors.ts';
import { workspaceInstanceId } from '../../workspace/instanceId.ts';
import { parseTask } from '../../contract/task.ts';
import { queueFor } from '../../queue/bullmq/connection.ts';
import { BundleSchema, type JobData } from '../../queue/bullmq/job.ts';
import { ledgerFor, type Claim } from '../../queue/folders.ts';
import type { RunTaskResult } from '../../run/runTask.ts';
import type { Settings } from '../../workspace/config.ts';
import { faultPoint } from '../../workspace/faults.ts';
import { carryingSpend, recordedSpend, recordSpend, spendOf } from './attemptSpend.ts';
import { answered, type HostQueues } from './hostQueues.ts';
import type { ResultFiler } from './fileResult.ts';

const POLL_MS = 100;
const RETRY_MS = 1000;

/** The job of one ledger run: its id, the queue its task type routes to, and what the worker gets. */
interface JobSpec {
  id: string;
  queue: string;
  data: JobData;
}

export class JobFollower {
  private readonly stop = new AbortController();
  /** processing/ files whose jobs are followed now. */
  private readonly following = new Set<string>();
  private readonly keepS: number;

  constructor(
    private readonly settings: Settings,
    private readonly log: Logger,
    private readonly queues: HostQueues,
    private readonly filer: ResultFiler,
  ) {
    this.keepS = Math.round(settings.config.execution.keep_results_days * 86400);
    // Every followed job waits on this signal between polls: up to max_in_flight listeners at once, not a leak.
    setMaxListeners(settings.config.execution.max_in_flight + 16, this.stop.signal);
  }

  get stopped(): boolean {
    return this.stop.signal.aborted;
  }

  isFollowing(file: string): boolean {
    return this.following.has(file);
  }

  /** Its job followed until its result is filed; null when this process stops first or the job failed. */
  async follow(claim: Claim): Promise<RunTaskResult | null> {
    this.following.add(claim.file);
    try {
      return await this.untilFiled(claim, await this.jobFor(claim));
    } finally {
      this.following.delete(claim.file);
    }
  }

  /** Stops following: the jobs stay queued and the next start files them. */
  close(): void {
    this.stop.abort();
  }

  private async jobFor(claim: Claim): Promise<JobSpec> {
    let task: { type: string; project: string } | null = null;
    try {
      task = parseTask(claim.content, claim.name);
    } catch {
      // A bad task file: a worker's runTask writes the failure report, as a local run would.
    }
    const entry = await ledgerFor(this.settings.layout).get(claim.key);
    const runNumber = (entry?.runs.findIndex((r) => r.run_id === claim.runId) ?? -1) + 1;
    if (runNumber === 0) throw new MetaAgentError('internal', `the ledger has no run ${claim.runId}`, { file: claim.name });
    return {
      id: `${await workspaceInstanceId(this.settings.layout)}-${claim.key}-${runNumber}`,
      queue: queueFor(this.settings, task?.type ?? ''),
      data: { name: claim.name, content: claim.content.toString('base64'), run_id: claim.runId, project: task?.project ?? '' },
    };
  }

  /** Adds the job (again, whenever Redis lost it) and polls until it is finished and filed; an outage is waited out. */
  private async untilFiled(claim: Claim, spec: JobSpec): Promise<RunTaskResult | null> {
    const queue = this.queues.get(spec.queue);
    const removeAfter = { age: this.keepS };
    let added = false;
    let data = spec.data;
    let lastSpend = await recordedSpend(this.settings.layout, claim);
    // While Redis has never answered, BullMQ's calls wait for it: one add at a time, awaited in slices.
    let adding: Promise<unknown> | null = null;
    while (!this.stop.signal.aborted) {
      try {
        if (!added) {
          faultPoint('bullmq-before-add');
          // The same id again (after a crash, or a Redis that lost the job) is ignored by BullMQ if the job is there.
          adding ??= queue.add('task', data, { jobId: spec.id, attempts: 1, removeOnComplete: removeAfter, removeOnFail: removeAfter });
          await answered(adding.finally(() => (adding = null)));
          added = true;
          this.log.debug({ job: spec.id, queue: spec.queue }, 'job added');
        }
        const job = await answered(queue.getJob(spec.id));
        this.queues.reachable();
        if (!job) {
          // What the lost job's attempts spent (its last progress seen) goes with it: the re-run counts it.
          data = carryingSpend(data, lastSpend);
          this.log.warn(
            { job: spec.id, task_file: claim.name },
            'the job is gone from Redis (it lost its data or was flushed): added again; the task may run once more',
          );
          added = false;
          continue;
        }
        lastSpend = await recordSpend(this.settings.layout, claim, spendOf(job.progress), lastSpend);
        if (job.finishedOn) return await this.fileFinished(claim, job);
      } catch (error) {
        if (error instanceof MetaAgentError) throw error;
        this.queues.unreachable(error);
        await this.sleep(RETRY_MS);
        continue;
      }
      await this.sleep(POLL_MS);
    }
    return null;
  }

  /** A finished job: the failure BullMQ recorded, or the worker's bundle (checked: the worker may be another version). */
  private async fileFinished(claim: Claim, job: Job): Promise<RunTaskResult | null> {
    if (job.failedReason) return this.filer.fileFailure(claim, job.failedReason);
    const bundle = BundleSchema.safeParse(job.returnvalue);
    if (!bundle.success) {
      return this.filer.fileFailure(
        claim,
        `the worker's result is not a meta-agent bundle (${bundle.error.issues[0]?.message ?? 'invalid'}); is the worker another version?`,
      );
    }
    faultPoint('bullmq-before-filing');
    return this.filer.fileBundle(claim, bundle.data);
  }

  /** Waits `ms`, or less when this process stops. */
  private sleep(ms: number): Promise<void> {
    const signal = this.stop.signal;
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
