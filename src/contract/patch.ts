/** The patch proposal: `patches/pending/<id>.patch` and its sidecar `<id>.patch.json`. */
import { z } from 'zod';
import { RiskLevelSchema } from './report.ts';

export const PatchSidecarSchema = z.object({
  task_id: z.string(),
  run_id: z.string(),
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
});
export type PatchSidecar = z.infer<typeof PatchSidecarSchema>;
