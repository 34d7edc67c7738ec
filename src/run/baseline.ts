/**
 * The project's checks on the base commit (cached per commit), so old failures are not
 * blamed on the change: the report's `baseline_passed`, `run_checks`' "before" column and
 * the regressions `finish` is refused over all come from here. Run once per run, on demand.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import type { CheckName } from '../contract/report.ts';
import type { ChecksOutcome } from '../engines/types.ts';
import { failedTests, type Baselines } from '../engines/verify.ts';
import type { Redactor } from '../safety/redact.ts';
import type { Check, Project, Settings } from '../workspace/config.ts';
import { BaselineCache, runCheck, withCheckCopy } from '../repo/checks.ts';
import { openWorktree } from '../repo/workspaceRepo.ts';

export interface BaselineTarget {
  settings: Settings;
  project: Project;
  runId: string;
  baseCommit: string;
  redact: Redactor;
  log: Logger;
}

/** A memoized `baselinesOf` for one run (a failed attempt is tried again on the next call). */
export function baselineOnce(target: BaselineTarget, signal: AbortSignal): () => Promise<Baselines> {
  let pending: Promise<Baselines> | null = null;
  return () => {
    pending ??= baselinesOf(target, signal).catch((error: unknown) => {
      pending = null;
      throw error;
    });
    return pending;
  };
}

/** Each configured check on the base commit; null for one that timed out or was stopped. */
export async function baselinesOf(target: BaselineTarget, signal: AbortSignal): Promise<Baselines> {
  const { settings, project, baseCommit } = target;
  const cache = new BaselineCache(path.join(settings.layout.cache, 'baseline'));
  const found: Baselines = { tests: null, dry_run: null };
  const pending: Array<[CheckName, Check]> = [];
  for (const [name, check] of [
    ['tests', project.test],
    ['dry_run', project.dry_run],
  ] as const) {
    if (!check) continue;
    const cached = await cache.detail(project, baseCommit, check);
    if (cached !== undefined) found[name] = cached;
    else pending.push([name, check]);
  }
  if (pending.length === 0) return found;
  target.log.info({ checks: pending.map(([name]) => name) }, 'checks on the base commit');
  const baseTree = await openWorktree(project, settings.layout.worktrees, `${target.runId}-base`, baseCommit);
  try {
    await withCheckCopy({ worktree: baseTree.dir }, settings, project, async (copy) => {
      for (const [name, check] of pending) {
        const base = await runCheck(check, copy, settings, project, target.redact, signal);
        if (base.timed_out || signal.aborted) continue;
        const failed = base.passed ? [] : name === 'tests' ? failedTests(base.output_tail) : null;
        found[name] = { passed: base.passed, failed_tests: failed };
        await cache.set(project, baseCommit, check, base.passed, failed);
      }
    });
  } finally {
    await baseTree.remove();
  }
  return found;
}

/** Fills each check's `baseline_passed` from the baselines. */
export function markBaselines(checks: ChecksOutcome, baselines: Baselines): void {
  for (const name of ['tests', 'dry_run'] as const) {
    const result = checks[name];
    const base = baselines[name];
    if (result && base) result.baseline_passed = base.passed;
  }
}
