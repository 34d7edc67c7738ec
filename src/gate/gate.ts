/**
 * The approval gate: a patch moved into patches/approved/ is tested, then applied.
 *
 *   take (under the gate lock) -> snapshot + check paths -> already applied? (trailer)
 *   -> fresh worktree at the branch head -> git apply --3way -> test + dry_run
 *   -> commit -> move the branch only if it did not move (else re-test on the new head)
 *   -> update the user's checkout if safe -> applied/ or rejected/ (+ report.approval)
 *
 * It knows nothing of agents. The only writes to the real repository are the branch ref
 * (compare-and-swap) and, when the branch is checked out, the patch's own files.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { execa } from 'execa';
import { PatchSidecarSchema, type PatchSidecar } from '../contract/patch.ts';
import { CheckResultSchema, ReportSchema, type Approval, type CheckResult } from '../contract/report.ts';
import { MetaAgentError, toErrorInfo } from '../contract/errors.ts';
import type { Check, Project, Settings } from '../workspace/config.ts';
import { exists, faulty, publishFile, publishUnique, replaceFile, retryBusy } from '../workspace/files.ts';
import { anchoredMatcher, denyMatcher, scopeMatcher } from '../safety/globs.ts';
import { modeProblems } from '../safety/modes.ts';
import { makeRedactor, type Redactor } from '../safety/redact.ts';
import { loggedCheck, preflightChecks, runCheck, withCheckCopy } from '../run/checks.ts';
import { git, resolveBranch, stagedModeChanges } from '../run/git.ts';
import { ensureRepo, openWorktree } from '../run/workspaceRepo.ts';
import { moveUnique, takePrivately } from '../queue/folders.ts';
import { lockActivity } from '../queue/lease.ts';
import { createTask } from '../queue/createTask.ts';
import { archivedReportPath, reportPaths } from '../run/report.ts';
import { inspectPatch, type PatchRules } from './inspect.ts';
import { normaliseResavedPatch } from './crlfPatch.ts';
import { clearGitLocksOfDeadGate, inRepo, repoOpNoted } from './repoOps.ts';
import { filedCopy, finishFiling, gateStateDir, tidyAfterFiledRuns } from './leftovers.ts';
import { gitArgs } from '../workspace/gitArgs.ts';

export interface GateResult {
  decision: 'applied' | 'rejected' | 'skipped';
  task_id: string;
  patch: string;
  commit: string | null;
  reason: string | null;
  already_applied: boolean;
  /** Where the patch ended (applied/ or rejected/). */
  moved_to: string | null;
}

/** The private name takePrivately() gives a file it takes. */
const PRIVATE_PREFIX = '.taken-';
const TRAILER_PATCH = 'Meta-Agent-Patch';

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
  const release = (await gateLock(settings, true, (error) => lost.abort(new MetaAgentError('interrupted', `the gate lock was lost (${error.message}); the patch is gated again later`))))!;
  const runSignal = signal ? AbortSignal.any([signal, lost.signal]) : lost.signal;
  try {
    await restoreInterrupted(settings, log);
    const taken = await takePrivately(patchFile);
    if (!taken) return skipped(patchFile);
    return await gatePatch(settings, taken, path.basename(patchFile), log, runSignal);
  } finally {
    await release().catch(() => undefined);
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
  return { decision: 'skipped', task_id: '', patch: path.basename(patchFile), commit: null, reason: 'taken by another gate run', already_applied: false, moved_to: null };
}

/**
 * What a gate run of one patch keeps beside its snapshot until it has filed its decision, so
 * the run after a crash (or after a filing error) can finish it: the checks that passed before
 * the branch moved, and the redo task already dropped for a conflict.
 */
interface RunState {
  snapshot: string;
  checks: string;
  redo: string;
}

function runState(settings: Settings, sha256: string): RunState {
  const dir = gateStateDir(settings);
  return { snapshot: path.join(dir, `${sha256}.patch`), checks: path.join(dir, `${sha256}.checks.json`), redo: path.join(dir, `${sha256}.redo.json`) };
}

