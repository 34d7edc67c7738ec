/**
 * A patch travels with its companions: `<id>.patch.json` (the sidecar) and `<id>.artifacts/`
 * (files the gate installs, such as a trained model). This module is the one place that moves
 * them together, so they never get separated between patches/pending, approved, applied and
 * rejected.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import { toErrorInfo } from '../contract/errors.ts';
import type { Settings } from '../workspace/config.ts';
import { exists } from '../workspace/files.ts';
import { moveUnique } from '../queue/folders.ts';

export interface ProposalFiles {
  patch: string;
  sidecar: string;
  artifacts: string;
}

/** `<dir>/<id>.patch` and its companions (which may not exist). */
export function proposalFiles(dir: string, id: string): ProposalFiles {
  return { patch: path.join(dir, `${id}.patch`), sidecar: path.join(dir, `${id}.patch.json`), artifacts: path.join(dir, `${id}.artifacts`) };
}

/** `<id>.artifacts/` beside the patch in approved/, or still in pending/ (approved by a move of the patch alone). */
export async function findArtifactDir(settings: Settings, id: string): Promise<string | null> {
  for (const dir of [settings.layout.patches.approved, settings.layout.patches.pending]) {
    const candidate = proposalFiles(dir, id).artifacts;
    if (await exists(candidate)) return candidate;
  }
  return null;
}

/**
 * A person's move (approve or reject by id): the companions first, then the patch, so the gate
 * finds the sidecar when the patch arrives. Returns where the patch went.
 */
export async function moveProposal(from: ProposalFiles, toDir: string): Promise<string> {
  if (await exists(from.sidecar)) await moveUnique(from.sidecar, toDir);
  if (await exists(from.artifacts)) await moveUnique(from.artifacts, toDir);
  return moveUnique(from.patch, toDir);
}

/**
 * The gate's filing: the patch (taken under a private name) into `toDir` as `name` (or the next
 * free name), then its sidecar and the artifacts of task file `id`, named after where the patch
 * went. Returns where the patch went. A companion that cannot follow is logged: the patch's
 * move is the decision, and the next gate run's tidy-up moves what was left (leftovers.ts).
 */
export async function fileWithCompanions(
  settings: Settings,
  patch: { taken: string; name: string; id: string; sidecarFile: string | null },
  toDir: string,
  log: Logger,
): Promise<string> {
  const movedTo = await moveUnique(patch.taken, toDir, patch.name);
  const filedName = path.basename(movedTo);
  const follow = async (what: string, move: () => Promise<unknown>) => {
    await move().catch((error: unknown) => log.warn({ err: toErrorInfo(error), filed: filedName }, `the ${what} did not follow the filed patch`));
  };
  if (patch.sidecarFile && (await exists(patch.sidecarFile))) {
    const sidecar = patch.sidecarFile;
    await follow('sidecar', () => moveUnique(sidecar, toDir, `${filedName}.json`));
  }
  const artifacts = await findArtifactDir(settings, patch.id);
  if (artifacts) await follow('artifacts', () => moveUnique(artifacts, toDir, `${stemOf(filedName)}.artifacts`));
  return movedTo;
}

/**
 * Moves `<id>.patch.json` and `<id>.artifacts` left in approved/ or pending/ (without their
 * patch) next to `filed`, the patch a killed gate run filed. True if anything moved.
 */
export async function followFiledPatch(settings: Settings, id: string, filed: string): Promise<boolean> {
  let moved = false;
  for (const dir of [settings.layout.patches.approved, settings.layout.patches.pending]) {
    const left = proposalFiles(dir, id);
    // A patch of that id is there again (approved or proposed since): these are its own.
    if (await exists(left.patch)) continue;
    if ((await exists(left.sidecar)) && !(await exists(`${filed}.json`))) {
      await moveUnique(left.sidecar, path.dirname(filed), `${path.basename(filed)}.json`);
      moved = true;
    }
    if (await exists(left.artifacts)) {
      await moveUnique(left.artifacts, path.dirname(filed), `${stemOf(path.basename(filed))}.artifacts`);
      moved = true;
    }
  }
  return moved;
}

function stemOf(patchName: string): string {
  return patchName.replace(/\.patch$/i, '');
}
