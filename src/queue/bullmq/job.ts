/**
 * What travels through Redis: the job a folder host adds, and the bundle a worker returns.
 * Zod checks both ends (a worker of another version, a tampered Redis).
 */
import { z } from 'zod';
import { ReportSchema, UsageSchema } from '../../contract/report.ts';

export const JobDataSchema = z.strictObject({
  /** The task file's name in processing/ terms (the default task id comes from it). */
  name: z
    .string()
    .min(1)
    .refine((n) => !/[\\/\0]/.test(n) && n !== '.' && n !== '..', 'a file name, not a path'),
  /** The task file's bytes, base64. */
  content: z.string(),
  /** The run id the folder host recorded in the ledger: the worker's report carries it. */
  run_id: z.string().min(1),
  /** Empty for a task file that does not parse: the worker's runTask then files its failure report. */
  project: z.string(),
  /** What attempts lost with a Redis that lost the job spent (the folder host saw it in the job's progress). */
  carried_usage: UsageSchema.optional(),
});
export type JobData = z.infer<typeof JobDataSchema>;

/** An artifact inside the result (base64), or a reference to its blob in the artifact store (artifactStore.ts). */
const ArtifactSchema = z.union([
  z.strictObject({ path: z.string().min(1), base64: z.string() }),
  // The hash is checked where it is used (it becomes a path): a bad one fails filing with the artifact named.
  z.strictObject({ path: z.string().min(1), sha256: z.string(), bytes: z.number().int().nonnegative() }),
]);
export type BundleArtifact = z.infer<typeof ArtifactSchema>;

export const BundleSchema = z.strictObject({
  report: ReportSchema,
  trajectory: z.string().nullable(),
  /** The patch, its sidecar (JSON text) and the sidecar's artifacts, when the run filed one. */
  patch: z
    .strictObject({
      /** base64: a patch is bytes (a file in another encoding). */
      patch: z.string(),
      sidecar: z.string(),
      artifacts: z.array(ArtifactSchema),
    })
    .nullable(),
  worker: z.strictObject({ host: z.string(), pid: z.number().int() }),
});
export type Bundle = z.infer<typeof BundleSchema>;

/** Most bytes of retrain artifacts a bundle carries inline; beyond that they need execution.artifact_store. */
export const MAX_BUNDLE_ARTIFACT_BYTES = 16 * 1024 * 1024;
