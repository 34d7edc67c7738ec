/**
 * The agent's git history (engines/historySnapshot.ts): built once per base commit and
 * shared by the runs on it; a file on the deny list is in no version of it, including one
 * that came in only with a merge; two runs building it at once both get it. And the
 * agent's liveness watch (engines/activityWatch.ts) on Linux: one watch per folder, new
 * folders included, links not followed. Real git repositories and real files.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { watchActivity } from '../src/engines/activityWatch.ts';
import { openRunHistory } from '../src/engines/historySnapshot.ts';
import type { EngineContext } from '../src/engines/types.ts';
import { denyMatcher } from '../src/safety/globs.ts';
import { layoutFor } from '../src/workspace/layout.ts';

const ID = ['-c', 'user.name=t', '-c', 'user.email=t@t'];
const CANARY = 'canary-merge-only-secret-93d1';

async function tempDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-history-'));
}

async function repoWithHistory(root: string): Promise<{ repo: string; base: string }> {
  const repo = path.join(root, 'repo');
  await fs.mkdir(path.join(repo, 'bot'), { recursive: true });
  const g = (...args: string[]) => execa('git', [...ID, ...args], { cwd: repo });
  await g('init', '--quiet', '--initial-branch', 'main');
  await fs.writeFile(path.join(repo, 'bot', 'a.py'), 'A = 1\n');
  await g('add', '--all');
  await g('commit', '--quiet', '-m', 'initial');
  // A side branch, merged with a file that is in neither parent (an "evil merge"): only a
  // log that lists merges against each parent names it.
  await g('checkout', '--quiet', '-b', 'side');
  await fs.writeFile(path.join(repo, 'bot', 'b.py'), 'B = 2\n');
  await g('add', '--all');
  await g('commit', '--quiet', '-m', 'side');
  await g('checkout', '--quiet', 'main');
  await fs.writeFile(path.join(repo, 'bot', 'c.py'), 'C = 3\n');
  await g('add', '--all');
  await g('commit', '--quiet', '-m', 'main work');
  await g('merge', '--quiet', '--no-ff', '--no-commit', 'side');
  await fs.writeFile(path.join(repo, '.env'), `API_KEY=${CANARY}\n`);
  await g('add', '-f', '.env');
  await g('commit', '--quiet', '--no-edit', '-m', 'merge side');
  const base = (await g('rev-parse', 'HEAD')).stdout.trim();
  return { repo, base };
}

function contextFor(root: string, repo: string, base: string, deny: string[] = []): EngineContext {
  return {
    settings: { layout: layoutFor(root) },
    project: { repoPath: repo },
    baseCommit: base,
    denied: denyMatcher(deny),
  } as unknown as EngineContext;
}

/** A worktree of `base` in its own folder, as a run has. */
async function worktreeOf(repo: string, dir: string, base: string): Promise<string> {
  await execa('git', ['worktree', 'add', '--quiet', '--detach', dir, base], { cwd: repo });
  return dir;
}

const inRun = (gitDir: string, worktree: string, ...args: string[]) =>
  execa('git', ['--git-dir', gitDir, '--work-tree', worktree, ...args], { cwd: worktree, env: { GIT_OPTIONAL_LOCKS: '0' } });

