/** The supervisor's plan (what the LLM must return) and its cycle report (reports/cycles/<id>.json). */
import { z } from 'zod';
import { ErrorInfoSchema, RiskLevelSchema, UsageSchema } from './report.ts';
import { TASK_TYPES } from './task.ts';

/** How far a supervisor cycle looks back and what it plans for: a night or a week. */
export const CycleModeSchema = z.enum(['daily', 'weekly']);
export type CycleMode = z.infer<typeof CycleModeSchema>;

/** Strict on purpose: it is sent as the response_format JSON Schema; every field required. */
export const PlanSchema = z.strictObject({
  tasks: z
    .array(
      z.strictObject({
        type: z.enum(TASK_TYPES),
        objective: z.string().min(1),
        scope: z.array(z.string()),
        tasks: z.array(z.string()),
      }),
    )
    .min(1)
    .max(3),
});
export type Plan = z.infer<typeof PlanSchema>;

export const CycleTaskSchema = z.object({
  task_id: z.string(),
  type: z.enum(TASK_TYPES),
  objective: z.string(),
  status: z.enum(['ok', 'error', 'timeout']),
  outcome: z.string().nullable(),
  risk_level: RiskLevelSchema.nullable(),
  tests: z.enum(['passed', 'failed', 'not run']),
  dry_run: z.enum(['passed', 'failed', 'not run']),
  duration_ms: z.number().int().nonnegative(),
  tokens: z.number().int().nonnegative(),
  cost_usd: z.number().nullable(),
  summary: z.string(),
  report: z.string().nullable(),
  patch: z.string().nullable(),
  incomplete: z.boolean().default(false).describe('The run stopped early; `patch` is its work so far'),
});

export const CycleReportSchema = z.object({
  cycle_id: z.string(),
  goal: z.string(),
  mode: CycleModeSchema,
  project: z.string(),
  status: z.enum(['ok', 'partial', 'error']),
  summary: z.string(),
  started_at: z.string(),
  finished_at: z.string(),
  planner: z.object({ source: z.enum(['routine', 'llm']), model: z.string().nullable(), attempts: z.number().int(), usage: UsageSchema }),
  context: z.object({
    commits: z.number().int(),
    log_lines: z.number().int(),
    pending_patches: z.number().int(),
    rejected_reasons: z.number().int(),
    open_next_actions: z.number().int(),
    pnl: z.string().nullable(),
  }),
  tasks: z.array(CycleTaskSchema),
  candidates: z.array(
    z.object({
      task_id: z.string(),
      patch: z.string(),
      files: z.array(z.string()),
      risk_level: RiskLevelSchema,
      approve: z.string(),
      reject: z.string(),
      incomplete: z.boolean().default(false),
    }),
  ),
  next_actions: z.array(z.string()),
  budget: z.object({
    tokens: z.number().int(),
    usd: z.number().nullable(),
    spent_tokens: z.number().int(),
    spent_usd: z.number().nullable(),
    exhausted: z.boolean(),
  }),
  stopped: z.string().nullable().describe('Why the cycle created fewer tasks than planned (budget spent, trading window), if it did'),
  error: ErrorInfoSchema.nullable(),
});
export type CycleReport = z.infer<typeof CycleReportSchema>;
export type CycleTask = z.infer<typeof CycleTaskSchema>;
