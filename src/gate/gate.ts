/**
 * The approval gate: a patch moved into patches/approved/ is tested, then applied.
 *
 *   take (under the gate lock) -> admit (sidecar, paths, retrain, artifacts: admit.ts)
 *   -> already applied? (trailer: alreadyApplied.ts) -> fresh worktree at the branch head
 *   -> git apply --3way, test + dry_run (applyAndTest.ts)
 *   -> commit, move the branch only if it did not move, else re-test on the new head (commit.ts)
 *   -> applied/ or rejected/ with its sidecar and artifacts, + report.approval (fileDecision.ts)
 *
 * It knows nothing of agents. The only writes to the real repository are the branch ref
 * (compare-and-swap) and, when the branch is checked out, the patch's own files.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { MetaAgentError, toErrorInfo } from '../contract/errors.ts';
import type { Settings } from '../workspace/config.ts';
import { makeRedactor } from '../safety/redact.ts';
import { resolveBranch } from '../repo/git.ts';
import { ensureRepo, openWorktree } from '../repo/workspaceRepo.ts';
import { moveUnique, takePrivately } from '../queue/folders.ts';
import { lockActivity } from '../workspace/lease.ts';
import { admit } from './admit.ts';
import { finishIfApplied } from './alreadyApplied.ts';
import { applyAndTest } from './applyAndTest.ts';
import { dirtyFilesInCheckout } from './checkout.ts';
import { commitOnBranch, type CommitProgress } from './commit.ts';
import { fileDecision } from './fileDecision.ts';
import { gateStateDir, gateStateFiles, isVerdict, rejected, type Admission, type GateResult, type GateRun, type Verdict } from './gateRun.ts';
import { clearGitLocksOfDeadGate, repoOpNoted } from './repoOps.ts';
import { filedCopy, finishFiling, tidyAfterFiledRuns } from './leftovers.ts';

export type { GateResult } from './gateRun.ts';
export { recordApproval, recordHumanRejection } from './approvalRecord.ts';

/** The private name takePrivately() gives a file it takes. */
const PRIVATE_PREFIX = '.taken-';

/**
 * Lock file that serializes the gate across processes and machines sharing the workspace.
 * Whoever holds it knows no gate run is going on (a dead one's lock is taken over).
 */
export async function gateLock(settings: Settings, wait = true, onLost?: (error: Error) => void): Promise<(() => Promise<void>) | null> {
  return lockActivity(path.join(settings.layout.state, 'gate'), { staleMs: 60_000, wait, ...(onLost ? { onLost } : {}) });
}

/**
 * A gate run that died left its patch under a private name in approved/, which no scan
 * sees, and maybe git locks in the project's repository: give the patch its name back and
 * remove those locks (without waiting, if another gate run holds the lock).
 */
export async function recoverInterruptedGateRuns(settings: Settings, log: Logger): Promise<void> {
  const names = await fs.readdir(settings.layout.patches.approved).catch(() => [] as string[]);
  const states = await fs.readdir(gateStateDir(settings)).catch(() => [] as string[]);
  if (!names.some((n) => n.startsWith(PRIVATE_PREFIX)) && states.length === 0 && !(await repoOpNoted(settings))) return;
  const release = await gateLock(settings, false);
  if (!release) return;
  try {
    await restoreInterrupted(settings, log);
  } finally {
    await release();
  }
}

/**
 * Processes one file of patches/approved/. Safe to call for the same file from several processes.
 * An abort (service shutdown) stops the checks and throws: the patch keeps its private name,
 * and recoverInterruptedGateRuns() gives it back for a later run. It is never rejected for it.
 */
export async function processApprovedPatch(settings: Settings, patchFile: string, log: Logger, signal?: AbortSignal): Promise<GateResult> {
  // Lost only when this process was frozen past the lock's staleness and another host took
  // it over: the run stops (as on a stop) instead of racing the other gate.
  const lost = new AbortController();
  const release = (await gateLock(settings, true, (error) =>
    lost.abort(new MetaAgentError('interrupted', `the gate lock was lost (${error.message}); the patch is gated again later`)),
  ))!;
  const runSignal = signal ? AbortSignal.any([signal, lost.signal]) : lost.signal;
  try {
    await restoreInterrupted(settings, log);
    const taken = await takePrivately(patchFile);
    if (!taken) return skipped(patchFile);
    return await gatePatch(settings, taken, path.basename(patchFile), log, runSignal);
  } finally {
    await release().catch((error: unknown) =>
      log.warn({ err: toErrorInfo(error) }, 'could not release the gate lock; the next gate run takes it over once it is stale'),
    );
  }
}

