/**
 * runTask: one task, one run, one worktree (the seed's meta_core.run_task).
 *
 *   read + validate -> resolve the project -> worktree at the branch head -> engine
 *   -> diff (scope check) -> test + dry_run -> report + patch -> worktree removed
 *
 * A report is written on every path, failures included, and the worktree is removed on
 * every path (error, timeout, Ctrl-C). The real repository is never written to.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { MetaAgentError, toErrorInfo, type ErrorInfo } from '../contract/errors.ts';
import type { Report, ShellMode, Usage } from '../contract/report.ts';
import { defaultIdFor, parseTask, TaskIdSchema, type Task } from '../contract/task.ts';
import { CommandEngine } from '../engines/command.ts';
import { systemPrompt, userPrompt } from '../engines/prompt.ts';
import { decideShell } from '../engines/shellTool.ts';
import type { Engine, EngineResult } from '../engines/types.ts';
import { regressionsOf, Verifier, type Baselines } from '../engines/verify.ts';
import { holdTaskId } from '../queue/taskIdLock.ts';
import { claimTask, isDirectlyIn, markReported, settleClaim, type Claim, type Disposition } from '../queue/folders.ts';
import { denyMatcher, scopeMatcher } from '../safety/globs.ts';
import { makeRedactor, type Redactor } from '../safety/redact.ts';
import { silentLogger } from '../log.ts';
import { llmMissingMessage, projectFor, type Settings } from '../workspace/config.ts';
import { displayPath } from '../workspace/layout.ts';
import { replaceFile } from '../workspace/files.ts';
import { faultPoint } from '../workspace/faults.ts';
import { preflightChecks, runCheck, withCheckCopy } from '../repo/checks.ts';
import { baselineOnce, markBaselines } from './baseline.ts';
import { sandboxStatus } from '../safety/sandbox.ts';
import { collectDiff } from '../repo/git.ts';
import { archiveEarlierRun, pendingPatchesOf, redactReportText, reportPaths, TrajectoryWriter, writeReport } from './report.ts';
import { assessRisk, withRegressions } from './risk.ts';
import { noExtras, RetrainFailed, runTypePipeline, WORKS_WITHOUT_LLM } from './pipelines.ts';
import { ensureRepo, type Worktree } from '../repo/workspaceRepo.ts';
import { openPooledWorktree } from '../repo/worktreePool.ts';
import { filesAtCommit } from '../repo/commitFiles.ts';
import { failedOutcome, hintFor, worktreeOutcome, type Outcome, type WorktreeFacts } from './outcome.ts';
import { keepIncompleteWork } from './keepIncomplete.ts';
import { noteFiledBeside, refusedChange, writePatch } from './proposal.ts';
import { runChecks, type RunContext } from './runContext.ts';

export interface RunTaskOptions {
  settings: Settings;
  log?: Logger;
  /** Cancels the run (Ctrl-C, service shutdown): the task goes back to inbox/. */
  signal?: AbortSignal;
  /** Replaces the configured engine (tests, benchmarks, other programs). */
  engine?: Engine;
  /** A second Ctrl-C: the checks on a stopped run's incomplete patch are cut short. */
  hurry?: AbortSignal;
  /** After a stop (`signal`), how long those checks may take (default: incomplete.ts INTERRUPT_GRACE_S). */
  stopChecksGraceS?: number;
  /** The run id to use (a BullMQ worker runs under the id the folder host recorded); default: a new one. */
  runId?: string;
  /** The hash of the task bytes the watcher judged complete: a claim of other bytes is put back (queue/folders.ts). */
  expectSha256?: string;
  /** What attempts of this run lost with their BullMQ worker spent: counted in this run, as an unfinished earlier attempt's is. */
  carriedUsage?: Usage;
  /** Called after each trajectory record with the run's usage so far (a BullMQ worker reports it to the folder host). */
  onStep?: (usage: Usage) => void;
}

export interface RunTaskResult {
  task_id: string;
  run_id: string;
  status: Report['status'];
  outcome: Report['outcome'];
  /** Absolute paths. */
  report_path: string;
  report_md_path: string;
  patch_path: string | null;
  /** Where the task file is now. */
  task_file: string;
  report: Report;
}

