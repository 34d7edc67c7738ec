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
import type { CycleReport, CycleTask, Plan } from '../contract/cycle.ts';
import { MetaAgentError, toErrorInfo } from '../contract/errors.ts';
import { readJsonFileOrNull } from '../contract/readJson.ts';
import { ReportSchema, type Report, type Usage } from '../contract/report.ts';
import type { Engine } from '../engines/types.ts';
import { createTask } from '../queue/createTask.ts';
import { reportPaths } from '../run/report.ts';
import { runTask } from '../run/runTask.ts';
import { ensureRepo } from '../repo/workspaceRepo.ts';
import { silentLogger } from '../log.ts';
import { projectFor, type Project, type Settings } from '../workspace/config.ts';
import { retryWrite } from '../workspace/files.ts';
import { contextMarkdown, gatherContext, readState, writeState, type CycleContext, type SupervisorState } from './context.ts';
import { saveJournal, removeJournal, thisProcess, type CycleJournal } from './journal.ts';
import { llmPlanner, routineFor, type Planner } from './plan.ts';
import { buildCycleReport, cycleTask, readCycleReport, writeCycleReport } from './cycleReport.ts';
import { fillTemplate, loadTemplate } from '../workspace/templates.ts';

export type { Clock } from '../workspace/clock.ts';
export { cycleMarkdown } from './cycleReport.ts';
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

export async function runSupervisorCycle(
  settings: Settings,
  goal: string,
  mode: 'daily' | 'weekly' = 'daily',
  options: CycleOptions = {},
): Promise<CycleReport> {
  const started = (options.clock ?? settings.clock)();
  const project = pickProject(settings, options.project);
  const cycleId = `${started.toISOString().replace(/[-:]/g, '').slice(0, 13)}-${slug(goal)}-${randomBytes(2).toString('hex')}`;
  return runCycle(
    settings,
    { cycle_id: cycleId, goal, mode, project: project.name, started_at: started.toISOString(), owner: thisProcess(), planned: null },
    options,
  );
}

/**
 * Finishes a cycle whose process died (its journal, see journal.ts): the tasks it created
 * are awaited (the watcher recovers and re-runs them), the planned ones it never created
 * are created, and its report lists exactly that cycle's tasks.
 */
export async function resumeSupervisorCycle(settings: Settings, journal: CycleJournal, options: CycleOptions = {}): Promise<CycleReport> {
  const log = options.log ?? silentLogger();
  const written = await readCycleReport(settings, journal.cycle_id, log);
  if (written) {
    // It died after writing the report, before removing the journal.
    await removeJournal(settings, journal.cycle_id);
    return written;
  }
  log.warn({ cycle: journal.cycle_id, owner: journal.owner }, `finishing cycle ${journal.cycle_id}: its process (pid ${journal.owner.pid}) died`);
  return runCycle(settings, { ...journal, owner: thisProcess() }, options);
}

function runCycle(settings: Settings, journal: CycleJournal, options: CycleOptions): Promise<CycleReport> {
  return new Cycle(settings, journal, options).run();
}

/** One cycle from its journal: plan (or resume the plan), run the planned tasks within the budget, report. */
class Cycle {
  private readonly clock: Clock;
  private readonly log: Logger;
  /** The journal said the cycle had planned already: its tasks may exist. */
  private readonly resuming: boolean;
  private readonly plannerUsage: Usage = { requests: 0, prompt_tokens: 0, cached_tokens: 0, completion_tokens: 0, cost_usd: null };
  private planner: CycleReport['planner'];
  private context: CycleContext | null;
  private readonly budget: CycleReport['budget'];
  private readonly tasks: CycleTask[] = [];
  private readonly reports: Report[] = [];
  private stopped: string | null = null;
  private error: CycleReport['error'] = null;

  constructor(
    private readonly settings: Settings,
    private journal: CycleJournal,
    private readonly options: CycleOptions,
  ) {
    this.clock = options.clock ?? settings.clock;
    this.log = (options.log ?? silentLogger()).child({ cycle: journal.cycle_id });
    this.resuming = journal.planned !== null;
    this.planner = journal.planned?.planner ?? { source: 'routine', model: null, attempts: 0, usage: this.plannerUsage };
    this.context = journal.planned?.context ?? null;
    const { supervisor } = settings.config;
    this.budget = { tokens: supervisor.budget_tokens, usd: supervisor.budget_usd ?? null, spent_tokens: 0, spent_usd: null, exhausted: false };
  }

  async run(): Promise<CycleReport> {
    try {
      await this.work();
    } catch (e) {
      this.error = toErrorInfo(e);
      this.log.error({ err: this.error }, 'cycle failed');
    }
    return this.finish();
  }

