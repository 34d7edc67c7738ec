/**
 * A run that stopped early (a limit, a timeout, a failing model, Ctrl-C) keeps its work: the
 * diff so far is filed as an incomplete patch, then checked in the time left (incomplete.ts).
 */
import { toErrorInfo, type ErrorInfo } from '../contract/errors.ts';
import type { ChecksOutcome, EngineResult } from '../engines/types.ts';
import { regressionsOf, type Baselines } from '../engines/verify.ts';
import { displayPath } from '../workspace/layout.ts';
import { baselinesOf, markBaselines } from './baseline.ts';
import { collectDiff } from '../repo/git.ts';
import { checksWindow, incompleteNotes, incompleteSummary, markCutShort, stoppedWithWork } from './incomplete.ts';
import type { TypeExtras } from './pipelines.ts';
import { noteFiledBeside, noteRegressions, refusedChange, writePatch } from './proposal.ts';
import { pendingPatchesOf } from './report.ts';
import { assessRisk, withRegressions } from './risk.ts';
import { runChecks, type RunContext } from './runContext.ts';
import type { Worktree } from '../repo/workspaceRepo.ts';

/**
 * The work of a run that stopped early (`why`): the diff saved as an incomplete patch, then
 * the checks on it in the time left (incomplete.ts). Nothing changed: nothing saved. A
 * change the gate would refuse is reported, not saved. The patch is written before the
 * checks run, so a stop during them never loses it.
 */
export async function keepIncompleteWork(
  rc: RunContext,
  worktree: Worktree,
  stopped: ErrorInfo,
  result: EngineResult | null,
  extras: TypeExtras,
  runSignal: AbortSignal,
) {
  const { layout } = rc.settings;
  const diff = await collectDiff(worktree).catch((error: unknown) => {
    extras.notes.push(`The change so far could not be read, so it was not saved: ${toErrorInfo(error).message}`);
    return null;
  });
  if (!diff || diff.files.length === 0) return { changed: diff?.files ?? [], error: stopped, incomplete: false };
  // The task was taken over (this process was frozen past its lease): the new owner files, not this one.
  if (rc.mayFile && !(await rc.mayFile())) return { changed: diff.files, error: stopped, incomplete: false };
  const refusal = await refusedChange(rc, worktree, diff);
  if (refusal) {
    extras.notes.push(`The change so far was not saved as a patch: ${refusal.message}.`);
    return { changed: diff.files, violations: refusal.violations, error: stopped, incomplete: false };
  }
  const why = stoppedWithWork(stopped);
  // No finish, so no claim from the agent: "medium" unless a risk rule says more.
  const risk = assessRisk(result?.risk_level ?? 'medium', diff.files, rc.project);
  const summary = incompleteSummary(rc.task.id, rc.task.objective, why, result?.summary ?? null);
  const files = await writePatch(rc, diff, worktree, risk.level, summary, extras, [], why);
  const patchFiles = files.map((f) => displayPath(layout, f));
  rc.log.warn({ patch: patchFiles[0], files: diff.files.length, why: why.kind }, 'the run stopped early; its change so far is saved as an incomplete patch');

  const window = checksWindow(runSignal, { outer: rc.signal, hurry: rc.hurry, stopGraceS: rc.stopChecksGraceS }, rc.settings.config.limits.check_timeout_s);
  let checks: ChecksOutcome = { tests: null, dry_run: null };
  let ran: Parameters<typeof incompleteNotes>[0]['checks'] = 'ran';
  let baseline: Baselines | null = null;
  try {
    if (!rc.project.test && !rc.project.dry_run) ran = 'none configured';
    else {
      checks = await runChecks(rc, worktree, window.signal);
      if (!window.signal.aborted) {
        baseline = await baselinesOf(
          { settings: rc.settings, project: rc.project, runId: rc.runId, baseCommit: worktree.baseCommit, redact: rc.redact, log: rc.log },
          window.signal,
        );
        markBaselines(checks, baseline);
      }
    }
  } catch (error) {
    ran = { skipped: toErrorInfo(error).message };
  } finally {
    window.dispose();
  }
  const cut = window.signal.aborted;
  if (cut) checks = { tests: markCutShort(checks.tests, window.graceS), dry_run: markCutShort(checks.dry_run, window.graceS) };
  extras.notes.push(
    ...incompleteNotes({ patch: patchFiles[0]!, files: diff.files, why, agentFinished: result !== null, checks: ran, graceS: window.graceS, cut }),
  );
  noteFiledBeside(extras, await pendingPatchesOf(layout, rc.task.id), files[0]!, layout);
  // What passed on the base and fails now, said first as for a finished run. The patch was
  // filed before the checks ran: its sidecar learns of them now (unless a person already moved it).
  const regressions = baseline && !cut ? regressionsOf(checks, baseline) : [];
  const finalRisk = withRegressions(risk, regressions);
  if (regressions.length) await noteRegressions(files[1]!, regressions, finalRisk.level, rc.log);
  return { changed: diff.files, checks, risk: finalRisk, regressions, patchFiles, error: why, incomplete: true };
}
