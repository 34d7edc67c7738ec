/**
 * Type-specific steps that run in the worktree before the engine: numbers a model must
 * not make up are computed here, in code, and handed to the model as facts.
 *
 * - risk_review: metrics from the trades CSV, and flags for crossed thresholds;
 * - retrain_model: the project's collect -> train -> eval chain (sandboxed like the
 *   checks), the eval metrics compared with the baseline (the last approved model's),
 *   and the baseline file updated so the patch carries the new model's metrics.
 *
 * Without an LLM these still produce their numbers; the commentary is skipped.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { MetaAgentError } from '../contract/errors.ts';
import { readJsonFile } from '../contract/readJson.ts';
import { EvalMetricsSchema } from '../contract/stateFiles.ts';
import type { CheckResult, RetrainComparison, Report } from '../contract/report.ts';
import type { Task } from '../contract/task.ts';
import type { Project, RetrainChain, Settings } from '../workspace/config.ts';
import type { Redactor } from '../safety/redact.ts';
import { computeTradeMetrics, metricsMarkdown, riskFlags } from './tradeMetrics.ts';
import { runCheck, withCheckCopy, type CheckTarget } from '../repo/checks.ts';

export interface TypeExtras {
  metrics: Report['metrics'];
  flags: string[];
  retrain: Report['retrain'];
  notes: string[];
  /** Facts for the model, appended to the task's details. */
  facts: string | null;
  /** A one-paragraph summary for when no model comments. */
  summary: string | null;
}

export function noExtras(): TypeExtras {
  return { metrics: null, flags: [], retrain: null, notes: [], facts: null, summary: null };
}

/** Types that do useful work without an LLM (the commentary is then skipped). */
export const WORKS_WITHOUT_LLM = new Set<Task['type']>(['risk_review', 'retrain_model']);

export async function runTypePipeline(
  task: Task,
  project: Project,
  settings: Settings,
  target: CheckTarget,
  redact: Redactor,
  signal: AbortSignal,
): Promise<TypeExtras> {
  if (task.type === 'risk_review') return riskReview(project, target.worktree);
  if (task.type === 'retrain_model') return retrain(project, settings, target, redact, signal);
  return noExtras();
}

async function riskReview(project: Project, worktree: string): Promise<TypeExtras> {
  if (!project.trades) {
    throw new MetaAgentError('config', 'risk_review needs the trades CSV: set trades.path (and time_column, pnl_column, starting_equity)', {
      file: 'meta-agent.yaml',
      field: `projects.${project.name}.trades`,
    });
  }
  const file = path.join(worktree, project.trades.path);
  const text = await fs.readFile(file, 'utf8').catch(() => {
    throw new MetaAgentError('config', `the trades CSV ${project.trades!.path} is not in the repo (or a link path)`, {
      file: 'meta-agent.yaml',
      field: `projects.${project.name}.trades.path`,
    });
  });
  const metrics = computeTradeMetrics(text, project.trades);
  const flags = riskFlags(metrics, project.risk_thresholds);
  const table = metricsMarkdown(metrics, flags);
  return {
    ...noExtras(),
    metrics,
    flags,
    facts: `## Risk numbers (computed by meta-agent from ${project.trades.path}; do not recompute them)\n\n${table}`,
    summary: `Risk review of ${metrics.trades} trades: net pnl ${metrics.net_pnl.toFixed(2)}, win rate ${(metrics.win_rate * 100).toFixed(1)}%, profit factor ${metrics.profit_factor?.toFixed(2) ?? 'n/a'}, max drawdown ${metrics.max_drawdown.toFixed(2)} (${metrics.max_drawdown_pct.toFixed(2)}%).${flags.length ? ` Flags: ${flags.join('; ')}.` : ' No thresholds crossed.'}`,
  };
}

