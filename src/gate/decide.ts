/**
 * Approve and reject by id: the same file moves a person makes in Explorer, so the CLI,
 * the dashboard and Explorer all go through the one gate.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { MetaAgentError } from '../contract/errors.ts';
import { TaskIdSchema } from '../contract/task.ts';
import type { Settings } from '../workspace/config.ts';
import { exists, publishUnique } from '../workspace/files.ts';
import { moveUnique } from '../queue/folders.ts';
import { recordHumanRejection } from './gate.ts';

function pendingPatch(settings: Settings, id: string): { patch: string; sidecar: string; artifacts: string } {
  if (!TaskIdSchema.safeParse(id).success) throw new MetaAgentError('input', `"${id}" is not a task id`, { field: 'id' });
  const dir = settings.layout.patches.pending;
  return { patch: path.join(dir, `${id}.patch`), sidecar: path.join(dir, `${id}.patch.json`), artifacts: path.join(dir, `${id}.artifacts`) };
}

async function requirePending(settings: Settings, id: string) {
  const files = pendingPatch(settings, id);
  if (!(await exists(files.patch))) throw new MetaAgentError('input', `no pending patch "${id}" (patches/pending/${id}.patch)`, { field: 'id' });
  return files;
}

/** Moves the sidecar first, then the patch: the gate finds the sidecar when the patch arrives. */
export async function approvePatch(settings: Settings, id: string): Promise<string> {
  const { patch, sidecar, artifacts } = await requirePending(settings, id);
  const dir = settings.layout.patches.approved;
  if (await exists(sidecar)) await moveUnique(sidecar, dir);
  if (await exists(artifacts)) await moveUnique(artifacts, dir);
  return moveUnique(patch, dir);
}

export async function rejectPatch(settings: Settings, id: string, reason: string): Promise<string> {
  const { patch, sidecar, artifacts } = await requirePending(settings, id);
  if (!reason.trim()) throw new MetaAgentError('input', 'a rejection needs a reason (it is kept so the same idea is not proposed again)', { field: 'reason' });
  const dir = settings.layout.patches.rejected;
  await publishUnique(dir, id, '.reason.md', `# ${id}.patch rejected by a person\n\n${reason.trim()}\n`);
  if (await exists(sidecar)) await moveUnique(sidecar, dir);
  if (await exists(artifacts)) await moveUnique(artifacts, dir);
  const moved = await moveUnique(patch, dir);
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
      const sidecar = JSON.parse((await fs.readFile(`${file}.json`, 'utf8').catch(() => 'null')) ?? 'null') as Record<string, unknown> | null;
      return {
        id: name.replace(/\.patch$/, ''),
        file,
        age_s: Math.round((now - stat.mtimeMs) / 1000),
        risk_level: (sidecar?.risk_level as string) ?? null,
        files: (sidecar?.files as string[]) ?? [],
        summary: (sidecar?.summary as string) ?? '',
        project: (sidecar?.project as string) ?? null,
        incomplete: sidecar?.incomplete === true,
        regressions: Array.isArray(sidecar?.regressions)
          ? (sidecar.regressions as Array<{ check?: unknown; test?: unknown }>).map((g) => (typeof g.test === 'string' ? g.test : g.check === 'dry_run' ? 'the dry run' : 'the tests'))
          : [],
      };
    }),
  );
}
