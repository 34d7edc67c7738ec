/**
 * The ledger: one small JSON file per task instance (name + content hash) in
 * .meta-agent/ledger/. It makes "report written, then task finalized" idempotent across
 * crashes (recovery finalizes instead of re-running) and counts re-runs after crashes.
 * Only the lease holder writes an entry, so there is no write contention.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { MetaAgentError } from '../contract/errors.ts';
import { readJsonFileOrNull } from '../contract/readJson.ts';
import { LedgerEntrySchema, type LedgerEntry } from '../contract/stateFiles.ts';
import { replaceFile } from '../workspace/files.ts';

export type { LedgerEntry, LedgerRun } from '../contract/stateFiles.ts';

export function ledgerKey(name: string, content: Buffer): { key: string; sha256: string } {
  const sha256 = createHash('sha256').update(content).digest('hex');
  return { key: `${name.replace(/[^A-Za-z0-9._-]/g, '_')}-${sha256.slice(0, 16)}`, sha256 };
}

export class Ledger {
  constructor(readonly dir: string) {}

  private file(key: string): string {
    return path.join(this.dir, `${key}.json`);
  }

  /**
   * The entry, or undefined when there is none yet. A damaged one (a hand edit, a disk
   * fault) counts as none: the next update starts it afresh. Any other read error is
   * thrown: an entry that is there but cannot be read must not be overwritten.
   */
  async get(key: string): Promise<LedgerEntry | undefined> {
    try {
      return (await readJsonFileOrNull(this.file(key), LedgerEntrySchema)) ?? undefined;
    } catch (error) {
      if (error instanceof MetaAgentError) return undefined;
      throw error;
    }
  }

  async update(key: string, init: Omit<LedgerEntry, 'runs'>, change: (entry: LedgerEntry) => void): Promise<LedgerEntry> {
    const entry = (await this.get(key)) ?? { ...init, runs: [] };
    change(entry);
    await fs.mkdir(this.dir, { recursive: true });
    await replaceFile(this.file(key), `${JSON.stringify(entry, null, 2)}\n`);
    return entry;
  }

  /** Crashed runs: started but never finalized, and recovered. */
  static crashes(entry: LedgerEntry): number {
    return entry.runs.filter((r) => r.recovered === 'returned_to_inbox' || r.recovered === 'failed_interrupted_twice').length;
  }
}
