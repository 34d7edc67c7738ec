/**
 * The private files meta-agent keeps for itself (under `.meta-agent/`, and the folders'
 * dotfiles), read back through readJson.ts. Lenient where a file written by an older
 * version may lack a field: users upgrade with their files in place.
 */
import { z } from 'zod';
import { CycleModeSchema, CycleReportSchema, PlanSchema } from './cycle.ts';
import { RetrainComparisonSchema, UsageSchema } from './report.ts';

/** `.meta-agent/ledger/<key>.json`: one task instance (name + content hash) and its runs. */
export const LedgerRunSchema = z.object({
  run_id: z.string(),
  started_at: z.string(),
  host: z.string(),
  pid: z.number().int(),
  reported: z
    .object({ status: z.enum(['ok', 'error', 'interrupted']), at: z.string(), explanation: z.string().optional() })
    .optional()
    .describe('Set once the report is written: where the task file goes next'),
  finalized_at: z.string().optional(),
  recovered: z
    .enum(['returned_to_inbox', 'failed_interrupted_twice', 'finalized_from_ledger'])
    .optional()
    .describe("Set when a crashed run's task was recovered"),
  spent: UsageSchema.optional().describe(
    "BullMQ: what the run's attempts spent so far, as its worker last recorded it in the job; a job Redis lost is added again with it, so the re-run counts it",
  ),
});
export type LedgerRun = z.infer<typeof LedgerRunSchema>;

export const LedgerEntrySchema = z.object({
  key: z.string(),
  name: z.string(),
  sha256: z.string(),
  runs: z.array(LedgerRunSchema).default([]),
});
export type LedgerEntry = z.infer<typeof LedgerEntrySchema>;

/** `processing/.<name>.owner.json` (and beside every activity lock): who holds a claim or lock. */
export const OwnerNoteSchema = z.object({
  host: z.string(),
  pid: z.number().int(),
  pid_started: z.string().nullable().optional().describe("The pid's start time (Linux: /proc/<pid>/stat field 22); null elsewhere. Guards against pid reuse"),
  pgid: z.number().int().nullable().optional().describe("The owner's process group (Linux; null elsewhere): killed at recovery"),
  run_id: z.string(),
  since: z.string().optional(),
});
export type OwnerNote = z.infer<typeof OwnerNoteSchema>;

/** `.meta-agent/supervisor/<project>.json`: where the last cycle left off. */
export const SupervisorStateSchema = z.object({
  last_cycle_id: z.string().nullable().default(null),
  last_head: z.string().nullable().default(null),
  log_offsets: z.record(z.string(), z.number()).default({}).describe('Bytes of each log file already read'),
});
export type SupervisorState = z.infer<typeof SupervisorStateSchema>;

/** `.meta-agent/supervisor/schedule.json`: the last local run key (YYYY-MM-DDTHH:MM) per schedule job. */
export const ScheduleStateSchema = z.object({
  last: z.record(z.string(), z.string()).default({}),
});
export type ScheduleState = z.infer<typeof ScheduleStateSchema>;

/** A patch waiting in patches/pending/, as the supervisor's context lists it. */
export const PendingPatchSchema = z.object({
  id: z.string(),
  file: z.string(),
  age_s: z.number(),
  risk_level: z.string().nullable(),
  files: z.array(z.string()),
  summary: z.string(),
  project: z.string().nullable(),
  incomplete: z.boolean().default(false).describe('The run stopped before the agent finished; this is its work so far'),
  regressions: z.array(z.string()).default([]).describe('Checks (or single tests) that passed on the base commit and fail with this patch'),
});

/** What the supervisor knows before it plans (supervisor/context.ts). */
export const CycleContextSchema = z.object({
  commits: z.array(z.string()),
  logLines: z.array(z.string()),
  pnl: z.string().nullable(),
  openNextActions: z.array(z.string()),
  pending: z.array(PendingPatchSchema),
  rejectedReasons: z.array(z.string()),
  head: z.string().nullable(),
  logOffsets: z.record(z.string(), z.number()),
});
export type CycleContext = z.infer<typeof CycleContextSchema>;

/** `.meta-agent/supervisor/running/<cycle-id>.json`: a cycle in progress (supervisor/journal.ts). */
export const CycleJournalSchema = z.object({
  cycle_id: z.string(),
  goal: z.string(),
  mode: CycleModeSchema,
  project: z.string(),
  started_at: z.string(),
  owner: z.object({ host: z.string(), pid: z.number().int() }).describe('The process running the cycle (the one that resumes it takes it over)'),
  planned: z
    .object({
      plan: PlanSchema,
      planner: CycleReportSchema.shape.planner,
      context: CycleContextSchema,
      task_ids: z.array(z.string()).describe('One per planned task, in order: the id its task file gets when created'),
    })
    .nullable()
    .describe('Null until planned; then what the rest of the cycle needs, decided once'),
});
export type CycleJournal = z.infer<typeof CycleJournalSchema>;

/** `.meta-agent/pool-worktrees/<project>/slot-<i>.json`: what a pooled worktree was made with. */
export const PoolSlotStateSchema = z.object({
  fingerprint: z.string(),
  git_file: z.string().describe('The content of `<slot>/.git` when it was made: a changed one is never trusted'),
  // Entries that are not strings are dropped, not fatal: the slot is re-checked every run.
  links: z.array(z.unknown()).transform((links) => links.filter((l): l is string => typeof l === 'string')),
});
export type PoolSlotState = z.infer<typeof PoolSlotStateSchema>;

/** `.meta-agent/cache/baseline/<key>.json`: a check's result on a base commit (repo/checks.ts BaselineCache). */
export const BaselineCacheEntrySchema = z.object({
  project: z.string().optional(),
  commit: z.string().optional(),
  command: z.string().optional(),
  passed: z.boolean(),
  // Absent in entries written before failed tests were kept; a damaged list is "not known".
  failed_tests: z.array(z.string()).nullable().catch(null).optional(),
});
export type BaselineCacheEntry = z.infer<typeof BaselineCacheEntrySchema>;

/** The file `META_AGENT_CLOCK_FILE` names: a test harness's time (workspace/clock.ts). */
export const ClockFileSchema = z.object({ now: z.string().optional() });

/** The fields of `reports/<id>.json` that crash recovery reads: lenient, since the report may be from any version. */
export const ReportOutcomeSchema = z.object({
  run_id: z.string().optional(),
  status: z.string().optional(),
  error: z.object({ kind: z.string().optional(), message: z.string().optional() }).nullable().optional(),
  report_md: z.string().optional(),
});

/** The one field of `reports/cycles/<id>.json` that retention reads. */
export const CycleFinishedAtSchema = CycleReportSchema.pick({ finished_at: true }).partial();

/** The one field of `reports/cycles/<id>.json` the next cycle carries over. */
export const CycleNextActionsSchema = CycleReportSchema.pick({ next_actions: true });

/** A metrics file a retrain chain's eval step wrote (the bot's own code: hostile input), a JSON object. */
export const EvalMetricsSchema = RetrainComparisonSchema.shape.candidate_metrics;
