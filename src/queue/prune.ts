/** Worktrees left by dead runs (kill -9, power loss) are removed at start. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Settings } from '../workspace/config.ts';
import { git, removeWorktree } from '../run/git.ts';
import { exists } from '../workspace/files.ts';
import { leaseAlive, readOwner } from './lease.ts';

/** Run ids of tasks whose owners are alive (their worktrees must stay). */
async function liveRunIds(settings: Settings): Promise<Set<string>> {
  const live = new Set<string>();
  const { processing } = settings.layout;
  for (const name of await fs.readdir(processing).catch(() => [] as string[])) {
    if (name.startsWith('.') || !name.endsWith('.md')) continue;
    const file = path.join(processing, name);
    const owner = await readOwner(file);
    if (owner && (await leaseAlive(file, settings.config.queue.lease_stale_s * 1000))) live.add(owner.run_id);
  }
  return live;
}

export async function pruneWorktrees(settings: Settings, log: Logger, options: { includeGate?: boolean } = {}): Promise<string[]> {
  const live = await liveRunIds(settings);
  const root = settings.layout.worktrees;
  const removed: string[] = [];
  const isLive = (name: string) => live.has(name.replace(/-base$/, '')) || (name.startsWith('gate-') && !options.includeGate);
  for (const project of Object.values(settings.projects)) {
    if (!(await exists(project.repoPath))) continue;
    const list = await git(project.repoPath, ['worktree', 'list', '--porcelain']).catch(() => '');
    for (const line of list.split('\n')) {
      if (!line.startsWith('worktree ')) continue;
      const dir = line.slice('worktree '.length);
      if (path.dirname(path.resolve(dir)) !== path.resolve(root) || isLive(path.basename(dir))) continue;
      await removeWorktree(project.repoPath, dir);
      removed.push(dir);
    }
    await git(project.repoPath, ['worktree', 'prune']).catch(() => undefined);
  }
  for (const name of await fs.readdir(root).catch(() => [] as string[])) {
    const base = name.replace(/\.exclude$/, '');
    if (isLive(base)) continue;
    await fs.rm(path.join(root, name), { recursive: true, force: true });
  }
  if (removed.length) log.warn({ removed }, `removed ${removed.length} orphaned worktree(s)`);
  return removed;
}