/** A gate run that died left its patch under a private name: give it back its name, and remove the git locks it left (we hold the lock). */
async function restoreInterrupted(settings: Settings, log: Logger): Promise<void> {
  await clearGitLocksOfDeadGate(settings, log);
  const dir = settings.layout.patches.approved;
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith(PRIVATE_PREFIX)) continue;
    const original = name.replace(/^\.taken-[0-9a-f]+-/, '');
    const filed = await filedCopy(settings, path.join(dir, name));
    if (filed) {
      await finishFiling(settings, path.join(dir, name), original, filed);
      log.warn({ patch: original, filed: path.relative(settings.layout.root, filed) }, 'an interrupted gate run had filed this patch; finished its move');
      continue;
    }
    await moveUnique(path.join(dir, name), dir, original);
    log.warn({ patch: original }, 'an interrupted gate run left this patch; it is processed again');
  }
  await tidyAfterFiledRuns(settings, log);
}

function skipped(patchFile: string): GateResult {
  return {
    decision: 'skipped',
    task_id: '',
    patch: path.basename(patchFile),
    commit: null,
    reason: 'taken by another gate run',
    already_applied: false,
    moved_to: null,
  };
}

async function gatePatch(settings: Settings, taken: string, name: string, log: Logger, signal?: AbortSignal): Promise<GateResult> {
  const id = name.replace(/\.patch$/i, '').replace(/\.diff$/i, '');
  const bytes = await fs.readFile(taken);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const run: GateRun = {
    settings,
    taken,
    name,
    id,
    sha256,
    bytes,
    sidecar: null,
    sidecarFile: null,
    crlfNormalised: false,
    log: log.child({ gate: id, sha256: sha256.slice(0, 12) }),
    redact: makeRedactor(settings.env, settings.llm.apiKey ? [settings.llm.apiKey] : []),
    signal,
    state: gateStateFiles(settings, sha256),
  };
  // On an error the state stays: the patch keeps its private name, and the next run uses it.
  const result = await decideOnPatch(run);
  await Promise.all(Object.values(run.state).map((file: string) => fs.rm(file, { force: true })));
  return result;
}

/** The steps of one gate run, each ending in a verdict that is filed, or handing on to the next. */
async function decideOnPatch(run: GateRun): Promise<GateResult> {
  const admission = await admit(run);
  if (isVerdict(admission)) return fileDecision(run, admission);
  const { project, sidecar } = admission;
  await ensureRepo(project);
  const already = await finishIfApplied(run, admission);
  if (already) return fileDecision(run, already);
  // The user's checkout: their uncommitted changes in the patch's files are never touched.
  const dirty = await dirtyFilesInCheckout(project.repoPath, sidecar.branch, admission.files);
  if (dirty.length)
    return fileDecision(run, rejected(`the repository has uncommitted changes in ${dirty.join(', ')}; commit or stash them, then approve again`));
  return testAndCommit(run, admission);
}

/** Apply and test, then commit; a failure before the branch moved is a rejection, after it an error (the next run files it). */
async function testAndCommit(run: GateRun, admission: Admission): Promise<GateResult> {
  const { snapshot } = run.state;
  await fs.mkdir(path.dirname(snapshot), { recursive: true });
  await fs.writeFile(snapshot, admission.patch);
  // From the moment the branch moves, an error must not become a rejection: the commit is there.
  const progress: CommitProgress = { branchMoved: false };
  try {
    return await fileDecision(run, await attempts(run, admission, progress));
  } catch (error) {
    // The next run finds the commit by its trailer and files it as applied; an interrupted run is redone.
    if (progress.branchMoved || run.signal?.aborted) throw error;
    return fileDecision(run, rejected(`the gate failed: ${toErrorInfo(error).message}`));
  }
}

/** Up to 1 + gate.max_retests tries, each in a fresh worktree at the branch's head of the moment. */
async function attempts(run: GateRun, admission: Admission, progress: CommitProgress): Promise<Verdict> {
  const { settings, log } = run;
  const { project } = admission;
  const { branch } = admission.sidecar;
  const { max_retests: maxRetests } = settings.config.gate;
  for (let attempt = 0; attempt <= maxRetests; attempt++) {
    const { commit: head } = await resolveBranch(project.repoPath, branch);
    const worktree = await openWorktree(project, settings.layout.worktrees, `gate-${randomBytes(4).toString('hex')}`, head);
    try {
      const tested = await applyAndTest(run, admission, worktree.dir, head);
      if (isVerdict(tested)) return tested;
      const committed = await commitOnBranch(run, admission, worktree.dir, head, tested, progress);
      if (committed !== 'raced') return committed;
      log.info({ attempt }, `${branch} moved while the patch was tested; testing again on the new head`);
    } finally {
      await worktree.remove();
    }
  }
  return rejected(`${branch} kept moving while the patch was tested (${maxRetests + 1} attempts); approve it again later`);
}
