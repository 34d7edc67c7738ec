/** What an engine gets and gives back. Engines know the worktree, never the queue. */
import type { Logger } from 'pino';
import type { CheckResult, Finding, RiskLevel, ShellMode, Usage } from '../contract/report.ts';
import type { EngineName, Task } from '../contract/task.ts';
import type { Check, Project, Settings } from '../workspace/config.ts';
import type { Redactor } from '../safety/redact.ts';
import type { PathMatcher } from '../safety/globs.ts';
import type { Verifier } from './verify.ts';

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
  /** Runs one command the way checks run (copy, scrubbed env, sandbox): `projects.<p>.syntax_check`. */
  runSyntaxCheck?: (check: Check) => Promise<CheckResult>;
  /** The checks with memory: baseline vs now for `run_checks`, and the verification before `finish` (verify.ts). */
  verifier?: Verifier;
  redact: Redactor;
  log: Logger;
  /** Aborted on timeout or Ctrl-C; `signal.reason` is a MetaAgentError. */
  signal: AbortSignal;
  /** When the run's time is up, on the monotonic clock (performance.now(); limits.task_timeout_s after the start): the agent is warned before it. */
  deadline?: number;
  /** Owned by the run, so usage survives an engine that ends by throwing. */
  usage: Usage;
  /** Appends one record to reports/<id>.trajectory.jsonl (redacted by the writer). */
  record: (entry: Record<string, unknown>) => Promise<void>;
  /** Whether the agent gets `run_command`, and how it runs (decided once per run; absent: off). */
  shell?: ShellMode;
  /** The prompt the engine sends (system + task), built by the run. */
  prompt: { system: string; user: string };
  /** The task as the prompt shows it (the type pipeline's facts in its body): an engine that builds its own prompt. */
  promptTask?: Task;
  /** Adds a note to the report (notes), on every path. */
  note?: (text: string) => void;
  /** The engine's output tail for the report (engine_output_tail), also when the engine then throws. */
  outputTail?: (tail: string) => void;
}

export interface EngineResult {
  /** True when the agent said it was done (the `finish` tool, or the command exited 0). */
  finished: boolean;
  summary: string;
  risks: string[];
  risk_level: RiskLevel;
  next_actions: string[];
  /** Structured findings given to `finish`, locations checked (none from the command engine). */
  findings?: Finding[];
  steps: number;
  model: string | null;
  output_tail: string | null;
}

export interface Engine {
  readonly name: EngineName;
  /** Terminating problems (budget, timeout, auth) are thrown as MetaAgentError. */
  run(ctx: EngineContext): Promise<EngineResult>;
}
