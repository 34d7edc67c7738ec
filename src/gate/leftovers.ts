/**
 * Finishing what a gate run killed mid-filing left behind. Filing a decision is a few
 * steps (record, move the patch, move its sidecar and artifacts, remove the run's state in
 * gate-snapshots/); a kill can stop it anywhere, and the next gate run (under the gate
 * lock) completes it from what is on disk.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Settings } from '../workspace/config.ts';
import { faulty, retryBusy, sha256File } from '../workspace/files.ts';
import { gateStateDir } from './gateRun.ts';
import { followFiledPatch } from './patchFiles.ts';

/**
 * A move is a hard link then an unlink (files.ts): a crash between the two leaves the
 * private name and the filed copy as two links of one file. Returns the filed copy.
 */
export async function filedCopy(settings: Settings, taken: string): Promise<string | null> {
  const stat = await fs.stat(taken).catch(() => null);
  if (!stat || stat.nlink < 2) return null;
  for (const dir of [settings.layout.patches.applied, settings.layout.patches.rejected]) {
    for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
      if (!name.endsWith('.patch')) continue;
      const other = await fs.stat(path.join(dir, name)).catch(() => null);
      if (other && other.ino === stat.ino && other.dev === stat.dev) return path.join(dir, name);
    }
  }
  return null;
}

/** Completes a move the crash cut short: the second link goes, the sidecar and artifacts follow the patch. */
export async function finishFiling(settings: Settings, taken: string, original: string, filed: string): Promise<void> {
  await retryBusy(() => faulty('unlink', taken, () => fs.unlink(taken)), taken);
  await followFiledPatch(settings, original.replace(/\.patch$/i, ''), filed);
}

/**
 * A run killed after its patch was filed, before the sidecar and artifacts followed and its
 * state was removed: finish both. The state of a patch still in approved/ (under any name)
 * stays: that patch is gated again and needs it.
 */
export async function tidyAfterFiledRuns(settings: Settings, log: Logger): Promise<void> {
  const stateDir = gateStateDir(settings);
  const states = (await fs.readdir(stateDir).catch(() => [] as string[])).filter((n) => /^[0-9a-f]{64}\./.test(n));
  if (states.length === 0) return;
  const { approved } = settings.layout.patches;
  const waiting = new Set<string>();
  for (const name of await fs.readdir(approved).catch(() => [] as string[])) {
    if (name.endsWith('.patch')) waiting.add(await sha256File(path.join(approved, name)).catch(() => ''));
  }
  for (const sha of new Set(states.map((n) => n.slice(0, 64)))) {
    if (waiting.has(sha)) continue;
    const filed = await filedWithContent(settings, sha);
    if (filed) {
      const stem = path.basename(filed).replace(/\.patch$/i, '');
      // <id>.patch may have been filed as <id>-2.patch when the name was taken.
      for (const id of [stem, stem.replace(/-\d+$/, '')]) if (await followFiledPatch(settings, id, filed)) break;
    }
    await Promise.all(states.filter((n) => n.startsWith(sha)).map((n) => fs.rm(path.join(stateDir, n), { force: true })));
    log.warn(
      { sha256: sha.slice(0, 12), filed: filed ? path.relative(settings.layout.root, filed) : null },
      'a gate run killed after filing its patch: finished tidying up',
    );
  }
}

async function filedWithContent(settings: Settings, sha: string): Promise<string | null> {
  for (const dir of [settings.layout.patches.applied, settings.layout.patches.rejected]) {
    for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
      if (name.endsWith('.patch') && (await sha256File(path.join(dir, name)).catch(() => '')) === sha) return path.join(dir, name);
    }
  }
  return null;
}
