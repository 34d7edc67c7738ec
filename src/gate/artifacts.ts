/**
 * Candidate artifacts of a patch (a retrained model, often git-ignored): read from
 * `<id>.artifacts/` and checked against the sidecar, placed in the gate's worktree for the
 * tests, and installed into the person's repository once the patch is applied.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { PatchSidecar } from '../contract/patch.ts';
import type { Settings } from '../workspace/config.ts';
import { faulty, replaceFile, retryBusy } from '../workspace/files.ts';
import { inspectPatch, type PatchRules } from './inspect.ts';
import { findArtifactDir } from './patchFiles.ts';

export interface Artifact {
  /** Repo-relative. */
  path: string;
  data: Buffer;
}

/** Reads `<id>.artifacts/` (beside the patch in approved/, or still in pending/) and checks it against the sidecar. */
export async function loadArtifacts(settings: Settings, id: string, sidecar: PatchSidecar, rules: PatchRules): Promise<Artifact[]> {
  const out: Artifact[] = [];
  if (sidecar.artifacts.length === 0) return out;
  const dir = await findArtifactDir(settings, id);
  if (!dir) throw new Error(`${id}.artifacts/ is missing next to the patch`);
  for (const a of sidecar.artifacts) {
    const problems = inspectPatch(`diff --git a/${a.path} b/${a.path}\n`, rules).problems;
    if (problems.length) throw new Error(problems.join('; '));
    const data = await fs.readFile(path.join(dir, a.path));
    if (createHash('sha256').update(data).digest('hex') !== a.sha256) throw new Error(`${a.path} does not match its sha256 in the sidecar`);
    out.push({ path: a.path, data });
  }
  return out;
}

/** The candidate artifacts written into a worktree, so its checks run with them in place. */
export async function placeArtifacts(dir: string, artifacts: Artifact[]): Promise<void> {
  for (const a of artifacts) {
    await fs.mkdir(path.dirname(path.join(dir, a.path)), { recursive: true });
    await fs.writeFile(path.join(dir, a.path), a.data);
  }
}

/**
 * Candidate artifacts (often git-ignored, like a model file) go into the repo; the old file is
 * kept as <stem>.previous<ext>. Idempotent: a file already installed is left alone (and its
 * backup too), so the run after a crash can install what the crashed one did not.
 */
export async function installArtifacts(repo: string, artifacts: Artifact[], log: Logger): Promise<void> {
  for (const a of artifacts) {
    const target = path.join(repo, a.path);
    const current = await fs.readFile(target).catch(() => null);
    if (current?.equals(a.data)) continue;
    await fs.mkdir(path.dirname(target), { recursive: true });
    // model.pkl -> model.previous.pkl: the backup keeps the extension, so the repo's ignore rules still match it.
    const ext = path.extname(target);
    // A program holding the model open (a Python GUI) blocks the copy and the replace for a while: both retry (files.ts).
    if (current)
      await retryBusy(() => faulty('copy', target, () => fs.copyFile(target, `${target.slice(0, target.length - ext.length)}.previous${ext}`)), target);
    await replaceFile(target, a.data);
    log.info({ artifact: a.path }, 'installed artifact');
  }
}