test('a file on the deny list that came in only with a merge is in no version of the history; the real one has it', async () => {
  const root = await tempDir();
  try {
    const { repo, base } = await repoWithHistory(root);
    const worktree = await worktreeOf(repo, path.join(root, 'wt'), base);
    const gitDir = path.join(root, 'run-1.git');
    const history = await openRunHistory(contextFor(root, repo, base), worktree, gitDir);
    assert.match(history.note ?? '', /leaves out the 1 file\(s\) on the deny list/);
    const all = await inRun(gitDir, worktree, 'cat-file', '--batch-all-objects', '--batch');
    assert.not.ok(all.stdout.includes(CANARY), 'no object of the run history holds the secret');
    const log = await inRun(gitDir, worktree, 'log', '--format=%s');
    assert.equal(log.stdout.split('\n'), ['merge side', 'main work', 'side', 'initial']);
    assert.is((await inRun(gitDir, worktree, 'status', '--porcelain')).stdout, '', 'the worktree is clean against the run history');
    // Positive control: the real repository holds it, and the same command finds it there.
    const real = await execa('git', ['cat-file', '--batch-all-objects', '--batch'], { cwd: repo });
    assert.ok(real.stdout.includes(CANARY));
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});

test('the history is fetched once per base commit: the next run on it reuses it, a new commit gets its own, and each run has its own refs and index', async () => {
  const root = await tempDir();
  try {
    const { repo, base } = await repoWithHistory(root);
    const ctx = contextFor(root, repo, base);
    const first = await openRunHistory(ctx, await worktreeOf(repo, path.join(root, 'wt1'), base), path.join(root, 'run-1.git'));
    const cacheDir = path.dirname(first.snapshotDir);
    const before = (await fs.readdir(cacheDir)).sort();
    const raw = path.join(cacheDir, `${base}.git`);
    const rawObjects = await fs.stat(path.join(raw, 'objects'));
    const wt2 = await worktreeOf(repo, path.join(root, 'wt2'), base);
    const second = await openRunHistory(ctx, wt2, path.join(root, 'run-2.git'));
    assert.is(second.snapshotDir, first.snapshotDir, 'the same snapshot');
    assert.equal((await fs.readdir(cacheDir)).sort(), before, 'nothing new in the cache');
    assert.is((await fs.stat(path.join(raw, 'objects'))).mtimeMs, rawObjects.mtimeMs, 'nothing fetched again');
    // A run's own repository: a commit there does not reach the snapshot or the other run.
    await fs.writeFile(path.join(wt2, 'bot', 'a.py'), 'A = 42\n');
    await inRun(path.join(root, 'run-2.git'), wt2, 'add', '--all');
    await inRun(path.join(root, 'run-2.git'), wt2, ...ID, 'commit', '--quiet', '-m', 'run 2 only');
    assert.is((await inRun(path.join(root, 'run-1.git'), path.join(root, 'wt1'), 'log', '-1', '--format=%s')).stdout, 'merge side');
    // The branch moves: a new base commit gets its own snapshot.
    await fs.writeFile(path.join(repo, 'bot', 'd.py'), 'D = 4\n');
    await execa('git', ['add', '--all'], { cwd: repo });
    await execa('git', [...ID, 'commit', '--quiet', '-m', 'moved'], { cwd: repo });
    const moved = (await execa('git', ['rev-parse', 'HEAD'], { cwd: repo })).stdout.trim();
    const wt3 = await worktreeOf(repo, path.join(root, 'wt3'), moved);
    const third = await openRunHistory(contextFor(root, repo, moved), wt3, path.join(root, 'run-3.git'));
    assert.is.not(third.snapshotDir, first.snapshotDir);
    assert.is((await inRun(path.join(root, 'run-3.git'), wt3, 'log', '-1', '--format=%s')).stdout, 'moved');
    assert.is((await inRun(path.join(root, 'run-3.git'), wt3, 'status', '--porcelain')).stdout, '');
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});

test('two runs opening the history of a new commit at once both get a working one, and one snapshot is kept', async () => {
  const root = await tempDir();
  try {
    const { repo, base } = await repoWithHistory(root);
    const ctx = contextFor(root, repo, base);
    const worktrees = await Promise.all([1, 2, 3].map((i) => worktreeOf(repo, path.join(root, `wt${i}`), base)));
    const opened = await Promise.all(worktrees.map((wt, i) => openRunHistory(ctx, wt, path.join(root, `run-${i}.git`))));
    for (const [i, wt] of worktrees.entries()) assert.is((await inRun(path.join(root, `run-${i}.git`), wt, 'log', '-1', '--format=%s')).stdout, 'merge side');
    const cacheDir = path.dirname(opened[0]!.snapshotDir);
    const names = (await fs.readdir(cacheDir)).sort();
    assert.equal(
      names.filter((n) => n.includes('.tmp-')),
      [],
      `no temp folder left: ${names.join(', ')}`,
    );
    assert.equal(names.filter((n) => n.startsWith(base)).length, 2, `the fetched history and its filtered copy: ${names.join(', ')}`);
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});

test('activity watch (Linux): a change deep in the tree and in a folder made after the start count; a link to a folder outside is not followed', async () => {
  if (process.platform !== 'linux') return;
  const root = await tempDir();
  try {
    const tree = path.join(root, 'tree');
    const outside = path.join(root, 'outside');
    await fs.mkdir(path.join(tree, 'a', 'b', 'c'), { recursive: true });
    await fs.mkdir(outside);
    await fs.symlink(outside, path.join(tree, 'data'));
    let changes = 0;
    const watch = watchActivity(tree, () => changes++, 'linux');
    const settled = async () => {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const seen = changes;
      changes = 0;
      return seen;
    };
    await settled();
    await fs.writeFile(path.join(tree, 'a', 'b', 'c', 'deep.txt'), 'x');
    assert.ok((await settled()) > 0, 'a file written three folders down is activity');
    await fs.mkdir(path.join(tree, 'new'));
    await settled();
    await fs.writeFile(path.join(tree, 'new', 'file.txt'), 'x');
    assert.ok((await settled()) > 0, 'a file in a folder made after the start is activity');
    await fs.writeFile(path.join(outside, 'through-link.txt'), 'x');
    assert.is(await settled(), 0, 'a write behind the link is not watched');
    watch.close();
    await fs.writeFile(path.join(tree, 'a', 'after-close.txt'), 'x');
    assert.is(await settled(), 0, 'nothing after close');
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});

test.run();