export function newRunId(now = new Date()): string {
  return `${now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')}-${randomBytes(3).toString('hex')}`;
}

export async function runTask(taskPath: string, options: RunTaskOptions): Promise<RunTaskResult> {
  const run = await claimRun(taskPath, options);
  let outcome: Outcome;
  try {
    outcome = await runClaimed(run);
  } catch (error) {
    outcome = failedOutcome(error, run.task, run.engineName);
  }
  try {
    return await fileRun(run, outcome);
  } finally {
    // The worktree goes after the report: the report is what a person waits for, the
    // worktree's removal (a pool slot's reset) is not.
    await run
      .removeWorktree?.()
      .catch((error: unknown) => run.log.warn({ err: toErrorInfo(error) }, 'the run is filed, but its worktree could not be removed'));
  }
}

/** Where a run's task file goes, by its report: shared with the BullMQ folder host (service/bullmq/fileResult.ts). */
export function dispositionOf(
  fileName: string,
  taskId: string,
  report: Pick<Report, 'status' | 'error' | 'incomplete' | 'patch_files' | 'report_md'>,
): Disposition {
  if (report.error?.kind === 'interrupted' && !report.incomplete) return { status: 'interrupted' };
  if (report.status === 'ok') return { status: 'ok' };
  return {
    status: 'error',
    explanation: errorExplanation(fileName, taskId, report.error, report.report_md, report.incomplete ? (report.patch_files[0] ?? null) : null),
  };
}

/** One call of runTask: what it was given, and what it has learnt so far (the task once read, the task id once held). */
interface TaskRun {
  options: RunTaskOptions;
  settings: Settings;
  runId: string;
  startedAt: Date;
  /** The start by the monotonic clock: the wall clock may jump back (NTP, a person) mid-run. */
  startedMono: number;
  redact: Redactor;
  fileName: string;
  /** The task file: where the claim put it (processing/), or the file as given. */
  file: string;
  claim: Claim | null;
  /** The caller's signal, and the claim's lease: a lost lease stops the run. */
  signal: AbortSignal | undefined;
  log: Logger;
  usage: Usage;
  task: Task | null;
  engineName: Engine['name'];
  shell: ShellMode;
  /** The outputs of an earlier run of this id were moved into the archive. */
  archived: boolean;
  releaseTaskId: (() => Promise<void>) | null;
  /** The run's worktree, removed once the run is filed. */
  removeWorktree?: () => Promise<void>;
}

/** Claims the task file if it is in inbox/. Throws when another worker has it: this run did not happen (no report, no move). */
async function claimRun(taskPath: string, options: RunTaskOptions): Promise<TaskRun> {
  const { settings } = options;
  const { layout } = settings;
  const runId = options.runId ?? newRunId();
  const startedAt = new Date();
  const startedMono = performance.now();
  const redact = makeRedactor(settings.env, settings.llm.apiKey ? [settings.llm.apiKey] : []);
  const inputFile = path.resolve(taskPath);
  const fileName = path.basename(inputFile);
  const log = (options.log ?? silentLogger()).child({ run_id: runId, task_file: fileName });
  const claim = isDirectlyIn(layout.inbox, inputFile)
    ? await claimTask(layout, inputFile, runId, settings.config.queue.lease_stale_s * 1000, options.expectSha256)
    : null;
  // A lost lease (another worker took the task over while this process was frozen) stops the run.
  const signal = claim ? (options.signal ? AbortSignal.any([options.signal, claim.lease.lost]) : claim.lease.lost) : options.signal;
  return {
    options,
    settings,
    runId,
    startedAt,
    startedMono,
    redact,
    fileName,
    file: claim?.file ?? inputFile,
    claim,
    signal,
    log,
    usage: emptyUsage(),
    task: null,
    engineName: options.engine?.name ?? settings.config.engine,
    shell: 'off',
    archived: false,
    releaseTaskId: null,
  };
}

