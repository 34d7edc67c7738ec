/** The patch proposal: `patches/pending/<id>.patch` and its sidecar `<id>.patch.json`. */
import { z } from 'zod';
import { RegressionSchema, RetrainComparisonSchema, RiskLevelSchema } from './report.ts';

export const PatchSidecarSchema = z.object({
  task_id: z.string(),
  run_id: z.string(),
  regressions: z
    .array(RegressionSchema)
    .default([])
    .describe('Checks or tests that passed on base_commit and fail with this patch (the agent finished anyway)'),
  project: z.string(),
  branch: z.string(),
  base_commit: z.string(),
  files: z.array(z.string()).describe('Repo-relative paths the patch touches'),
  scope: z.array(z.string()).describe('The task scope the patch was made under (the gate re-checks it)'),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().nonnegative(),
  risk_level: RiskLevelSchema,
  summary: z.string(),
  created_at: z.string(),
  artifacts: z
    .array(z.object({ path: z.string(), sha256: z.string(), bytes: z.number().int() }))
    .default([])
    .describe('Files kept next to the patch in <id>.artifacts/ (e.g. a model); the gate installs them into the repo'),
  retrain: RetrainComparisonSchema.nullable().default(null).describe('retrain_model: the gate applies the patch only if the candidate beats the baseline'),
  checks_unsandboxed: z.boolean().default(false).describe('true with `sandbox: none`: the checks of this patch ran without a sandbox'),
  incomplete: z
    .boolean()
    .default(false)
    .describe('true: the run was stopped before the agent called finish; this is its work so far (the gate tests it like any patch)'),
  stopped_because: z.string().nullable().default(null).describe("With incomplete: why the run stopped (the report's error)"),
});
export type PatchSidecar = z.infer<typeof PatchSidecarSchema>;
