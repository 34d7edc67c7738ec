/**
 * The person's own checkout of the project: when the gate moves the branch it has checked
 * out, the patch's files (only those) are brought up to the new commit, and their uncommitted
 * changes in those files are never touched.
 */
import type { Logger } from 'pino';
import { execa } from 'execa';
import { toErrorInfo } from '../contract/errors.ts';
import { git } from '../repo/git.ts';
import { gitArgs } from '../workspace/gitArgs.ts';

/** The branch checked out in `repo` (empty when HEAD is detached or unreadable). */
async function checkedOutBranch(repo: string): Promise<string> {
  return (await git(repo, ['symbolic-ref', '--quiet', '--short', 'HEAD']).catch(() => '')).trim();
}

/** Files of the patch with uncommitted changes in the user's checkout, if `branch` is checked out there. */
export async function dirtyFilesInCheckout(repo: string, branch: string, files: string[]): Promise<string[]> {
  if ((await checkedOutBranch(repo)) !== branch || files.length === 0) return [];
  const status = await git(repo, ['status', '--porcelain', '-z', '--untracked-files=all', '--', ...files]);
  return status
    .split('\0')
    .filter((entry) => entry.length > 3)
    .map((entry) => entry.slice(3));
}

/**
 * After a crash between moving the branch and updating the checkout, the checkout still
 * holds the pre-patch files (it looks like a change that undoes the patch). Bring them up
 * only if they exactly match the pre-patch version, so a real edit of the user is never lost.
 */
export async function refreshStaleCheckout(repo: string, branch: string, commit: string, files: string[], log: Logger): Promise<void> {
  if ((await checkedOutBranch(repo)) !== branch || files.length === 0) return;
  if ((await git(repo, ['rev-parse', `refs/heads/${branch}`])).trim() !== commit) return;
  const matchesParent = async (cached: boolean) =>
    (await execa('git', gitArgs(['diff', '--quiet', ...(cached ? ['--cached'] : []), `${commit}^`, '--', ...files]), { cwd: repo, reject: false })).exitCode ===
    0;
  if ((await matchesParent(false)) && (await matchesParent(true))) await updateCheckout(repo, branch, commit, files, log);
}

/** The branch moved under a checkout: bring the patch's files (only those) up to the new commit. */
export async function updateCheckout(repo: string, branch: string, commit: string, files: string[], log: Logger): Promise<void> {
  if ((await checkedOutBranch(repo)) !== branch) return;
  try {
    await git(repo, ['restore', `--source=${commit}`, '--staged', '--worktree', '--', ...files]);
  } catch (error) {
    log.warn(
      { err: toErrorInfo(error) },
      'the commit is on the branch, but the checkout could not be updated; run "git restore --staged --worktree ." for those files',
    );
  }
}
