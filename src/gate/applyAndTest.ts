/**
 * The gate's second step, in a fresh worktree at the branch's head: `git apply --3way` of the
 * snapshot, the modes as applied, then the project's test and dry run (sandboxed like any
 * run, in a throwaway copy, with the candidate artifacts in place).
 */
import path from 'node:path';
import { execa } from 'execa';
import { MetaAgentError } from '../contract/errors.ts';
import type { CheckResult } from '../contract/report.ts';
import type { Check } from '../workspace/config.ts';
import { gitArgs } from '../workspace/gitArgs.ts';
import { modeProblems } from '../safety/modes.ts';
import { loggedCheck, preflightChecks, runCheck, withCheckCopy } from '../repo/checks.ts';
import { git, stagedModeChanges } from '../repo/git.ts';
import { placeArtifacts } from './artifacts.ts';
import { rejected, type Admission, type GateRun, type RejectedVerdict } from './gateRun.ts';
import { dropRedoTaskOnce } from './redoTask.ts';

/** The checks the patch passed on that head. */
export interface Tested {
  tests: CheckResult | null;
  dry_run: CheckResult | null;
}

/** Applies the patch in `worktree` (checked out at `head`) and tests it there; a rejection if either fails. */
export async function applyAndTest(run: GateRun, admission: Admission, worktree: string, head: string): Promise<Tested | RejectedVerdict> {
  const { edited } = admission;
  const applied = await execa('git', gitArgs(['apply', '--3way', '--index', '--whitespace=nowarn', run.state.snapshot]), {
    cwd: worktree,
    reject: false,
    all: true,
  });
  if (applied.exitCode !== 0) return conflictVerdict(run, admission, worktree, head, String(applied.all ?? ''));
  // The modes as applied, not as the text said: a patch without mode lines can still retarget a symlink.
  const modes = modeProblems(await stagedModeChanges(worktree, head), admission.rules.executable);
  if (modes.length) return rejected(`the patch is not allowed: ${modes.join('; ')}`, { edited });
  await placeArtifacts(worktree, admission.artifacts);
  const tested = await runGateChecks(run, admission, worktree);
  if (run.signal?.aborted) throw new MetaAgentError('interrupted', 'the gate run was interrupted (service shutdown); the patch is gated again later');
  const failed = [tested.tests, tested.dry_run].find((c) => c && !c.passed);
  if (failed) {
    const which = failed === tested.tests ? 'the tests' : 'the dry run';
    return rejected(
      `${which} failed on ${admission.sidecar.branch} with the patch applied (exit ${failed.exit_code ?? 'none'}${failed.timed_out ? ', timed out' : ''}):\n\n\`\`\`\n${failed.output_tail}\n\`\`\``,
      { ...tested, edited },
    );
  }
  return tested;
}

async function runGateChecks(run: GateRun, admission: Admission, worktree: string): Promise<Tested> {
  const { settings, log, redact } = run;
  const { project } = admission;
  if (!project.test && !project.dry_run) return { tests: null, dry_run: null };
  if ((await preflightChecks(settings, project, worktree, [project.test, project.dry_run])) === 'none') {
    log.warn('sandbox: none: the checks of this patch run unsandboxed');
  }
  return withCheckCopy({ worktree }, settings, project, async (copy) => {
    const check = (c: Check) => loggedCheck(log, c, () => runCheck(c, copy, settings, project, redact, run.signal));
    return { tests: project.test ? await check(project.test) : null, dry_run: project.dry_run ? await check(project.dry_run) : null };
  });
}

/** The patch does not apply on this head: rejected naming the conflicting files, with a redo task if configured. */
async function conflictVerdict(run: GateRun, admission: Admission, worktree: string, head: string, output: string): Promise<RejectedVerdict> {
  const { settings, log } = run;
  const { sidecar, edited } = admission;
  const conflicts = await conflictingFiles(worktree, output);
  const followUp = settings.config.gate.redo_on_conflict ? await dropRedoTaskOnce(settings, run.state, sidecar, conflicts, log) : null;
  const redo = followUp ? `; a follow-up task ${path.basename(followUp)} asks the agent to redo it on the new HEAD` : '';
  return rejected(`the patch does not apply on ${sidecar.branch} (${head.slice(0, 10)}): conflicts in ${conflicts.join(', ') || 'unknown files'}${redo}`, {
    conflicts,
    follow_up_task: followUp ? path.relative(settings.layout.root, followUp) : null,
    edited,
  });
}

async function conflictingFiles(worktree: string, output: string): Promise<string[]> {
  const unmerged = await git(worktree, ['diff', '--name-only', '--diff-filter=U']).catch(() => '');
  const files = new Set(unmerged.split('\n').filter(Boolean));
  for (const m of output.matchAll(/(?:error: patch failed: |error: |U |CONFLICT \(content\): Merge conflict in )([^\s:]+)/g)) {
    if (m[1] && !m[1].startsWith('repository') && m[1] !== 'patch') files.add(m[1]);
  }
  return [...files].sort();
}
