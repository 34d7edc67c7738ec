/** `meta-agent.yaml`: the one configuration file of a workspace. */
import { z } from 'zod';
import { CycleModeSchema } from './cycle.ts';
import { EngineNameSchema, TASK_TYPES } from './task.ts';
import { RiskLevelSchema, SHELL_MODES } from './report.ts';

/** The agent CLIs the command engine knows (src/engines/presets/). */
export const PRESET_NAMES = ['codex', 'aider', 'claude'] as const;

const globList = z.array(z.string().min(1));

/** `test` / `dry_run`: a command string, or the long form. Never run through a shell. */
export const CheckConfigSchema = z.union([
  z.string().min(1),
  z.strictObject({
    command: z.string().min(1).describe('Program and arguments, split like a shell would (no shell is used)'),
    cwd: z.string().default('.').describe('Relative to the repo root'),
    env: z.record(z.string(), z.string()).default({}).describe('Extra variables (not secrets: they are written to logs)'),
    timeout_s: z.number().positive().optional(),
  }),
]);

export const RiskRuleSchema = z.strictObject({
  paths: globList.min(1).describe('Globs of repo-relative files'),
  level: RiskLevelSchema,
  reason: z.string().optional(),
});

export const TradesConfigSchema = z.strictObject({
  path: z.string().min(1).describe('CSV of closed trades, relative to the repo root'),
  time_column: z.string().default('closed_at'),
  pnl_column: z.string().default('pnl'),
  starting_equity: z.number().positive().default(10_000),
});

export const RiskThresholdsSchema = z.strictObject({
  max_drawdown_pct: z.number().nonnegative().optional().describe('Flag when the max drawdown exceeds this percentage'),
  min_win_rate: z.number().min(0).max(1).optional(),
  min_profit_factor: z.number().nonnegative().optional(),
  worst_day_pnl: z.number().optional().describe('Flag when the worst day lost more than this (a negative number)'),
  min_net_pnl: z.number().optional(),
});

export const RetrainConfigSchema = z.strictObject({
  collect: CheckConfigSchema.optional(),
  train: CheckConfigSchema,
  eval: CheckConfigSchema,
  metrics: z.string().min(1).describe('JSON file the eval step writes (relative to the repo root)'),
  baseline: z.string().min(1).describe('JSON metrics of the last approved model (relative to the repo root; the patch updates it)'),
  metric: z.string().min(1).describe('The key compared, e.g. "sharpe"'),
  higher_is_better: z.boolean().default(true),
  margin: z.number().nonnegative().default(0).describe('How much better than the baseline the candidate must be'),
  artifacts: z.array(z.string().min(1)).default([]).describe('Files the train step writes (often git-ignored, e.g. models/model.pkl): kept next to the patch'),
});

export const ProjectConfigSchema = z.strictObject({
  repo: z.string().min(1).describe('Path of the target git repository (relative to the workspace root)'),
  remote: z
    .string()
    .min(1)
    .optional()
    .describe('With execution.engine bullmq: the git URL (or path) workers fetch the branch from; default: repo, when the workers can reach that path'),
  init_from: z.string().optional().describe('If repo does not exist yet: copy this folder there and git init it (the demo)'),
  branch: z.string().optional().describe("Branch the worktree starts from and the gate commits to; default: the repo's current branch"),
  scope: globList.default(['**']).describe('Outer bound: a task may only change files matching both its scope and this'),
  deny: globList
    .default([])
    .describe('Added to the default deny list (.env*, *secret*, *credential*, *.pem, *.key, ...); "!path" takes a file out of the default list'),
  test: CheckConfigSchema.nullable().default(null),
  dry_run: CheckConfigSchema.nullable().default(null),
  link: globList.default([]).describe('Git-ignored paths of the repo (.venv, data/) made available read-only inside worktrees'),
  risk: z.array(RiskRuleSchema).default([]),
  env_allow: z
    .array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/))
    .default([])
    .describe('Variables passed to test/dry_run besides PATH, HOME, LANG'),
  trades: TradesConfigSchema.optional().describe('For risk_review: the trades CSV'),
  risk_thresholds: RiskThresholdsSchema.default(RiskThresholdsSchema.parse({})),
  retrain: RetrainConfigSchema.optional().describe('For retrain_model: the collect -> train -> eval chain'),
  logs: z.array(z.string().min(1)).default([]).describe('Log files of the bot (relative to the repo root) whose new lines the supervisor reads'),
  syntax_check: z
    .record(z.string().min(1), z.array(z.string().min(1)).min(1))
    .default({})
    .describe(
      'Glob -> command (program and arguments, "{file}" = the edited file) run after each agent edit of a matching file, like a check (sandboxed, no shell); e.g. {"*.ts": ["npx", "tsc", "--noEmit"]}',
    ),
});