  private async work(): Promise<void> {
    const { settings } = this;
    await saveJournal(settings, this.journal);
    const project = projectFor(settings, this.journal.project);
    await ensureRepo(project);
    const state = await readState(settings, project.name);
    const { plan, task_ids: taskIds, context } = await this.plan(project, state);
    for (const [i, planned] of plan.tasks.entries()) {
      const go = await this.runPlannedTask(taskIds[i]!, planned, plan.tasks.length - i, { project, state, context });
      if (!go) break;
    }
    await retryWrite(() =>
      writeState(settings, project.name, { last_cycle_id: this.journal.cycle_id, last_head: context.head, log_offsets: context.logOffsets }),
    );
  }

  /** The plan: the journal's when resuming, else made now and journaled before any task exists. */
  private async plan(project: Project, state: SupervisorState): Promise<NonNullable<CycleJournal['planned']>> {
    const { settings, options, journal } = this;
    const { goal, mode } = journal;
    if (journal.planned) {
      this.spend(this.planner.usage);
      this.log.info({ goal, mode, project: project.name }, `cycle resumed: ${goal}`);
      return journal.planned;
    }
    const context = await gatherContext(settings, project, state);
    this.context = context;
    this.log.info({ goal, mode, project: project.name, commits: context.commits.length, log_lines: context.logLines.length }, `cycle started: ${goal}`);
    let plan: Plan;
    try {
      plan = await makePlan(settings, goal, mode, project, context, this.plannerUsage, options, (p) => (this.planner = p));
    } finally {
      // A plan that failed cost tokens too.
      this.spend(this.plannerUsage);
    }
    // Journaled before any task exists, so a crash from here on can be finished at the next start.
    const planned = { plan, planner: this.planner, context, task_ids: plan.tasks.map((_, i) => `S${i + 1}_${project.name}_${journal.cycle_id}`) };
    this.journal = { ...journal, planned };
    await saveJournal(settings, this.journal);
    return planned;
  }

  /**
   * One planned task: a resumed cycle's task that exists already is run (if still in inbox/) or
   * awaited; else it is created and run, unless the cycle must stop. False: the cycle stops here.
   */
  private async runPlannedTask(
    name: string,
    planned: Plan['tasks'][number],
    left: number,
    where: { project: Project; state: SupervisorState; context: CycleContext },
  ): Promise<boolean> {
    const { settings, options, log } = this;
    const existing = this.resuming ? await findTask(settings, name) : null;
    let report: Report | null;
    if (existing) {
      report = existing.inInbox ? await runOrAwait(settings, existing.file, name, options, log) : await awaitReport(settings, name, options, log);
    } else {
      const stop = this.reasonToStop(left);
      if (stop) {
        this.stopped = stop;
        return false;
      }
      const maxTokens = this.budget.tokens - this.budget.spent_tokens;
      const file = await createPlannedTask(settings, { name, planned, journal: this.journal, ...where, maxTokens, created: this.clock() });
      log.info({ task: name, type: planned.type }, `task created: ${name}`);
      report = await runOrAwait(settings, file, name, options, log);
    }
    if (report) {
      this.reports.push(report);
      this.spend(report.usage);
    }
    this.tasks.push(cycleTask(name, planned, report));
    if (options.signal?.aborted) {
      this.stopped = 'the cycle was interrupted';
      return false;
    }
    return true;
  }

  /** Why no more tasks are created: a trading window opened, or the budget is spent (null: go on). */
  private reasonToStop(left: number): string | null {
    const why = this.options.shouldStop?.() ?? null;
    if (why) return `${why}; ${left} planned task(s) not created`;
    const { budget } = this;
    const usdLeft = budget.usd === null ? Infinity : budget.usd - (budget.spent_usd ?? 0);
    if (budget.tokens - budget.spent_tokens >= MIN_TASK_TOKENS && usdLeft > 0) return null;
    budget.exhausted = true;
    return `the cycle's budget is spent (${budget.spent_tokens} of ${budget.tokens} tokens${budget.usd !== null ? `, $${(budget.spent_usd ?? 0).toFixed(4)} of $${budget.usd}` : ''}); ${left} planned task(s) not created`;
  }

  private spend(usage: Usage): void {
    this.budget.spent_tokens += usage.prompt_tokens + usage.completion_tokens;
    if (usage.cost_usd !== null) this.budget.spent_usd = (this.budget.spent_usd ?? 0) + usage.cost_usd;
  }