/** Reads the task, holds its id, and runs it in a worktree. A throw is a run that failed (its outcome says why). */
async function runClaimed(run: TaskRun): Promise<Outcome> {
  const { settings, options, claim } = run;
  // The claimed name: a name past the safe length was shortened by the claim (folders.ts).
  const task = parseTask(claim?.content ?? (await readTaskFile(run.file, run.fileName)), claim?.name ?? run.fileName);
  run.task = task;
  run.log = run.log.child({ task_id: task.id });
  const project = projectFor(settings, task.project, run.fileName);
  const engine = options.engine ?? engineFor(task.engine ?? settings.config.engine);
  run.engineName = engine.name;
  const llmConfigured = Boolean(settings.llm.apiKey || settings.llm.baseURL) || Boolean(options.engine);
  if (engine.name === 'openai' && !llmConfigured && !WORKS_WITHOUT_LLM.has(task.type)) {
    throw new MetaAgentError('config', llmMissingMessage(settings.llm), { file: 'meta-agent.yaml', field: 'llm' });
  }
  // Another run of the same id (a second file with that id:) finishes first: one report and trajectory per run.
  run.releaseTaskId = await holdTaskId(
    settings.layout,
    task.id,
    settings.config.queue.lease_stale_s * 1000,
    run.signal,
    (settings.config.limits.task_timeout_s + 120) * 1000,
  );
  await archiveEarlierAttempt(run, task.id);
  run.log.info({ project: project.name, type: task.type, engine: engine.name }, `run started: ${task.id}`);
  const useEngine = engine.name !== 'openai' || llmConfigured;
  // Decided once per run (config + sandbox), so the tool list never changes between steps.
  if (engine.name === 'openai' && useEngine) run.shell = await decideShell(settings);
  return runInWorktree({
    task,
    project,
    engine,
    useEngine,
    settings: withTaskLimits(settings, task),
    runId: run.runId,
    redact: run.redact,
    log: run.log,
    usage: run.usage,
    signal: run.signal,
    mayFile: claim ? () => claim.lease.verify() : undefined,
    removeAfterFiling: (remove) => {
      run.removeWorktree = remove;
    },
    shell: run.shell,
    hurry: options.hurry,
    stopChecksGraceS: options.stopChecksGraceS,
    onStep: options.onStep,
  });
}

/** A task may lower (never raise) the token limit: the supervisor's budget reaches the run this way. */
function withTaskLimits(settings: Settings, task: Task): Settings {
  if (!task.max_tokens || task.max_tokens >= settings.config.limits.max_tokens) return settings;
  return { ...settings, config: { ...settings.config, limits: { ...settings.config.limits, max_tokens: task.max_tokens } } };
}

/** The earlier run's outputs go into the archive; what an unfinished attempt spent counts in this run. */
async function archiveEarlierAttempt(run: TaskRun, taskId: string): Promise<void> {
  const earlier = await archiveEarlierRun(run.settings.layout, taskId);
  run.archived = true;
  // Attempts that died or were interrupted spent tokens too (here, or on a BullMQ worker): they count against this task's limit.
  for (const unfinished of [earlier.unfinishedUsage, run.options.carriedUsage]) {
    if (!unfinished) continue;
    carryUsage(run.usage, unfinished);
    run.log.info(
      { carried_tokens: unfinished.prompt_tokens + unfinished.completion_tokens },
      'an unfinished earlier attempt spent tokens; counted in this run',
    );
  }
}

