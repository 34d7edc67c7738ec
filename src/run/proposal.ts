/**
 * A run's change as a proposal: refused when the gate would refuse it too, else filed in
 * patches/pending/ as `<id>.patch` with its sidecar (and artifacts), never replacing one that
 * still waits for review.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { toErrorInfo, type ErrorInfo } from '../contract/errors.ts';
import { PatchSidecarSchema, type PatchSidecar } from '../contract/patch.ts';
import { readJsonFile } from '../contract/readJson.ts';
import type { Regression, RiskLevel } from '../contract/report.ts';
import { anchoredMatcher, denyMatcher, scopeMatcher } from '../safety/globs.ts';
import { modeProblems } from '../safety/modes.ts';
import { REDACTED } from '../safety/redact.ts';
import type { Settings } from '../workspace/config.ts';
import { displayPath } from '../workspace/layout.ts';
import { publishUnique, replaceFile } from '../workspace/files.ts';
import { stagedModeChanges } from '../repo/git.ts';
import type { TypeExtras } from './pipelines.ts';
import { patchStemFor } from './report.ts';
import type { RunContext } from './runContext.ts';
import type { Worktree } from '../repo/workspaceRepo.ts';

/**
 * The file whose added lines carry the redaction marker more often than its removed lines
 * did: the agent copied text it saw redacted (write_file and edit_file refuse that; a
 * run_command or the command engine could still do it). Null when there is none.
 */
function writesRedactionMarker(patch: Buffer): string | null {
  let file: string | null = null;
  const balance = new Map<string, number>();
  const count = (line: string) => line.split(REDACTED).length - 1;
  let header = false; // between "diff --git" and the first hunk: ---/+++ name the files there
  for (const line of patch.toString('utf8').split('\n')) {
    if (line.startsWith('diff --git ')) [header, file] = [true, line.replace(/^diff --git a\/.* b\//, '')];
    else if (line.startsWith('@@')) header = false;
    else if (header) continue;
    else if (file && line.startsWith('+')) balance.set(file, (balance.get(file) ?? 0) + count(line));
    else if (file && line.startsWith('-')) balance.set(file, (balance.get(file) ?? 0) - count(line));
  }
  return [...balance].find(([, n]) => n > 0)?.[0] ?? null;
}

/** Why a change cannot be proposed (the gate would refuse it too), or null. */
export async function refusedChange(
  rc: RunContext,
  worktree: Worktree,
  diff: { patch: Buffer; files: string[] },
): Promise<{ message: string; violations: string[] } | null> {
  const { config } = rc.settings;
  const denied = denyMatcher([...rc.project.deny, ...config.patch.protected]);
  const inScope = scopeMatcher(rc.task.scope, rc.project.scope);
  // A symlink, a submodule, or an executable bit outside patch.executable.
  const executable = anchoredMatcher(config.patch.executable);
  const judged = (await stagedModeChanges(worktree.dir, worktree.baseCommit)).map((m) => ({ path: m.path, problems: modeProblems([m], executable) }));
  const badModes = judged.filter((m) => m.problems.length > 0);
  const modeIssues = [...new Set(badModes.flatMap((m) => m.problems))];
  const violations = [...new Set([...diff.files.filter((f) => denied(f) || !inScope(f)), ...badModes.map((m) => m.path)])];
  const tooBig = diff.patch.length > config.patch.max_bytes || diff.files.length > config.patch.max_files;
  const marker = writesRedactionMarker(diff.patch);
  if (violations.length === 0 && !tooBig && !marker) return null;
  const message = marker
    ? `the change writes ${REDACTED} (the marker the agent saw in place of a secret) into ${marker}: it would replace the real value in the bot's code`
    : modeIssues.length
      ? `the change cannot be proposed: ${modeIssues.join('; ')}`
      : violations.length
        ? `the change touches files outside the task scope or on the deny list: ${violations.join(', ')}`
        : `the change is too large to propose (${diff.files.length} files, ${diff.patch.length} bytes; patch.max_files ${config.patch.max_files}, patch.max_bytes ${config.patch.max_bytes})`;
  return { message, violations };
}

export async function writePatch(
  rc: RunContext,
  diff: { patch: Buffer; files: string[] },
  worktree: Worktree,
  risk: RiskLevel,
  summary: string,
  extras: TypeExtras,
  regressions: Regression[],
  stopped: ErrorInfo | null = null,
): Promise<string[]> {
  const { layout } = rc.settings;
  // A patch of this task still waiting for review is never replaced: the new one goes beside it.
  const patchFile = await publishUnique(layout.patches.pending, await patchStemFor(layout, rc.task.id, rc.runId), '.patch', diff.patch);
  // Artifacts (a trained model, often git-ignored) travel next to the patch; the gate installs them.
  const artifacts: PatchSidecar['artifacts'] = [];
  const artifactDir = `${patchFile.replace(/\.patch$/, '')}.artifacts`;
  for (const rel of extras.retrain?.artifacts ?? []) {
    const data = await fs.readFile(path.join(worktree.dir, rel));
    await fs.mkdir(path.dirname(path.join(artifactDir, rel)), { recursive: true });
    await fs.writeFile(path.join(artifactDir, rel), data);
    artifacts.push({ path: rel, sha256: createHash('sha256').update(data).digest('hex'), bytes: data.length });
  }
  const sidecar: PatchSidecar = {
    task_id: rc.task.id,
    run_id: rc.runId,
    regressions,
    project: rc.project.name,
    branch: worktree.branch,
    base_commit: worktree.baseCommit,
    files: diff.files,
    scope: rc.task.scope,
    sha256: createHash('sha256').update(diff.patch).digest('hex'),
    bytes: diff.patch.length,
    risk_level: risk,
    summary: rc.redact(summary),
    created_at: new Date().toISOString(),
    artifacts,
    retrain: extras.retrain?.comparison ?? null,
    checks_unsandboxed: rc.settings.config.sandbox === 'none',
    incomplete: stopped !== null,
    stopped_because: stopped ? rc.redact(stopped.message) : null,
  };
  const sidecarFile = await publishUnique(layout.patches.pending, path.basename(patchFile), '.json', `${JSON.stringify(sidecar, null, 2)}\n`);
  return [patchFile, sidecarFile];
}

/** The sidecar of a patch filed before its checks ran learns of the regressions they found (unless a person moved it meanwhile). */
export async function noteRegressions(sidecarFile: string, regressions: Regression[], risk: RiskLevel, log: Logger): Promise<void> {
  try {
    const sidecar = await readJsonFile(sidecarFile, PatchSidecarSchema);
    await replaceFile(sidecarFile, `${JSON.stringify({ ...sidecar, regressions, risk_level: risk }, null, 2)}\n`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') log.warn('the incomplete patch moved before its regressions could be noted in its sidecar');
    else log.warn({ err: toErrorInfo(error).message }, 'the regressions could not be noted in the sidecar of the incomplete patch');
  }
}

/** A patch filed beside others of the task still waiting for review says so. */
export function noteFiledBeside(extras: TypeExtras, pending: string[], filed: string, layout: Settings['layout']): void {
  const beside = pending.filter((f) => f !== filed);
  if (beside.length)
    extras.notes.push(
      `Filed beside ${beside.map((f) => displayPath(layout, f)).join(', ')}, which ${beside.length === 1 ? 'is' : 'are'} still waiting for review; approve or reject each on its own.`,
    );
}
