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
import { replaceFile, retryWrite } from '../workspace/files.ts';
import { contextMarkdown, gatherContext, readState, writeState, type CycleContext, type SupervisorState } from './context.ts';
import { saveJournal, removeJournal, thisProcess, type CycleJournal } from './journal.ts';
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
  /** After a stop (`signal`), how long the checks on a task's incomplete patch may take (runTask's stopChecksGraceS). */
  stopChecksGraceS?: number;
  /** Polled before each task: true stops creating tasks (a trading window opened). */
  shouldStop?: () => string | null;
  waitTimeoutMs?: number;
  pollMs?: number;
}

/** Tokens below which a cycle does not start another task. */
const MIN_TASK_TOKENS = 2000;

export async function runSupervisorCycle(settings: Settings, goal: string, mode: 'daily' | 'weekly' = 'daily', options: CycleOptions = {}): Promise<CycleReport> {
  const started = (options.clock ?? settings.clock)();
  const project = pickProject(settings, options.project);
  const cycleId = `${started.toISOString().replace(/[-:]/g, '').slice(0, 13)}-${slug(goal)}-${randomBytes(2).toString('hex')}`;
  return runCycle(settings, { cycle_id: cycleId, goal, mode, project: project.name, started_at: started.toISOString(), owner: thisProcess(), planned: null }, options);
}

/**
 * Finishes a cycle whose process died (its journal, see journal.ts): the tasks it created
 * are awaited (the watcher recovers and re-runs them), the planned ones it never created
 * are created, and its report lists exactly that cycle's tasks.
 */
export async function resumeSupervisorCycle(settings: Settings, journal: CycleJournal, options: CycleOptions = {}): Promise<CycleReport> {
  const log = options.log ?? silentLogger();
  const written = await readCycleReport(settings, journal.cycle_id);
  if (written) {
    // It died after writing the report, before removing the journal.
    await removeJournal(settings, journal.cycle_id);
    return written;
  }
  log.warn({ cycle: journal.cycle_id, owner: journal.owner }, `finishing cycle ${journal.cycle_id}: its process (pid ${journal.owner.pid}) died`);
  return runCycle(settings, { ...journal, owner: thisProcess() }, options);
}

