/**
 * What the dashboard reads: a lenient view of the gate's record of an applied patch, the part of a trajectory line that shows a run's progress, and the JSON
 * bodies of the dashboard's requests (one schema per action).
 */
import { z } from 'zod';
import { AppliedRecordSchema } from './gateFiles.ts';

/**
 * `patches/applied/<stem>.result.json`, the gate's AppliedRecordSchema made lenient (every
 * field optional), since older gates wrote fewer fields and the dashboard shows only the
 * commit and the time.
 */
export const AppliedResultSchema = AppliedRecordSchema.partial().extend({
  commit: z.string().nullable().default(null),
  at: z.string().nullable().default(null),
});
export type AppliedResult = z.infer<typeof AppliedResultSchema>;

/** One line of `reports/<id>.trajectory.jsonl`, as far as the dashboard's progress needs it (the step and its tokens). */
export const TrajectoryProgressSchema = z.object({
  role: z.string().optional(),
  step: z.number().int().nonnegative().optional(),
  usage: z.object({ prompt_tokens: z.number().nonnegative().optional(), completion_tokens: z.number().nonnegative().optional() }).nullish(),
});
export type TrajectoryProgress = z.infer<typeof TrajectoryProgressSchema>;

/** POST approve and retry: nothing to say beyond the action token, so an empty object. */
export const EmptyBodySchema = z.object({});

/** POST /api/patches/<id>/reject. The reason is kept as typed (the rejection record redacts it). */
export const RejectBodySchema = z.object({
  reason: z.string({ error: 'a rejection needs a reason' }).refine((r) => r.trim() !== '', 'a rejection needs a reason'),
});
export type RejectBody = z.infer<typeof RejectBodySchema>;

/** A comma- or line-separated text, or a list: trimmed, empty entries dropped. */
const ListFieldSchema = z
  .union([z.array(z.string()), z.string()])
  .nullish()
  .transform((v) => (v === null || v === undefined ? undefined : (Array.isArray(v) ? v : v.split(/[\n,]/)).map((s) => s.trim()).filter(Boolean)));

/**
 * POST /api/tasks, the New task form. Fields are nullable because a form field the page does
 * not have comes as null; what is left out comes from the template (type, scope, sub-tasks).
 */
export const CreateTaskBodySchema = z.object({
  project: z.string().nullish(),
  type: z.string().nullish(),
  template: z.string().nullish(),
  objective: z.string().nullish(),
  scope: ListFieldSchema,
  tasks: ListFieldSchema,
  name: z.string().nullish(),
});
export type CreateTaskBody = z.infer<typeof CreateTaskBodySchema>;
