/**
 * A patch whose commit is on the branch already (its trailer, trailer.ts) is filed as applied,
 * not applied twice: after a crash between the commit and the filing, or for a copy of an
 * applied patch (Explorer's "x - Copy.patch", a re-run proposing the same change).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { CheckResult } from '../contract/report.ts';
import { AppliedRecordSchema, GateChecksSchema } from '../contract/gateFiles.ts';
import { resolveBranch } from '../repo/git.ts';
import { installArtifacts } from './artifacts.ts';
import { refreshStaleCheckout } from './checkout.ts';
import { readGateFile, type Admission, type AppliedVerdict, type GateRun } from './gateRun.ts';
import { inRepo } from './repoOps.ts';
import { commitWithPatch } from './trailer.ts';

/** A patch without a sidecar that some project's branch has applied already (a copy of an applied patch). */
export async function appliedCopy(run: GateRun): Promise<AppliedVerdict | null> {
  for (const project of Object.values(run.settings.projects)) {
    const branch = project.branch ?? (await resolveBranch(project.repoPath).catch(() => null))?.branch;
    const commit = branch ? await commitWithPatch(project.repoPath, branch, run.sha256) : null;
    if (commit && branch) return { decision: 'applied', commit, branch, edited: false, ...(await checksOfCommit(run, commit)), alreadyApplied: true };
  }
  return null;
}

/**
 * Idempotent: a commit with this patch's trailer means it was applied (a crash after the
 * commit). Then what the crash may have cut short is finished (the checkout, the artifacts).
 */
export async function finishIfApplied(run: GateRun, admission: Admission): Promise<AppliedVerdict | null> {
  const { project, sidecar, files, artifacts, edited } = admission;
  const { branch } = sidecar;
  const already = await commitWithPatch(project.repoPath, branch, run.sha256);
  if (!already) return null;
  run.log.info({ commit: already }, 'already applied; finishing the move');
  await inRepo(run.settings, project.repoPath, branch, async () => {
    await refreshStaleCheckout(project.repoPath, branch, already, files, run.log);
    // A crash may have come between the branch move and the install.
    await installArtifacts(project.repoPath, artifacts, run.log);
  });
  return { decision: 'applied', commit: already, branch, edited, ...(await checksOfCommit(run, already)), alreadyApplied: true };
}

/**
 * The checks `commit` passed: those a crashed run saved before it moved the branch, or, for
 * another copy of a patch that was applied already (a re-run proposing the same change),
 * those on the record of that first filing. None if neither is there.
 */
async function checksOfCommit(run: GateRun, commit: string): Promise<{ tests: CheckResult | null; dry_run: CheckResult | null }> {
  const saved = await readGateFile(run.state.checks, GateChecksSchema, run.log);
  if (saved?.commit === commit) return { tests: saved.tests, dry_run: saved.dry_run };
  const dir = run.settings.layout.patches.applied;
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    if (!name.endsWith('.result.json')) continue;
    const record = await readGateFile(path.join(dir, name), AppliedRecordSchema, run.log);
    if (record?.commit === commit && record.tests) return { tests: record.tests, dry_run: record.dry_run };
  }
  return { tests: null, dry_run: null };
}
