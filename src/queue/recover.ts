/**
 * Recovery, Postfix-style: a scan of processing/, not a database. A task whose owner is
 * dead (stale lease) is finalized if its report was already written (per the ledger),
 * returned to inbox/ once if not, and moved to failed/ if it dies a second time. Temp files
 * of dead writers are swept too (at start and hourly, with retention).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Layout } from '../workspace/layout.ts';
import { Ledger, ledgerKey } from './ledger.ts';
import { clearLease, leaseAlive, pidAlive, readOwner } from './lease.ts';
import { tempWriterPid } from '../workspace/files.ts';
import { ledgerFor, moveClaimed, moveUnique, takePrivately, type Disposition } from './folders.ts';

export interface RecoveryResult {
  returned: string[];
  failed: string[];
  finalized: string[];
}

export async function recoverOrphans(layout: Layout, staleMs: number, log: Logger): Promise<RecoveryResult> {
  const result: RecoveryResult = { returned: [], failed: [], finalized: [] };
  const names = await fs.readdir(layout.processing).catch(() => [] as string[]);
  for (const entry of names) {
    if (entry.startsWith('.taken-')) {
      // A recoverer died between taking a file and moving it: give it its name back.
      const stat = await fs.stat(path.join(layout.processing, entry)).catch(() => null);
      if (stat && Date.now() - stat.ctimeMs > staleMs) await moveUnique(path.join(layout.processing, entry), layout.processing, entry.replace(/^\.taken-[0-9a-f]+-/, ''));
      continue;
    }
    if (entry.startsWith('.') || !entry.toLowerCase().endsWith('.md')) continue;
    const file = path.join(layout.processing, entry);
    // A claim is taken by rename and leased a moment later: leave young, unleased claims
    // alone, before asking whether the lease is alive (its note may appear in between).
    const stat = await fs.stat(file).catch(() => null);
    if (!stat) continue;
    if (!(await readOwner(file)) && Date.now() - stat.ctimeMs < staleMs) continue;
    if (await leaseAlive(file, staleMs)) continue;
    const owner = await readOwner(file);
    const taken = await takePrivately(file);
    if (!taken) continue; // another recoverer won
    await clearLease(file);
    const content = await fs.readFile(taken);
    const name = originalNameOf(entry, owner?.run_id);
    const { key, sha256 } = ledgerKey(name, content);
    const ledger = ledgerFor(layout);
    const entryBefore = await ledger.get(key);
    const lastRun = entryBefore?.runs.at(-1);
    let disposition: Disposition;
    let recovered: 'returned_to_inbox' | 'failed_interrupted_twice' | 'finalized_from_ledger';
    if (lastRun?.reported && !lastRun.finalized_at && lastRun.reported.status !== 'interrupted') {
      // The report is written: only the move was lost. Finish it; do not run again.
      disposition = lastRun.reported.status === 'ok' ? { status: 'ok' } : { status: 'error', explanation: lastRun.reported.explanation ?? 'The run failed; see its report.' };
      recovered = 'finalized_from_ledger';
    } else if (entryBefore && Ledger.crashes(entryBefore) >= 1) {
      disposition = {
        status: 'error',
        explanation: `# ${name} failed\n\n**What went wrong** (interrupted): the worker running this task died twice (crash, kill or power loss), so it is not retried again automatically.\n\n**How to fix it:** check logs/ for what happened around the crashes; move the file back into inbox/ to try once more.\n`,
      };
      recovered = 'failed_interrupted_twice';
    } else {
      disposition = { status: 'interrupted' };
      recovered = 'returned_to_inbox';
    }
    let moved: string;
    try {
      // The ledger first: once the file is back in inbox/, a new claim writes the same entry.
      await ledger.update(key, { key, name, sha256 }, (e) => {
        const run = owner ? e.runs.find((r) => r.run_id === owner.run_id) : e.runs.at(-1);
        if (run) run.recovered = recovered;
        else e.runs.push({ run_id: owner?.run_id ?? 'unknown', started_at: new Date(stat.ctimeMs).toISOString(), host: owner?.host ?? '?', pid: owner?.pid ?? 0, recovered });
      });
      moved = await moveClaimed(layout, taken, name, disposition);
    } catch (error) {
      // A full disk, say: give the file its name back now (a private name would hide it from
      // a resumed cycle looking for its task); a scan lease_stale_s later tries again.
      await fs.rename(taken, file).catch(() => undefined);
      throw error;
    }
    log.warn({ task_file: name, owner, recovered, to: path.relative(layout.root, moved) }, `recovered a task left by a dead worker: ${recovered}`);
    (recovered === 'returned_to_inbox' ? result.returned : recovered === 'finalized_from_ledger' ? result.finalized : result.failed).push(moved);
  }
  await clearOrphanedLeases(layout, names, staleMs, log);
  return result;
}

/**
 * A lease whose task file is gone: the worker moved the task out (settle) and died before
 * it released the lease. Nothing else would ever remove it, since recovery starts from
 * task files. Cleared once its owner is dead (or the lock stale); a live owner is mid-move.
 */
async function clearOrphanedLeases(layout: Layout, entries: string[], staleMs: number, log: Logger): Promise<void> {
  const present = new Set(entries);
  const orphans = new Set<string>();
  for (const entry of entries) {
    const task = /^\.(.+)\.(?:lock|owner\.json)$/.exec(entry)?.[1];
    if (task && !task.startsWith('taken-') && !present.has(task)) orphans.add(task);
  }
  for (const task of orphans) {
    const file = path.join(layout.processing, task);
    if (await fs.stat(file).then(() => true, () => false)) continue; // claimed since the listing
    if (await leaseAlive(file, staleMs)) continue;
    await clearLease(file);
    log.info({ task_file: task }, 'removed the lease of a task that was already settled by a dead worker');
  }
}

/**
 * Temp files of dead writers: a process killed between writing a temp file and publishing it
 * (files.ts names it .<name>.<pid>.<hex>.tmp) leaves it behind, anywhere in the workspace.
 * One is removed only when its pid is not running on this host and it was last written more
 * than `staleMs` ago: on a shared folder the pid may be another host's, but a live writer's
 * temp lives for milliseconds. Git checkouts (the demo repo), worktrees and caches are not ours
 * and are skipped. Returns the removed files.
 */
export async function removeDeadTemps(layout: Layout, staleMs: number): Promise<string[]> {
  const removed: string[] = [];
  const skip = new Set([layout.worktrees, layout.cache]);
  const visit = async (dir: string, depth: number): Promise<void> => {
    const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
    if (depth > 0 && entries.some((e) => e.name === '.git')) return;
    for (const entry of entries) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (!skip.has(file) && entry.name !== 'node_modules') await visit(file, depth + 1);
        continue;
      }
      const pid = entry.isFile() ? tempWriterPid(entry.name) : null;
      if (pid === null || pidAlive(pid)) continue;
      const stat = await fs.stat(file).catch(() => null);
      if (!stat || Date.now() - stat.mtimeMs < staleMs) continue;
      if (await fs.rm(file, { force: true }).then(() => true, () => false)) removed.push(file);
    }
  };
  await visit(layout.root, 0);
  return removed;
}

/** Claims may have added `.<run_id>` to the name to avoid a clash in processing/. */
function originalNameOf(entry: string, runId: string | undefined): string {
  return runId ? entry.replace(`.${runId}`, '') : entry;
}