async function retrain(project: Project, settings: Settings, target: CheckTarget, redact: Redactor, signal: AbortSignal): Promise<TypeExtras> {
  const chain = project.retrain;
  if (!chain) {
    throw new MetaAgentError('config', 'retrain_model needs the chain: set retrain.train, retrain.eval, retrain.metrics, retrain.baseline, retrain.metric', {
      file: 'meta-agent.yaml',
      field: `projects.${project.name}.retrain`,
    });
  }
  const steps: CheckResult[] = [];
  // The chain runs in one throwaway copy; what it produced (metrics, artifacts) is brought back.
  const comparison = await withCheckCopy(target, settings, project, async (copy) => {
    for (const step of [chain.collect, chain.train, chain.eval]) {
      if (!step) continue;
      const result = await runCheck(step, copy, settings, project, redact, signal);
      steps.push(result);
      if (!result.passed) {
        throw new RetrainFailed(
          `the retrain step "${step.label}" (${step.command}) failed with exit ${result.exit_code ?? 'none'}${result.timed_out ? ' (timed out)' : ''}: ${result.output_tail.split('\n').slice(-3).join(' | ')}`,
          steps,
        );
      }
    }
    const compared = await compare(chain, copy.dir);
    for (const rel of [chain.metrics, ...chain.artifacts]) await bringBack(copy.dir, target.worktree, rel);
    return compared;
  });
  // The patch carries the candidate's metrics as the new baseline, so approving it records them.
  if (path.normalize(chain.metrics) !== path.normalize(chain.baseline)) {
    await fs.mkdir(path.dirname(path.join(target.worktree, chain.baseline)), { recursive: true });
    await fs.copyFile(path.join(target.worktree, chain.metrics), path.join(target.worktree, chain.baseline));
  }
  const artifacts: string[] = [];
  for (const a of chain.artifacts)
    if (
      await fs.stat(path.join(target.worktree, a)).then(
        (s) => s.isFile(),
        () => false,
      )
    )
      artifacts.push(a);
  const verdict = comparison.beats_baseline ? 'beats' : 'does NOT beat';
  const line = `candidate ${comparison.metric} ${fmt(comparison.candidate)} ${verdict} the baseline ${fmt(comparison.baseline)} (margin ${comparison.margin}, ${comparison.higher_is_better ? 'higher' : 'lower'} is better)`;
  return {
    ...noExtras(),
    retrain: { steps, comparison, artifacts },
    facts: `## Retrain results (computed by meta-agent; do not recompute them)\n\nThe chain collect -> train -> eval ran. The ${line}.\n\nCandidate metrics: ${JSON.stringify(comparison.candidate_metrics)}\nBaseline metrics: ${JSON.stringify(comparison.baseline_metrics)}`,
    summary: `Retrained: the ${line}.${comparison.beats_baseline ? '' : ' The approval gate will not install it.'}`,
  };
}

/** Copies one result file of the chain from its copy into the worktree (a regular file only: never a link the chain made). */
async function bringBack(copyDir: string, worktree: string, rel: string): Promise<void> {
  const from = path.join(copyDir, rel);
  const stat = await fs.lstat(from).catch(() => null);
  if (!stat?.isFile()) return;
  await fs.mkdir(path.dirname(path.join(worktree, rel)), { recursive: true });
  await fs.rm(path.join(worktree, rel), { force: true });
  await fs.copyFile(from, path.join(worktree, rel));
}

const fmt = (n: number | null) => (n === null ? 'n/a' : String(n));

export class RetrainFailed extends MetaAgentError {
  constructor(
    message: string,
    readonly steps: CheckResult[],
  ) {
    super('engine', message);
  }
}

async function compare(chain: RetrainChain, worktree: string): Promise<RetrainComparison> {
  // Written by the bot's own code (hostile input): anything but a readable JSON object counts as not written.
  const read = (rel: string) => readJsonFile(path.join(worktree, rel), EvalMetricsSchema).catch(() => null);
  const candidate = await read(chain.metrics);
  if (!candidate) throw new MetaAgentError('engine', `the eval step did not write a JSON object to ${chain.metrics}`, { field: 'retrain.metrics' });
  const baseline = await read(chain.baseline);
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const c = num(candidate[chain.metric]);
  const b = baseline ? num(baseline[chain.metric]) : null;
  if (c === null) throw new MetaAgentError('engine', `${chain.metrics} has no number "${chain.metric}"`, { field: 'retrain.metric' });
  // No baseline yet: the first model is better than nothing.
  const beats = b === null ? true : chain.higher_is_better ? c >= b + chain.margin && c > b : c <= b - chain.margin && c < b;
  return {
    metric: chain.metric,
    candidate: c,
    baseline: b,
    margin: chain.margin,
    higher_is_better: chain.higher_is_better,
    beats_baseline: beats,
    candidate_metrics: candidate,
    baseline_metrics: baseline,
  };
}