async function runCycle(settings: Settings, journal: CycleJournal, options: CycleOptions): Promise<CycleReport> {
  const clock = options.clock ?? settings.clock;
  const log = options.log ?? silentLogger();
  const { cycle_id: cycleId, goal, mode } = journal;
  const resuming = journal.planned !== null;
  const started = new Date(journal.started_at);
  const clog = log.child({ cycle: cycleId });
  const { supervisor } = settings.config;
  const plannerUsage: Usage = { requests: 0, prompt_tokens: 0, cached_tokens: 0, completion_tokens: 0, cost_usd: null };
  const tasks: CycleTask[] = [];
  const reports: Report[] = [];
  let stopped: string | null = null;
  let error: CycleReport['error'] = null;
  let planner: CycleReport['planner'] = journal.planned?.planner ?? { source: 'routine', model: null, attempts: 0, usage: plannerUsage };
  let context: CycleContext | null = journal.planned?.context ?? null;
  const budget = { tokens: supervisor.budget_tokens, usd: supervisor.budget_usd ?? null, spent_tokens: 0, spent_usd: null as number | null, exhausted: false };
  const spend = (usage: Usage) => {
    budget.spent_tokens += usage.prompt_tokens + usage.completion_tokens;
    if (usage.cost_usd !== null) budget.spent_usd = (budget.spent_usd ?? 0) + usage.cost_usd;
  };

  try {
    await saveJournal(settings, journal);
    const project = projectFor(settings, journal.project);
    await ensureProjectRepo(project);
    const state = await readState(settings, project.name);
    if (!journal.planned) {
      context = await gatherContext(settings, project, state);
      clog.info({ goal, mode, project: project.name, commits: context.commits.length, log_lines: context.logLines.length }, `cycle started: ${goal}`);
      let plan: Plan;
      try {
        plan = await makePlan(settings, goal, mode, project, context, plannerUsage, options, (p) => (planner = p));
      } finally {
        // A plan that failed cost tokens too.
        spend(plannerUsage);
      }
      // Journaled before any task exists, so a crash from here on can be finished at the next start.
      journal = { ...journal, planned: { plan, planner, context, task_ids: plan.tasks.map((_, i) => `S${i + 1}_${project.name}_${cycleId}`) } };
      await saveJournal(settings, journal);
    } else {
      spend(planner.usage);
      clog.info({ goal, mode, project: project.name }, `cycle resumed: ${goal}`);
    }
    const { plan, task_ids: taskIds } = journal.planned!;
    const cycleContext = context!;

    for (const [i, planned] of plan.tasks.entries()) {
      const name = taskIds[i]!;
      // A resumed cycle's tasks that were created already: run (if still in inbox/) or await them.
      const existing = resuming ? await findTask(settings, name) : null;
      let report: Report | null;
      if (existing) {
        report = existing.inInbox ? await runOrAwait(settings, existing.file, name, options, clog) : await awaitReport(settings, name, options);
      } else {
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
        const file = await createPlannedTask(settings, { name, planned, journal, project, state, context: cycleContext, maxTokens: remaining, created: clock() });
        clog.info({ task: name, type: planned.type }, `task created: ${name}`);
        report = await runOrAwait(settings, file, name, options, clog);
      }
      if (report) {
        reports.push(report);
        spend(report.usage);
      }
      tasks.push(cycleTask(settings, name, planned, report));
      if (options.signal?.aborted) {
        stopped = 'the cycle was interrupted';
        break;
      }
    }
    await retryWrite(() => writeState(settings, project.name, { last_cycle_id: cycleId, last_head: cycleContext.head, log_offsets: cycleContext.logOffsets }));
  } catch (e) {
    error = toErrorInfo(e);
    clog.error({ err: error }, 'cycle failed');
  }
  if (budget.spent_tokens >= budget.tokens) budget.exhausted = true;

  const finished = clock();
  const report = buildCycleReport(settings, { cycleId, goal, mode, project: journal.project, started, finished, planner, context, tasks, reports, budget, stopped, error });
  await writeCycleReport(settings, report);
  // Only now: a crash before this line leaves the journal, and the next start finishes the cycle.
  await removeJournal(settings, cycleId);
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

/** Writes a planned task into inbox/: its type's template (the user's own templates/<type>.md if there is one), filled with the period's context. */
async function createPlannedTask(
  settings: Settings,
  x: { name: string; planned: Plan['tasks'][number]; journal: CycleJournal; project: Project; state: SupervisorState; context: CycleContext; maxTokens: number; created: Date },
): Promise<string> {
  const { name, planned, journal, project, state } = x;
  const { goal, mode } = journal;
  const template = await loadTemplate(settings, planned.type);
  const vars = {
    goal,
    mode,
    project: project.name,
    objective: planned.objective,
    period: state.last_cycle_id ? `the period since cycle ${state.last_cycle_id}` : `the last ${mode === 'weekly' ? 'week' : 'day'}`,
    area: planned.scope.length ? planned.scope.join(', ') : 'the repository',
    context: contextMarkdown(x.context),
  };
  const templateBody = fillTemplate(template.body, vars);
  const fields = {
    id: name,
    project: project.name,
    type: planned.type,
    objective: planned.objective,
    scope: planned.scope,
    tasks: planned.tasks.length ? planned.tasks : template.tasks.map((t) => fillTemplate(t, vars)),
    output: template.output ? fillTemplate(template.output, vars) : 'report + patch proposal',
    max_tokens: x.maxTokens,
    created: x.created.toISOString(),
    body: [`Created by the supervisor (cycle ${journal.cycle_id}, goal "${goal}", ${mode}).`, templateBody.includes(vars.context) ? '' : vars.context, templateBody].filter(Boolean).join('\n\n'),
  };
  // Nothing is published unless the whole file is written, so a failed attempt can be retried.
  return (await retryWrite(() => createTask(settings, name, fields, 'supervisor'))).path;
}

/**
 * Runs the task here if it is still in inbox/, else waits for the watcher that took it. A run
 * that could not be recorded (a full disk for a moment) let go of its claim: the watcher
 * recovers the task and runs it again, so its report is awaited too.
 */
async function runOrAwait(settings: Settings, file: string, id: string, options: CycleOptions, log: Logger): Promise<Report | null> {
  try {
    const result = await runTask(file, { settings, log, ...(options.signal ? { signal: options.signal } : {}), ...(options.engine ? { engine: options.engine } : {}), ...(options.stopChecksGraceS !== undefined ? { stopChecksGraceS: options.stopChecksGraceS } : {}) });
    if (result.report.error?.kind !== 'interrupted') return result.report;
  } catch (error) {
    if (error instanceof MetaAgentError && error.kind === 'input') log.info({ task: id }, 'a watcher took the task; waiting for its report');
    else log.warn({ task: id, err: toErrorInfo(error) }, 'the run could not be recorded; waiting for the report of its recovery');
  }
  return awaitReport(settings, id, options);
}

/** Where a resumed cycle's task is: its file in inbox/ (not claimed yet), or somewhere else in the queue, or nowhere (never created). */
async function findTask(settings: Settings, id: string): Promise<{ file: string; inInbox: boolean } | null> {
  // <id>.md, <id>-2.md (name taken), <id>.<run-id>.md (a claim that clashed): the id carries the cycle's random part.
  // Also under a recoverer's private name (.taken-<hex>-<name>): the task exists, it is being moved.
  const isIt = (n: string) => {
    const bare = n.replace(/^\.taken-[0-9a-f]+-/, '');
    return bare.endsWith('.md') && (bare === `${id}.md` || bare.startsWith(`${id}-`) || bare.startsWith(`${id}.`));
  };
  const { layout } = settings;
  for (const dir of [layout.inbox, layout.processing, layout.done, layout.failed]) {
    const name = (await fs.readdir(dir).catch(() => [] as string[])).find(isIt);
    if (name) return { file: path.join(dir, name), inInbox: dir === layout.inbox };
  }
  const reported = await fs.stat(reportPaths(settings.layout, id).json).then(() => true, () => false);
  return reported ? { file: reportPaths(settings.layout, id).json, inInbox: false } : null;
}

async function awaitReport(settings: Settings, id: string, options: CycleOptions): Promise<Report | null> {
  const deadline = Date.now() + (options.waitTimeoutMs ?? settings.config.supervisor.wait_timeout_s * 1000);
  const file = reportPaths(settings.layout, id).json;
  while (Date.now() < deadline && !options.signal?.aborted) {
    const text = await fs.readFile(file, 'utf8').catch(() => null);
    if (text) {
      const parsed = ReportSchema.safeParse(JSON.parse(text));
      // An interrupted run goes back to inbox/ and runs again: keep waiting for the real outcome
      // (unless it saved an incomplete patch: then it went to failed/ and is final).
      if (parsed.success && (parsed.data.error?.kind !== 'interrupted' || parsed.data.incomplete)) return parsed.data;
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
    incomplete: report?.incomplete ?? false,
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
      incomplete: r.incomplete,
    }));
  const ok = x.tasks.filter((t) => t.status === 'ok').length;
  const status: CycleReport['status'] = x.error ? 'error' : ok === x.tasks.length && !x.stopped ? 'ok' : 'partial';
  const summary = x.error
    ? `The cycle failed: ${x.error.message}`
    : `${x.tasks.length} task(s) run, ${ok} ok; ${candidates.length} patch(es) to review${candidates.some((c) => c.incomplete) ? ` (${candidates.filter((c) => c.incomplete).length} incomplete)` : ''}${x.stopped ? `; stopped early: ${x.stopped}` : ''}.`;
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

const cycleReportFile = (settings: Settings, cycleId: string, ext: 'md' | 'json') => path.join(settings.layout.reports, 'cycles', `${cycleId}.${ext}`);

/** Atomic, and idempotent (the cycle id is this cycle's own), so a failed write can be retried and a resumed cycle can write it again. */
async function writeCycleReport(settings: Settings, report: CycleReport): Promise<void> {
  await fs.mkdir(path.join(settings.layout.reports, 'cycles'), { recursive: true });
  await retryWrite(() => replaceFile(cycleReportFile(settings, report.cycle_id, 'md'), cycleMarkdown(report)));
  await retryWrite(() => replaceFile(cycleReportFile(settings, report.cycle_id, 'json'), JSON.stringify(report, null, 2) + '\n'));
}

async function readCycleReport(settings: Settings, cycleId: string): Promise<CycleReport | null> {
  const text = await fs.readFile(cycleReportFile(settings, cycleId, 'json'), 'utf8').catch(() => null);
  const parsed = text ? CycleReportSchema.safeParse(JSON.parse(text)) : null;
  return parsed?.success ? parsed.data : null;
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
    lines.push(`| ${t.report ? `[${t.task_id}](../../${t.report})` : t.task_id} | ${t.type} | ${t.status}${t.outcome ? ` (${t.outcome})` : ''}${t.incomplete ? ' **incomplete patch**' : ''} | ${t.risk_level ?? '-'} | ${t.tests} | ${t.dry_run} | ${(t.duration_ms / 1000).toFixed(1)} s | ${t.tokens} |`);
  }
  lines.push('');
  for (const t of r.tasks) lines.push(`- **${t.task_id}**: ${t.summary}`);
  lines.push('', '## Candidate changes', '');
  if (r.candidates.length === 0) lines.push('(none)');
  for (const c of r.candidates) {
    lines.push(`### ${c.task_id} (risk ${c.risk_level}${c.incomplete ? ', INCOMPLETE' : ''})`, '', `Patch: \`${c.patch}\`${c.incomplete ? ' (incomplete: the run stopped before the agent finished; review what it did so far)' : ''}`, '', `Files: ${c.files.map((f) => `\`${f}\``).join(', ')}`, '', '```', c.approve, c.reject, '```', '');
  }
  lines.push('', '## Next actions', '', ...(r.next_actions.length ? r.next_actions.map((a) => `- ${a}`) : ['(none)']), '');
  if (r.context.pnl) lines.push('## PnL at the start of the cycle', '', r.context.pnl, '');
  return lines.join('\n');
}

function slug(goal: string): string {
  return goal.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 30) || 'cycle';
}
