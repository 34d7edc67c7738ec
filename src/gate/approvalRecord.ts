/**
 * The decision on a patch, recorded in its run's report (`report.approval`): by the gate
 * (applied or rejected) or by a person (rejected).
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { PatchSidecarSchema } from '../contract/patch.ts';
import { ReportSchema, type Approval, type Report } from '../contract/report.ts';
import type { Settings } from '../workspace/config.ts';
import { replaceFile } from '../workspace/files.ts';
import { archivedReportPath, reportPaths } from '../run/report.ts';
import { readGateFile } from './gateRun.ts';

/** reports/<id>.json; null when it is not there or not a report (the decision is then not recorded in it). */
export async function readReport(settings: Settings, id: string, log?: Logger): Promise<Report | null> {
  return readGateFile(reportPaths(settings.layout, id).json, ReportSchema, log);
}

/** Adds the decision to reports/<id>.json (if the report is there and is for this patch's run). */
export async function recordApproval(settings: Settings, id: string, approval: Approval, runId: string | null, log?: Logger): Promise<void> {
  const file = reportPaths(settings.layout, id).json;
  const report = await readReport(settings, id, log);
  if (report && (!runId || report.run_id === runId)) return replaceFile(file, `${JSON.stringify({ ...report, approval }, null, 2)}\n`);
  // A later run of the task (its patch filed beside this one) moved this run's report into the archive.
  if (!runId) return;
  const archived = archivedReportPath(settings.layout, id, runId);
  const earlier = await readGateFile(archived, ReportSchema, log);
  if (earlier?.run_id === runId) await replaceFile(archived, `${JSON.stringify({ ...earlier, approval }, null, 2)}\n`);
}

/** A person moved a patch into rejected/ (Explorer, the CLI, the dashboard): record it in the report. */
export async function recordHumanRejection(settings: Settings, patchFile: string, reason: string | null): Promise<boolean> {
  // A damaged sidecar is read as none: the rejection is still recorded, by the file's name.
  const sidecar = await readGateFile(`${patchFile}.json`, PatchSidecarSchema);
  // `<id>.<run_id>.patch` (filed beside a pending one) belongs to task <id>: the sidecar says so.
  const id = sidecar ? sidecar.task_id : path.basename(patchFile).replace(/\.patch$/i, '');
  const report = await readReport(settings, id);
  if (!report) return false;
  const bytes = await fs.readFile(patchFile).catch(() => null);
  const sha256 = bytes ? createHash('sha256').update(bytes).digest('hex') : null;
  if (report.approval && report.approval.patch_sha256 === sha256) return false; // already recorded (by the gate or the CLI)
  await recordApproval(
    settings,
    id,
    {
      decision: 'rejected',
      by: 'human',
      at: new Date().toISOString(),
      reason: reason ?? 'rejected by a person (no reason given)',
      commit: null,
      branch: sidecar?.branch ?? null,
      patch_sha256: sha256,
      edited: false,
      conflicts: [],
      follow_up_task: null,
      crlf_normalised: false,
      tests: null,
      dry_run: null,
    },
    sidecar?.run_id ?? null,
  );
  return true;
}
