/**
 * A worker's result packaging: what a run left in the job's workspace (report, trajectory,
 * patch, its sidecar and artifacts) as the bundle the folder host files (queue/bullmq/job.ts).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { MetaAgentError } from '../../contract/errors.ts';
import { PatchSidecarSchema } from '../../contract/patch.ts';
import { parseJsonText } from '../../contract/readJson.ts';
import type { Report } from '../../contract/report.ts';
import { MAX_BUNDLE_ARTIFACT_BYTES, type Bundle } from '../../queue/bullmq/job.ts';
import { thisHost } from '../../workspace/faults.ts';
import type { Layout } from '../../workspace/layout.ts';

/** The result of a run, read back from the job's workspace. */
export async function bundleOf(layout: Layout, report: Report): Promise<Bundle> {
  const read = (rel: string) => fs.readFile(path.join(layout.root, rel));
  const trajectory = report.trajectory
    ? await read(report.trajectory).then(
        (b) => b.toString('utf8'),
        () => null,
      )
    : null;
  const [patchRel, sidecarRel] = report.patch_files;
  const patch = patchRel && sidecarRel ? await patchOf(layout, patchRel, sidecarRel) : null;
  return { report, trajectory, patch, worker: { host: thisHost(), pid: process.pid } };
}

/** The patch, its sidecar as written (the host files it byte for byte) and the artifacts the sidecar lists. */
async function patchOf(layout: Layout, patchRel: string, sidecarRel: string): Promise<NonNullable<Bundle['patch']>> {
  const sidecarFile = path.join(layout.root, sidecarRel);
  const sidecarText = await fs.readFile(sidecarFile, 'utf8');
  const sidecar = parseJsonText(sidecarText, PatchSidecarSchema, sidecarFile);
  const total = sidecar.artifacts.reduce((sum, a) => sum + a.bytes, 0);
  if (total > MAX_BUNDLE_ARTIFACT_BYTES) {
    throw new MetaAgentError(
      'config',
      `the run's artifacts are ${total} bytes; a BullMQ result carries at most ${MAX_BUNDLE_ARTIFACT_BYTES} (an artifact store for larger ones is not built): use execution.engine local for this task type`,
      { file: 'meta-agent.yaml', field: 'execution' },
    );
  }
  const artifactDir = path.join(layout.root, patchRel.replace(/\.patch$/, '.artifacts'));
  const artifacts = await Promise.all(
    sidecar.artifacts.map(async (a) => ({ path: a.path, base64: (await fs.readFile(path.join(artifactDir, a.path))).toString('base64') })),
  );
  return { patch: (await fs.readFile(path.join(layout.root, patchRel))).toString('base64'), sidecar: sidecarText, artifacts };
}
