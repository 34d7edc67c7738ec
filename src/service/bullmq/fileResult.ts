/**
 * The folder host files what a worker returned, in the order runTask files a local run:
 * report, then ledger, then the patch (named by the report), then the task move. The names
 * are the host's own (the worker ran in a workspace of its own). Every step can be done again
 * after a crash: a report of this run already there stands, a patch already filed is left.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { MetaAgentError, toErrorInfo } from '../../contract/errors.ts';
import { parseJsonText, readJsonFileOrNull } from '../../contract/readJson.ts';
import { ReportSchema, type Report } from '../../contract/report.ts';
import { TaskIdSchema } from '../../contract/task.ts';
import type { Bundle } from '../../queue/bullmq/job.ts';
import { ledgerFor, markReported, settleClaim, type Claim, type Disposition } from '../../queue/folders.ts';
import { archiveEarlierRun, patchStemFor, reportPaths, writeReport } from '../../run/report.ts';
import { dispositionOf, type RunTaskResult } from '../../run/runTask.ts';
import { faultPoint } from '../../workspace/faults.ts';
import { exists, publishFile, replaceFile } from '../../workspace/files.ts';
import { displayPath, type Layout } from '../../workspace/layout.ts';

const STALLED = /stalled more than allowable limit/;

/** The report of a run as filed here, and where. */
interface FiledReport {
  report: Report;
  json: string;
  md: string;
}

export class ResultFiler {
  constructor(
    private readonly layout: Layout,
    private readonly log: Logger,
  ) {}

  async fileBundle(claim: Claim, bundle: Bundle): Promise<RunTaskResult> {
    const layout = this.layout;
    const id = acceptedTaskId(claim, bundle);
    const filed = (await this.filedBefore(claim, id)) ?? (await this.writeReport(claim, id, bundle));
    let report = filed.report;
    const disposition: Disposition = dispositionOf(claim.name, id, report);
    await markReported(layout, claim, disposition);
    faultPoint('after-ledger');
    if (bundle.patch && report.patch_files[0]) await this.filePatch(report.patch_files[0], bundle.patch);
    const taskFile = await settleClaim(layout, claim, disposition);
    if (displayPath(layout, taskFile) !== report.task_file) {
      report = { ...report, task_file: displayPath(layout, taskFile) };
      await replaceFile(filed.json, `${JSON.stringify(report, null, 2)}\n`);
    }
    this.log.info(
      { task_id: id, run_id: claim.runId, worker: bundle.worker, status: report.status, outcome: report.outcome },
      `run finished on ${bundle.worker.host}: ${report.outcome}`,
    );
    return {
      task_id: id,
      run_id: claim.runId,
      status: report.status,
      outcome: report.outcome,
      report_path: filed.json,
      report_md_path: filed.md,
      patch_path: report.patch_files[0] ? path.join(layout.root, report.patch_files[0]) : null,
      task_file: taskFile,
      report,
    };
  }

  /** A job BullMQ failed: its worker died twice (max_stalled), or could not run it at all. No report, as for a task recovery fails. */
  async fileFailure(claim: Claim, reason: string): Promise<null> {
    const twice = STALLED.test(reason);
    const disposition: Disposition = { status: 'error', explanation: failureExplanation(claim.name, reason, twice) };
    await ledgerFor(this.layout).update(claim.key, { key: claim.key, name: claim.name, sha256: claim.sha256 }, (e) => {
      const run = e.runs.find((r) => r.run_id === claim.runId);
      if (run && twice) run.recovered = 'failed_interrupted_twice';
    });
    await markReported(this.layout, claim, disposition);
    await settleClaim(this.layout, claim, disposition);
    this.log.error({ task_file: claim.name, run_id: claim.runId, reason }, `the job failed: ${reason}`);
    return null;
  }

  /**
   * This run's report, if it was filed before a crash (it stands, and so does the patch name
   * it gives). A report of an earlier run, or a damaged one, is not: archiving moves it aside.
   */
  private async filedBefore(claim: Claim, id: string): Promise<FiledReport | null> {
    const paths = reportPaths(this.layout, id);
    let earlier: Report | null;
    try {
      earlier = await readJsonFileOrNull(paths.json, ReportSchema);
    } catch (error) {
      if (!(error instanceof MetaAgentError)) throw error;
      this.log.warn(
        { err: toErrorInfo(error), task_file: claim.name },
        `the report already there is damaged (${error.message}): it is archived and this run's report filed`,
      );
      return null;
    }
    return earlier?.run_id === claim.runId ? { report: earlier, json: paths.json, md: paths.md } : null;
  }