/** The report, then the task file's move; the result says where both are. */
async function fileRun(run: TaskRun, outcome: Outcome): Promise<RunTaskResult> {
  const { layout } = run.settings;
  const { claim } = run;
  const taskId = run.task?.id ?? fallbackId(claim?.name ?? run.fileName);
  // A run that failed before archiving still must not overwrite an earlier report of this id.
  if (!run.archived) await archiveEarlierRun(layout, taskId);
  const reportMd = displayPath(layout, reportPaths(layout, taskId).md);
  // Redacted once: the report and the failed task's note carry the same (redacted) error.
  const redacted = redactReportText(outcome, run.redact);
  // An interrupted run that saved an incomplete patch goes to failed/, not back to inbox/:
  // running it again on its own would file a second patch; a person decides (review, retry).
  const disposition = dispositionOf(run.fileName, taskId, { ...redacted, report_md: reportMd });
  // The report is written before the task file moves (a crash in between finalizes on recovery, never re-runs).
  const destination = { ok: layout.done, error: layout.failed, interrupted: layout.inbox }[disposition.status];
  const predictedTaskFile = claim ? path.join(destination, claim.name) : run.file;
  if (claim && !(await claim.lease.verify())) {
    // Another worker owns the task now: its run reports; this one files nothing.
    run.log.warn('the lease was lost while the run went on (this process was frozen or too slow); nothing is filed');
    await releaseTaskId(run);
    throw claim.lease.lost.reason;
  }
  const report = completeReport(run, redacted, { taskId, taskFile: displayPath(layout, predictedTaskFile), reportMd });
  const { written, taskFile } = await recordRun(run, report, disposition, predictedTaskFile);
  run.log.info(
    { status: report.status, outcome: report.outcome, risk: report.risk_level, tokens: report.usage.prompt_tokens + report.usage.completion_tokens },
    `run finished: ${report.outcome}`,
  );
  return {
    task_id: taskId,
    run_id: run.runId,
    status: report.status,
    outcome: report.outcome,
    report_path: written.json,
    report_md_path: written.md,
    patch_path: report.patch_files.length ? path.join(layout.root, report.patch_files[0]!) : null,
    task_file: taskFile,
    report,
  };
}

/** The outcome (redacted) with what the run itself knows: ids, times, paths, usage. */
function completeReport(run: TaskRun, outcome: Outcome, where: { taskId: string; taskFile: string; reportMd: string }): Report {
  const { config } = run.settings;
  return {
    ...outcome,
    task_id: where.taskId,
    run_id: run.runId,
    usage: run.usage,
    started_at: run.startedAt.toISOString(),
    finished_at: new Date().toISOString(),
    duration_ms: Math.max(0, Math.round(performance.now() - run.startedMono)),
    task_file: where.taskFile,
    report_md: where.reportMd,
    checks_unsandboxed: config.sandbox === 'none',
    shell: run.shell,
    // Read after the outcome's text was redacted, so those replacements count too.
    secrets_redacted: run.redact.hits,
    approval: null,
  };
}

/** Writes the report, then settles the claim (the ledger, the task file's move); the task id is let go either way. */
async function recordRun(
  run: TaskRun,
  report: Report,
  disposition: Disposition,
  predictedTaskFile: string,
): Promise<{ written: { json: string; md: string }; taskFile: string }> {
  const { layout } = run.settings;
  const { claim } = run;
  try {
    const written = await writeReport(layout, report);
    faultPoint('after-report');
    if (!claim) return { written, taskFile: predictedTaskFile };
    await markReported(layout, claim, disposition);
    faultPoint('after-ledger');
    const taskFile = await settleClaim(layout, claim, disposition);
    if (taskFile !== predictedTaskFile) {
      report.task_file = displayPath(layout, taskFile);
      await replaceFile(written.json, `${JSON.stringify(report, null, 2)}\n`);
    }
    return { written, taskFile };
  } catch (error) {
    // The disk is full or gone: the run cannot be recorded. Let go of the claim; crash
    // recovery returns the task to inbox/ once, and fails it if this happens again.
    run.log.error({ err: toErrorInfo(error) }, 'the run could not be recorded; the claim is released for recovery');
    await claim?.lease
      .release()
      .catch((releaseError: unknown) =>
        run.log.warn({ err: toErrorInfo(releaseError) }, 'could not release the claim; recovery takes it over once it is stale'),
      );
    throw error;
  } finally {
    await releaseTaskId(run);
  }
}

async function releaseTaskId(run: TaskRun): Promise<void> {
  await run.releaseTaskId?.().catch((error: unknown) => run.log.warn({ err: toErrorInfo(error) }, 'could not let go of the task id; its lock goes stale'));
}

