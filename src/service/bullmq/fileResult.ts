/**
 * The folder host files what a worker returned, in the order runTask files a local run:
 * report, then ledger, then the patch (named by the report), then the task move. The names
 * are the host's own (the worker ran in a workspace of its own). Every step can be done again
 * after a crash: a report of this run already there stands, a patch already filed is left.
 * Artifacts are staged and checked before the report is written: a worker's result whose
 * artifacts cannot be filed (a blob missing from the artifact store, or not what the bundle
 * says) fails the task with the reason instead of filing half of it.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { MetaAgentError, toErrorInfo } from '../../contract/errors.ts';
import { parseJsonText, readJsonFileOrNull } from '../../contract/readJson.ts';
import { ReportSchema, type Report } from '../../contract/report.ts';
import { TaskIdSchema } from '../../contract/task.ts';
import { PatchSidecarSchema } from '../../contract/patch.ts';
import type { ArtifactStore, BlobRef } from '../../queue/bullmq/artifactStore.ts';
import type { Bundle, BundleArtifact } from '../../queue/bullmq/job.ts';
import { ledgerFor, markReported, settleClaim, type Claim, type Disposition } from '../../queue/folders.ts';
import { archiveEarlierRun, patchStemFor, reportPaths, writeReport } from '../../run/report.ts';
import { dispositionOf, type RunTaskResult } from '../../run/runTask.ts';
import { faultPoint } from '../../workspace/faults.ts';
import { exists, publishFile, renameBusy, replaceFile } from '../../workspace/files.ts';
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
    /** Where workers put large artifacts (execution.artifact_store); null: none configured here. */
    private readonly store: ArtifactStore | null = null,
  ) {}

  /** Files the bundle; null when its artifacts cannot be filed (the task then goes to failed/ with the reason). */
  async fileBundle(claim: Claim, bundle: Bundle): Promise<RunTaskResult | null> {
    const layout = this.layout;
    const id = acceptedTaskId(claim, bundle);
    const before = await this.filedBefore(claim, id);
    let staged: string | null;
    try {
      // Before anything is filed: artifacts that cannot be filed fail the task, not half of it.
      staged = await this.stageArtifacts(claim, bundle, before);
    } catch (error) {
      if (!(error instanceof MetaAgentError)) throw error;
      return this.fileRejected(claim, error.message);
    }
    const filed = before ?? (await this.writeReport(claim, id, bundle));
    let report = filed.report;
    const disposition: Disposition = dispositionOf(claim.name, id, report);
    await markReported(layout, claim, disposition);
    faultPoint('after-ledger');
    if (bundle.patch && report.patch_files[0]) await this.filePatch(report.patch_files[0], bundle.patch, staged);
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
    return this.fileError(claim, `the job failed: ${reason}`, twice, failureExplanation(claim.name, reason, twice));
  }

  /** A worker's result whose artifacts cannot be filed (a blob missing or not what the bundle says): failed/, no report, no patch. */
  private async fileRejected(claim: Claim, reason: string): Promise<null> {
    const explanation = `# ${claim.name} failed\n\n**What went wrong** (input): the worker's result could not be filed: ${reason}\n\n**How to fix it:** check that the workers and this folder host use the same artifact store (execution.artifact_store) and that nothing changes its files; move the file back into inbox/ to run it again.\n`;
    return this.fileError(claim, `the worker's result could not be filed: ${reason}`, false, explanation);
  }

  /** failed/ with `explanation`, the ledger run marked; `why` is the log line. */
  private async fileError(claim: Claim, why: string, twice: boolean, explanation: string): Promise<null> {
    const disposition: Disposition = { status: 'error', explanation };
    await ledgerFor(this.layout).update(claim.key, { key: claim.key, name: claim.name, sha256: claim.sha256 }, (e) => {
      const run = e.runs.find((r) => r.run_id === claim.runId);
      if (run && twice) run.recovered = 'failed_interrupted_twice';
    });
    await markReported(this.layout, claim, disposition);
    await settleClaim(this.layout, claim, disposition);
    this.log.error({ task_file: claim.name, run_id: claim.runId, reason: why }, why);
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

  /**
   * The patch at the path the report names: sidecar and artifacts (staged, checked) first, the
   * patch itself last (its arrival is what people and the gate see).
   */
  private async filePatch(patchRel: string, patch: NonNullable<Bundle['patch']>, staged: string | null): Promise<void> {
    const name = path.basename(patchRel);
    // Filed before a crash, and perhaps already moved on by a person or the gate.
    for (const dir of Object.values(this.layout.patches)) {
      if (!(await exists(path.join(dir, name)))) continue;
      if (staged) await fs.rm(staged, { recursive: true, force: true });
      return;
    }
    const patchFile = path.join(this.layout.root, patchRel);
    // The sidecar is <id>.patch.json, where the gate and the dashboard look for it.
    await publishFile(`${patchFile}.json`, patch.sidecar).catch(ignoreExisting);
    if (staged) {
      const artifactDir = `${patchFile.replace(/\.patch$/, '')}.artifacts`;
      // Left by a crash before the patch arrived: this run's own, staged again.
      await fs.rm(artifactDir, { recursive: true, force: true });
      // .meta-agent/ on another volume than patches/ (a link): copied, not renamed.
      await renameBusy(staged, artifactDir).catch(async (error: NodeJS.ErrnoException) => {
        if (error.code !== 'EXDEV') throw error;
        await fs.cp(staged, artifactDir, { recursive: true });
        await fs.rm(staged, { recursive: true, force: true });
      });
    }
    await publishFile(patchFile, Buffer.from(patch.patch, 'base64')).catch(ignoreExisting);
  }

  /**
   * The bundle's artifacts in a staging folder of this run (on the folders' volume, outside
   * patches/), each checked against the sidecar's sha256 and size: inline ones decoded, store
   * references copied out of the artifact store. Null when there are none, or the patch is
   * filed already. A MetaAgentError names the task and the artifact.
   */
  private async stageArtifacts(claim: Claim, bundle: Bundle, before: FiledReport | null): Promise<string | null> {
    const patch = bundle.patch;
    if (!patch) return null;
    const filedName = before?.report.patch_files[0] ? path.basename(before.report.patch_files[0]) : null;
    if (filedName) for (const dir of Object.values(this.layout.patches)) if (await exists(path.join(dir, filedName))) return null;
    const sidecar = parseJsonText(patch.sidecar, PatchSidecarSchema, `the worker's sidecar for ${claim.name}`);
    if (sidecar.artifacts.length === 0 && patch.artifacts.length === 0) return null;
    const listed = (list: { path: string }[]) => JSON.stringify(list.map((a) => a.path).sort());
    if (listed(sidecar.artifacts) !== listed(patch.artifacts) || new Set(patch.artifacts.map((a) => a.path)).size !== patch.artifacts.length)
      throw new MetaAgentError('input', `the worker's artifacts of ${claim.name} are not the ones its sidecar lists`);
    const stage = path.join(this.layout.state, 'filing', claim.runId);
    await fs.rm(stage, { recursive: true, force: true });
    try {
      for (const artifact of patch.artifacts) {
        const expected = sidecar.artifacts.find((a) => a.path === artifact.path)!;
        await this.stageArtifact(stage, artifact, expected).catch((error: unknown) => {
          if (!(error instanceof MetaAgentError)) throw error;
          throw new MetaAgentError('input', `the worker's artifact ${artifact.path} of ${claim.name}: ${error.message}`);
        });
      }
      return stage;
    } catch (error) {
      await fs.rm(stage, { recursive: true, force: true });
      throw error;
    }
  }

  private async stageArtifact(stage: string, artifact: BundleArtifact, expected: BlobRef): Promise<void> {
    const file = path.join(stage, artifact.path);
    if (!file.startsWith(`${stage}${path.sep}`)) throw new MetaAgentError('input', 'its path leaves the artifacts folder');
    await fs.mkdir(path.dirname(file), { recursive: true });
    if ('base64' in artifact) {
      const data = Buffer.from(artifact.base64, 'base64');
      const sha256 = createHash('sha256').update(data).digest('hex');
      if (data.length !== expected.bytes || sha256 !== expected.sha256)
        throw new MetaAgentError('input', `${data.length} bytes with sha256 ${sha256}, but its sidecar says ${expected.bytes} bytes, ${expected.sha256}`);
      await fs.writeFile(file, data, { flag: 'wx' });
      return;
    }
    if (artifact.sha256 !== expected.sha256 || artifact.bytes !== expected.bytes)
      throw new MetaAgentError(
        'input',
        `the result names blob ${artifact.sha256} (${artifact.bytes} bytes), its sidecar ${expected.sha256} (${expected.bytes} bytes)`,
      );
    if (!this.store) throw new MetaAgentError('input', "it was put in the workers' artifact store, and this folder host has no execution.artifact_store");
    await this.store.copyOut(artifact, file);
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