/** Request parameters some servers and models refuse; a 400 naming one also drops it for the run. */
export const LlmCompatSchema = z.strictObject({
  parallel_tool_calls: z
    .boolean()
    .optional()
    .describe('Value sent as parallel_tool_calls; default: false to api.openai.com, not sent to other servers (base_url)'),
  max_tokens_param: z
    .enum(['max_tokens', 'max_completion_tokens'])
    .optional()
    .describe('Name of the reply cap; default: max_completion_tokens for api.openai.com, max_tokens for other servers (Ollama ignores max_completion_tokens)'),
  stream: z
    .boolean()
    .optional()
    .describe(
      'Stream replies (stream: true, with stream_options.include_usage) and put them back together; a slow local model then meets llm.request_timeout_s only as a silence between chunks. Default: false (whole replies)',
    ),
});

export const LlmConfigSchema = z.strictObject({
  model: z.string().min(1).default('gpt-4.1-mini'),
  base_url: z.string().url().optional().describe('OpenAI-compatible endpoint: Ollama, vLLM, LM Studio'),
  api_key_env: z.string().default('OPENAI_API_KEY'),
  max_retries: z
    .number()
    .int()
    .min(0)
    .max(1000)
    .optional()
    .describe('Most retries of one request (429, 5xx, no connection); default: as many as llm.retry_budget_s allows'),
  retry_budget_s: z
    .number()
    .nonnegative()
    .default(300)
    .describe('How long one request is retried (429, 5xx, no connection) with backoff before the run fails; 0: never retried'),
  request_timeout_s: z.number().positive().default(300),
  temperature: z.number().min(0).max(2).optional(),
  context_window: z
    .number()
    .int()
    .min(2048)
    .default(128_000)
    .describe(
      "The model's context window in tokens (gpt-4.1: over 1M, local models often 8k-32k: set it to the server's num_ctx / max_model_len). Old tool results are elided to keep each request well under it",
    ),
  tool_mode: z
    .enum(['native', 'text'])
    .default('native')
    .describe("native: the API's tool calls; text: one fenced action block per reply (for models and servers without tool calling)"),
  compat: LlmCompatSchema.default(LlmCompatSchema.parse({})),
  prices: z
    .strictObject({
      prompt_per_mtok: z.number().nonnegative(),
      cached_per_mtok: z.number().nonnegative().optional(),
      completion_per_mtok: z.number().nonnegative(),
    })
    .optional()
    .describe('USD per million tokens; enables usage.cost_usd'),
});