/** The part of a run that needs the worktree; the worktree is removed after the run is filed. */
async function runInWorktree(rc: RunContext): Promise<Outcome> {
  const { project, settings, log } = rc;
  await ensureRepo(project);
  const worktree = await openPooledWorktree(settings, project, rc.runId, log);
  // Armed only now: the finally below is what disarms it (a timer left armed by a failed
  // ensureRepo/openWorktree kept a stopped service alive for task_timeout_s).
  const abort = linkedAbort(rc.signal, settings.config.limits.task_timeout_s);
  log.debug({ worktree: worktree.dir, base: worktree.baseCommit }, 'worktree ready');
  try {
    const stages = new WorktreeStages(rc, worktree, abort);
    let result: EngineResult;
    try {
      result = await stages.runAgent();
    } catch (error) {
      return await stages.endedEarly(error);
    }
    return await stages.propose(result);
  } finally {
    abort.dispose();
    rc.removeAfterFiling(async () => {
      await worktree.remove();
      log.debug('worktree removed');
    });
  }
}

/** The stages of a run in its worktree (agent, then proposal), and what they learn on the way. */
class WorktreeStages {
  /** What the task type's pipeline produced; the later stages add notes. */
  private extras = noExtras();
  /** The engine's output tail, kept here so a run that ends by a throw reports it too. */
  private outputTail: string | null = null;
  private trajectoryUsed = false;
  private readonly trajectory: TrajectoryWriter;
  private readonly baselines: () => Promise<Baselines>;
  private readonly verifier: Verifier;

  constructor(
    private readonly rc: RunContext,
    private readonly worktree: Worktree,
    private readonly abort: LinkedAbort,
  ) {
    const { settings, project, log, redact } = rc;
    this.trajectory = new TrajectoryWriter(reportPaths(settings.layout, rc.task.id).trajectory, redact);
    this.baselines = baselineOnce({ settings, project, runId: rc.runId, baseCommit: worktree.baseCommit, redact, log }, abort.signal);
    this.verifier = new Verifier({
      worktree: worktree.dir,
      baseCommit: worktree.baseCommit,
      configured: { tests: Boolean(project.test), dry_run: Boolean(project.dry_run) },
      runChecks: (which) => runChecks(rc, worktree, abort.signal, which),
      baselines: this.baselines,
    });
  }

  /** The task type's pipeline, then the engine (or, without an LLM, the pipeline's numbers alone). */
  async runAgent(): Promise<EngineResult> {
    const { rc, worktree } = this;
    const { task, project, settings } = rc;
    // Fail before the model is paid: no usable sandbox, or a check whose program does not exist.
    const retrainSteps = task.type === 'retrain_model' && project.retrain ? [project.retrain.collect, project.retrain.train, project.retrain.eval] : [];
    const checks = [project.test, project.dry_run, ...retrainSteps];
    if (checks.some(Boolean) && (await preflightChecks(settings, project, worktree.dir, checks)) === 'none') {
      rc.log.warn((await sandboxStatus(settings)).warning ?? 'checks run unsandboxed');
    }
    this.extras = await runTypePipeline(task, project, settings, { worktree: worktree.dir }, rc.redact, this.abort.signal);
    if (rc.useEngine) return this.runEngine();
    const { extras } = this;
    extras.notes.push(`LLM commentary skipped: ${llmMissingMessage(settings.llm)}`);
    return {
      finished: true,
      summary: extras.summary ?? '',
      risks: [...extras.flags],
      risk_level: extras.flags.length || extras.retrain?.comparison?.beats_baseline === false ? 'medium' : 'low',
      next_actions: extras.flags.length ? ['Look into the flagged numbers.'] : [],
      steps: 0,
      model: null,
      output_tail: null,
    };
  }

