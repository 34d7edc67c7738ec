/**
 * What the stages of one run share once its task is read: the task, its project, the engine,
 * the run's settings, redactor, log, usage and signals. Also the project's checks on the run's
 * worktree, which several stages run.
 */
import type { Logger } from 'pino';
import type { CheckName, ShellMode, Usage } from '../contract/report.ts';
import type { Task } from '../contract/task.ts';
import type { ChecksOutcome, Engine } from '../engines/types.ts';
import type { Redactor } from '../safety/redact.ts';
import type { Check, Project, Settings } from '../workspace/config.ts';
import { loggedCheck, runCheck, withCheckCopy } from '../repo/checks.ts';
import type { Worktree } from '../repo/workspaceRepo.ts';

export interface RunContext {
  task: Task;
  project: Project;
  engine: Engine;
  /** False for risk_review / retrain_model without an LLM: the numbers are produced, the commentary skipped. */
  useEngine: boolean;
  settings: Settings;
  runId: string;
  redact: Redactor;
  log: Logger;
  usage: Usage;
  signal: AbortSignal | undefined;
  shell: ShellMode;
  hurry: AbortSignal | undefined;
  stopChecksGraceS: number | undefined;
  /** After each trajectory record: the usage so far (RunTaskOptions.onStep). */
  onStep?: ((usage: Usage) => void) | undefined;
  /** Hands over the worktree's removal, done once the run is filed (its report first). */
  removeAfterFiling: (remove: () => Promise<void>) => void;
  /** Checked just before a patch is filed: false when the task's lease was lost. */
  mayFile?: (() => Promise<boolean>) | undefined;
}

/** The project's test and dry run (or only `which`) on the worktree's current state. */
export async function runChecks(rc: RunContext, worktree: Worktree, signal: AbortSignal, which: CheckName | null = null): Promise<ChecksOutcome> {
  if (!rc.project.test && !rc.project.dry_run) return { tests: null, dry_run: null };
  const wanted = (name: CheckName) => which === null || which === name;
  // One throwaway copy for both (the dry run sees what the tests left, as in a checkout).
  const { tests, dry_run } = await withCheckCopy({ worktree: worktree.dir }, rc.settings, rc.project, async (copy) => {
    const run = (check: Check | null) =>
      check ? loggedCheck(rc.log, check, () => runCheck(check, copy, rc.settings, rc.project, rc.redact, signal)) : Promise.resolve(null);
    return { tests: await run(wanted('tests') ? rc.project.test : null), dry_run: await run(wanted('dry_run') ? rc.project.dry_run : null) };
  });
  rc.log.info({ tests: tests?.passed ?? null, dry_run: dry_run?.passed ?? null }, 'checks ran');
  return { tests, dry_run };
}
