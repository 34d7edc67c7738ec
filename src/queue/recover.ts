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
import { Ledger, type LedgerEntry, ledgerKey, type LedgerRun } from './ledger.ts';
import { clearDeadTaskIdLocks } from './taskIdLock.ts';
import { clearLease, killLeftoverGroup, leaseAlive, pidAlive, readOwner } from '../workspace/lease.ts';
import { renameBusy, tempWriterPid } from '../workspace/files.ts';
import { ledgerFor, moveClaimed, moveUnique, takePrivately, type Disposition } from './folders.ts';
import { defaultIdFor, parseTask } from '../contract/task.ts';
import { readJsonFile } from '../contract/readJson.ts';
import { ReportOutcomeSchema } from '../contract/stateFiles.ts';

export interface RecoveryResult {
  returned: string[];
  failed: string[];
  finalized: string[];
}

/**
 * How long ago a file changed, by the wall clock (the only clock file times share). A time
 * "in the future" means the clock went back since (or another host's runs ahead): such a
 * file counts as old, not young, so a task is not stranded for as long as the jump; the
 * jump is logged once per file.
 */
function ageOf(file: string, timeMs: number, log: Logger): number {
  const age = Date.now() - timeMs;
  if (age >= 0) return age;
  if (!jumpsLogged.has(file)) {
    jumpsLogged.add(file);
    log.warn(
      { file, ahead_s: Math.round(-age / 1000) },
      `a file time is ${Math.round(-age / 1000)} s in the future: the clock went back (or another machine's runs ahead); treated as old`,
    );
  }
  return Infinity;
}
const jumpsLogged = new Set<string>();

export async function recoverOrphans(layout: Layout, staleMs: number, log: Logger): Promise<RecoveryResult> {
  const result: RecoveryResult = { returned: [], failed: [], finalized: [] };
  await clearDeadTaskIdLocks(layout, staleMs, log);
  const names = await fs.readdir(layout.processing).catch(() => [] as string[]);
  for (const entry of names) {
    if (entry.startsWith('.taken-')) {
      await restoreTakenName(layout, entry, staleMs, log);
      continue;
    }
    if (entry.startsWith('.') || !entry.toLowerCase().endsWith('.md')) continue;
    const file = path.join(layout.processing, entry);
    // A claim is taken by rename and leased a moment later: leave young, unleased claims
    // alone, before asking whether the lease is alive (its note may appear in between).
    const stat = await fs.stat(file).catch(() => null);
    if (!stat) continue;
    if (!(await readOwner(file)) && ageOf(file, stat.ctimeMs, log) < staleMs) continue;
    if (await leaseAlive(file, staleMs)) continue;
    const owner = await readOwner(file);
    const taken = await takePrivately(file);
    if (!taken) continue; // another recoverer won
    // Its agent may still be running (and writing to its worktree, and spending tokens).
    if (owner && killLeftoverGroup(owner)) log.warn({ task_file: entry, pgid: owner.pgid }, 'killed what the dead worker left running (its process group)');
    await clearLease(file);
    const content = await fs.readFile(taken);
    const name = originalNameOf(entry, owner?.run_id);
    const { key, sha256 } = ledgerKey(name, content);
    const ledger = ledgerFor(layout);
    const entryBefore = await ledger.get(key);
    const lastRun = entryBefore?.runs.at(-1);
    // The report itself says whether the dead run got that far (a kill between writing it and
    // telling the ledger): its run id is the owner note's.
    const fromReport = owner && !lastRun?.reported ? await reportOfRun(layout, content, name, owner.run_id) : null;
    const { disposition, recovered } = recoveryOf(name, fromReport, lastRun, entryBefore);
    let moved: string;
    try {
      // The ledger first: once the file is back in inbox/, a new claim writes the same entry.
      await ledger.update(key, { key, name, sha256 }, (e) => {
        const run = owner ? e.runs.find((r) => r.run_id === owner.run_id) : e.runs.at(-1);
        if (run && fromReport)
          run.reported = {
            status: fromReport.status,
            at: new Date().toISOString(),
            ...('explanation' in fromReport ? { explanation: fromReport.explanation } : {}),
          };
        if (run) run.recovered = recovered;
        else
          e.runs.push({
            run_id: owner?.run_id ?? 'unknown',
            started_at: new Date(stat.ctimeMs).toISOString(),
            host: owner?.host ?? '?',
            pid: owner?.pid ?? 0,
            recovered,
          });
      });
      moved = await moveClaimed(layout, taken, name, disposition);
    } catch (error) {
      // A full disk, say: give the file its name back now (a private name would hide it from
      // a resumed cycle looking for its task); a scan lease_stale_s later tries again.
      await renameBusy(taken, file).catch(() => undefined);
      throw error;
    }
    log.warn({ task_file: name, owner, recovered, to: path.relative(layout.root, moved) }, `recovered a task left by a dead worker: ${recovered}`);
    (recovered === 'returned_to_inbox' ? result.returned : recovered === 'finalized_from_ledger' ? result.finalized : result.failed).push(moved);
  }
  await clearOrphanedLeases(layout, names, staleMs, log);
  return result;
}

