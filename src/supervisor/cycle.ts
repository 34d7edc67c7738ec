/**
 * runSupervisorCycle (the seed's supervisor_runner.run_supervisor_cycle): a goal becomes
 * 1-3 typed tasks, written with createTask(..., "supervisor") into inbox/ and claimed with
 * the same protocol as the watcher (a running watcher may take them first; the cycle then
 * waits for their reports). One summary for the human comes out:
 * reports/cycles/<cycle-id>.md and .json. The supervisor is one more producer of task
 * files, never a second pipeline.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { CycleReportSchema, type CycleReport, type CycleTask, type Plan } from '../contract/cycle.ts';
import { MetaAgentError, toErrorInfo } from '../contract/errors.ts';
import { ReportSchema, type Report, type Usage } from '../contract/report.ts';
import type { Engine } from '../engines/types.ts';
import { createTask } from '../queue/createTask.ts';
import { reportPaths } from '../run/report.ts';
import { runTask } from '../run/runTask.ts';
import { silentLogger } from '../log.ts';
import { projectFor, type Project, type Settings } from '../workspace/config.ts';
import { publishFile } from '../workspace/files.ts';
import { contextMarkdown, gatherContext, readState, writeState, type CycleContext } from './context.ts';
import { llmPlanner, routineFor, type Planner } from './plan.ts';
import { fillTemplate, loadTemplate } from '../workspace/templates.ts';

export type { Clock } from '../workspace/clock.ts';
import type { Clock } from '../workspace/clock.ts';

export interface CycleOptions {
  project?: string;
  log?: Logger;
  clock?: Clock;
  signal?: AbortSignal;
  /** Replaces the LLM planner (tests, other programs). */
  planner?: Planner;
  /** Engine for tasks this process runs itself. */
  engine?: Engine;
  /** Polled before each task: true stops creating tasks (a trading window opened). */
  shouldStop?: () => string | null;
  waitTimeoutMs?: number;
  pollMs?: number;
}

/** Tokens below which a cycle does not start another task. */
const MIN_TASK_TOKENS = 2000;

