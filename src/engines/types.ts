/** What an engine gets and gives back. Engines know the worktree, never the queue. */
import type { Logger } from 'pino';
import type { CheckResult, RiskLevel, Usage } from '../contract/report.ts';
import type { Task } from '../contract/task.ts';
import type { Project, Settings } from '../workspace/config.ts';
import type { Redactor } from '../safety/redact.ts';
import type { PathMatcher } from '../safety/globs.ts';

export interface ChecksOutcome {
  tests: CheckResult | null;
  dry_run: CheckResult | null;
}

export interface EngineContext {
  task: Task;
  project: Project;
  settings: Settings;
  worktree: string;
  baseCommit: string;
  runId: string;
  /** Writable files: the task scope bounded by the project scope. */
  inScope: PathMatcher;
  /** Never read, listed or sent: the deny list. */
  denied: PathMatcher;
  /** Runs the project's checks in the worktree (the `run_checks` tool). */
  runChecks: () => Promise<ChecksOutcome>;
  redact: Redactor;
  log: Logger;
  /** Aborted on timeout or Ctrl-C; `signal.reason` is a MetaAgentError. */
  signal: AbortSignal;
  /** When the run's time is up (epoch ms; limits.task_timeout_s after the start): the agent is warned before it. */
  deadline?: number;
  /** Owned by the run, so usage survives an engine that ends by throwing. */
  usage: Usage;
  /** Appends one record to reports/<id>.trajectory.jsonl (redacted by the writer). */
  record: (entry: Record<string, unknown>) => Promise<void>;
  /** The prompt the engine sends (system + task), built by the run. */
  prompt: { system: string; user: string };
}

export interface EngineResult {
  /** True when the agent said it was done (the `finish` tool, or the command exited 0). */
  finished: boolean;
  summary: string;
  risks: string[];
  risk_level: RiskLevel;
  next_actions: string[];
  steps: number;
  model: string | null;
  output_tail: string | null;
}

export interface Engine {
  readonly name: 'openai' | 'command';
  /** Terminating problems (budget, timeout, auth) are thrown as MetaAgentError. */
  run(ctx: EngineContext): Promise<EngineResult>;
}
