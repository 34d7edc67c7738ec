/** Which files in patches/pending/ belong to a task: what a re-run files beside, and what keeps its report from retention. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Layout } from '../workspace/layout.ts';

const RUN_ID = /^\d{8}T\d{6}Z-[0-9a-f]{6}$/;

/** The patches of task `id` waiting for review: `<id>.patch`, and those filed beside it under a run id (`<id>.<run_id>.patch`). */
export async function pendingPatchesOf(layout: Layout, id: string): Promise<string[]> {
  const names = await fs.readdir(layout.patches.pending).catch(() => [] as string[]);
  return names
    .filter((n) => n === `${id}.patch` || (n.startsWith(`${id}.`) && n.endsWith('.patch') && RUN_ID.test(n.slice(id.length + 1, -'.patch'.length))))
    .sort()
    .map((n) => path.join(layout.patches.pending, n));
}
