/** What the dashboard shows of one patch, in whichever folder it is, and the target its approval is bound to. */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { PatchSidecarSchema } from '../contract/patch.ts';
import { AppliedResultSchema } from '../contract/uiFiles.ts';
import { HttpError } from './http.ts';
import type { UiContext } from './routeTable.ts';
import { readTolerantly, reportOfPatch } from './state.ts';

/** An action token for a pending patch names its bytes' hash: an approval is bound to the patch the person was shown. */
const boundTo = (id: string, bytes: Buffer) => `${id}:${createHash('sha256').update(bytes).digest('hex')}`;

/** The target of approving or rejecting `id`; 409 when it is not pending (any more). */
export async function pendingTarget(ctx: UiContext, id: string): Promise<string> {
  const bytes = await fs.readFile(path.join(ctx.settings.layout.patches.pending, `${id}.patch`)).catch(() => null);
  if (!bytes) throw new HttpError(409, `${id} is not pending (already approved or rejected)`);
  return boundTo(id, bytes);
}

/** The gate's record of an applied patch, or the person's reason for a rejected one. */
async function outcomeOf(ctx: UiContext, state: string, dir: string, id: string) {
  if (state === 'applied') return { result: await readTolerantly(path.join(dir, `${id}.result.json`), AppliedResultSchema, ctx.log), reason: null };
  if (state === 'rejected') return { result: null, reason: await fs.readFile(path.join(dir, `${id}.reason.md`), 'utf8').catch(() => null) };
  return { result: null, reason: null };
}

export async function patchView(ctx: UiContext, id: string) {
  const { settings, tokens } = ctx;
  for (const [state, dir] of Object.entries(settings.layout.patches)) {
    const file = path.join(dir, `${id}.patch`);
    const bytes = await fs.readFile(file).catch(() => null);
    if (bytes === null) continue;
    const sidecar = await readTolerantly(`${file}.json`, PatchSidecarSchema, ctx.log);
    const pending = state === 'pending';
    const target = pending ? boundTo(id, bytes) : null;
    return {
      id,
      state,
      diff: bytes.toString('utf8'),
      sidecar,
      ...(await outcomeOf(ctx, state, dir, id)),
      // `<id>.<run_id>.patch` belongs to task <id>: the report is found through the sidecar.
      report: await reportOfPatch(settings, file, ctx.log),
      // Only while pending: has the branch moved since the base, and does the patch still apply?
      base: pending && sidecar ? await ctx.applyStatus(sidecar, file) : null,
      actions: target ? { approve: tokens.issue('approve', target), reject: tokens.issue('reject', target) } : null,
    };
  }
  throw new HttpError(404, `no patch ${id}`);
}
