/**
 * The journal of a running cycle: .meta-agent/supervisor/running/<cycle-id>.json, written
 * when the cycle starts, again once it is planned (before any task is created), and removed
 * once its report is written. A journal whose owner died (kill -9, power loss) names a cycle
 * to finish at the next start: the scheduler hands it to resumeSupervisorCycle, so the
 * night's cycle report is not lost.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MetaAgentError } from '../contract/errors.ts';
import { readJsonFileOrNull } from '../contract/readJson.ts';
import { CycleJournalSchema, type CycleJournal } from '../contract/stateFiles.ts';
import type { Settings } from '../workspace/config.ts';
import { pidAlive } from '../workspace/lease.ts';
import { replaceFile, retryWrite } from '../workspace/files.ts';

export type { CycleJournal } from '../contract/stateFiles.ts';

const runningDir = (settings: Settings) => path.join(settings.layout.state, 'supervisor', 'running');
const journalFile = (settings: Settings, cycleId: string) => path.join(runningDir(settings), `${cycleId}.json`);

export const thisProcess = (): CycleJournal['owner'] => ({ host: os.hostname(), pid: process.pid });

export async function saveJournal(settings: Settings, journal: CycleJournal): Promise<void> {
  await fs.mkdir(runningDir(settings), { recursive: true });
  await retryWrite(() => replaceFile(journalFile(settings, journal.cycle_id), `${JSON.stringify(journal, null, 2)}\n`));
}

export async function removeJournal(settings: Settings, cycleId: string): Promise<void> {
  await fs.rm(journalFile(settings, cycleId), { force: true });
}

/**
 * Journals of cycles whose process is gone (on this host: other hosts' pids cannot be probed),
 * oldest first. A damaged journal is passed over (its cycle cannot be resumed from it), as is
 * one removed meanwhile (its cycle finished).
 */
export async function orphanedCycles(settings: Settings): Promise<CycleJournal[]> {
  const names = (await fs.readdir(runningDir(settings)).catch(() => [] as string[])).filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort();
  const out: CycleJournal[] = [];
  for (const name of names) {
    const journal = await readJournal(path.join(runningDir(settings), name));
    if (journal && journal.owner.host === os.hostname() && journal.owner.pid !== process.pid && !pidAlive(journal.owner.pid)) out.push(journal);
  }
  return out.sort((a, b) => a.started_at.localeCompare(b.started_at));
}

async function readJournal(file: string): Promise<CycleJournal | null> {
  try {
    return await readJsonFileOrNull(file, CycleJournalSchema);
  } catch (error) {
    if (error instanceof MetaAgentError) return null;
    throw error;
  }
}
