/**
 * A run that stops early keeps its work. Whatever ends a run after the worktree changed (the
 * step or token limit, the run's timeout, the model failing, Ctrl-C or a service stop) the
 * diff is saved as a patch marked `incomplete`, the checks run on it in the time that is
 * left, and the report says why the run stopped and what ran.
 *
 * This module holds the policy: how long the checks may take, and the words. runTask.ts
 * does the saving (the same patch writer and checks as a finished run).
 *
 * How long the checks of an incomplete patch may take:
 * - stopped by a limit or an error, before the run's timeout: what is left of the run's
 *   time (limits.task_timeout_s), each check bounded by its own timeout as always;
 * - stopped by the run's own timeout: a grace of min(limits.check_timeout_s,
 *   TIMEOUT_GRACE_S) for the checks together (a service stop still cuts it short);
 * - stopped by Ctrl-C or a service stop: min(limits.check_timeout_s, INTERRUPT_GRACE_S), or
 *   less when the caller says so (`watch` waits only SETTLE_MS, 10 s, for a stopped run to
 *   report, and passes 5 s); a second Ctrl-C in `run` (`hurry`) ends it at once.
 * Checks cut short by the grace are reported as such; the patch is saved before they run.
 */
import type { ErrorInfo } from '../contract/errors.ts';
import type { CheckResult } from '../contract/report.ts';

export const TIMEOUT_GRACE_S = 60;
export const INTERRUPT_GRACE_S = 30;

export interface ChecksWindow {
  signal: AbortSignal;
  /** Seconds of grace after the run's end; null: the checks run in what is left of the run's own time. */
  graceS: number | null;
  dispose(): void;
}

/**
 * The signal the checks of an incomplete patch run under. `runSignal` is the run's own
 * (aborted on its timeout or on `outer`); `outer` is the caller's (Ctrl-C, service stop).
 */
export function checksWindow(
  runSignal: AbortSignal,
  stops: { outer?: AbortSignal | undefined; hurry?: AbortSignal | undefined; stopGraceS?: number | undefined },
  checkTimeoutS: number,
): ChecksWindow {
  const { outer, hurry } = stops;
  const interrupted = (runSignal.reason as { kind?: string } | undefined)?.kind === 'interrupted' || Boolean(outer?.aborted);
  const graceS = !runSignal.aborted ? null : Math.min(checkTimeoutS, interrupted ? (stops.stopGraceS ?? INTERRUPT_GRACE_S) : TIMEOUT_GRACE_S);
  const controller = new AbortController();
  const cut = () => controller.abort();
  const timer = graceS === null ? undefined : setTimeout(cut, graceS * 1000);
  timer?.unref();
  // Within the run's time: the run's signal. After a timeout: a stop still ends the grace at once.
  const ends = [...(graceS === null ? [runSignal] : interrupted ? [] : [outer]), hurry].filter((s): s is AbortSignal => Boolean(s));
  for (const s of ends) {
    if (s.aborted) cut();
    s.addEventListener('abort', cut, { once: true });
  }
  return {
    signal: controller.signal,
    graceS,
    dispose: () => {
      clearTimeout(timer);
      for (const s of ends) s.removeEventListener('abort', cut);
    },
  };
}

/**
 * Why the run stopped, as the report and the sidecar say it once the work is saved: an
 * interrupted run with an incomplete patch is not put back in inbox/ (runTask.ts).
 */
export function stoppedWithWork(why: ErrorInfo): ErrorInfo {
  if (why.kind !== 'interrupted') return why;
  return {
    ...why,
    message: 'the run was interrupted (Ctrl-C or service shutdown) after it changed files; the task waits in failed/ beside its incomplete patch',
  };
}

/** When the agent had called finish, the stop came while its change was being checked. */
const stopMoment = (agentFinished: boolean) => (agentFinished ? 'while its finished change was being checked' : 'before the agent called finish');

/** The first line of the sidecar's summary becomes the commit subject if the patch is applied. */
export function incompleteSummary(taskId: string, objective: string, why: ErrorInfo, agentSummary: string | null): string {
  return [
    `Incomplete change for ${taskId}: ${objective}`.trim(),
    '',
    `The run stopped ${stopMoment(agentSummary !== null)}: ${why.message}`,
    ...(agentSummary ? ['', agentSummary] : []),
  ].join('\n');
}

/** What the report says about an incomplete patch: saved where, and whether the checks ran. */
export function incompleteNotes(x: {
  patch: string;
  files: string[];
  why: ErrorInfo;
  agentFinished: boolean;
  checks: 'ran' | 'none configured' | { skipped: string };
  graceS: number | null;
  cut: boolean;
}): string[] {
  const notDone = x.agentFinished
    ? 'the checks of the finished change (run again below, in the time left)'
    : 'whatever the agent had still planned; it gave no summary of its own';
  const notes = [
    `Incomplete: the run stopped (${x.why.kind}: ${x.why.message}) ${stopMoment(x.agentFinished)}. What it had changed so far (${x.files.length} file${x.files.length === 1 ? '' : 's'}: ${x.files.join(', ')}) is saved as ${x.patch}, marked incomplete. Not done: ${notDone}.`,
  ];
  const within = x.graceS === null ? 'in the time left of the run' : `in a ${x.graceS} s grace after the run's end`;
  if (x.checks === 'ran')
    notes.push(x.cut ? `The checks on it were cut short (${within}): see Tests / Dry run.` : `The checks ran on it (${within}): see Tests / Dry run.`);
  else if (x.checks === 'none configured') notes.push('No checks ran on it: the project has no test or dry_run configured.');
  else notes.push(`The checks did not run on it: ${x.checks.skipped}.`);
  return notes;
}

export function incompleteNextAction(patch: string, taskId: string): string {
  return `Review ${patch}: it is the agent's work so far, not a finished change. Approve it (move it into patches/approved/; the gate tests it on the current HEAD) only if it stands on its own; otherwise reject it, then run the task again (meta-agent retry ${taskId}).`;
}

/** Marks a check the grace stopped, so a cut-short run is not read as a failing test. */
export function markCutShort(check: CheckResult | null, graceS: number | null): CheckResult | null {
  if (!check || check.passed || check.timed_out || check.exit_code !== null) return check;
  return {
    ...check,
    timed_out: true,
    output_tail: `${check.output_tail}\n[meta-agent: stopped at the end of the ${graceS ?? 0} s grace for checks on an incomplete run]`,
  };
}
