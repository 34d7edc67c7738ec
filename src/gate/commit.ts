/**
 * The gate's third step: the tested patch becomes a commit in the gate's worktree, and the
 * branch moves to it only if it still points at the head that was tested (compare-and-swap
 * with `git update-ref <new> <old>`). The only writes to the person's repository are that ref
 * and, when the branch is checked out there, the patch's own files and artifacts.
 */
import { execa } from 'execa';
import type { GateChecks } from '../contract/gateFiles.ts';
import { gitArgs } from '../workspace/gitArgs.ts';
import { replaceFile } from '../workspace/files.ts';
import { git } from '../repo/git.ts';
import type { Tested } from './applyAndTest.ts';
import { installArtifacts } from './artifacts.ts';
import { dirtyFilesInCheckout, updateCheckout } from './checkout.ts';
import { rejected, type Admission, type GateRun, type Verdict } from './gateRun.ts';
import { inRepo } from './repoOps.ts';
import { commitMessage } from './trailer.ts';

/** Set once the branch points at the gate's commit: from then on an error must not become a rejection. */
export interface CommitProgress {
  branchMoved: boolean;
}

/**
 * Commits the tested worktree and moves the branch from `head` to it. 'raced': someone else
 * moved the branch meanwhile (the patch is tested again on the new head).
 */
export async function commitOnBranch(
  run: GateRun,
  admission: Admission,
  worktree: string,
  head: string,
  tested: Tested,
  progress: CommitProgress,
): Promise<Verdict | 'raced'> {
  const { settings, log, id } = run;
  const { project, sidecar, files, artifacts, edited } = admission;
  const { branch } = sidecar;
  await git(
    worktree,
    ['-c', 'user.name=meta-agent', '-c', 'user.email=meta-agent@localhost', '-c', 'commit.gpgsign=false', 'commit', '--quiet', '--no-verify', '-F', '-'],
    { input: commitMessage(sidecar, run.sha256) },
  );
  const commit = (await git(worktree, ['rev-parse', 'HEAD'])).trim();
  const dirty = await dirtyFilesInCheckout(project.repoPath, branch, files);
  if (dirty.length)
    return rejected(`the repository got uncommitted changes in ${dirty.join(', ')} while the patch was tested; commit or stash them, then approve again`, {
      ...tested,
      edited,
    });
  // Kept until the decision is filed: a crash after update-ref still records what was tested.
  const saved: GateChecks = { commit, tests: tested.tests, dry_run: tested.dry_run };
  await replaceFile(run.state.checks, `${JSON.stringify(saved)}\n`);
  const moved = await inRepo(settings, project.repoPath, branch, async () => {
    const ref = await execa('git', gitArgs(['update-ref', '-m', `meta-agent: apply ${id}`, `refs/heads/${branch}`, commit, head]), {
      cwd: project.repoPath,
      reject: false,
    });
    if (ref.exitCode !== 0) return false;
    progress.branchMoved = true;
    await updateCheckout(project.repoPath, branch, commit, files, log);
    await installArtifacts(project.repoPath, artifacts, log);
    return true;
  });
  if (!moved) return 'raced';
  log.info({ commit }, `applied as ${commit.slice(0, 10)} on ${branch}`);
  return { decision: 'applied', commit, branch, edited, ...tested, alreadyApplied: false };
}