export async function runSupervisorCycle(settings: Settings, goal: string, mode: 'daily' | 'weekly' = 'daily', options: CycleOptions = {}): Promise<CycleReport> {
  const clock = options.clock ?? settings.clock;
  const log = options.log ?? silentLogger();
  const started = clock();
  const project = pickProject(settings, options.project);
  const cycleId = `${started.toISOString().replace(/[-:]/g, '').slice(0, 13)}-${slug(goal)}-${randomBytes(2).toString('hex')}`;
  const clog = log.child({ cycle: cycleId });
  const { supervisor } = settings.config;
  const plannerUsage: Usage = { requests: 0, prompt_tokens: 0, cached_tokens: 0, completion_tokens: 0, cost_usd: null };
  const tasks: CycleTask[] = [];
  const reports: Report[] = [];
  let stopped: string | null = null;
  let error: CycleReport['error'] = null;
  let planner: CycleReport['planner'] = { source: 'routine', model: null, attempts: 0, usage: plannerUsage };
  let context: CycleContext | null = null;
  const budget = { tokens: supervisor.budget_tokens, usd: supervisor.budget_usd ?? null, spent_tokens: 0, spent_usd: null as number | null, exhausted: false };
  const spend = (usage: Usage) => {
    budget.spent_tokens += usage.prompt_tokens + usage.completion_tokens;
    if (usage.cost_usd !== null) budget.spent_usd = (budget.spent_usd ?? 0) + usage.cost_usd;
  };

  try {
    await ensureProjectRepo(project);
    const state = await readState(settings, project.name);
    context = await gatherContext(settings, project, state);
    clog.info({ goal, mode, project: project.name, commits: context.commits.length, log_lines: context.logLines.length }, `cycle started: ${goal}`);

    let plan: Plan;
    try {
      plan = await makePlan(settings, goal, mode, project, context, plannerUsage, options, (p) => (planner = p));
    } finally {
      // A plan that failed cost tokens too.
      spend(plannerUsage);
    }

    for (const [i, planned] of plan.tasks.entries()) {
      const why = options.shouldStop?.() ?? null;
      if (why) {
        stopped = `${why}; ${plan.tasks.length - i} planned task(s) not created`;
        break;
      }
      const remaining = budget.tokens - budget.spent_tokens;
      const usdLeft = budget.usd === null ? Infinity : budget.usd - (budget.spent_usd ?? 0);
      if (remaining < MIN_TASK_TOKENS || usdLeft <= 0) {
        budget.exhausted = true;
        stopped = `the cycle's budget is spent (${budget.spent_tokens} of ${budget.tokens} tokens${budget.usd !== null ? `, $${(budget.spent_usd ?? 0).toFixed(4)} of $${budget.usd}` : ''}); ${plan.tasks.length - i} planned task(s) not created`;
        break;
      }
      const name = `S${i + 1}_${project.name}_${cycleId}`;
      // The type's template (the user's own templates/<type>.md if there is one), filled with the period's context.
      const template = await loadTemplate(settings, planned.type);
      const vars = {
        goal,
        mode,
        project: project.name,
        objective: planned.objective,
        period: state.last_cycle_id ? `the period since cycle ${state.last_cycle_id}` : `the last ${mode === 'weekly' ? 'week' : 'day'}`,
        area: planned.scope.length ? planned.scope.join(', ') : 'the repository',
        context: contextMarkdown(context),
      };
      const templateBody = fillTemplate(template.body, vars);
      const { path: file, task } = await createTask(
        settings,
        name,
        {
          id: name,
          project: project.name,
          type: planned.type,
          objective: planned.objective,
          scope: planned.scope,
          tasks: planned.tasks.length ? planned.tasks : template.tasks.map((t) => fillTemplate(t, vars)),
          output: template.output ? fillTemplate(template.output, vars) : 'report + patch proposal',
          max_tokens: remaining,
          created: clock().toISOString(),
          body: [`Created by the supervisor (cycle ${cycleId}, goal "${goal}", ${mode}).`, templateBody.includes(vars.context) ? '' : vars.context, templateBody].filter(Boolean).join('\n\n'),
        },
        'supervisor',
      );
      clog.info({ task: task.id, type: planned.type }, `task created: ${task.id}`);
      const report = await runOrAwait(settings, file, task.id, options, clog);
      if (report) {
        reports.push(report);
        spend(report.usage);
      }
      tasks.push(cycleTask(settings, task.id, planned, report));
      if (options.signal?.aborted) {
        stopped = 'the cycle was interrupted';
        break;
      }
    }
    await writeState(settings, project.name, { last_cycle_id: cycleId, last_head: context.head, log_offsets: context.logOffsets });
  } catch (e) {
    error = toErrorInfo(e);
    clog.error({ err: error }, 'cycle failed');
  }
  if (budget.spent_tokens >= budget.tokens) budget.exhausted = true;

  const finished = clock();
  const report = buildCycleReport(settings, { cycleId, goal, mode, project: project.name, started, finished, planner, context, tasks, reports, budget, stopped, error });
  await writeCycleReport(settings, report);
  clog.info({ status: report.status, tasks: tasks.map((t) => `${t.task_id}:${t.status}`), report: `reports/cycles/${cycleId}.md` }, `cycle finished: ${report.summary}`);
  return report;
}

function pickProject(settings: Settings, name: string | undefined): Project {
  if (name) return projectFor(settings, name);
  const names = Object.keys(settings.projects);
  if (names.length !== 1) throw new MetaAgentError('input', `several projects are configured (${names.join(', ')}); pass --project`, { field: 'project' });
  return settings.projects[names[0]!]!;
}

async function ensureProjectRepo(project: Project): Promise<void> {
  const { ensureRepo } = await import('../run/workspaceRepo.ts');
  await ensureRepo(project);
}

