/**
 * The gate's first step: whether an approved patch may be tried at all. Its sidecar says which
 * project, branch and scope; the patch text says what it touches; a retrained model must beat
 * its baseline; its artifacts must match the sidecar. Nothing is written here.
 */
import { createHash } from 'node:crypto';
import { PatchSidecarSchema, type PatchSidecar } from '../contract/patch.ts';
import { readJsonFileOrNull } from '../contract/readJson.ts';
import { toErrorInfo } from '../contract/errors.ts';
import type { Project, Settings } from '../workspace/config.ts';
import { anchoredMatcher, denyMatcher, scopeMatcher } from '../safety/globs.ts';
import { loadArtifacts } from './artifacts.ts';
import { appliedCopy } from './alreadyApplied.ts';
import { normaliseResavedPatch } from './crlfPatch.ts';
import { rejected, type Admission, type GateRun, type Verdict } from './gateRun.ts';
import { inspectPatch, type PatchRules } from './inspect.ts';
import { proposalFiles } from './patchFiles.ts';

/** The admission of the patch, or the verdict that ends its run here. Fills in the run's sidecar. */
export async function admit(run: GateRun): Promise<Admission | Verdict> {
  const { settings, id, log } = run;
  const found = await findSidecar(settings, id);
  if ('problems' in found) {
    // A copy of an applied patch (Explorer's "x - Copy.patch") has no sidecar of its own.
    const copy = await appliedCopy(run);
    if (copy) return copy;
    // A damaged sidecar goes with its patch into rejected/, where the person looks.
    run.sidecarFile = found.damaged;
    const why = found.problems.length ? ` (${found.problems.join('; ')})` : '';
    return rejected(`no sidecar ${id}.patch.json in patches/approved/ or patches/pending/${why}; the gate needs it to know the project and scope`);
  }
  const { sidecar } = found;
  run.sidecar = sidecar;
  run.sidecarFile = found.file;
  const project = settings.projects[sidecar.project];
  if (!project) return rejected(`unknown project "${sidecar.project}" (not in meta-agent.yaml)`);
  const rules = patchRules(settings, project, sidecar.scope);
  // An editor re-saved it with CRLF: apply (and inspect) what git wrote; the file and its sha256 stay the person's.
  const resaved = await normaliseResavedPatch(run.bytes, project.repoPath, `refs/heads/${sidecar.branch}`, sidecar.sha256);
  if (resaved) log.info("the patch was re-saved with CRLF line endings (by an editor); the gate applies it with git's line endings");
  run.crlfNormalised = resaved !== null;
  const patch = resaved ?? run.bytes;
  const inspection = inspectPatch(patch.toString('utf8'), rules);
  if (inspection.problems.length) return rejected(`the patch is not allowed: ${inspection.problems.join('; ')}`);
  const edited = createHash('sha256').update(patch).digest('hex') !== sidecar.sha256;
  const retrain = retrainRefusal(sidecar);
  if (retrain) return rejected(retrain, { edited });
  try {
    const artifacts = await loadArtifacts(settings, id, sidecar, rules);
    return { sidecar, project, rules, patch, files: inspection.files, edited, artifacts };
  } catch (error) {
    return rejected(`the patch's artifacts are not usable: ${toErrorInfo(error).message}`, { edited });
  }
}

/**
 * `<id>.patch.json` beside the patch in approved/, or still in pending/ (the patch alone was
 * moved). One that is damaged or not a sidecar is passed over, and said in the rejection.
 */
async function findSidecar(settings: Settings, id: string): Promise<{ sidecar: PatchSidecar; file: string } | { problems: string[]; damaged: string | null }> {
  const problems: string[] = [];
  let damaged: string | null = null;
  for (const dir of [settings.layout.patches.approved, settings.layout.patches.pending]) {
    const file = proposalFiles(dir, id).sidecar;
    try {
      const sidecar = await readJsonFileOrNull(file, PatchSidecarSchema);
      if (sidecar) return { sidecar, file };
    } catch (error) {
      problems.push(toErrorInfo(error).message);
      damaged ??= file;
    }
  }
  return { problems, damaged };
}

/** What a patch of this project and scope may touch, and which files it may make executable. */
function patchRules(settings: Settings, project: Project, scope: readonly string[]): PatchRules {
  return {
    inScope: scopeMatcher(scope, project.scope),
    denied: denyMatcher([...project.deny, ...settings.config.patch.protected]),
    executable: anchoredMatcher(settings.config.patch.executable),
  };
}

/** A retrained model is applied only if it beats the baseline. */
function retrainRefusal(sidecar: PatchSidecar): string | null {
  const r = sidecar.retrain;
  if (!r || r.beats_baseline) return null;
  return `the retrained model does not beat the baseline: ${r.metric} ${r.candidate} vs ${r.baseline} (margin ${r.margin}, ${r.higher_is_better ? 'higher' : 'lower'} is better); candidate metrics ${JSON.stringify(r.candidate_metrics)}, baseline ${JSON.stringify(r.baseline_metrics)}`;
}