export const CommandEngineConfigSchema = z
  .strictObject({
    preset: z
      .enum(PRESET_NAMES)
      .optional()
      .describe('A known agent CLI started with the right flags, llm: as its model and provider, and a private HOME (see docs/engines.md)'),
    program: z.string().min(1).optional().describe("The preset's executable, when it is not on PATH under its usual name (codex, aider, claude)"),
    run: z
      .union([z.string().min(1), z.array(z.string()).min(1)])
      .optional()
      .describe(
        "Any other agent: the program and its arguments (no shell); the prompt is on stdin; {prompt_file}, {worktree} and {last_message_file} (where the agent may leave its last message, e.g. Codex's --output-last-message) are replaced",
      ),
    timeout_s: z.number().positive().default(1800).describe('Longest run of the agent; then it is stopped with every process it started'),
    idle_timeout_s: z
      .number()
      .positive()
      .default(300)
      .describe('No output and no file change in the worktree for this long: the agent is stopped with every process it started (outcome limit_reached)'),
    sandbox: z
      .enum(['auto', 'bwrap', 'none'])
      .default('auto')
      .describe(
        'auto and bwrap: the agent runs under bubblewrap (the worktree writable, the system read-only, a private $HOME and /tmp, the network on) and the engine refuses to run without it; none: unsandboxed, it can read every file this user can (every report says so)',
      ),
    env_allow: z
      .array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/))
      .default([])
      .describe("Variables of the service's environment the agent sees besides PATH, the locale and TZ"),
    api_key_env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
      .optional()
      .describe("The variable holding the agent's API key (default: the preset's, else llm.api_key_env); the only secret it gets"),
    home_files: z
      .array(z.string().min(1))
      .default([])
      .describe(
        'Files or folders of your home (relative, e.g. ".codex/config.toml") copied into the agent\'s private $HOME; nothing else of your home is visible',
      ),
    reads_agents_md: z
      .boolean()
      .optional()
      .describe("The agent reads the repository's AGENTS.md itself, so the prompt leaves it out (default: false; a preset knows)"),
  })
  .refine((c) => (c.preset === undefined) !== (c.run === undefined), { message: 'give exactly one of "preset" and "run"' })
  .refine((c) => c.program === undefined || c.preset !== undefined, {
    message: '"program" goes with "preset" ("run" names its program itself)',
    path: ['program'],
  });
export type CommandEngineConfig = z.infer<typeof CommandEngineConfigSchema>;

export const LimitsSchema = z.strictObject({
  max_steps: z.number().int().positive().default(40),
  // 40 steps on a 10k-line repo (~100k tokens, more than the elision keeps): each step adds
  // ~2.5k tokens of tool output; with a 128k window the prompt grows to ~62k, is elided to
  // ~31k, twice in 40 steps: ~1.56M prompt tokens, of which ~165k uncached (new output and
  // the re-sends after each elision) and ~1.4M cached at 0.25 (~350k), plus ~8k of replies:
  // ~520k. 800k leaves room for larger reads.
  max_tokens: z
    .number()
    .int()
    .positive()
    .default(800_000)
    .describe('Ceiling of a run: uncached prompt + completion tokens, cached prompt tokens weighted by their price (llm.prices, else 0.25)'),
  max_cost_usd: z.number().positive().optional().describe('Ceiling of a run in USD; needs llm.prices'),
  task_timeout_s: z.number().positive().default(1800),
  check_timeout_s: z.number().positive().default(600),
  check_processes: z.number().int().min(16).default(512).describe('Under bubblewrap: most processes (and threads) a check may run at once (RLIMIT_NPROC)'),
  check_memory_mb: z.number().int().min(64).default(8192).describe('Under bubblewrap: address space of each process of a check, in MiB (RLIMIT_AS)'),
  concurrency: z.number().int().positive().default(2),
  tool_output_chars: z.number().int().min(1000).default(16_000),
  command_timeout_s: z.number().positive().default(600).describe("Longest timeout the agent's run_command may ask for (its default is 60 s)"),
});

export const ToolsSchema = z.strictObject({
  shell: z
    .enum(SHELL_MODES)
    .default('sandboxed')
    .describe(
      "The agent's run_command tool. sandboxed: offered only where the checks' sandbox (bubblewrap) runs; unsandboxed: offered everywhere and run without a sandbox (the command can do what this user can); off: never offered",
    ),
});

export const QueueSchema = z.strictObject({
  lease_stale_s: z.number().positive().default(30).describe('A claim whose lease is not refreshed for this long belongs to a dead worker'),
  settle_ms: z
    .number()
    .int()
    .nonnegative()
    .default(100)
    .describe(
      'A file copied in (not renamed in) must stay unchanged this long, and parse to a complete task, before it is taken; network or polled folders wait at least 1500 ms',
    ),
  incomplete_grace_s: z
    .number()
    .nonnegative()
    .default(600)
    .describe(
      'A file copied in (not renamed in) that is not yet a complete task (front matter open, a required field missing) is waited for this long after its last change before it is taken and failed',
    ),
  scan_interval_ms: z.number().int().positive().default(2000).describe('Period of the reconcile scan of the folders'),
  poll: z
    .union([z.boolean(), z.literal('auto')])
    .default('auto')
    .describe('Poll instead of OS events: auto = on network folders'),
  shutdown_grace_s: z.number().nonnegative().default(20).describe('On SIGINT/SIGTERM, how long running tasks may finish before they are returned to inbox/'),
  busy_retry_s: z
    .number()
    .nonnegative()
    .default(30)
    .describe(
      'How long a move of a file that another program holds open (an antivirus, OneDrive, an editor; EBUSY, and on Windows EPERM/EACCES) is retried before it fails',
    ),
});

