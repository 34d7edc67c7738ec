/**
 * A worker's result packaging: what a run left in the job's workspace (report, trajectory,
 * patch, its sidecar and artifacts) as the bundle the folder host files (queue/bullmq/job.ts).
 * Large artifacts go to the artifact store, when one is configured, and the bundle names them.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { MetaAgentError } from '../../contract/errors.ts';
import { PatchSidecarSchema } from '../../contract/patch.ts';
import { parseJsonText } from '../../contract/readJson.ts';
import type { Report } from '../../contract/report.ts';
import type { ArtifactPolicy } from '../../queue/bullmq/artifactStore.ts';
import { MAX_BUNDLE_ARTIFACT_BYTES, type Bundle, type BundleArtifact } from '../../queue/bullmq/job.ts';
import { thisHost } from '../../workspace/faults.ts';
import type { Layout } from '../../workspace/layout.ts';

/** The result of a run, read back from the job's workspace; artifacts over the inline limit go to the artifact store. */
export async function bundleOf(layout: Layout, report: Report, policy: ArtifactPolicy = { store: null, inlineBytes: 0 }): Promise<Bundle> {
  const read = (rel: string) => fs.readFile(path.join(layout.root, rel));
  const trajectory = report.trajectory
    ? await read(report.trajectory).then(
        (b) => b.toString('utf8'),
        () => null,
      )
    : null;
  const [patchRel, sidecarRel] = report.patch_files;
  const patch = patchRel && sidecarRel ? await patchOf(layout, patchRel, sidecarRel, policy) : null;
  return { report, trajectory, patch, worker: { host: thisHost(), pid: process.pid } };
}

/** The patch, its sidecar as written (the host files it byte for byte) and the artifacts the sidecar lists. */
async function patchOf(layout: Layout, patchRel: string, sidecarRel: string, policy: ArtifactPolicy): Promise<NonNullable<Bundle['patch']>> {
  const sidecarFile = path.join(layout.root, sidecarRel);
  const sidecarText = await fs.readFile(sidecarFile, 'utf8');
  const sidecar = parseJsonText(sidecarText, PatchSidecarSchema, sidecarFile);
  const total = sidecar.artifacts.reduce((sum, a) => sum + a.bytes, 0);
  if (!policy.store && total > MAX_BUNDLE_ARTIFACT_BYTES) {
    throw new MetaAgentError(
      'config',
      `the run's artifacts are ${total} bytes; a BullMQ result carries at most ${MAX_BUNDLE_ARTIFACT_BYTES} inline: set execution.artifact_store (a folder the workers and the folder host share) for larger ones, or use execution.engine local`,
      { file: 'meta-agent.yaml', field: 'execution.artifact_store' },
    );
  }
  const artifactDir = path.join(layout.root, patchRel.replace(/\.patch$/, '.artifacts'));
  const artifacts: BundleArtifact[] = [];
  let inline = 0;
  for (const a of sidecar.artifacts) {
    const file = path.join(artifactDir, a.path);
    // With a store, only small artifacts travel inline, and never more than the result's limit in all.
    if (policy.store && (a.bytes > policy.inlineBytes || inline + a.bytes > MAX_BUNDLE_ARTIFACT_BYTES)) {
      artifacts.push({ path: a.path, ...(await policy.store.put(file)) });
    } else {
      inline += a.bytes;
      artifacts.push({ path: a.path, base64: (await fs.readFile(file)).toString('base64') });
    }
  }
  return { patch: (await fs.readFile(path.join(layout.root, patchRel))).toString('base64'), sidecar: sidecarText, artifacts };
}
