/**
 * What a run decides for its report (the outcome): built in one place from what the run found,
 * whether it failed before it had a worktree, ended early, or finished. The rest of the report
 * (ids, times, paths, usage) is added when it is written (runTask.ts).
 */
import type { ErrorInfo } from '../contract/errors.ts';
import { toErrorInfo } from '../contract/errors.ts';
import type { Regression, Report, RiskLevel } from '../contract/report.ts';
import type { Task } from '../contract/task.ts';
import type { ChecksOutcome, Engine, EngineResult } from '../engines/types.ts';
import { describeRegression } from '../engines/verify.ts';
import type { Project } from '../workspace/config.ts';
import { incompleteNextAction } from './incomplete.ts';
import { noExtras, type TypeExtras } from './pipelines.ts';
import { assessRisk } from './risk.ts';

/** Everything in a report that the run decides; the rest (ids, times, paths) is added when it is written. */
export type Outcome = Omit<
  Report,
  | 'task_id'
  | 'run_id'
  | 'started_at'
  | 'finished_at'
  | 'duration_ms'
  | 'task_file'
  | 'report_md'
  | 'usage'
  | 'approval'
  | 'secrets_redacted'
  | 'checks_unsandboxed'
  | 'shell'
>;

/** What every outcome states; the rest defaults to what a run that got nowhere reports. */
type OutcomeFacts = Pick<Outcome, 'project' | 'type' | 'source' | 'objective' | 'engine' | 'status' | 'outcome' | 'summary'> & Partial<Outcome>;

/** The one way an outcome is built: the run's facts over the outcome of a run that produced nothing. */
export function buildOutcome(facts: OutcomeFacts): Outcome {
  return {
    regressions: [],
    patch_files: [],
    changed_files: [],
    scope_violations: [],
    findings: [],
    risks: [],
    risk_level: 'low',
    risk_reasons: [],
    tests: null,
    dry_run: null,
    next_actions: [],
    steps: 0,
    model: null,
    base_commit: null,
    branch: null,
    trajectory: null,
    engine_output_tail: null,
    error: null,
    metrics: null,
    flags: [],
    retrain: null,
    notes: [],
    incomplete: false,
    ...facts,
  };
}

/** The outcome of a run that failed before (or while) it had a worktree. */
export function failedOutcome(error: unknown, task: Task | null, engine: Engine['name']): Outcome {
  const info = toErrorInfo(error);
  return buildOutcome({
    project: task?.project ?? '',
    type: task?.type ?? 'custom',
    source: task?.source ?? 'human',
    objective: task?.objective ?? '',
    engine,
    status: 'error',
    outcome: 'failed',
    summary: `The run failed: ${info.message}`,
    next_actions: [hintFor(info)],
    error: info,
  });
}

/** Where the run worked: the task, its project and worktree, and how many model requests it made. */
export interface WorktreeFacts {
  task: Task;
  project: Project;
  engineName: Engine['name'];
  trajectory: string | null;
  base_commit: string;
  branch: string;
  requests: number;
}

/** What the run in the worktree found; each part is absent when the run did not get that far. */
export interface WorkFound {
  result?: EngineResult | null;
  error?: ErrorInfo;
  changed?: string[];
  violations?: string[];
  checks?: ChecksOutcome;
  risk?: { level: RiskLevel; reasons: string[] };
  regressions?: Regression[];
  patchFiles?: string[];
  summary?: string;
  extras?: TypeExtras;
  /** The run stopped early and its work so far is in patchFiles. */
  incomplete?: boolean;
  /** The engine's output tail when it ended by a throw (no result). */
  outputTail?: string | null;
}

