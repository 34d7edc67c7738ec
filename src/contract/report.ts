/** The run report: `reports/<id>.json` (machines) beside `reports/<id>_report.md` (people). */
import { z } from 'zod';
import { ErrorInfoSchema } from './errors.ts';
import { EngineNameSchema, TASK_SOURCES, TASK_TYPES } from './task.ts';

export const RISK_LEVELS = ['low', 'medium', 'high'] as const;
export const RiskLevelSchema = z.enum(RISK_LEVELS);
export type RiskLevel = z.infer<typeof RiskLevelSchema>;

/** How the agent's `run_command` tool ran in a run: in the checks' sandbox, without it (config says so), or not offered. */
export const SHELL_MODES = ['sandboxed', 'unsandboxed', 'off'] as const;
export type ShellMode = (typeof SHELL_MODES)[number];

export const OUTCOMES = ['completed', 'no_changes', 'limit_reached', 'scope_violation', 'failed'] as const;

export { ErrorInfoSchema } from './errors.ts';

export const CheckResultSchema = z.object({
  command: z.string().describe('The command as configured'),
  exit_code: z.number().int().nullable().describe('null when it was killed (timeout) or could not start'),
  passed: z.boolean(),
  duration_ms: z.number().int().nonnegative(),
  output_tail: z.string().describe('Last lines of stdout+stderr, secrets redacted'),
  baseline_passed: z.boolean().nullable().describe('The same command on base_commit (cached per commit); null if not run'),
  timed_out: z.boolean(),
  sandbox: z.enum(['bwrap', 'none']),
});
export type CheckResult = z.infer<typeof CheckResultSchema>;

export const CHECK_NAMES = ['tests', 'dry_run'] as const;
export type CheckName = (typeof CHECK_NAMES)[number];

export const RegressionSchema = z.object({
  check: z.enum(CHECK_NAMES),
  test: z
    .string()
    .nullable()
    .describe('The failing test as the runner names it (pytest: path::test); null when the output names no tests and the whole check is counted'),
});
export type Regression = z.infer<typeof RegressionSchema>;

export const FINDING_SEVERITIES = ['info', 'low', 'medium', 'high'] as const;
export const FindingSchema = z.object({
  file: z.string().describe('Repo-relative path, as the agent gave it'),
  line: z.number().int().nullable(),
  severity: z.enum(FINDING_SEVERITIES),
  title: z.string(),
  detail: z.string().nullable(),
  location_valid: z.boolean().describe('false when the file does not exist in the worktree, is denied, or the line is out of range'),
  location_problem: z.string().nullable().describe('Why location_valid is false'),
});
export type Finding = z.infer<typeof FindingSchema>;

export const UsageSchema = z.object({
  requests: z.number().int().nonnegative(),
  prompt_tokens: z.number().int().nonnegative(),
  cached_tokens: z.number().int().nonnegative(),
  completion_tokens: z.number().int().nonnegative(),
  cost_usd: z.number().nonnegative().nullable().describe('null unless llm.prices is configured'),
});
export type Usage = z.infer<typeof UsageSchema>;

export const TradeMetricsSchema = z.object({
  trades: z.number().int(),
  net_pnl: z.number(),
  win_rate: z.number().describe('Share of rows with pnl > 0, 0..1'),
  profit_factor: z.number().nullable().describe('Sum of positive pnl / |sum of negative pnl|; null without losses'),
  avg_win: z.number().nullable(),
  avg_loss: z.number().nullable(),
  max_drawdown: z.number().describe('Largest fall of equity (starting_equity + cumulative pnl) from its running peak, in currency'),
  max_drawdown_pct: z.number().describe('That fall as a percentage of the peak it fell from'),
  worst_day: z.object({ date: z.string(), pnl: z.number() }).nullable().describe('UTC calendar day with the lowest summed pnl'),
  first_trade_at: z.string().nullable(),
  last_trade_at: z.string().nullable(),
  equity_curve: z.array(z.object({ t: z.string(), equity: z.number() })),
});

export const RetrainComparisonSchema = z.object({
  metric: z.string(),
  candidate: z.number().nullable(),
  baseline: z.number().nullable(),
  margin: z.number(),
  higher_is_better: z.boolean(),
  beats_baseline: z.boolean(),
  candidate_metrics: z.record(z.string(), z.unknown()),
  baseline_metrics: z.record(z.string(), z.unknown()).nullable(),
});
export type RetrainComparison = z.infer<typeof RetrainComparisonSchema>;

