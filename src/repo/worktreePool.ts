/**
 * A pool of reusable worktrees per project: `limits.concurrency` slots, each created on
 * first use and reset to the base commit (`git reset --hard` + `git clean -ffdx`) for every
 * run that takes it. A fresh `git worktree add` writes every file of the repo (seconds on a
 * large repo or a slow disk); a reset rewrites only what the last run changed.
 *
 * The reset is done when a run gives its slot back (after its report is filed: runTask),
 * so the next run starts at once. The slot is then marked ready: in this process's memory,
 * with a random token in `slot-<n>.ready` that every taker deletes. A ready slot is taken
 * without a git process when this process made the mark, the token on disk is still its own
 * (no other process used the slot since), and the base is the same; else, and after a crash
 * or a restart (no mark in memory), it is reset when taken, as it always was. What the
 * mark trusts: that no process of the last run outlived it to write into the slot, which
 * holds on Linux (runsEndTheirProcesses); elsewhere slots are not marked, and each is reset
 * when taken. A slot whose lock was lost (this process froze, another host took the slot)
 * is neither reset nor marked at its run's end.
 *
 * Ownership is a lock with an owner note, like a claim (workspace/lease.ts lockActivity): a
 * slot held by a live process is never taken; a slot of a dead one (kill -9, power loss)
 * is taken over at once on this host, and whatever that run left is wiped by a reset when
 * the slot is taken (its taking deleted any ready token). All slots busy (a `run` beside `watch`): a fresh worktree, as
 * before the pool.
 *
 * `link:` paths are symlinks (junctions on Windows) to folders of the real repo. They are
 * unlinked (never followed) before the reset and the clean, so neither can reach into the
 * real repo, and made again afterwards from the current config: re-checked every run.
 * A slot is recreated when its project's repo or links change, when its `.git` file is not
 * the one it was made with, or when the reset fails; `prunePool` removes slots of projects
 * whose config changed or that are gone.
 *
 * The gate does not use the pool (gate.ts opens a fresh worktree): it is the one step that
 * writes to the real repository, it runs once per approved patch (people's pace, not a
 * burst), and a fresh checkout shares nothing with earlier agent runs, whose output is
 * hostile input.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { readJsonFile } from '../contract/readJson.ts';
import { PoolSlotStateSchema, type PoolSlotState } from '../contract/stateFiles.ts';
import { lockActivity } from '../workspace/lease.ts';
import type { Project, Settings } from '../workspace/config.ts';
import type { Layout } from '../workspace/layout.ts';
import { replaceFile } from '../workspace/files.ts';
import { ALWAYS_EXCLUDED, addWorktree, git, indexStamp, removeWorktree, resolveBranch, worktreeGitDir } from './git.ts';
import { linkPaths, openWorktree, type Worktree } from './workspaceRepo.ts';
import { removeLinks } from '../workspace/links.ts';

export function poolRoot(layout: Layout): string {
  return path.join(layout.state, 'pool-worktrees');
}

/** A project's pool folder: the name plus a hash, so "." or ".." (valid project names) stay plain folder names. */
function projectPoolDir(layout: Layout, projectName: string): string {
  return path.join(poolRoot(layout), `${projectName}-${createHash('sha256').update(projectName).digest('hex').slice(0, 8)}`);
}

/** The project's `link:` entries as repo-relative "/" paths (bad entries are refused later, by linkPaths). */
function normalizedLinks(project: Project): string[] {
  return project.link
    .map((entry) => path.normalize(entry.replace(/[\\/]+$/, '')))
    .filter((rel) => !path.isAbsolute(rel) && !rel.split(path.sep).includes('..'))
    .map((rel) => rel.split(path.sep).join('/'));
}

function fingerprintOf(project: Project): string {
  return (
    createHash('sha256')
      // v2: slots are reset after their run and marked ready; a build before that (v1) would
      // leave a slot dirty under a mark it does not know of, so it makes its slots anew.
      .update(JSON.stringify({ v: 2, repo: path.resolve(project.repoPath), link: normalizedLinks(project) }))
      .digest('hex')
      .slice(0, 16)
  );
}

const slotPaths = (dir: string, i: number) => ({
  dir: path.join(dir, `slot-${i}`),
  owner: path.join(dir, `slot-${i}.owner`),
  state: path.join(dir, `slot-${i}.json`),
  exclude: path.join(dir, `slot-${i}.exclude`),
  ready: path.join(dir, `slot-${i}.ready`),
});

type SlotPaths = ReturnType<typeof slotPaths>;

/** Slots this process reset when their run ended: the base they are clean at and the token written beside them. */
const readySlots = new Map<string, { base: string; token: string }>();

/**
 * The base a slot is ready at, when this process left it clean there and nobody took it
 * since (see the top); null otherwise. Either way the mark is used up.
 */
async function takeReadyMark(paths: SlotPaths): Promise<string | null> {
  const mark = readySlots.get(paths.dir);
  readySlots.delete(paths.dir);
  const token = await fs.readFile(paths.ready, 'utf8').catch(() => null);
  if (token !== null) await fs.rm(paths.ready, { force: true });
  return mark && token === mark.token ? mark.base : null;
}