/** A recoverer died between taking a file and moving it: give it its name back. */
async function restoreTakenName(layout: Layout, entry: string, staleMs: number, log: Logger): Promise<void> {
  const stat = await fs.stat(path.join(layout.processing, entry)).catch(() => null);
  if (stat && ageOf(path.join(layout.processing, entry), stat.ctimeMs, log) > staleMs)
    await moveUnique(path.join(layout.processing, entry), layout.processing, entry.replace(/^\.taken-[0-9a-f]+-/, ''));
}

/** What recovery does with a dead run's task: finish it from its report or the ledger, fail it after a second crash, or put it back. */
function recoveryOf(
  name: string,
  fromReport: Disposition | null,
  lastRun: LedgerRun | undefined,
  entryBefore: LedgerEntry | null | undefined,
): { disposition: Disposition; recovered: NonNullable<LedgerRun['recovered']> } {
  if (fromReport) return { disposition: fromReport, recovered: 'finalized_from_ledger' };
  if (lastRun?.reported && !lastRun.finalized_at && lastRun.reported.status !== 'interrupted') {
    // The report is written: only the move was lost. Finish it; do not run again.
    const disposition: Disposition =
      lastRun.reported.status === 'ok' ? { status: 'ok' } : { status: 'error', explanation: lastRun.reported.explanation ?? 'The run failed; see its report.' };
    return { disposition, recovered: 'finalized_from_ledger' };
  }
  if (entryBefore && Ledger.crashes(entryBefore) >= 1) {
    const disposition: Disposition = {
      status: 'error',
      explanation: `# ${name} failed\n\n**What went wrong** (interrupted): the worker running this task died twice (crash, kill or power loss), so it is not retried again automatically.\n\n**How to fix it:** check logs/ for what happened around the crashes; move the file back into inbox/ to try once more.\n`,
    };
    return { disposition, recovered: 'failed_interrupted_twice' };
  }
  return { disposition: { status: 'interrupted' }, recovered: 'returned_to_inbox' };
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
    if (
      await fs.stat(file).then(
        () => true,
        () => false,
      )
    )
      continue; // claimed since the listing
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
      // Written "in the future" (the clock went back since): old, not young.
      const age = stat ? Date.now() - stat.mtimeMs : 0;
      if (!stat || (age >= 0 && age < staleMs)) continue;
      if (
        await fs.rm(file, { force: true }).then(
          () => true,
          () => false,
        )
      )
        removed.push(file);
    }
  };
  await visit(layout.root, 0);
  return removed;
}

/**
 * The disposition a dead run's report gives, if that run wrote one: reports/<id>.json (or a
 * `<id>.<ms>.json` beside another run's) whose run_id is `runId`. Null when it wrote none,
 * or was interrupted (then the task goes back to inbox/ as usual).
 */
async function reportOfRun(layout: Layout, content: Buffer, name: string, runId: string): Promise<Exclude<Disposition, { status: 'interrupted' }> | null> {
  let id: string;
  try {
    id = parseTask(content, name).id;
  } catch {
    id =
      defaultIdFor(name)
        .replace(/[^A-Za-z0-9._-]/g, '_')
        .replace(/^[.]+/, '_')
        .replace(/\.\./g, '_') || 'invalid-task';
  }
  const names = await fs.readdir(layout.reports).catch(() => [] as string[]);
  const candidates = names.filter((n) => n === `${id}.json` || (n.startsWith(`${id}.`) && /^\d+\.json$/.test(n.slice(id.length + 1))));
  for (const candidate of candidates) {
    // Unreadable or damaged: not a report this run finished writing.
    const report = await readJsonFile(path.join(layout.reports, candidate), ReportOutcomeSchema).catch(() => null);
    if (report?.run_id !== runId) continue;
    if (report.error?.kind === 'interrupted') return null;
    if (report.status === 'ok') return { status: 'ok' };
    return {
      status: 'error',
      explanation: `# ${name} failed\n\n**What went wrong** (${report.error?.kind ?? 'internal'}): ${report.error?.message ?? 'unknown error'}\n\nTask id: \`${id}\`. Full report: \`${report.report_md ?? ''}\`.\n`,
    };
  }
  return null;
}

/** Claims may have added `.<run_id>` to the name to avoid a clash in processing/. */
function originalNameOf(entry: string, runId: string | undefined): string {
  return runId ? entry.replace(`.${runId}`, '') : entry;
}
