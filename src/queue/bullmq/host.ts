/**
 * The folder host of the BullMQ execution engine (`watch` with `execution.engine: bullmq`).
 * It stays the only writer of the folders: it claims from inbox/ as always (claimTask:
 * processing/, lease, ledger), adds one BullMQ job per ledger run, and files what the
 * worker returns: report, then ledger, then the patch (named by the report), then the task
 * move, with the same functions runTask files with. Workers never touch the folders.
 *
 * Crash safety comes from the job id, `<ledger key>-<run number>`: whatever this process
 * was doing when it died, the next start finds the task in processing/ under a dead lease,
 * takes the lease over for the same run and adds the same job again. BullMQ ignores the
 * duplicate; a job already done is filed from its stored result (kept keep_results_days),
 * a job Redis lost (flushed, no persistence) is run again: at most one extra run, and one
 * filed result, since filing is idempotent per run id.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Queue } from 'bullmq';
import type { Logger } from 'pino';
import { MetaAgentError, toErrorInfo } from '../../contract/errors.ts';
import type { Report } from '../../contract/report.ts';
import { parseTask, TaskIdSchema } from '../../contract/task.ts';
import { dispositionOf, newRunId, type RunTaskResult } from '../../run/runTask.ts';
import { archiveEarlierRun, patchStemFor, reportPaths, writeReport } from '../../run/report.ts';
import type { Settings } from '../../workspace/config.ts';
import { faultPoint } from '../../workspace/faults.ts';
import { exists, publishFile, replaceFile } from '../../workspace/files.ts';
import { displayPath } from '../../workspace/layout.ts';
import { claimTask, ledgerFor, markReported, settleClaim, type Claim, type Disposition } from '../folders.ts';
import { clearLease, leaseAlive, readOwner, takeLease } from '../lease.ts';
import { ledgerKey } from '../ledger.ts';
import { allQueues, queueFor, redisTarget } from './connection.ts';
import { BundleSchema, type Bundle, type JobData } from './job.ts';

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

const POLL_MS = 100;
const RETRY_MS = 1000;
const ANSWER_MS = 5000;
const STALLED = /stalled more than allowable limit/;

export function startRemoteExecution(settings: Settings, log: Logger): RemoteExecution {
  const { layout, config } = settings;
  const target = redisTarget(settings, false);
  const staleMs = config.queue.lease_stale_s * 1000;
  const keepS = Math.round(config.execution.keep_results_days * 86400);
  const stop = new AbortController();
  const following = new Set<string>();
  const adopted = new Set<Promise<unknown>>();
  let outage: string | null = null;

  const queues = new Map<string, Queue>();
  for (const name of allQueues(settings)) {
    const queue = new Queue(name, { connection: target.connection });
    // Without a listener an 'error' event would end the process; the poll loop reports outages.
    queue.on('error', () => undefined);
    queue.waitUntilReady().catch(() => undefined);
    queues.set(name, queue);
  }

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        stop.signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      stop.signal.addEventListener('abort', done, { once: true });
    });

  /** One clear line per outage, not one per poll. */
  const unreachable = (error: unknown) => {
    const why = toErrorInfo(error).message;
    if (outage) return;
    outage = why;
    log.error({ redis: target.where, err: why }, `Redis at ${target.where} is unreachable (${why}); claimed tasks wait in processing/ and are sent, or their results filed, when it is back`);
  };
  const reachable = () => {
    if (!outage) return;
    outage = null;
    log.info({ redis: target.where }, `Redis at ${target.where} is reachable again`);
  };

  /** The job of one ledger run, followed until its result is filed (or this process stops). */
  const follow = async (claim: Claim): Promise<RunTaskResult | null> => {
    following.add(claim.file);
    try {
      let task: { type: string; project: string } | null = null;
      try {
        task = parseTask(claim.content, claim.name);
      } catch {
        // A bad task file: a worker's runTask writes the failure report, as a local run would.
      }
      const entry = await ledgerFor(layout).get(claim.key);
      const runNumber = (entry?.runs.findIndex((r) => r.run_id === claim.runId) ?? -1) + 1;
      if (runNumber === 0) throw new MetaAgentError('internal', `the ledger has no run ${claim.runId}`, { file: claim.name });
      const jobId = `${claim.key}-${runNumber}`;
      const queueName = queueFor(settings, task?.type ?? '');
      const queue = queues.get(queueName)!;
      const data: JobData = { name: claim.name, content: claim.content.toString('base64'), run_id: claim.runId, project: task?.project ?? '' };
      let added = false;
      // While Redis has never answered, BullMQ's calls wait for it: one add at a time, awaited in slices.
      let adding: Promise<unknown> | null = null;
      while (!stop.signal.aborted) {
        try {
          if (!added) {
            faultPoint('bullmq-before-add');
            // The same id again (after a crash, or a Redis that lost the job) is ignored by BullMQ if the job is there.
            adding ??= queue.add('task', data, { jobId, attempts: 1, removeOnComplete: { age: keepS }, removeOnFail: { age: keepS } });
            await answered(adding.finally(() => (adding = null)));
            added = true;
            log.debug({ job: jobId, queue: queueName }, 'job added');
          }
          const job = await answered(queue.getJob(jobId));
          reachable();
          if (!job) {
            log.warn({ job: jobId, task_file: claim.name }, 'the job is gone from Redis (it lost its data or was flushed): added again; the task may run once more');
            added = false;
            continue;
          }
          if (job.finishedOn && job.failedReason) return await fileFailure(claim, job.failedReason);
          if (job.finishedOn) {
            const bundle = BundleSchema.safeParse(job.returnvalue);
            if (!bundle.success) return await fileFailure(claim, `the worker's result is not a meta-agent bundle (${bundle.error.issues[0]?.message ?? 'invalid'}); is the worker another version?`);
            faultPoint('bullmq-before-filing');
            return await fileBundle(claim, bundle.data);
          }
        } catch (error) {
          if (error instanceof MetaAgentError) throw error;
          unreachable(error);
          await sleep(RETRY_MS);
          continue;
        }
        await sleep(POLL_MS);
      }
      return null;
    } finally {
      following.delete(claim.file);
    }
  };

  const fileBundle = async (claim: Claim, bundle: Bundle): Promise<RunTaskResult> => {
    // A worker's bundle is input from another machine: its id must be an id (no path), its
    // run the one this host recorded; the patch's name is this host's, never the worker's.
    const id = TaskIdSchema.safeParse(bundle.report.task_id).success ? bundle.report.task_id : null;
    if (!id || bundle.report.run_id !== claim.runId) {
      throw new MetaAgentError('input', `the worker's result for ${claim.name} names task "${bundle.report.task_id}", run ${bundle.report.run_id} (expected run ${claim.runId}); not filed`, { file: claim.name });
    }
    const paths = reportPaths(layout, id);
    const earlier = await fs.readFile(paths.json, 'utf8').then((t) => JSON.parse(t) as Report, () => null);
    let report: Report;
    let reportFile = paths.json;
    let reportMd = paths.md;
    if (earlier?.run_id === claim.runId) {
      // Filed before a crash: the report (and the patch name it gives) stands.
      report = earlier;
    } else {
      const workerStem = bundle.report.patch_files[0]?.replace(/^.*\//, '').replace(/\.patch$/, '');
      const stem = bundle.patch ? await patchStemFor(layout, id, claim.runId) : null;
      await archiveEarlierRun(layout, id);
      if (bundle.trajectory !== null) await replaceFile(paths.trajectory, bundle.trajectory);
      // The worker's own paths become this workspace's: its patch was <id>.patch in a workspace of its own.
      let text = JSON.stringify(bundle.report);
      if (workerStem && stem) text = text.replaceAll(`patches/pending/${workerStem}.`, `patches/pending/${stem}.`);
      report = JSON.parse(text) as Report;
      report.patch_files = stem ? [`${stem}.patch`, `${stem}.patch.json`].map((n) => displayPath(layout, path.join(layout.patches.pending, n))) : [];
      const disposition = dispositionOf(claim.name, id, { ...report, report_md: displayPath(layout, paths.md) });
      const destination = { ok: layout.done, error: layout.failed, interrupted: layout.inbox }[disposition.status];
      report = {
        ...report,
        task_file: displayPath(layout, path.join(destination, claim.name)),
        report_md: displayPath(layout, paths.md),
        trajectory: bundle.trajectory !== null ? displayPath(layout, paths.trajectory) : null,
      };
      ({ json: reportFile, md: reportMd } = await writeReport(layout, report));
      faultPoint('after-report');
    }
    const disposition: Disposition = dispositionOf(claim.name, id, report);
    await markReported(layout, claim, disposition);
    faultPoint('after-ledger');
    if (bundle.patch && report.patch_files[0]) await filePatch(report.patch_files[0], bundle.patch);
    const taskFile = await settleClaim(layout, claim, disposition);
    if (displayPath(layout, taskFile) !== report.task_file) {
      report = { ...report, task_file: displayPath(layout, taskFile) };
      await replaceFile(reportFile, JSON.stringify(report, null, 2) + '\n');
    }
    log.info({ task_id: id, run_id: claim.runId, worker: bundle.worker, status: report.status, outcome: report.outcome }, `run finished on ${bundle.worker.host}: ${report.outcome}`);
    return {
      task_id: id,
      run_id: claim.runId,
      status: report.status,
      outcome: report.outcome,
      report_path: reportFile,
      report_md_path: reportMd,
      patch_path: report.patch_files[0] ? path.join(layout.root, report.patch_files[0]) : null,
      task_file: taskFile,
      report,
    };
  };

  /** The patch at the path the report names: sidecar and artifacts first, the patch itself last (its arrival is what people and the gate see). */
  const filePatch = async (patchRel: string, patch: NonNullable<Bundle['patch']>) => {
    const name = path.basename(patchRel);
    // Filed before a crash, and perhaps already moved on by a person or the gate.
    for (const dir of Object.values(layout.patches)) if (await exists(path.join(dir, name))) return;
    const patchFile = path.join(layout.root, patchRel);
    const stem = patchFile.replace(/\.patch$/, '');
    await publishFile(`${patchFile}.json`, patch.sidecar).catch(ignoreExisting);
    for (const artifact of patch.artifacts) {
      const file = path.join(`${stem}.artifacts`, artifact.path);
      if (!file.startsWith(`${stem}.artifacts${path.sep}`)) throw new MetaAgentError('input', `the worker's artifact path ${artifact.path} leaves the artifacts folder`, { file: name });
      await fs.mkdir(path.dirname(file), { recursive: true });
      await replaceFile(file, Buffer.from(artifact.base64, 'base64'));
    }
    await publishFile(patchFile, Buffer.from(patch.patch, 'base64')).catch(ignoreExisting);
  };

  /** A job BullMQ failed: its worker died twice (max_stalled), or could not run it at all. No report, as for a task recovery fails. */
  const fileFailure = async (claim: Claim, reason: string): Promise<null> => {
    const twice = STALLED.test(reason);
    const explanation = twice
      ? `# ${claim.name} failed\n\n**What went wrong** (interrupted): the worker running this task died twice (crash, kill or power loss; BullMQ: ${reason}), so it is not retried again automatically.\n\n**How to fix it:** check the workers' logs for what happened; move the file back into inbox/ to try once more.\n`
      : `# ${claim.name} failed\n\n**What went wrong** (engine): a worker could not run it: ${reason}\n\n**How to fix it:** check the worker's configuration and logs (the project's remote, its meta-agent.yaml); move the file back into inbox/ to try again.\n`;
    const disposition: Disposition = { status: 'error', explanation };
    await ledgerFor(layout).update(claim.key, { key: claim.key, name: claim.name, sha256: claim.sha256 }, (e) => {
      const run = e.runs.find((r) => r.run_id === claim.runId);
      if (run && twice) run.recovered = 'failed_interrupted_twice';
    });
    await markReported(layout, claim, disposition);
    await settleClaim(layout, claim, disposition);
    log.error({ task_file: claim.name, run_id: claim.runId, reason }, `the job failed: ${reason}`);
    return null;
  };

  /** Follows again the tasks a dead or stopped folder host left in processing/ (adopt()). */
  const adoptLeftTasks = async (): Promise<void> => {
    const names = await fs.readdir(layout.processing).catch(() => [] as string[]);
    for (const entry of names) {
      if (entry.startsWith('.') || !entry.toLowerCase().endsWith('.md')) continue;
      const file = path.join(layout.processing, entry);
      if (following.has(file) || stop.signal.aborted) continue;
      const owner = await readOwner(file);
      // No owner note: killed between the claim and its lease; crash recovery returns it to inbox/.
      if (!owner || (await leaseAlive(file, staleMs))) continue;
      const content = await fs.readFile(file).catch(() => null);
      if (!content) continue;
      const name = entry.replace(`.${owner.run_id}`, '');
      const { key, sha256 } = ledgerKey(name, content);
      const run = (await ledgerFor(layout).get(key))?.runs.find((r) => r.run_id === owner.run_id);
      if (!run || run.finalized_at) continue;
      await clearLease(file);
      const lease = await takeLease(file, owner.run_id, staleMs);
      log.warn({ task_file: name, run_id: owner.run_id }, 'a task left in processing/ by a stopped or dead folder host: following its job again');
      const followed = follow({ file, name, runId: owner.run_id, key, sha256, content, lease }).catch((error: unknown) => log.error({ err: toErrorInfo(error), task_file: name }, 'filing an adopted task failed'));
      adopted.add(followed);
      void followed.finally(() => adopted.delete(followed));
    }
  };
  let adopting: Promise<void> | null = null;

  return {
    maxInFlight: config.execution.max_in_flight,
    async run(name, options) {
      const claim = await claimTask(layout, path.join(layout.inbox, name), newRunId(), staleMs, options.expectSha256);
      return follow(claim);
    },
    adopt() {
      // One adoption at a time: scans overlap (one can take longer than scan_interval_ms), and two
      // adoptions followed the same run twice, or one left the file to crash recovery while the
      // other took its lease over (the soak's BullMQ mode). A second caller waits for the first.
      adopting ??= adoptLeftTasks().finally(() => (adopting = null));
      return adopting;
    },
    async close() {
      stop.abort();
      await Promise.allSettled([...adopted]);
      await Promise.allSettled([...queues.values()].map((q) => q.close()));
    },
  };
}

/** Redis's answer, or an error after ANSWER_MS (BullMQ waits without end for a Redis it never reached). */
async function answered<T>(call: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ANSWER_MS / 1000} s`)), ANSWER_MS);
  });
  try {
    return await Promise.race([call, late]);
  } finally {
    clearTimeout(timer);
  }
}

function ignoreExisting(error: unknown): void {
  if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
}
