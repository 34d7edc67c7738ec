/**
 * Recovery at the folder host's start (and at each scan): the tasks a stopped or dead folder
 * host left in processing/ are taken over for the same ledger run, before crash recovery would
 * return them to inbox/, so their jobs (the same ids) are followed again and filed once.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ledgerFor, type Claim } from '../../queue/folders.ts';
import { clearLease, leaseAlive, readOwner, takeLease } from '../../workspace/lease.ts';
import { ledgerKey } from '../../queue/ledger.ts';
import type { Layout } from '../../workspace/layout.ts';

/**
 * Each orphaned task in processing/ as a claim of its recorded run, its lease taken over.
 * One at a time: the caller starts following each before the next is looked at, so `skip`
 * (followed already, or stopping) sees it.
 */
export async function* orphanedClaims(layout: Layout, staleMs: number, skip: (file: string) => boolean): AsyncGenerator<Claim> {
  const names = await fs.readdir(layout.processing).catch(() => [] as string[]);
  for (const entry of names) {
    if (entry.startsWith('.') || !entry.toLowerCase().endsWith('.md')) continue;
    const file = path.join(layout.processing, entry);
    if (skip(file)) continue;
    const owner = await readOwner(file);
    // No owner note: killed between the claim and its lease; crash recovery returns it to inbox/.
    if (!owner || (await leaseAlive(file, staleMs))) continue;
    const content = await fs.readFile(file).catch(() => null);
    if (!content) continue;
    const name = entry.replace(`.${owner.run_id}`, '');
    const { key, sha256 } = ledgerKey(name, content);
    const run = (await ledgerFor(layout).get(key))?.runs.find((r) => r.run_id === owner.run_id);
    if (!run || run.finalized_at) continue;
    await clearLease(file);
    const lease = await takeLease(file, owner.run_id, staleMs);
    yield { file, name, runId: owner.run_id, key, sha256, content, lease };
  }
}
