/**
 * The files the approval gate writes for itself: the state a gate run keeps in
 * state/gate-snapshots/ until it has filed its decision, the record of an applied patch
 * (patches/applied/<stem>.result.json), and the note of a write into the person's repository
 * (state/gate-repo-op.json). The next gate run reads them to finish what a crash left.
 */
import { z } from 'zod';
import { ApprovalSchema, CheckResultSchema } from './report.ts';

/** `<sha256>.checks.json`: the checks a commit passed, saved before the branch moved (a crash after it still records them). */
export const GateChecksSchema = z.object({
  commit: z.string(),
  tests: CheckResultSchema.nullable(),
  dry_run: CheckResultSchema.nullable(),
});
export type GateChecks = z.infer<typeof GateChecksSchema>;

/** `<sha256>.redo.json`: the follow-up task dropped for a conflicting patch (null: being dropped), so it is dropped once. */
export const RedoMarkerSchema = z.object({
  task: z.string().nullable(),
});
export type RedoMarker = z.infer<typeof RedoMarkerSchema>;

/** `patches/applied/<stem>.result.json`: the gate's decision on an applied patch, written before the patch moves there. */
export const AppliedRecordSchema = ApprovalSchema.extend({
  task_id: z.string(),
});
export type AppliedRecord = z.infer<typeof AppliedRecordSchema>;

/** `state/gate-repo-op.json`: a gate run is writing into the person's repository (see gate/repoOps.ts). */
export const RepoOpNoteSchema = z.object({
  host: z.string(),
  pid: z.number().int(),
  repo: z.string(),
  branch: z.string(),
  started_ms: z.number(),
});
export type RepoOpNote = z.infer<typeof RepoOpNoteSchema>;
