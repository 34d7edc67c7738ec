/**
 * The commit the gate makes carries the patch's sha256 as a trailer: how a later gate run
 * knows the patch was applied already (a crash after the commit, or a copy of the patch).
 */
import type { PatchSidecar } from '../contract/patch.ts';
import { git } from '../repo/git.ts';

const TRAILER_PATCH = 'Meta-Agent-Patch';

/** The trailer names the task (the sidecar's), not the file: `<id>.<run_id>.patch` belongs to task <id>. */
export function commitMessage(sidecar: PatchSidecar, sha256: string): string {
  const id = sidecar.task_id;
  const summary = sidecar.summary.trim() || `Apply ${id}`;
  const [first, ...rest] = summary.split('\n');
  const subject = first!.length > 72 ? `${first!.slice(0, 69)}...` : first!;
  const body = [first!.length > 72 ? first! : '', ...rest].join('\n').trim();
  return `${subject}\n\n${body ? `${body}\n\n` : ''}Meta-Agent-Task: ${id}\nRisk: ${sidecar.risk_level}\n${TRAILER_PATCH}: ${sha256}\n`;
}

/** The commit on `branch` that applied the patch with this sha256, or null (also when the branch is not there). */
export async function commitWithPatch(repo: string, branch: string, sha256: string): Promise<string | null> {
  const out = await git(repo, ['log', `refs/heads/${branch}`, '--format=%H', '-F', `--grep=${TRAILER_PATCH}: ${sha256}`, '-n', '1']).catch(() => '');
  return out.trim() || null;
}