/** The outcome of a run that had a worktree: finished, refused, or ended early with its work kept. */
export function worktreeOutcome(base: WorktreeFacts, parts: WorkFound): Outcome {
  const extras = parts.extras ?? noExtras();
  const { error } = parts;
  const result = parts.result ?? null;
  const changed = parts.changed ?? [];
  const risk = parts.risk ?? assessRisk(result?.risk_level ?? 'low', changed, base.project);
  const regressions = parts.regressions ?? [];
  const tests = parts.checks?.tests ?? null;
  const dryRun = parts.checks?.dry_run ?? null;
  return buildOutcome({
    project: base.project.name,
    type: base.task.type,
    source: base.task.source,
    objective: base.task.objective,
    status: error ? 'error' : 'ok',
    outcome: outcomeKind(error, changed),
    regressions,
    summary: parts.summary ?? result?.summary ?? '',
    patch_files: parts.patchFiles ?? [],
    changed_files: changed,
    scope_violations: parts.violations ?? [],
    findings: result?.findings ?? [],
    risks: [...regressionRisks(regressions), ...(result?.risks ?? []), ...checkRisks(tests, dryRun)],
    risk_level: risk.level,
    risk_reasons: risk.reasons,
    tests,
    dry_run: dryRun,
    next_actions: nextActions(base.task, result, parts),
    // An engine that ended by throwing returned no step count; every step is one model request.
    steps: result?.steps ?? base.requests,
    model: result?.model ?? null,
    engine: base.engineName,
    base_commit: base.base_commit,
    branch: base.branch,
    trajectory: base.trajectory,
    engine_output_tail: result?.output_tail ?? parts.outputTail ?? null,
    error: error ?? null,
    metrics: extras.metrics,
    flags: extras.flags,
    retrain: extras.retrain,
    notes: extras.notes,
    incomplete: parts.incomplete ?? false,
  });
}

function outcomeKind(error: ErrorInfo | undefined, changed: string[]): Report['outcome'] {
  if (error) return error.kind === 'budget' || error.kind === 'timeout' ? 'limit_reached' : error.kind === 'scope' ? 'scope_violation' : 'failed';
  return changed.length === 0 ? 'no_changes' : 'completed';
}

/** First among the risks: what the agent broke and finished anyway. */
function regressionRisks(regressions: Regression[]): string[] {
  if (regressions.length === 0) return [];
  return [`REGRESSIONS: ${regressions.map(describeRegression).join('; ')} passed on the base commit and fail with this change (the agent finished anyway).`];
}

function checkRisks(tests: Report['tests'], dryRun: Report['dry_run']): string[] {
  const risks: string[] = [];
  for (const check of [tests, dryRun]) {
    if (check && !check.passed) {
      risks.push(
        `${check === tests ? 'Tests' : 'The dry run'} failed after the change${check.baseline_passed === false ? ' (and already failed before it)' : ''}.`,
      );
    }
  }
  return risks;
}

function nextActions(task: Task, result: EngineResult | null, parts: WorkFound): string[] {
  const actions = [...(result?.next_actions ?? [])];
  const patch = parts.patchFiles?.[0];
  if (patch && parts.incomplete) actions.push(incompleteNextAction(patch, task.id));
  else if (patch) actions.push(`Review ${patch}, then move it into patches/approved/ to apply it, or into patches/rejected/.`);
  return actions;
}

/** What a person does about a failed run, by the kind of its error. */
export function hintFor(error: ErrorInfo): string {
  switch (error.kind) {
    case 'input':
      return `Fix the task file${error.field ? ` (field "${error.field}")` : ''} and drop it into inbox/ again.`;
    case 'config':
      return `Fix meta-agent.yaml or the environment${error.field ? ` (${error.field})` : ''}, then move the task from failed/ back into inbox/.`;
    case 'llm':
      return 'Check the model endpoint (key, base_url, model name, quota), then move the task back into inbox/.';
    case 'format':
      return 'The model kept replying without a usable tool call: use a model that calls tools reliably, or set llm.tool_mode: text, then move the task back into inbox/.';
    case 'budget':
    case 'timeout':
      return 'Narrow the task, or raise limits.max_steps / max_tokens / task_timeout_s, then move it back into inbox/.';
    case 'scope':
      return 'Widen the task scope if those files should change, or narrow the task, then retry.';
    case 'interrupted':
      return 'Nothing to do: the task is back in inbox/ and runs again.';
    default:
      return 'See the log in logs/ for details; move the task back into inbox/ to retry.';
  }
}