export const GateSchema = z.strictObject({
  redo_on_conflict: z.boolean().default(true).describe('A patch that conflicts with a newer HEAD drops a follow-up task into inbox/'),
  max_retests: z.number().int().min(0).default(3).describe('Re-tests on a newer HEAD when the branch moves while the tests run'),
});

const PlannedTaskSchema = z.strictObject({
  type: z.enum(TASK_TYPES),
  objective: z.string().min(1),
  scope: z.array(z.string()).default([]),
  tasks: z.array(z.string()).default([]),
});

export const TradingWindowSchema = z.strictObject({
  days: z.array(z.enum(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'])).default(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']),
  start: z
    .string()
    .regex(/^\d{2}:\d{2}$/)
    .describe('HH:MM local time'),
  end: z
    .string()
    .regex(/^\d{2}:\d{2}$/)
    .describe('HH:MM local time; before start = over midnight'),
});

export const ScheduleJobSchema = z.strictObject({
  cron: z.string().min(1).describe('node-cron expression (5 or 6 fields), in the schedule timezone'),
  goal: z.string().min(1),
  mode: CycleModeSchema.default('daily'),
  project: z.string().optional(),
});

export const SupervisorSchema = z.strictObject({
  routines: z
    .record(z.string(), z.array(PlannedTaskSchema).min(1).max(3))
    .default({})
    .describe('Goals that map to fixed task lists without an LLM (daily_maintenance, weekly_retrain, ...)'),
  budget_tokens: z.number().int().positive().default(300_000).describe('Token budget of one cycle (planner + tasks)'),
  budget_usd: z.number().positive().optional(),
  wait_timeout_s: z.number().positive().default(7200).describe("How long a cycle waits for its tasks' reports"),
  max_log_lines: z.number().int().positive().default(200),
  timezone: z.string().default('Europe/Kyiv'),
  schedule: z.array(ScheduleJobSchema).default([]),
  trading_windows: z.array(TradingWindowSchema).default([]).describe('No cycle starts inside one; a running cycle stops creating tasks'),
  catch_up_s: z
    .number()
    .nonnegative()
    .default(6 * 3600)
    .describe('A run missed while the machine slept runs at start if it is at most this old'),
  tick_s: z.number().positive().default(15).describe('How often the scheduler looks at the clock'),
});

export const RetentionSchema = z.strictObject({
  logs_days: z.number().positive().default(30).describe('Log files older than this leave logs/'),
  reports_days: z.number().positive().default(90).describe('Reports of tasks finished longer ago leave reports/ (not while their patch is pending)'),
  action: z.enum(['archive', 'delete']).default('archive').describe('archive: gzip into logs/archive/ and reports/archive/expired/; delete only if you say so'),
});

export const PatchLimitsSchema = z.strictObject({
  max_bytes: z.number().int().positive().default(1_000_000),
  max_files: z.number().int().positive().default(50),
  protected: globList.default([]).describe('Files no patch may touch, in any project'),
  executable: globList
    .default([])
    .describe(
      'Files a patch may make executable (mode 100755), anchored at the repo root like a scope, e.g. ["scripts/*.sh"]; default: none. Symlinks and submodules are never changed by a patch',
    ),
});

export const UiSchema = z.strictObject({
  port: z.number().int().min(0).max(65535).default(0).describe('Dashboard port (0: a free one); meta-agent ui --port wins'),
  host: z.string().min(1).default('127.0.0.1').describe('Address to listen on; anything but loopback exposes the dashboard to the network'),
});