  private async runEngine(): Promise<EngineResult> {
    const { rc, worktree, abort, extras } = this;
    const { task, project, settings, redact } = rc;
    const denied = denyMatcher([...project.deny, ...settings.config.patch.protected]);
    const inScope = scopeMatcher(task.scope, project.scope);
    const promptTask = extras.facts ? { ...task, body: [task.body, extras.facts].filter(Boolean).join('\n\n') } : task;
    await this.verifier.start();
    const result = await rc.engine.run({
      task,
      project,
      settings,
      worktree: worktree.dir,
      baseCommit: worktree.baseCommit,
      runId: rc.runId,
      inScope,
      denied,
      runChecks: () => runChecks(rc, worktree, abort.signal),
      runSyntaxCheck: (check) =>
        withCheckCopy({ worktree: worktree.dir }, settings, project, (copy) => runCheck(check, copy, settings, project, redact, abort.signal)),
      verifier: this.verifier,
      redact,
      log: rc.log,
      signal: abort.signal,
      deadline: abort.deadline,
      usage: rc.usage,
      shell: rc.shell,
      record: async (entry) => {
        this.trajectoryUsed = true;
        await this.trajectory.record(entry);
        rc.onStep?.(rc.usage);
      },
      // The worktree is a clean checkout of the base commit here, unless a retrain pipeline wrote into it.
      prompt: {
        system: systemPrompt(),
        user: await userPrompt({
          task: promptTask,
          worktree: worktree.dir,
          scopeGlobs: task.scope,
          denied,
          inScope,
          redact,
          ...(task.type === 'retrain_model' ? {} : { files: await filesAtCommit(project.repoPath, worktree.baseCommit) }),
        }),
      },
      promptTask,
      note: (text) => extras.notes.push(text),
      outputTail: (text) => {
        this.outputTail = text;
      },
    });
    return extras.summary ? { ...result, summary: `${extras.summary}\n\n${result.summary}` } : result;
  }

  /** A limit, a timeout, a failing model or Ctrl-C ended the agent: what it changed so far is kept (incomplete.ts). */
  async endedEarly(error: unknown): Promise<Outcome> {
    const { extras, abort } = this;
    if (error instanceof RetrainFailed) extras.retrain = { steps: error.steps, comparison: null, artifacts: [] };
    const info = toErrorInfo(abort.signal.aborted && !(error instanceof MetaAgentError) ? abort.signal.reason : error);
    const kept = await keepIncompleteWork(this.rc, this.worktree, info, null, extras, abort.signal);
    return worktreeOutcome(this.facts(), {
      extras,
      outputTail: this.outputTail,
      ...kept,
      summary: `The run ended early: ${kept.error.message}${kept.incomplete ? '. Its work so far is saved as an incomplete patch.' : ''}`,
    });
  }

  /** The agent finished: its change is refused, or checked against the base commit and filed as a patch. */
  async propose(result: EngineResult): Promise<Outcome> {
    const { rc, worktree, extras, abort } = this;
    const { layout } = rc.settings;
    const diff = await collectDiff(worktree);
    if (diff.files.length === 0) return worktreeOutcome(this.facts(), { result, extras });
    const refusal = await refusedChange(rc, worktree, diff);
    if (refusal)
      return worktreeOutcome(this.facts(), {
        result,
        extras,
        changed: diff.files,
        violations: refusal.violations,
        error: new MetaAgentError('scope', refusal.message).toInfo(),
      });

    // The checks `finish` ran on this very state are not run again.
    const checks = (await this.verifier.current()) ?? (await runChecks(rc, worktree, abort.signal));
    const baseline = abort.signal.aborted ? { tests: null, dry_run: null } : await this.baselines();
    markBaselines(checks, baseline);
    if (abort.signal.aborted) {
      // Stopped while the finished change was being checked: kept like any stopped run's work.
      const kept = await keepIncompleteWork(rc, worktree, toErrorInfo(abort.signal.reason), result, extras, abort.signal);
      return worktreeOutcome(this.facts(), { result, extras, ...kept, summary: `The run ended early: ${kept.error.message}\n\n${result.summary}` });
    }
    if (rc.mayFile && !(await rc.mayFile())) throw rc.signal?.reason ?? new MetaAgentError('interrupted', 'the lease was lost; nothing is filed');
    const regressions = regressionsOf(checks, baseline);
    const risk = withRegressions(assessRisk(result.risk_level, diff.files, rc.project), regressions);
    const patchFiles = await writePatch(rc, diff, worktree, risk.level, result.summary, extras, regressions);
    noteFiledBeside(extras, await pendingPatchesOf(layout, rc.task.id), patchFiles[0]!, layout);
    return worktreeOutcome(this.facts(), {
      result,
      extras,
      changed: diff.files,
      checks,
      risk,
      regressions,
      patchFiles: patchFiles.map((f) => displayPath(layout, f)),
    });
  }