export const ApprovalSchema = z.object({
  decision: z.enum(['applied', 'rejected']),
  by: z.enum(['gate', 'human']).describe('gate: decided by test-then-apply; human: a person rejected it'),
  at: z.string(),
  reason: z.string().nullable(),
  commit: z.string().nullable().describe('The commit on the branch when applied'),
  branch: z.string().nullable(),
  patch_sha256: z.string().nullable(),
  edited: z.boolean().describe('The approved patch differs from the proposed one'),
  conflicts: z.array(z.string()),
  follow_up_task: z.string().nullable().describe('inbox/ file asking the agent to redo the change on the new HEAD'),
  crlf_normalised: z
    .boolean()
    .default(false)
    .describe('The approved file had been re-saved with CRLF line endings (an editor); the gate applied it with the line endings git wrote'),
  tests: CheckResultSchema.nullable(),
  dry_run: CheckResultSchema.nullable(),
});
export type Approval = z.infer<typeof ApprovalSchema>;

export const ReportSchema = z.object({
  task_id: z.string(),
  run_id: z.string(),
  project: z.string(),
  type: z.enum(TASK_TYPES),
  source: z.enum(TASK_SOURCES),
  status: z.enum(['ok', 'error']),
  outcome: z.enum(OUTCOMES),
  regressions: z
    .array(RegressionSchema)
    .default([])
    .describe('Checks (or single tests) that passed on base_commit and fail with the change; non-empty raises risk_level to high'),
  summary: z.string(),
  objective: z.string(),
  patch_files: z.array(z.string()).describe('Workspace-relative paths of the patch and its sidecar; empty when there is no patch'),
  changed_files: z.array(z.string()).describe('Repo-relative files the change touches'),
  scope_violations: z.array(z.string()).describe('Changed files outside the scope or on the deny list'),
  findings: z
    .array(FindingSchema)
    .default([])
    .describe('Structured findings the agent gave to finish (audit_code, risk_review), each location checked against the worktree'),
  risks: z.array(z.string()),
  risk_level: RiskLevelSchema,
  risk_reasons: z.array(z.string()).describe('Why risk_level is what it is (agent claim and matching risk rules)'),
  tests: CheckResultSchema.nullable(),
  dry_run: CheckResultSchema.nullable(),
  next_actions: z.array(z.string()),
  usage: UsageSchema,
  steps: z.number().int().nonnegative(),
  model: z.string().nullable(),
  engine: EngineNameSchema,
  base_commit: z.string().nullable(),
  branch: z.string().nullable(),
  started_at: z.string(),
  finished_at: z.string(),
  duration_ms: z.number().int().nonnegative(),
  task_file: z.string().describe('Where the task file was when the run ended (workspace-relative when inside it)'),
  report_md: z.string(),
  trajectory: z.string().nullable(),
  engine_output_tail: z.string().nullable().describe('Output tail of the command engine'),
  error: ErrorInfoSchema.nullable(),
  metrics: TradeMetricsSchema.nullable().default(null).describe('risk_review: numbers computed in code from the trades CSV'),
  flags: z.array(z.string()).default([]).describe('risk_review: thresholds crossed'),
  retrain: z
    .object({ steps: z.array(CheckResultSchema), comparison: RetrainComparisonSchema.nullable(), artifacts: z.array(z.string()) })
    .nullable()
    .default(null)
    .describe('retrain_model: the collect -> train -> eval chain and the comparison with the baseline'),
  notes: z.array(z.string()).default([]).describe('What the run decided to skip and why (e.g. LLM commentary without an LLM)'),
  secrets_redacted: z
    .number()
    .int()
    .nonnegative()
    .default(0)
    .describe('How many secrets the run replaced by [REDACTED] in what went to the model, the report and the trajectory'),
  checks_unsandboxed: z.boolean().default(false).describe('true with `sandbox: none`: the checks ran without a sandbox (README, "What `sandbox: none` means")'),
  shell: z
    .enum(SHELL_MODES)
    .default('off')
    .describe("The agent's run_command tool: sandboxed (like the checks), unsandboxed (tools.shell: unsandboxed), or off (not offered)"),
  approval: ApprovalSchema.nullable().default(null).describe('Set by the approval gate, or when a person rejects the patch'),
  incomplete: z
    .boolean()
    .default(false)
    .describe(
      'true when the run was stopped (limit, timeout, model failure, Ctrl-C) after it changed files: the change so far is in patch_files, `error` says why it stopped, `notes` what ran on it',
    ),
});
export type Report = z.infer<typeof ReportSchema>;
