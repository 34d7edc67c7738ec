/**
 * A person's decision on a pending patch, by id: approve and reject are the same file moves a
 * person makes in Explorer, so the CLI, the dashboard and Explorer all go through the one gate
 * (gate.ts, which decides on approved patches by testing them). Also the list of pending patches.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { MetaAgentError } from '../contract/errors.ts';
import { TaskIdSchema } from '../contract/task.ts';
import type { Settings } from '../workspace/config.ts';
import { exists, publishUnique } from '../workspace/files.ts';
import { readJsonFileOrNull } from '../contract/readJson.ts';
import { PatchSidecarSchema } from '../contract/patch.ts';
import { recordHumanRejection } from './approvalRecord.ts';
import { moveProposal, proposalFiles, type ProposalFiles } from './patchFiles.ts';

function pendingPatch(settings: Settings, id: string): ProposalFiles {
  if (!TaskIdSchema.safeParse(id).success) throw new MetaAgentError('input', `"${id}" is not a task id`, { field: 'id' });
  return proposalFiles(settings.layout.patches.pending, id);
}

async function requirePending(settings: Settings, id: string): Promise<ProposalFiles> {
  const files = pendingPatch(settings, id);
  if (!(await exists(files.patch))) throw new MetaAgentError('input', `no pending patch "${id}" (patches/pending/${id}.patch)`, { field: 'id' });
  return files;
}

/** Moves the sidecar first, then the patch: the gate finds the sidecar when the patch arrives. */
export async function approvePatch(settings: Settings, id: string): Promise<string> {
  return moveProposal(await requirePending(settings, id), settings.layout.patches.approved);
}

export async function rejectPatch(settings: Settings, id: string, reason: string): Promise<string> {
  const files = await requirePending(settings, id);
  if (!reason.trim()) throw new MetaAgentError('input', 'a rejection needs a reason (it is kept so the same idea is not proposed again)', { field: 'reason' });
  const dir = settings.layout.patches.rejected;
  await publishUnique(dir, id, '.reason.md', `# ${id}.patch rejected by a person\n\n${reason.trim()}\n`);
  const moved = await moveProposal(files, dir);
  await recordHumanRejection(settings, moved, reason.trim());
  return moved;
}

export interface PendingPatch {
  id: string;
  file: string;
  age_s: number;
  risk_level: string | null;
  files: string[];
  summary: string;
  project: string | null;
  /** The run stopped before the agent finished; this is its work so far. */
  incomplete: boolean;
  /** Checks (or single tests) that passed on the base commit and fail with this patch. */
  regressions: string[];
}

export async function listPending(settings: Settings): Promise<PendingPatch[]> {
  const dir = settings.layout.patches.pending;
  const names = (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.patch') && !n.startsWith('.')).sort();
  const now = Date.now();
  return Promise.all(
    names.map(async (name) => {
      const file = path.join(dir, name);
      const stat = await fs.stat(file);
      // A sidecar meta-agent wrote; a damaged one is an error naming it (the gate would refuse its patch too).
      const sidecar = await readJsonFileOrNull(`${file}.json`, PatchSidecarSchema);
      return {
        id: name.replace(/\.patch$/, ''),
        file,
        age_s: Math.round((now - stat.mtimeMs) / 1000),
        risk_level: sidecar?.risk_level ?? null,
        files: sidecar?.files ?? [],
        summary: sidecar?.summary ?? '',
        project: sidecar?.project ?? null,
        incomplete: sidecar?.incomplete === true,
        regressions: (sidecar?.regressions ?? []).map((g) => (typeof g.test === 'string' ? g.test : g.check === 'dry_run' ? 'the dry run' : 'the tests')),
      };
    }),
  );
}