const QUEUE_NAME = /^[A-Za-z0-9._-]+$/;

/** Where tasks run: in the watch process (local), or on BullMQ workers on any number of machines (docs/scale-out.md). */
export const ExecutionSchema = z.strictObject({
  engine: z
    .enum(['local', 'bullmq'])
    .default('local')
    .describe('local: watch runs tasks itself (no set-up); bullmq: watch files results, `meta-agent worker` processes run tasks (needs Redis)'),
  redis_url_env: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
    .default('REDIS_URL')
    .describe('The variable holding the Redis URL (redis://:password@host:6379/0, rediss://..., or unix:///path/redis.sock?password=...)'),
  queue: z.string().regex(QUEUE_NAME).default('meta-agent').describe('The queue tasks go to unless a route names another'),
  routes: z
    .partialRecord(z.enum(TASK_TYPES), z.string().regex(QUEUE_NAME))
    .default({})
    .describe('Task type -> queue, e.g. {retrain_model: gpu}: workers started with --queue gpu take those'),
  lock_s: z.number().positive().default(30).describe('A worker that has not renewed its job lock for this long is dead: its job runs again'),
  max_stalled: z.number().int().min(0).default(1).describe('How often a job may lose its worker and run again; once more and the task goes to failed/'),
  keep_results_days: z.number().positive().default(7).describe('How long Redis keeps finished jobs, so a folder host that crashed files them without a re-run'),
  max_in_flight: z
    .number()
    .int()
    .positive()
    .default(64)
    .describe('Most tasks claimed from inbox/ and queued at once (limits.concurrency is per worker with bullmq)'),
  artifact_store: z
    .string()
    .min(1)
    .refine((v) => !/^[A-Za-z][A-Za-z0-9+.-]+:/.test(v) || /^file:/i.test(v), 'a folder or a file: URL (http(s) and other URL stores are not built)')
    .optional()
    .describe(
      'With bullmq: a folder (absolute, or relative to the workspace root) or file: URL shared by the folder host and the workers (an SMB/NFS share; it must exist); retrain artifacts over inline_artifact_bytes travel through it, content-addressed, instead of inside the job result',
    ),
  inline_artifact_bytes: z
    .number()
    .int()
    .nonnegative()
    .default(1024 * 1024)
    .describe('With artifact_store: artifacts bigger than this go to the store; smaller ones travel inside the job result'),
});

export const ConfigSchema = z.strictObject({
  llm: LlmConfigSchema.default(LlmConfigSchema.parse({})),
  engine: EngineNameSchema.default('openai'),
  command: CommandEngineConfigSchema.optional(),
  sandbox: z
    .enum(['auto', 'bwrap', 'none'])
    .default('auto')
    .describe('auto and bwrap: checks run under bubblewrap, and refuse to run without it; none: unsandboxed (see the README, "What `sandbox: none` means")'),
  projects: z.record(z.string().regex(/^[A-Za-z0-9._-]+$/), ProjectConfigSchema).refine((p) => Object.keys(p).length > 0, 'at least one project is required'),
  limits: LimitsSchema.default(LimitsSchema.parse({})),
  tools: ToolsSchema.default(ToolsSchema.parse({})),
  patch: PatchLimitsSchema.default(PatchLimitsSchema.parse({})),
  queue: QueueSchema.default(QueueSchema.parse({})),
  gate: GateSchema.default(GateSchema.parse({})),
  supervisor: SupervisorSchema.default(SupervisorSchema.parse({})),
  retention: RetentionSchema.default(RetentionSchema.parse({})),
  ui: UiSchema.default(UiSchema.parse({})),
  execution: ExecutionSchema.default(ExecutionSchema.parse({})),
});

export type Config = z.infer<typeof ConfigSchema>;
export type ExecutionConfig = z.infer<typeof ExecutionSchema>;
export type ProjectConfig = z.infer<typeof ProjectConfigSchema>;
export type CheckConfig = z.infer<typeof CheckConfigSchema>;
export type TradesConfig = z.infer<typeof TradesConfigSchema>;
export type PlannedTask = z.infer<typeof PlannedTaskSchema>;
export { PlannedTaskSchema };
