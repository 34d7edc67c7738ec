/**
 * The gate's last step: the decision is recorded (the run's report, applied/<stem>.result.json
 * or rejected/<stem>.reason.md), then the patch moves into applied/ or rejected/ with its
 * sidecar and artifacts. The record comes before the move: a run killed in between is
 * finished by the next one (leftovers.ts, and the trailer for an applied patch).
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { AppliedRecordSchema, type AppliedRecord } from '../contract/gateFiles.ts';
import type { Approval } from '../contract/report.ts';
import { exists, publishFile, publishUnique, replaceFile } from '../workspace/files.ts';
import { recordApproval } from './approvalRecord.ts';
import { readGateFile, type AppliedVerdict, type GateResult, type GateRun, type RejectedVerdict, type Verdict } from './gateRun.ts';
import { fileWithCompanions } from './patchFiles.ts';

export async function fileDecision(run: GateRun, verdict: Verdict): Promise<GateResult> {
  return verdict.decision === 'applied' ? fileApplied(run, verdict) : fileRejected(run, verdict);
}

async function fileApplied(run: GateRun, verdict: AppliedVerdict): Promise<GateResult> {
  const { settings, id } = run;
  const dir = settings.layout.patches.applied;
  const reason = verdict.alreadyApplied ? 'already applied (found its commit on the branch)' : null;
  const approval = approvalOf(run, verdict, reason);
  // Also when it was already applied: a crash may have come between the commit and this record.
  if (run.sidecar) await recordApproval(settings, run.sidecar.task_id, approval, run.sidecar.run_id, run.log);
  // The record before the move: until the patch has left approved/ (under its private name),
  // the next run finds the commit and finishes the filing.
  const slot = await appliedSlot(run, dir, verdict.commit);
  const record: AppliedRecord = { task_id: id, ...approval };
  if (!slot.recorded) await publishFile(path.join(dir, `${slot.stem}.result.json`), `${JSON.stringify(record, null, 2)}\n`);
  await restoreSnapshot(run, dir, slot.stem);
  const movedTo = await fileWithCompanions(settings, { ...run, name: slot.name }, dir, run.log);
  return { decision: 'applied', task_id: id, patch: run.name, commit: verdict.commit, reason, already_applied: verdict.alreadyApplied, moved_to: movedTo };
}

async function fileRejected(run: GateRun, verdict: RejectedVerdict): Promise<GateResult> {
  const { settings, id } = run;
  const dir = settings.layout.patches.rejected;
  // Errors and sidecar fields come from files and processes: the reason goes to the report, .reason.md and the log.
  const reason = run.redact(verdict.reason);
  run.log.warn({ reason: reason.split('\n')[0] }, 'patch rejected by the gate');
  await recordApproval(settings, run.sidecar?.task_id ?? id, approvalOf(run, verdict, reason), run.sidecar?.run_id ?? null, run.log);
  // The reason is published before the patch moves, so a watcher of rejected/ sees it was the gate.
  const stem = run.name.replace(/\.patch$/i, '');
  await publishUnique(dir, stem, '.reason.md', `# ${run.name} rejected by the approval gate\n\n${reason}\n`);
  const movedTo = await fileWithCompanions(settings, run, dir, run.log);
  return { decision: 'rejected', task_id: id, patch: run.name, commit: null, reason, already_applied: false, moved_to: movedTo };
}

/** The decision as the run's report records it (`report.approval`). */
function approvalOf(run: GateRun, verdict: Verdict, reason: string | null): Approval {
  const applied = verdict.decision === 'applied' ? verdict : null;
  const refused = verdict.decision === 'rejected' ? verdict : null;
  return {
    decision: verdict.decision,
    by: 'gate',
    at: new Date().toISOString(),
    reason,
    commit: applied?.commit ?? null,
    branch: applied ? applied.branch : (run.sidecar?.branch ?? null),
    patch_sha256: run.sha256,
    edited: verdict.edited ?? false,
    conflicts: refused?.conflicts ?? [],
    follow_up_task: refused?.follow_up_task ?? null,
    crlf_normalised: run.crlfNormalised,
    tests: verdict.tests ?? null,
    dry_run: verdict.dry_run ?? null,
  };
}

/**
 * applied/<id>.patch is the snapshot that was tested and committed (its sha256 is the commit's
 * trailer). A person who edited the approved file while its tests ran keeps the edit, beside
 * it as `<stem>.edited-during-gate.txt` (not a .patch: nothing takes it for one).
 */
async function restoreSnapshot(run: GateRun, dir: string, stem: string): Promise<void> {
  const now = await fs.readFile(run.taken).catch(() => null);
  if (!now || createHash('sha256').update(now).digest('hex') === run.sha256) return;
  await publishUnique(dir, `${stem}.edited-during-gate`, '.txt', now);
  await replaceFile(run.taken, run.bytes);
  run.log.warn('the approved patch was edited while it was tested; the snapshot that was tested and committed is filed, the edit is kept beside it');
}

/**
 * The name to file a patch under in applied/: the first `<stem>`, `<stem>-2`, ... with no patch
 * there and no result.json, or with the result.json a crashed run of this patch wrote before its move.
 */
async function appliedSlot(run: GateRun, dir: string, commit: string): Promise<{ stem: string; name: string; recorded: boolean }> {
  const base = run.name.replace(/\.patch$/i, '');
  const ext = run.name.slice(base.length);
  for (let n = 1; n < 10_000; n++) {
    const stem = n === 1 ? base : `${base}-${n}`;
    if (await exists(path.join(dir, stem + ext))) continue;
    const file = path.join(dir, `${stem}.result.json`);
    if (!(await exists(file))) return { stem, name: stem + ext, recorded: false };
    const record = await readGateFile(file, AppliedRecordSchema, run.log);
    if (record?.patch_sha256 === run.sha256 && record.commit === commit) return { stem, name: stem + ext, recorded: true };
  }
  throw new Error(`no free name for ${run.name} in ${dir}`);
}