/**
 * Whether no process of a run outlives it: on Linux the sandbox's processes die with it,
 * and an unsandboxed run's are killed by their marker (safety/processes.ts killMarked).
 * Elsewhere a detached process (a watcher, a dev server) may go on writing into the slot.
 */
export function runsEndTheirProcesses(platform: NodeJS.Platform = process.platform): boolean {
  return platform === 'linux';
}

/**
 * Resets a slot whose run ended and, where no process outlives its run, marks it ready; a
 * slot not marked is reset (or made again) when next taken.
 */
async function tidySlot(paths: SlotPaths, gitFile: string, links: string[], base: string, log?: Logger): Promise<void> {
  try {
    await unlinkLinks(paths.dir, links);
    await resetSlot(paths.dir, gitFile, base);
    if (!runsEndTheirProcesses()) return;
    const token = randomBytes(16).toString('hex');
    await fs.writeFile(paths.ready, token);
    readySlots.set(paths.dir, { base, token });
  } catch (error) {
    log?.debug({ slot: paths.dir, err: (error as Error).message }, 'a pool slot was not reset after its run; the next run resets it');
  }
}

/**
 * What a slot was made with; a slot whose state differs from the config is made again. Null
 * when there is none or it cannot be read or trusted: the slot is then made again too.
 */
async function readState(file: string): Promise<PoolSlotState | null> {
  return readJsonFile(file, PoolSlotStateSchema).catch(() => null);
}

/** Removes each of `links` ("/" paths) in `dir` by unlinking it, never following it (links.ts). */
export async function unlinkLinks(dir: string, links: Iterable<string>, platform: NodeJS.Platform = process.platform): Promise<void> {
  await removeLinks(
    dir,
    [...new Set(links)].map((rel) => path.join(...rel.split('/'))),
    platform,
  );
}

/**
 * A worktree for one run at the branch head: a pool slot when one is free, else a fresh
 * worktree. `remove()` resets the slot and gives it back.
 */
export async function openPooledWorktree(settings: Settings, project: Project, runId: string, log?: Logger): Promise<Worktree> {
  const { layout, config } = settings;
  const dir = projectPoolDir(layout, project.name);
  await fs.mkdir(dir, { recursive: true });
  const staleMs = config.queue.lease_stale_s * 1000;
  for (let i = 0; i < config.limits.concurrency; i++) {
    const paths = slotPaths(dir, i);
    // Lost only when another host took the slot over after this process froze past staleMs:
    // the slot is then that host's, and this run's end neither resets nor marks it.
    let lost = false;
    const release = await lockActivity(paths.owner, {
      staleMs,
      wait: false,
      onLost: () => {
        lost = true;
      },
    });
    if (!release) continue;
    try {
      const { branch, commit } = await resolveBranch(project.repoPath, project.branch);
      const { gitFile, links } = await prepareSlot(project, paths, commit, log);
      const remove = async () => {
        if (!lost) await tidySlot(paths, gitFile, links, commit, log);
        await release();
      };
      return { dir: paths.dir, branch, baseCommit: commit, excludesFile: paths.exclude, baseIndex: await indexStamp(paths.dir), remove };
    } catch (error) {
      await release();
      throw error;
    }
  }
  log?.debug({ project: project.name }, 'every pool slot is in use; a fresh worktree for this run');
  return openWorktree(project, layout.worktrees, runId);
}

/**
 * Makes the slot a clean checkout of `base` with the current links (a ready slot is already
 * one); recreates it when it cannot be trusted or reset. Returns its `.git` file and links.
 */
async function prepareSlot(project: Project, paths: SlotPaths, base: string, log?: Logger): Promise<{ gitFile: string; links: string[] }> {
  const fingerprint = fingerprintOf(project);
  const configured = normalizedLinks(project);
  const readyAt = await takeReadyMark(paths);
  const state = await readState(paths.state);
  let gitFile = await fs.readFile(path.join(paths.dir, '.git'), 'utf8').catch(() => null);
  let reused = false;
  if (state && state.fingerprint === fingerprint && gitFile !== null && gitFile === state.git_file) {
    try {
      await unlinkLinks(paths.dir, [...state.links, ...configured]);
      if (readyAt !== base) await resetSlot(paths.dir, gitFile, base);
      reused = true;
    } catch (error) {
      log?.warn({ slot: paths.dir, err: (error as Error).message }, 'a pool slot could not be reset; it is made again');
    }
  }
  if (!reused) {
    await discardSlot(project.repoPath, paths, state, configured);
    await addWorktree(project.repoPath, paths.dir, base);
    gitFile = await fs.readFile(path.join(paths.dir, '.git'), 'utf8');
    // Written before any link exists: a crash while linking leaves a state that names them all.
    await replaceFile(paths.state, `${JSON.stringify({ fingerprint, git_file: gitFile, links: configured } satisfies PoolSlotState)}\n`);
  } else if (state && state.links.join('\0') !== configured.join('\0')) {
    await replaceFile(paths.state, `${JSON.stringify({ ...state, links: configured } satisfies PoolSlotState)}\n`);
  }
  const linked = await linkPaths(project, paths.dir);
  await fs.writeFile(paths.exclude, `${[...ALWAYS_EXCLUDED, ...linked.map((l) => `/${l}`)].join('\n')}\n`);
  return { gitFile: gitFile!, links: configured };
}