  /** The worker's report under this workspace's names: its patch was <id>.patch in a workspace of its own. */
  private async writeReport(claim: Claim, id: string, bundle: Bundle): Promise<FiledReport> {
    const layout = this.layout;
    const paths = reportPaths(layout, id);
    const workerStem = bundle.report.patch_files[0]?.replace(/^.*\//, '').replace(/\.patch$/, '');
    const stem = bundle.patch ? await patchStemFor(layout, id, claim.runId) : null;
    await archiveEarlierRun(layout, id);
    if (bundle.trajectory !== null) await replaceFile(paths.trajectory, bundle.trajectory);
    let text = JSON.stringify(bundle.report);
    if (workerStem && stem) text = text.replaceAll(`patches/pending/${workerStem}.`, `patches/pending/${stem}.`);
    let report = parseJsonText(text, ReportSchema, `the worker's report for ${claim.name}`);
    report.patch_files = stem ? [`${stem}.patch`, `${stem}.patch.json`].map((n) => displayPath(layout, path.join(layout.patches.pending, n))) : [];
    const disposition = dispositionOf(claim.name, id, { ...report, report_md: displayPath(layout, paths.md) });
    const destination = { ok: layout.done, error: layout.failed, interrupted: layout.inbox }[disposition.status];
    report = {
      ...report,
      task_file: displayPath(layout, path.join(destination, claim.name)),
      report_md: displayPath(layout, paths.md),
      trajectory: bundle.trajectory !== null ? displayPath(layout, paths.trajectory) : null,
    };
    const written = await writeReport(layout, report);
    faultPoint('after-report');
    return { report, ...written };
  }

  /** The patch at the path the report names: sidecar and artifacts first, the patch itself last (its arrival is what people and the gate see). */
  private async filePatch(patchRel: string, patch: NonNullable<Bundle['patch']>): Promise<void> {
    const name = path.basename(patchRel);
    // Filed before a crash, and perhaps already moved on by a person or the gate.
    for (const dir of Object.values(this.layout.patches)) if (await exists(path.join(dir, name))) return;
    const patchFile = path.join(this.layout.root, patchRel);
    const stem = patchFile.replace(/\.patch$/, '');
    // The sidecar is <id>.patch.json, where the gate and the dashboard look for it.
    await publishFile(`${patchFile}.json`, patch.sidecar).catch(ignoreExisting);
    for (const artifact of patch.artifacts) {
      const file = path.join(`${stem}.artifacts`, artifact.path);
      if (!file.startsWith(`${stem}.artifacts${path.sep}`))
        throw new MetaAgentError('input', `the worker's artifact path ${artifact.path} leaves the artifacts folder`, { file: name });
      await fs.mkdir(path.dirname(file), { recursive: true });
      await replaceFile(file, Buffer.from(artifact.base64, 'base64'));
    }
    await publishFile(patchFile, Buffer.from(patch.patch, 'base64')).catch(ignoreExisting);
  }
}

/**
 * A worker's bundle is input from another machine: its id must be an id (no path), its run the
 * one this host recorded. The id it names is returned.
 */
function acceptedTaskId(claim: Claim, bundle: Bundle): string {
  const id = TaskIdSchema.safeParse(bundle.report.task_id).success ? bundle.report.task_id : null;
  if (!id || bundle.report.run_id !== claim.runId) {
    throw new MetaAgentError(
      'input',
      `the worker's result for ${claim.name} names task "${bundle.report.task_id}", run ${bundle.report.run_id} (expected run ${claim.runId}); not filed`,
      { file: claim.name },
    );
  }
  return id;
}

/** The failed/<name>.error.md of a job that failed: died twice, or could not run. */
function failureExplanation(name: string, reason: string, twice: boolean): string {
  return twice
    ? `# ${name} failed\n\n**What went wrong** (interrupted): the worker running this task died twice (crash, kill or power loss; BullMQ: ${reason}), so it is not retried again automatically.\n\n**How to fix it:** check the workers' logs for what happened; move the file back into inbox/ to try once more.\n`
    : `# ${name} failed\n\n**What went wrong** (engine): a worker could not run it: ${reason}\n\n**How to fix it:** check the worker's configuration and logs (the project's remote, its meta-agent.yaml); move the file back into inbox/ to try again.\n`;
}

function ignoreExisting(error: unknown): void {
  if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
}