async function gatePatch(settings: Settings, taken: string, name: string, log: Logger, signal?: AbortSignal): Promise<GateResult> {
  const id = name.replace(/\.patch$/i, '').replace(/\.diff$/i, '');
  const bytes = await fs.readFile(taken);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const glog = log.child({ gate: id, sha256: sha256.slice(0, 12) });
  const redact = makeRedactor(settings.env, settings.llm.apiKey ? [settings.llm.apiKey] : []);
  const ctx: RejectContext = { settings, taken, name, id, sha256, bytes, sidecar: null, sidecarFile: null, log: glog, redact, signal };
  const state = runState(settings, sha256);
  // On an error the state stays: the patch keeps its private name, and the next run uses it.
  const result = await decide(ctx, bytes, state);
  await Promise.all(Object.values(state).map((file: string) => fs.rm(file, { force: true })));
  return result;
}

async function decide(ctx: RejectContext, bytes: Buffer, state: RunState): Promise<GateResult> {
  const { settings, id, sha256, log: glog } = ctx;
  const { layout } = settings;

  // 1. The sidecar says which project, branch and scope; the patch text says what it touches.
  const found = await findSidecar(settings, id);
  if (!found) {
    // A copy of an applied patch (Explorer's "x - Copy.patch") has no sidecar of its own.
    for (const project of Object.values(settings.projects)) {
      const branch = project.branch ?? (await resolveBranch(project.repoPath).catch(() => null))?.branch;
      const commit = branch ? await commitWithPatch(project.repoPath, branch, sha256) : null;
      if (commit && branch) return accept(ctx, { commit, branch, edited: false, ...(await readChecks(settings, state, commit)), alreadyApplied: true });
    }
  }
  if (!found) return reject(ctx, `no sidecar ${id}.patch.json in patches/approved/ or patches/pending/; the gate needs it to know the project and scope`);
  ctx.sidecar = found.sidecar;
  ctx.sidecarFile = found.file;
  const sidecar = found.sidecar;
  const project = settings.projects[sidecar.project];
  if (!project) return reject(ctx, `unknown project "${sidecar.project}" (not in meta-agent.yaml)`);
  const rules = patchRules(settings, project, sidecar.scope);
  // An editor re-saved it with CRLF: apply (and inspect) what git wrote; the file and its sha256 stay the person's.
  const resaved = await normaliseResavedPatch(bytes, project.repoPath, `refs/heads/${sidecar.branch}`, sidecar.sha256);
  if (resaved) glog.info("the patch was re-saved with CRLF line endings (by an editor); the gate applies it with git's line endings");
  ctx.crlfNormalised = resaved !== null;
  const patch = resaved ?? bytes;
  const inspection = inspectPatch(patch.toString('utf8'), rules);
  if (inspection.problems.length) return reject(ctx, `the patch is not allowed: ${inspection.problems.join('; ')}`);
  const edited = createHash('sha256').update(patch).digest('hex') !== sidecar.sha256;
  const r = sidecar.retrain;
  if (r && !r.beats_baseline) {
    return reject(ctx, `the retrained model does not beat the baseline: ${r.metric} ${r.candidate} vs ${r.baseline} (margin ${r.margin}, ${r.higher_is_better ? 'higher' : 'lower'} is better); candidate metrics ${JSON.stringify(r.candidate_metrics)}, baseline ${JSON.stringify(r.baseline_metrics)}`, { edited });
  }
  let artifacts: Array<{ path: string; data: Buffer }>;
  try {
    artifacts = await loadArtifacts(settings, id, sidecar, rules);
  } catch (error) {
    return reject(ctx, `the patch's artifacts are not usable: ${toErrorInfo(error).message}`, { edited });
  }

  await ensureRepo(project);
  const branch = sidecar.branch;
  // 2. Idempotent: a commit with this patch's trailer means it was applied (a crash after the commit).
  const already = await commitWithPatch(project.repoPath, branch, sha256);
  if (already) {
    glog.info({ commit: already }, 'already applied; finishing the move');
    await inRepo(settings, project.repoPath, branch, async () => {
      await refreshStaleCheckout(project.repoPath, branch, already, inspection.files, glog);
      // A crash may have come between the branch move and the install.
      await installArtifacts(project.repoPath, artifacts, glog);
    });
    return accept(ctx, { commit: already, branch, edited, ...(await readChecks(settings, state, already)), alreadyApplied: true });
  }

  // 3. The user's checkout: their uncommitted changes in the patch's files are never touched.
  const dirty = await dirtyFilesInCheckout(project.repoPath, branch, inspection.files);
  if (dirty.length) return reject(ctx, `the repository has uncommitted changes in ${dirty.join(', ')}; commit or stash them, then approve again`);

  const { redact } = ctx;
  const { snapshot } = state;
  await fs.mkdir(path.dirname(snapshot), { recursive: true });
  await fs.writeFile(snapshot, patch);
  // From the moment the branch moves, an error must not become a rejection: the commit is there.
  let branchMoved = false;
  try {
    for (let attempt = 0; attempt <= settings.config.gate.max_retests; attempt++) {
      const { commit: head } = await resolveBranch(project.repoPath, branch);
      const worktree = await openWorktree(project, layout.worktrees, `gate-${randomBytes(4).toString('hex')}`, head);
      try {
        // 4. Apply onto the current head.
        const applied = await execa('git', gitArgs(['apply', '--3way', '--index', '--whitespace=nowarn', snapshot]), { cwd: worktree.dir, reject: false, all: true });
        if (applied.exitCode !== 0) {
          const conflicts = await conflictingFiles(worktree.dir, String(applied.all ?? ''));
          const followUp = settings.config.gate.redo_on_conflict ? await dropRedoTaskOnce(settings, state, sidecar, conflicts, glog) : null;
          return await reject(ctx, `the patch does not apply on ${branch} (${head.slice(0, 10)}): conflicts in ${conflicts.join(', ') || 'unknown files'}${followUp ? `; a follow-up task ${path.basename(followUp)} asks the agent to redo it on the new HEAD` : ''}`, { conflicts, follow_up_task: followUp ? path.relative(layout.root, followUp) : null, edited });
        }
        // The modes as applied, not as the text said: a patch without mode lines can still retarget a symlink.
        const modes = modeProblems(await stagedModeChanges(worktree.dir, head), rules.executable);
        if (modes.length) return await reject(ctx, `the patch is not allowed: ${modes.join('; ')}`, { edited });
        for (const a of artifacts) {
          await fs.mkdir(path.dirname(path.join(worktree.dir, a.path)), { recursive: true });
          await fs.writeFile(path.join(worktree.dir, a.path), a.data);
        }
        // 5. Test there, sandboxed like any run, in a throwaway copy (with the candidate artifacts in place).
        if ((project.test || project.dry_run) && (await preflightChecks(settings, project, worktree.dir, [project.test, project.dry_run])) === 'none') {
          glog.warn('sandbox: none: the checks of this patch run unsandboxed');
        }
        const { tests, dryRun } =
          project.test || project.dry_run
            ? await withCheckCopy({ worktree: worktree.dir }, settings, project, async (copy) => {
                const check = (c: Check) => loggedCheck(glog, c, () => runCheck(c, copy, settings, project, redact, ctx.signal));
                return { tests: project.test ? await check(project.test) : null, dryRun: project.dry_run ? await check(project.dry_run) : null };
              })
            : { tests: null, dryRun: null };
        if (ctx.signal?.aborted) throw new MetaAgentError('interrupted', 'the gate run was interrupted (service shutdown); the patch is gated again later');
        const failed = [tests, dryRun].find((c) => c && !c.passed);
        if (failed) {
          return await reject(ctx, `${failed === tests ? 'the tests' : 'the dry run'} failed on ${branch} with the patch applied (exit ${failed.exit_code ?? 'none'}${failed.timed_out ? ', timed out' : ''}):\n\n\`\`\`\n${failed.output_tail}\n\`\`\``, { tests, dry_run: dryRun, edited });
        }
        // 6. Commit, then move the branch only if nobody else did meanwhile.
        const message = commitMessage(sidecar, sha256);
        await git(worktree.dir, ['-c', 'user.name=meta-agent', '-c', 'user.email=meta-agent@localhost', '-c', 'commit.gpgsign=false', 'commit', '--quiet', '--no-verify', '-F', '-'], { input: message });
        const commit = (await git(worktree.dir, ['rev-parse', 'HEAD'])).trim();
        const recheck = await dirtyFilesInCheckout(project.repoPath, branch, inspection.files);
        if (recheck.length) return await reject(ctx, `the repository got uncommitted changes in ${recheck.join(', ')} while the patch was tested; commit or stash them, then approve again`, { tests, dry_run: dryRun, edited });
        // Kept until the decision is filed: a crash after update-ref still records what was tested.
        await replaceFile(state.checks, JSON.stringify({ commit, tests, dry_run: dryRun }) + '\n');
        const moved = await inRepo(settings, project.repoPath, branch, async () => {
          const ref = await execa('git', gitArgs(['update-ref', '-m', `meta-agent: apply ${id}`, `refs/heads/${branch}`, commit, head]), { cwd: project.repoPath, reject: false });
          if (ref.exitCode !== 0) return false;
          branchMoved = true;
          await updateCheckout(project.repoPath, branch, commit, inspection.files, glog);
          await installArtifacts(project.repoPath, artifacts, glog);
          return true;
        });
        if (!moved) {
          glog.info({ attempt }, `${branch} moved while the patch was tested; testing again on the new head`);
          continue;
        }
        glog.info({ commit }, `applied as ${commit.slice(0, 10)} on ${branch}`);
        return await accept(ctx, { commit, branch, edited, tests, dry_run: dryRun, alreadyApplied: false });
      } finally {
        await worktree.remove();
      }
    }
    return await reject(ctx, `${branch} kept moving while the patch was tested (${settings.config.gate.max_retests + 1} attempts); approve it again later`);
  } catch (error) {
    // The next run finds the commit by its trailer and files it as applied; an interrupted run is redone.
    if (branchMoved || ctx.signal?.aborted) throw error;
    return reject(ctx, `the gate failed: ${toErrorInfo(error).message}`);
  }
}