async function makePlan(
  settings: Settings,
  goal: string,
  mode: string,
  project: Project,
  context: CycleContext,
  usage: Usage,
  options: CycleOptions,
  record: (p: CycleReport['planner']) => void,
): Promise<Plan> {
  const routine = routineFor(settings, goal);
  if (routine) {
    record({ source: 'routine', model: null, attempts: 0, usage });
    return { tasks: routine.map((t) => ({ type: t.type, objective: t.objective, scope: t.scope, tasks: t.tasks })) };
  }
  const planner = options.planner ?? llmPlanner(settings);
  const signal = options.signal ?? new AbortController().signal;
  const result = await planner.plan(
    {
      system:
        'You plan the overnight maintenance of a trading bot\'s repository. Propose 1 to 3 focused tasks for a coding agent that works in an isolated copy and proposes patches a human reviews. Types: audit_code (find and fix bugs), propose_features (ranked improvements), retrain_model (the project\'s train/eval chain), risk_review (comments on trading-risk numbers computed in code; scope []), custom. scope lists glob patterns of files the task may change ([] = report only). Do not propose ideas that are pending or were rejected.',
      user: `Goal: ${goal} (${mode})\nProject: ${project.name}\n\n${contextMarkdown(context)}`,
    },
    usage,
    signal,
  ).catch((error: unknown) => {
    record({ source: 'llm', model: settings.llm.model, attempts: usage.requests, usage });
    throw error;
  });
  record({ source: 'llm', model: result.model, attempts: result.attempts, usage });
  return result.plan;
}

/** Runs the task here if it is still in inbox/, else waits for the watcher that took it. */
async function runOrAwait(settings: Settings, file: string, id: string, options: CycleOptions, log: Logger): Promise<Report | null> {
  try {
    const result = await runTask(file, { settings, log, ...(options.signal ? { signal: options.signal } : {}), ...(options.engine ? { engine: options.engine } : {}) });
    if (result.report.error?.kind !== 'interrupted') return result.report;
  } catch (error) {
    if (!(error instanceof MetaAgentError && error.kind === 'input')) throw error;
    log.info({ task: id }, 'a watcher took the task; waiting for its report');
  }
  return awaitReport(settings, id, options);
}

async function awaitReport(settings: Settings, id: string, options: CycleOptions): Promise<Report | null> {
  const deadline = Date.now() + (options.waitTimeoutMs ?? settings.config.supervisor.wait_timeout_s * 1000);
  const file = reportPaths(settings.layout, id).json;
  while (Date.now() < deadline && !options.signal?.aborted) {
    const text = await fs.readFile(file, 'utf8').catch(() => null);
    if (text) {
      const parsed = ReportSchema.safeParse(JSON.parse(text));
      // An interrupted run goes back to inbox/ and runs again: keep waiting for the real outcome.
      if (parsed.success && parsed.data.error?.kind !== 'interrupted') return parsed.data;
    }
    await new Promise((r) => setTimeout(r, options.pollMs ?? 500));
  }
  return null;
}

function cycleTask(settings: Settings, id: string, planned: Plan['tasks'][number], report: Report | null): CycleTask {
  const check = (c: Report['tests']) => (c ? (c.passed ? 'passed' : 'failed') : 'not run');
  return {
    task_id: id,
    type: planned.type,
    objective: planned.objective,
    status: report ? report.status : 'timeout',
    outcome: report?.outcome ?? null,
    risk_level: report?.risk_level ?? null,
    tests: check(report?.tests ?? null),
    dry_run: check(report?.dry_run ?? null),
    duration_ms: report?.duration_ms ?? 0,
    tokens: report ? report.usage.prompt_tokens + report.usage.completion_tokens : 0,
    cost_usd: report?.usage.cost_usd ?? null,
    summary: report ? (report.error ? report.error.message : report.summary.split('\n')[0] ?? '') : 'no report before the wait timeout (supervisor.wait_timeout_s)',
    report: report ? report.report_md : null,
    patch: report?.patch_files[0] ?? null,
  };
}