  /** The report is written; only then the journal goes (a crash before that leaves it, and the next start finishes the cycle). */
  private async finish(): Promise<CycleReport> {
    const { settings, journal, budget, tasks } = this;
    if (budget.spent_tokens >= budget.tokens) budget.exhausted = true;
    const report = buildCycleReport(settings, {
      cycleId: journal.cycle_id,
      goal: journal.goal,
      mode: journal.mode,
      project: journal.project,
      started: new Date(journal.started_at),
      finished: this.clock(),
      planner: this.planner,
      context: this.context,
      tasks,
      reports: this.reports,
      budget,
      stopped: this.stopped,
      error: this.error,
    });
    await writeCycleReport(settings, report);
    await removeJournal(settings, journal.cycle_id);
    this.log.info(
      { status: report.status, tasks: tasks.map((t) => `${t.task_id}:${t.status}`), report: `reports/cycles/${journal.cycle_id}.md` },
      `cycle finished: ${report.summary}`,
    );
    return report;
  }
}

function pickProject(settings: Settings, name: string | undefined): Project {
  if (name) return projectFor(settings, name);
  const names = Object.keys(settings.projects);
  if (names.length !== 1) throw new MetaAgentError('input', `several projects are configured (${names.join(', ')}); pass --project`, { field: 'project' });
  return settings.projects[names[0]!]!;
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
  const result = await planner
    .plan(
      {
        system:
          "You plan the overnight maintenance of a trading bot's repository. Propose 1 to 3 focused tasks for a coding agent that works in an isolated copy and proposes patches a human reviews. Types: audit_code (find and fix bugs), propose_features (ranked improvements), retrain_model (the project's train/eval chain), risk_review (comments on trading-risk numbers computed in code; scope []), custom. scope lists glob patterns of files the task may change ([] = report only). Do not propose ideas that are pending or were rejected.",
        user: `Goal: ${goal} (${mode})\nProject: ${project.name}\n\n${contextMarkdown(context)}`,
      },
      usage,
      signal,
    )
    .catch((error: unknown) => {
      record({ source: 'llm', model: settings.llm.model, attempts: usage.requests, usage });
      throw error;
    });
  record({ source: 'llm', model: result.model, attempts: result.attempts, usage });
  return result.plan;
}

/** Writes a planned task into inbox/: its type's template (the user's own templates/<type>.md if there is one), filled with the period's context. */
async function createPlannedTask(
  settings: Settings,
  x: {
    name: string;
    planned: Plan['tasks'][number];
    journal: CycleJournal;
    project: Project;
    state: SupervisorState;
    context: CycleContext;
    maxTokens: number;
    created: Date;
  },
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
    body: [
      `Created by the supervisor (cycle ${journal.cycle_id}, goal "${goal}", ${mode}).`,
      templateBody.includes(vars.context) ? '' : vars.context,
      templateBody,
    ]
      .filter(Boolean)
      .join('\n\n'),
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
    const result = await runTask(file, {
      settings,
      log,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.engine ? { engine: options.engine } : {}),
      ...(options.stopChecksGraceS !== undefined ? { stopChecksGraceS: options.stopChecksGraceS } : {}),
    });
    if (result.report.error?.kind !== 'interrupted') return result.report;
  } catch (error) {
    if (error instanceof MetaAgentError && error.kind === 'input') log.info({ task: id }, 'a watcher took the task; waiting for its report');
    else log.warn({ task: id, err: toErrorInfo(error) }, 'the run could not be recorded; waiting for the report of its recovery');
  }
  return awaitReport(settings, id, options, log);
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
  const reported = await fs.stat(reportPaths(settings.layout, id).json).then(
    () => true,
    () => false,
  );
  return reported ? { file: reportPaths(settings.layout, id).json, inInbox: false } : null;
}

async function awaitReport(settings: Settings, id: string, options: CycleOptions, log: Logger): Promise<Report | null> {
  const deadline = Date.now() + (options.waitTimeoutMs ?? settings.config.supervisor.wait_timeout_s * 1000);
  const file = reportPaths(settings.layout, id).json;
  let warned = false;
  while (Date.now() < deadline && !options.signal?.aborted) {
    try {
      const report = await readJsonFileOrNull(file, ReportSchema);
      // An interrupted run goes back to inbox/ and runs again: keep waiting for the real outcome
      // (unless it saved an incomplete patch: then it went to failed/ and is final).
      if (report && (report.error?.kind !== 'interrupted' || report.incomplete)) return report;
    } catch (error) {
      // Not a report (yet): a later run of the task replaces it; until then, or the wait's end, keep waiting.
      if (!warned) log.warn({ task: id, err: toErrorInfo(error) }, "the task's report is not usable; waiting for another");
      warned = true;
    }
    await new Promise((r) => setTimeout(r, options.pollMs ?? 500));
  }
  return null;
}

function slug(goal: string): string {
  return (
    goal
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-|-$/g, '')
      .slice(0, 30) || 'cycle'
  );
}