/** What a patch of this project and scope may touch, and which files it may make executable. */
function patchRules(settings: Settings, project: Project, scope: readonly string[]): PatchRules {
  return {
    inScope: scopeMatcher(scope, project.scope),
    denied: denyMatcher([...project.deny, ...settings.config.patch.protected]),
    executable: anchoredMatcher(settings.config.patch.executable),
  };
}

/**
 * The checks `commit` passed: those a crashed run saved before it moved the branch, or, for
 * another copy of a patch that was applied already (a re-run proposing the same change),
 * those on the record of that first filing. None if neither is there.
 */
async function readChecks(settings: Settings, state: RunState, commit: string): Promise<{ tests: CheckResult | null; dry_run: CheckResult | null }> {
  const saved = await readState<{ commit: string; tests: unknown; dry_run: unknown }>(state.checks);
  if (saved?.commit === commit) return parseChecks(saved);
  const dir = settings.layout.patches.applied;
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    if (!name.endsWith('.result.json')) continue;
    const record = await readState<{ commit: string; tests: unknown; dry_run: unknown }>(path.join(dir, name));
    if (record?.commit === commit && record.tests) return parseChecks(record);
  }
  return { tests: null, dry_run: null };
}

function parseChecks(saved: { tests?: unknown; dry_run?: unknown }): { tests: CheckResult | null; dry_run: CheckResult | null } {
  const tests = CheckResultSchema.nullable().safeParse(saved.tests ?? null);
  const dryRun = CheckResultSchema.nullable().safeParse(saved.dry_run ?? null);
  return tests.success && dryRun.success ? { tests: tests.data, dry_run: dryRun.data } : { tests: null, dry_run: null };
}

