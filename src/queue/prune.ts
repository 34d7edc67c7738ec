/** Worktrees left by dead runs (kill -9, power loss) are removed at start. */
import { promises as fs, statSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Settings } from '../workspace/config.ts';
import { git, removeWorktree } from '../repo/git.ts';
import { exists } from '../workspace/files.ts';
import { linkRelPaths, removeLinks } from '../workspace/links.ts';
import { killLeftoverGroup, leaseAlive, readOwner } from '../workspace/lease.ts';

/** Run ids of the claims in processing/, by whether their owner is alive. */
async function claimedRunIds(settings: Settings, log: Logger): Promise<{ live: Set<string>; dead: Set<string> }> {
  const live = new Set<string>();
  const dead = new Set<string>();
  const { processing } = settings.layout;
  for (const name of await fs.readdir(processing).catch(() => [] as string[])) {
    if (name.startsWith('.') || !name.endsWith('.md')) continue;
    const file = path.join(processing, name);
    const owner = await readOwner(file);
    if (!owner) continue;
    if (await leaseAlive(file, settings.config.queue.lease_stale_s * 1000)) {
      live.add(owner.run_id);
      continue;
    }
    // A dead owner's `git worktree add` may outlive it (kill -9 mid-add on a slow disk) and
    // finish after this prune: stop what it left running first, or the worktree it makes
    // stays for good (the soak's night 15, seed 14).
    if (killLeftoverGroup(owner))
      log.warn({ task_file: name, pgid: owner.pgid }, 'killed what the dead worker left running (its process group) before removing its worktree');
    dead.add(owner.run_id);
  }
  return { live, dead };
}

/** @param includeGate the caller holds the gate lock, so every gate-* worktree is a dead gate run's */
export async function pruneWorktrees(settings: Settings, log: Logger, options: { includeGate?: boolean } = {}): Promise<string[]> {
  const { live, dead } = await claimedRunIds(settings, log);
  const root = settings.layout.worktrees;
  const removed: string[] = [];
  const staleMs = settings.config.queue.lease_stale_s * 1000;
  const startedAt = Date.now();
  // Other watchers may be creating worktrees right now (claimed after the snapshot above):
  // remove those of dead claims, and unknown ones only once they are older than a lease.
  const isLive = (name: string) => {
    const id = name.replace(/-base$/, '');
    if (name.startsWith('gate-')) return !options.includeGate;
    if (live.has(id)) return true;
    if (dead.has(id)) return false;
    const stat = statSync(path.join(root, name), { throwIfNoEntry: false });
    return stat !== undefined && startedAt - stat.mtimeMs < staleMs;
  };
  for (const project of Object.values(settings.projects)) {
    if (!(await exists(project.repoPath))) continue;
    const list = await git(project.repoPath, ['worktree', 'list', '--porcelain']).catch(() => '');
    for (const line of list.split('\n')) {
      if (!line.startsWith('worktree ')) continue;
      const dir = line.slice('worktree '.length);
      if (path.dirname(path.resolve(dir)) !== path.resolve(root) || isLive(path.basename(dir))) continue;
      await removeWorktree(project.repoPath, dir, linkRelPaths(project.link));
      removed.push(dir);
    }
    await git(project.repoPath, ['worktree', 'prune']).catch(() => undefined);
  }
  // A folder git no longer knows may still hold links of any project: unlinked before the rm.
  const allLinks = Object.values(settings.projects).flatMap((p) => linkRelPaths(p.link));
  for (const name of await fs.readdir(root).catch(() => [] as string[])) {
    const base = name.replace(/\.exclude$/, '');
    if (isLive(base)) continue;
    const leftover = path.join(root, name);
    if (
      !(await removeLinks(leftover, allLinks).then(
        () => true,
        () => false,
      ))
    )
      continue;
    await fs.rm(leftover, { recursive: true, force: true });
  }
  // Prompt files of dead runs, as the command engine wrote them before it moved them into the run's private temp folder (an upgraded workspace).
  const prompts = path.join(settings.layout.state, 'prompts');
  for (const name of await fs.readdir(prompts).catch(() => [] as string[])) {
    const stat = statSync(path.join(prompts, name), { throwIfNoEntry: false });
    if (!live.has(name.replace(/\.md$/, '')) && stat && startedAt - stat.mtimeMs > staleMs) await fs.rm(path.join(prompts, name), { force: true });
  }
  if (removed.length) log.warn({ removed }, `removed ${removed.length} orphaned worktree(s)`);
  return removed;
}