/**
 * Back to `base`, as a fresh checkout would be: HEAD detached at base (an agent's commit or
 * checkout undone), tracked files as in base, every untracked and ignored file gone
 * (`-ff`: nested repositories too). A dead run's index.lock is removed first: the slot's
 * lock says its owner is gone. A slot already clean at `base` (the last run changed
 * nothing) is left as it is: `status` sees what `reset --hard` would rewrite.
 */
async function resetSlot(dir: string, gitFile: string, base: string): Promise<void> {
  const gitDir = worktreeGitDir(dir, gitFile);
  if (!gitDir) throw new Error(`${path.join(dir, '.git')} names no git directory`);
  await fs.rm(path.join(gitDir, 'index.lock'), { force: true });
  const head = await fs.readFile(path.join(gitDir, 'HEAD'), 'utf8').catch(() => '');
  const dirt = () => git(dir, ['status', '--porcelain', '--ignored', '--untracked-files=all']).then((out) => out.trim());
  if (head.trim() === base && !(await dirt())) return;
  // Attached to a branch (an agent ran `git checkout -b`): detach first, so the reset moves no branch.
  if (head.startsWith('ref:')) await git(dir, ['update-ref', '--no-deref', 'HEAD', base]);
  // Cleaned before the reset: an untracked .gitattributes the last run left would steer
  // the reset's checkout (its line endings) and carry that run's change into the next patch.
  await git(dir, ['clean', '-ffdxq']);
  await git(dir, ['reset', '--hard', '--quiet', base]);
  let left = await dirt();
  if (left) {
    await git(dir, ['clean', '-ffdxq']);
    left = await dirt();
  }
  if (left) throw new Error(`the slot is not clean after the reset: ${left.split('\n').slice(0, 3).join('; ')}`);
}

/** Removes a slot's worktree: links unlinked first, so no removal ever reaches through one. */
async function discardSlot(repo: string, paths: SlotPaths, state: PoolSlotState | null, configured: string[] = []): Promise<void> {
  await unlinkLinks(paths.dir, [...(state?.links ?? []), ...configured]).catch(() => undefined);
  await fs.rm(paths.state, { force: true });
  // Also when the folder is gone: its registration in the repo is pruned, or `worktree add` refuses the path.
  await removeWorktree(repo, paths.dir);
  await fs.rm(paths.exclude, { force: true });
  await fs.rm(paths.ready, { force: true });
}

/**
 * Removes the slots that no longer fit the config (the project's repo or links changed,
 * the project is gone; `all`: every slot, e.g. `doctor --fix`), except those in use by a
 * live process. Returns the removed slot folders.
 */
export async function prunePool(settings: Settings, log: Logger, options: { all?: boolean } = {}): Promise<string[]> {
  const { layout, config } = settings;
  const root = poolRoot(layout);
  const removed: string[] = [];
  const byDir = new Map(Object.values(settings.projects).map((p) => [path.basename(projectPoolDir(layout, p.name)), p]));
  for (const projectDir of await fs.readdir(root).catch(() => [] as string[])) {
    const dir = path.join(root, projectDir);
    const project = byDir.get(projectDir) ?? null;
    const slots = new Set(
      (await fs.readdir(dir).catch(() => [] as string[])).map((n) => /^slot-(\d+)/.exec(n)?.[1]).filter((n): n is string => n !== undefined),
    );
    let kept = 0;
    for (const n of slots) {
      const i = Number(n);
      const paths = slotPaths(dir, i);
      const state = await readState(paths.state);
      const fits = project && state?.fingerprint === fingerprintOf(project) && i < config.limits.concurrency;
      if (fits && !options.all) {
        kept++;
        continue;
      }
      const release = await lockActivity(paths.owner, { staleMs: config.queue.lease_stale_s * 1000, wait: false, onLost: () => undefined });
      if (!release) {
        kept++;
        continue; // in use by a live run: pruned another time
      }
      try {
        // The repo the slot was made from: the project's if it still has one (else only the folder goes).
        const repo = project?.repoPath ?? null;
        if (repo) await discardSlot(repo, paths, state, project ? normalizedLinks(project) : []);
        else {
          await unlinkLinks(paths.dir, state?.links ?? []);
          await fs.rm(paths.dir, { recursive: true, force: true });
          await fs.rm(paths.state, { force: true });
          await fs.rm(paths.exclude, { force: true });
          await fs.rm(paths.ready, { force: true });
        }
        removed.push(paths.dir);
      } finally {
        await release();
        await fs.rm(paths.owner, { force: true });
      }
    }
    // Only an empty folder: a run may be making a new slot in it right now.
    if (kept === 0) await fs.rmdir(dir).catch(() => undefined);
  }
  if (removed.length) log.info({ removed }, `removed ${removed.length} pooled worktree(s) that no longer fit the config`);
  return removed;
}