/** A small JSON file the gate wrote; null if it is not there or not JSON. Fields are checked by the caller. */
async function readState<T>(file: string): Promise<Partial<T> | null> {
  const text = await fs.readFile(file, 'utf8').catch(() => null);
  try {
    return text === null ? null : (JSON.parse(text) as Partial<T>);
  } catch {
    return null;
  }
}

/** Reads `<id>.artifacts/` (beside the patch in approved/, or still in pending/) and checks it against the sidecar. */
async function loadArtifacts(settings: Settings, id: string, sidecar: PatchSidecar, rules: PatchRules): Promise<Array<{ path: string; data: Buffer }>> {
  const out: Array<{ path: string; data: Buffer }> = [];
  if (sidecar.artifacts.length === 0) return out;
  const dir = await artifactDir(settings, id);
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

async function artifactDir(settings: Settings, id: string): Promise<string | null> {
  for (const dir of [settings.layout.patches.approved, settings.layout.patches.pending]) {
    const candidate = path.join(dir, `${id}.artifacts`);
    if (await exists(candidate)) return candidate;
  }
  return null;
}

/**
 * Candidate artifacts (often git-ignored, like a model file) go into the repo; the old file is
 * kept as <stem>.previous<ext>. Idempotent: a file already installed is left alone (and its
 * backup too), so the run after a crash can install what the crashed one did not.
 */
async function installArtifacts(repo: string, artifacts: Array<{ path: string; data: Buffer }>, log: Logger): Promise<void> {
  for (const a of artifacts) {
    const target = path.join(repo, a.path);
    const current = await fs.readFile(target).catch(() => null);
    if (current?.equals(a.data)) continue;
    await fs.mkdir(path.dirname(target), { recursive: true });
    // model.pkl -> model.previous.pkl: the backup keeps the extension, so the repo's ignore rules still match it.
    const ext = path.extname(target);
    // A program holding the model open (a Python GUI) blocks the copy and the replace for a while: both retry (files.ts).
    if (current) await retryBusy(() => faulty('copy', target, () => fs.copyFile(target, `${target.slice(0, target.length - ext.length)}.previous${ext}`)), target);
    await replaceFile(target, a.data);
    log.info({ artifact: a.path }, 'installed artifact');
  }
}

async function moveArtifacts(settings: Settings, id: string, toDir: string, patchName: string): Promise<void> {
  const dir = await artifactDir(settings, id);
  if (dir) await moveUnique(dir, toDir, `${patchName.replace(/\.patch$/i, '')}.artifacts`).catch(() => undefined);
}

interface RejectContext {
  settings: Settings;
  taken: string;
  name: string;
  id: string;
  sha256: string;
  /** The bytes taken (the snapshot tested and committed; the file may be edited meanwhile). */
  bytes?: Buffer;
  sidecar: PatchSidecar | null;
  sidecarFile: string | null;
  log: Logger;
  /** One per gate run: the checks' output and every reason the gate writes pass through it. */
  redact: Redactor;
  signal?: AbortSignal | undefined;
  /** The approved file was re-saved with CRLF and the gate applied it with git's line endings. */
  crlfNormalised?: boolean;
}

async function findSidecar(settings: Settings, id: string): Promise<{ sidecar: PatchSidecar; file: string } | null> {
  for (const dir of [settings.layout.patches.approved, settings.layout.patches.pending]) {
    const file = path.join(dir, `${id}.patch.json`);
    const text = await fs.readFile(file, 'utf8').catch(() => null);
    if (text === null) continue;
    const parsed = PatchSidecarSchema.safeParse(JSON.parse(text));
    if (parsed.success) return { sidecar: parsed.data, file };
  }
  return null;
}

async function commitWithPatch(repo: string, branch: string, sha256: string): Promise<string | null> {
  const out = await git(repo, ['log', `refs/heads/${branch}`, '--format=%H', '-F', `--grep=${TRAILER_PATCH}: ${sha256}`, '-n', '1']).catch(() => '');
  return out.trim() || null;
}

/** Files of the patch with uncommitted changes in the user's checkout, if `branch` is checked out there. */
async function dirtyFilesInCheckout(repo: string, branch: string, files: string[]): Promise<string[]> {
  const current = (await git(repo, ['symbolic-ref', '--quiet', '--short', 'HEAD']).catch(() => '')).trim();
  if (current !== branch || files.length === 0) return [];
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
async function refreshStaleCheckout(repo: string, branch: string, commit: string, files: string[], log: Logger): Promise<void> {
  const current = (await git(repo, ['symbolic-ref', '--quiet', '--short', 'HEAD']).catch(() => '')).trim();
  if (current !== branch || files.length === 0) return;
  if ((await git(repo, ['rev-parse', `refs/heads/${branch}`])).trim() !== commit) return;
  const matchesParent = async (cached: boolean) =>
    (await execa('git', gitArgs(['diff', '--quiet', ...(cached ? ['--cached'] : []), `${commit}^`, '--', ...files]), { cwd: repo, reject: false })).exitCode === 0;
  if ((await matchesParent(false)) && (await matchesParent(true))) await updateCheckout(repo, branch, commit, files, log);
}

/** The branch moved under a checkout: bring the patch's files (only those) up to the new commit. */
async function updateCheckout(repo: string, branch: string, commit: string, files: string[], log: Logger): Promise<void> {
  const current = (await git(repo, ['symbolic-ref', '--quiet', '--short', 'HEAD']).catch(() => '')).trim();
  if (current !== branch) return;
  try {
    await git(repo, ['restore', `--source=${commit}`, '--staged', '--worktree', '--', ...files]);
  } catch (error) {
    log.warn({ err: toErrorInfo(error) }, 'the commit is on the branch, but the checkout could not be updated; run "git restore --staged --worktree ." for those files');
  }
}

async function conflictingFiles(worktree: string, output: string): Promise<string[]> {
  const unmerged = await git(worktree, ['diff', '--name-only', '--diff-filter=U']).catch(() => '');
  const files = new Set(unmerged.split('\n').filter(Boolean));
  for (const m of output.matchAll(/(?:error: patch failed: |error: |U |CONFLICT \(content\): Merge conflict in )([^\s:]+)/g)) {
    if (m[1] && !m[1].startsWith('repository') && m[1] !== 'patch') files.add(m[1]);
  }
  return [...files].sort();
}

/** The trailer names the task (the sidecar's), not the file: `<id>.<run_id>.patch` belongs to task <id>. */
function commitMessage(sidecar: PatchSidecar, sha256: string): string {
  const id = sidecar.task_id;
  const summary = sidecar.summary.trim() || `Apply ${id}`;
  const [first, ...rest] = summary.split('\n');
  const subject = first!.length > 72 ? `${first!.slice(0, 69)}...` : first!;
  const body = [first!.length > 72 ? first! : '', ...rest].join('\n').trim();
  return `${subject}\n\n${body ? `${body}\n\n` : ''}Meta-Agent-Task: ${id}\nRisk: ${sidecar.risk_level}\n${TRAILER_PATCH}: ${sha256}\n`;
}

/**
 * Drops the redo task at most once per patch: a marker is published (never overwritten) before
 * the task, so the run after a crash between the two reuses it instead of dropping another.
 */
async function dropRedoTaskOnce(settings: Settings, state: RunState, sidecar: PatchSidecar, conflicts: string[], log: Logger): Promise<string | null> {
  try {
    await publishFile(state.redo, JSON.stringify({ task: null }) + '\n');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      log.warn({ err: toErrorInfo(error) }, 'could not create the follow-up task');
      return null;
    }
    const earlier = await readState<{ task: string | null }>(state.redo);
    return typeof earlier?.task === 'string' ? earlier.task : null;
  }
  const file = await dropRedoTask(settings, sidecar, conflicts, log);
  if (file) await replaceFile(state.redo, JSON.stringify({ task: file }) + '\n').catch(() => undefined);
  return file;
}

async function dropRedoTask(settings: Settings, sidecar: PatchSidecar, conflicts: string[], log: Logger): Promise<string | null> {
  // By task, not file: `<id>.<run_id>.patch` belongs to task <id>, whose report holds the objective.
  const id = sidecar.task_id;
  const report = await readReport(settings, id);
  try {
    const { path: file } = await createTask(
      settings,
      `${id}-redo`,
      {
        project: sidecar.project,
        type: report?.type ?? 'custom',
        objective: `Redo the change of task ${id} on the current HEAD: its approved patch no longer applies (conflicts in ${conflicts.join(', ') || 'some files'}). Original objective: ${report?.objective ?? sidecar.summary}`,
        scope: sidecar.scope,
        body: `The earlier change, for reference:\n\n${sidecar.summary}`,
      },
      'human',
    );
    return file;
  } catch (error) {
    log.warn({ err: toErrorInfo(error) }, 'could not create the follow-up task');
    return null;
  }
}

async function readReport(settings: Settings, id: string) {
  const text = await fs.readFile(reportPaths(settings.layout, id).json, 'utf8').catch(() => null);
  if (!text) return null;
  const parsed = ReportSchema.safeParse(JSON.parse(text));
  return parsed.success ? parsed.data : null;
}

/** Adds the decision to reports/<id>.json (if the report is there and is for this patch's run). */
export async function recordApproval(settings: Settings, id: string, approval: Approval, runId: string | null): Promise<void> {
  const file = reportPaths(settings.layout, id).json;
  const report = await readReport(settings, id);
  if (report && (!runId || report.run_id === runId)) return replaceFile(file, JSON.stringify({ ...report, approval }, null, 2) + '\n');
  // A later run of the task (its patch filed beside this one) moved this run's report into the archive.
  if (!runId) return;
  const archived = archivedReportPath(settings.layout, id, runId);
  const parsed = ReportSchema.safeParse(await readState(archived));
  if (parsed.success && parsed.data.run_id === runId) await replaceFile(archived, JSON.stringify({ ...parsed.data, approval }, null, 2) + '\n');
}

async function accept(
  ctx: RejectContext,
  r: { commit: string; branch: string; edited: boolean; tests: CheckResult | null; dry_run: CheckResult | null; alreadyApplied: boolean },
): Promise<GateResult> {
  const { settings, id } = ctx;
  const dir = settings.layout.patches.applied;
  const approval: Approval = {
    decision: 'applied',
    by: 'gate',
    at: new Date().toISOString(),
    reason: r.alreadyApplied ? 'already applied (found its commit on the branch)' : null,
    commit: r.commit,
    branch: r.branch,
    patch_sha256: ctx.sha256,
    edited: r.edited,
    conflicts: [],
    follow_up_task: null,
    crlf_normalised: ctx.crlfNormalised ?? false,
    tests: r.tests,
    dry_run: r.dry_run,
  };
  // Also when it was already applied: a crash may have come between the commit and this record.
  if (ctx.sidecar) await recordApproval(settings, ctx.sidecar.task_id, approval, ctx.sidecar.run_id);
  // The record before the move: until the patch has left approved/ (under its private name),
  // the next run finds the commit and finishes the filing.
  const slot = await appliedSlot(dir, ctx.name, ctx.sha256, r.commit);
  if (!slot.recorded) await publishFile(path.join(dir, `${slot.stem}.result.json`), JSON.stringify({ task_id: id, ...approval }, null, 2) + '\n');
  await restoreSnapshot(ctx, dir, slot.stem);
  const movedTo = await moveUnique(ctx.taken, dir, slot.name);
  if (ctx.sidecarFile && (await exists(ctx.sidecarFile))) await moveUnique(ctx.sidecarFile, dir, `${path.basename(movedTo)}.json`).catch(() => undefined);
  await moveArtifacts(settings, id, dir, path.basename(movedTo));
  return { decision: 'applied', task_id: id, patch: ctx.name, commit: r.commit, reason: approval.reason, already_applied: r.alreadyApplied, moved_to: movedTo };
}

/**
 * applied/<id>.patch is the snapshot that was tested and committed (its sha256 is the commit's
 * trailer). A person who edited the approved file while its tests ran keeps the edit, beside
 * it as `<stem>.edited-during-gate.txt` (not a .patch: nothing takes it for one).
 */
async function restoreSnapshot(ctx: RejectContext, dir: string, stem: string): Promise<void> {
  if (!ctx.bytes) return;
  const now = await fs.readFile(ctx.taken).catch(() => null);
  if (!now || createHash('sha256').update(now).digest('hex') === ctx.sha256) return;
  await publishUnique(dir, `${stem}.edited-during-gate`, '.txt', now);
  await replaceFile(ctx.taken, ctx.bytes);
  ctx.log.warn('the approved patch was edited while it was tested; the snapshot that was tested and committed is filed, the edit is kept beside it');
}

/**
 * The name to file a patch under in applied/: the first `<stem>`, `<stem>-2`, ... with no patch
 * there and no result.json, or with the result.json a crashed run of this patch wrote before its move.
 */
async function appliedSlot(dir: string, name: string, sha256: string, commit: string): Promise<{ stem: string; name: string; recorded: boolean }> {
  const base = name.replace(/\.patch$/i, '');
  const ext = name.slice(base.length);
  for (let n = 1; n < 10_000; n++) {
    const stem = n === 1 ? base : `${base}-${n}`;
    if (await exists(path.join(dir, stem + ext))) continue;
    const file = path.join(dir, `${stem}.result.json`);
    if (!(await exists(file))) return { stem, name: stem + ext, recorded: false };
    const record = await readState<{ patch_sha256: string; commit: string }>(file);
    if (record?.patch_sha256 === sha256 && record.commit === commit) return { stem, name: stem + ext, recorded: true };
  }
  throw new Error(`no free name for ${name} in ${dir}`);
}

async function reject(
  ctx: RejectContext,
  unredactedReason: string,
  extra: { conflicts?: string[]; follow_up_task?: string | null; tests?: CheckResult | null; dry_run?: CheckResult | null; edited?: boolean } = {},
): Promise<GateResult> {
  const { settings, id } = ctx;
  const dir = settings.layout.patches.rejected;
  // Errors and sidecar fields come from files and processes: the reason goes to the report, .reason.md and the log.
  const reason = ctx.redact(unredactedReason);
  ctx.log.warn({ reason: reason.split('\n')[0] }, 'patch rejected by the gate');
  const approval: Approval = {
    decision: 'rejected',
    by: 'gate',
    at: new Date().toISOString(),
    reason,
    commit: null,
    branch: ctx.sidecar?.branch ?? null,
    patch_sha256: ctx.sha256,
    edited: extra.edited ?? false,
    conflicts: extra.conflicts ?? [],
    follow_up_task: extra.follow_up_task ?? null,
    crlf_normalised: ctx.crlfNormalised ?? false,
    tests: extra.tests ?? null,
    dry_run: extra.dry_run ?? null,
  };
  await recordApproval(settings, ctx.sidecar?.task_id ?? id, approval, ctx.sidecar?.run_id ?? null);
  // The reason is published before the patch moves, so a watcher of rejected/ sees it was the gate.
  const stem = ctx.name.replace(/\.patch$/i, '');
  await publishUnique(dir, stem, '.reason.md', `# ${ctx.name} rejected by the approval gate\n\n${reason}\n`);
  const movedTo = await moveUnique(ctx.taken, dir, ctx.name);
  if (ctx.sidecarFile && (await exists(ctx.sidecarFile))) await moveUnique(ctx.sidecarFile, dir, `${path.basename(movedTo)}.json`).catch(() => undefined);
  await moveArtifacts(settings, id, dir, path.basename(movedTo));
  return { decision: 'rejected', task_id: id, patch: ctx.name, commit: null, reason, already_applied: false, moved_to: movedTo };
}

/** A person moved a patch into rejected/ (Explorer, the CLI, the dashboard): record it in the report. */
export async function recordHumanRejection(settings: Settings, patchFile: string, reason: string | null): Promise<boolean> {
  const sidecarText = await fs.readFile(`${patchFile}.json`, 'utf8').catch(() => null);
  const sidecar = sidecarText ? PatchSidecarSchema.safeParse(JSON.parse(sidecarText)) : null;
  // `<id>.<run_id>.patch` (filed beside a pending one) belongs to task <id>: the sidecar says so.
  const id = sidecar?.success ? sidecar.data.task_id : path.basename(patchFile).replace(/\.patch$/i, '');
  const report = await readReport(settings, id);
  if (!report) return false;
  const bytes = await fs.readFile(patchFile).catch(() => null);
  const sha256 = bytes ? createHash('sha256').update(bytes).digest('hex') : null;
  if (report.approval && report.approval.patch_sha256 === sha256) return false; // already recorded (by the gate or the CLI)
  await recordApproval(
    settings,
    id,
    {
      decision: 'rejected',
      by: 'human',
      at: new Date().toISOString(),
      reason: reason ?? 'rejected by a person (no reason given)',
      commit: null,
      branch: sidecar?.success ? sidecar.data.branch : null,
      patch_sha256: sha256,
      edited: false,
      conflicts: [],
      follow_up_task: null,
      crlf_normalised: false,
      tests: null,
      dry_run: null,
    },
    sidecar?.success ? sidecar.data.run_id : null,
  );
  return true;
}