function buildCycleReport(
  settings: Settings,
  x: {
    cycleId: string;
    goal: string;
    mode: 'daily' | 'weekly';
    project: string;
    started: Date;
    finished: Date;
    planner: CycleReport['planner'];
    context: CycleContext | null;
    tasks: CycleTask[];
    reports: Report[];
    budget: CycleReport['budget'];
    stopped: string | null;
    error: CycleReport['error'];
  },
): CycleReport {
  const root = settings.layout.root;
  const candidates = x.reports
    .filter((r) => r.patch_files.length > 0)
    .map((r) => ({
      task_id: r.task_id,
      patch: r.patch_files[0]!,
      files: r.changed_files,
      risk_level: r.risk_level,
      approve: `meta-agent approve ${r.task_id} --root "${root}"`,
      reject: `meta-agent reject ${r.task_id} --reason "..." --root "${root}"`,
    }));
  const ok = x.tasks.filter((t) => t.status === 'ok').length;
  const status: CycleReport['status'] = x.error ? 'error' : ok === x.tasks.length && !x.stopped ? 'ok' : 'partial';
  const summary = x.error
    ? `The cycle failed: ${x.error.message}`
    : `${x.tasks.length} task(s) run, ${ok} ok; ${candidates.length} patch(es) to review${x.stopped ? `; stopped early: ${x.stopped}` : ''}.`;
  const nextActions = [...new Set(x.reports.flatMap((r) => r.next_actions))].slice(0, 20);
  return CycleReportSchema.parse({
    cycle_id: x.cycleId,
    goal: x.goal,
    mode: x.mode,
    project: x.project,
    status,
    summary,
    started_at: x.started.toISOString(),
    finished_at: x.finished.toISOString(),
    planner: x.planner,
    context: {
      commits: x.context?.commits.length ?? 0,
      log_lines: x.context?.logLines.length ?? 0,
      pending_patches: x.context?.pending.length ?? 0,
      rejected_reasons: x.context?.rejectedReasons.length ?? 0,
      open_next_actions: x.context?.openNextActions.length ?? 0,
      pnl: x.context?.pnl ?? null,
    },
    tasks: x.tasks,
    candidates,
    next_actions: nextActions,
    budget: x.budget,
    stopped: x.stopped,
    error: x.error,
  });
}

async function writeCycleReport(settings: Settings, report: CycleReport): Promise<void> {
  const dir = path.join(settings.layout.reports, 'cycles');
  await fs.mkdir(dir, { recursive: true });
  await publishFile(path.join(dir, `${report.cycle_id}.md`), cycleMarkdown(report));
  await publishFile(path.join(dir, `${report.cycle_id}.json`), JSON.stringify(report, null, 2) + '\n');
}

export function cycleMarkdown(r: CycleReport): string {
  const lines = [
    `# Supervisor cycle ${r.cycle_id}: ${r.status.toUpperCase()}`,
    '',
    `Goal **${r.goal}** (${r.mode}) on **${r.project}**, ${r.started_at} -> ${r.finished_at}.`,
    '',
    r.summary,
    '',
    `Plan: ${r.planner.source === 'routine' ? 'configured routine (no LLM)' : `LLM ${r.planner.model} (${r.planner.attempts} attempt(s))`}. Budget: ${r.budget.spent_tokens} of ${r.budget.tokens} tokens${r.budget.exhausted ? ' (spent)' : ''}.`,
    '',
  ];
  if (r.stopped) lines.push(`**Stopped early:** ${r.stopped}`, '');
  if (r.error) lines.push(`**Error** (${r.error.kind}): ${r.error.message}`, '');
  lines.push('## Tasks', '', '| task | type | status | risk | tests | dry run | duration | tokens |', '|---|---|---|---|---|---|---|---|');
  for (const t of r.tasks) {
    lines.push(`| ${t.report ? `[${t.task_id}](../../${t.report})` : t.task_id} | ${t.type} | ${t.status}${t.outcome ? ` (${t.outcome})` : ''} | ${t.risk_level ?? '-'} | ${t.tests} | ${t.dry_run} | ${(t.duration_ms / 1000).toFixed(1)} s | ${t.tokens} |`);
  }
  lines.push('');
  for (const t of r.tasks) lines.push(`- **${t.task_id}**: ${t.summary}`);
  lines.push('', '## Candidate changes', '');
  if (r.candidates.length === 0) lines.push('(none)');
  for (const c of r.candidates) {
    lines.push(`### ${c.task_id} (risk ${c.risk_level})`, '', `Patch: \`${c.patch}\``, '', `Files: ${c.files.map((f) => `\`${f}\``).join(', ')}`, '', '```', c.approve, c.reject, '```', '');
  }
  lines.push('', '## Next actions', '', ...(r.next_actions.length ? r.next_actions.map((a) => `- ${a}`) : ['(none)']), '');
  if (r.context.pnl) lines.push('## PnL at the start of the cycle', '', r.context.pnl, '');
  return lines.join('\n');
}

function slug(goal: string): string {
  return goal.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 30) || 'cycle';
}