  private facts(): WorktreeFacts {
    const { rc, worktree } = this;
    return {
      task: rc.task,
      project: rc.project,
      engineName: rc.engine.name,
      trajectory: this.trajectoryUsed ? displayPath(rc.settings.layout, this.trajectory.file) : null,
      base_commit: worktree.baseCommit,
      branch: worktree.branch,
      requests: rc.usage.requests,
    };
  }
}

async function readTaskFile(file: string, name: string): Promise<Buffer> {
  try {
    return await fs.readFile(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new MetaAgentError('input', code === 'ENOENT' ? 'file not found' : `cannot read the file (${code})`, { file: name });
  }
}

function engineFor(name: Engine['name']): Engine {
  if (name === 'command') return new CommandEngine();
  // Loaded on first use: the OpenAI client is ~15 MB a service running another engine does not carry.
  return { name: 'openai', run: async (ctx) => new (await import('../engines/openai.ts')).OpenAIEngine().run(ctx) };
}

function fallbackId(fileName: string): string {
  const id = defaultIdFor(fileName);
  return TaskIdSchema.safeParse(id).success
    ? id
    : id
        .replace(/[^A-Za-z0-9._-]/g, '_')
        .replace(/^[.]+/, '_')
        .replace(/\.\./g, '_') || 'invalid-task';
}

function carryUsage(into: Usage, from: Usage): void {
  into.requests += from.requests;
  into.prompt_tokens += from.prompt_tokens;
  into.cached_tokens += from.cached_tokens;
  into.completion_tokens += from.completion_tokens;
  if (from.cost_usd !== null) into.cost_usd = (into.cost_usd ?? 0) + from.cost_usd;
}

function emptyUsage(): Usage {
  return { requests: 0, prompt_tokens: 0, cached_tokens: 0, completion_tokens: 0, cost_usd: null };
}

type LinkedAbort = ReturnType<typeof linkedAbort>;

/** One signal for the whole run: the caller's (Ctrl-C) or the task timeout, with a MetaAgentError reason. */
function linkedAbort(outer: AbortSignal | undefined, timeoutS: number) {
  const controller = new AbortController();
  // Monotonic: a wall clock set back (or forward) does not move the run's end.
  const deadline = performance.now() + timeoutS * 1000;
  const timer = setTimeout(
    () => controller.abort(new MetaAgentError('timeout', `the task ran longer than limits.task_timeout_s (${timeoutS} s) and was stopped`)),
    timeoutS * 1000,
  );
  // The run's own work keeps the process alive; this timer alone never should.
  timer.unref();
  const onOuter = () =>
    controller.abort(new MetaAgentError('interrupted', 'the run was interrupted (Ctrl-C or service shutdown); the task was returned to inbox/'));
  if (outer?.aborted) onOuter();
  outer?.addEventListener('abort', onOuter, { once: true });
  return {
    signal: controller.signal,
    deadline,
    dispose: () => {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onOuter);
    },
  };
}

function errorExplanation(fileName: string, taskId: string, error: ErrorInfo | null, reportMd: string, incompletePatch: string | null): string {
  const info = error ?? { kind: 'internal' as const, message: 'unknown error' };
  return [
    `# ${fileName} failed`,
    '',
    `**What went wrong** (${info.kind}): ${info.message}`,
    '',
    ...(incompletePatch
      ? [
          `**Work saved:** what the agent changed before it stopped is in \`${incompletePatch}\`, marked incomplete. Review it: approve it if it stands on its own, or reject it and retry the task (\`meta-agent retry ${taskId}\`).`,
          '',
        ]
      : []),
    `**How to fix it:** ${info.kind === 'interrupted' && incompletePatch ? 'Decide on the incomplete patch first; the task was not put back in inbox/, so that it does not run again on its own.' : hintFor(info)}`,
    '',
    `Task id: \`${taskId}\`. Full report: \`${reportMd}\`.`,
    '',
  ].join('\n');
}
