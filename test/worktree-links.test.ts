/**
 * `link:` paths (.venv, data/raw) must never reach `git worktree remove` as links: Git for
 * Windows before 2.54 follows junctions there and deletes the user's real files. A fake `git`
 * first on PATH plays that git: on `worktree remove` it deletes the contents of every folder a
 * link inside the worktree leads to (and logs it), then runs the real git.
 */
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { pino } from 'pino';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openWorktree } from '../src/repo/workspaceRepo.ts';
import { removeWorktree } from '../src/repo/git.ts';
import { pruneWorktrees } from '../src/queue/prune.ts';
import { makeLink, removeLinks, type LinkOps } from '../src/workspace/links.ts';
import { makeWorkspace, type TestWorkspace } from './helpers/workspace.ts';

const realGit = (await execa('sh', ['-c', 'command -v git'])).stdout.trim();
const fakeBin = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-fake-git-'));
const followLog = path.join(fakeBin, 'followed.log');
await fs.writeFile(
  path.join(fakeBin, 'git'),
  `#!/bin/sh
# Git for Windows < 2.54: "worktree remove --force --force" follows junctions.
if [ "$1" = worktree ] && [ "$2" = remove ]; then
  for dir; do :; done
  find "$dir" -type l | while read -r link; do
    if [ -d "$link" ]; then echo "$link" >> "${followLog}"; find "$link/" -mindepth 1 -delete; fi
  done
fi
exec "${realGit}" "$@"
`,
  { mode: 0o755 },
);
process.env.PATH = `${fakeBin}${path.delimiter}${process.env.PATH}`;

const silent = pino({ level: 'silent' });

/** A workspace whose repo has an untracked .venv, data/raw and a local config file, all linked. */
async function linkedWorkspace(): Promise<TestWorkspace> {
  const ws = await makeWorkspace({ project: '    scope: ["**"]\n    link: [".venv", "data/raw/", "config.local.yaml"]' });
  await fs.mkdir(path.join(ws.repo, '.venv', 'bin'), { recursive: true });
  await fs.writeFile(path.join(ws.repo, '.venv', 'pyvenv.cfg'), 'home = /usr/bin\n');
  await fs.mkdir(path.join(ws.repo, 'data', 'raw'), { recursive: true });
  await fs.writeFile(path.join(ws.repo, 'data', 'raw', 'trades-2025.csv'), 'ts,price\n1,2\n');
  await fs.writeFile(path.join(ws.repo, 'config.local.yaml'), 'key: local\n');
  await fs.rm(followLog, { force: true });
  return ws;
}

async function assertOriginalsIntact(ws: TestWorkspace): Promise<void> {
  assert.is(await fs.readFile(path.join(ws.repo, '.venv', 'pyvenv.cfg'), 'utf8'), 'home = /usr/bin\n');
  assert.is(await fs.readFile(path.join(ws.repo, 'data', 'raw', 'trades-2025.csv'), 'utf8'), 'ts,price\n1,2\n');
  assert.is(await fs.readFile(path.join(ws.repo, 'config.local.yaml'), 'utf8'), 'key: local\n');
  assert.not.ok(existsSync(followLog), `git saw links: ${existsSync(followLog) ? await fs.readFile(followLog, 'utf8') : ''}`);
}

test("control: the fake git deletes a linked folder's contents when a link reaches worktree remove", async () => {
  const ws = await linkedWorkspace();
  try {
    const worktree = await openWorktree(ws.settings.projects.bot!, ws.settings.layout.worktrees, 'control');
    assert.ok((await fs.lstat(path.join(worktree.dir, '.venv'))).isSymbolicLink());
    await removeWorktree(ws.repo, worktree.dir); // no links named: what the code did before
    assert.ok(existsSync(followLog), 'the fake git followed a link');
    assert.not.ok(existsSync(path.join(ws.repo, 'data', 'raw', 'trades-2025.csv')), 'and deleted the original');
  } finally {
    await ws.cleanup();
  }
});

test("a worktree's removal unlinks its links first: the originals survive", async () => {
  const ws = await linkedWorkspace();
  try {
    const worktree = await openWorktree(ws.settings.projects.bot!, ws.settings.layout.worktrees, 'run-1');
    assert.is(await fs.readFile(path.join(worktree.dir, 'data', 'raw', 'trades-2025.csv'), 'utf8'), 'ts,price\n1,2\n', 'linked data is visible');
    assert.is(await fs.readFile(path.join(worktree.dir, 'config.local.yaml'), 'utf8'), 'key: local\n', 'a linked file is visible');
    await worktree.remove();
    assert.not.ok(existsSync(worktree.dir), 'the worktree is gone');
    await assertOriginalsIntact(ws);
  } finally {
    await ws.cleanup();
  }
});

test("pruning a dead run's worktree at start unlinks its links first: the originals survive", async () => {
  const ws = await linkedWorkspace();
  try {
    const worktree = await openWorktree(ws.settings.projects.bot!, ws.settings.layout.worktrees, 'gate-deadbeef');
    // The gate run died (kill -9): its worktree is left with its links in place.
    const removed = await pruneWorktrees(ws.settings, silent, { includeGate: true });
    assert.equal(
      removed.map((d) => path.basename(d)),
      ['gate-deadbeef'],
    );
    assert.not.ok(existsSync(worktree.dir));
    await assertOriginalsIntact(ws);
  } finally {
    await ws.cleanup();
  }
});

test('makeLink: a file link Windows refuses (EPERM, no Developer Mode) becomes a copy; a folder a junction on win32', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-links-'));
  try {
    await fs.writeFile(path.join(dir, 'settings.ini'), 'a=1\n');
    await fs.mkdir(path.join(dir, 'venv'));
    const asked: string[] = [];
    const windowsWithoutDevMode: LinkOps = {
      symlink: async (target, file, type) => {
        asked.push(type);
        if (type === 'file') throw Object.assign(new Error(`EPERM: operation not permitted, symlink '${target}' -> '${file}'`), { code: 'EPERM' });
        await fs.symlink(target, file);
      },
      copyFile: (from, to) => fs.copyFile(from, to),
    };
    const options = { platform: 'win32' as const, ops: windowsWithoutDevMode };
    assert.is(await makeLink(path.join(dir, 'settings.ini'), path.join(dir, 'link.ini'), options), 'copy');
    assert.is(await fs.readFile(path.join(dir, 'link.ini'), 'utf8'), 'a=1\n');
    // A copy, not a hard link: a write in the worktree must not change the original.
    await fs.writeFile(path.join(dir, 'link.ini'), 'changed\n');
    assert.is(await fs.readFile(path.join(dir, 'settings.ini'), 'utf8'), 'a=1\n');
    assert.is(await makeLink(path.join(dir, 'venv'), path.join(dir, 'venv-link'), options), 'junction');
    assert.equal(asked, ['file', 'junction']);
    // Another error is not hidden behind a copy.
    const full: LinkOps = {
      ...windowsWithoutDevMode,
      symlink: async () => {
        throw Object.assign(new Error('ENOSPC: no space left'), { code: 'ENOSPC' });
      },
    };
    try {
      await makeLink(path.join(dir, 'settings.ini'), path.join(dir, 'other.ini'), { platform: 'win32', ops: full });
      assert.unreachable('ENOSPC must be thrown');
    } catch (error) {
      assert.is((error as NodeJS.ErrnoException).code, 'ENOSPC');
    }
    assert.is(await makeLink(path.join(dir, 'settings.ini'), path.join(dir, 'real-link.ini'), { platform: 'linux' }), 'symlink');
    assert.ok((await fs.lstat(path.join(dir, 'real-link.ini'))).isSymbolicLink());
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('removeLinks: unlinks links and link copies, never enters a folder', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-links-'));
  try {
    const outside = path.join(dir, 'outside');
    await fs.mkdir(path.join(outside, 'deep'), { recursive: true });
    await fs.writeFile(path.join(outside, 'deep', 'keep.txt'), 'keep\n');
    const tree = path.join(dir, 'tree');
    await fs.mkdir(path.join(tree, 'real', 'sub'), { recursive: true });
    await fs.writeFile(path.join(tree, 'real', 'sub', 'own.txt'), 'own\n');
    await fs.symlink(outside, path.join(tree, 'venv'));
    await fs.writeFile(path.join(tree, 'copied.ini'), 'a=1\n');
    const removed = await removeLinks(tree, ['venv', 'copied.ini', 'real', 'missing']);
    assert.equal(removed, ['venv', 'copied.ini']);
    assert.not.ok(existsSync(path.join(tree, 'venv')));
    assert.ok(existsSync(path.join(tree, 'real', 'sub', 'own.txt')), 'a real folder is left alone');
    assert.is(await fs.readFile(path.join(outside, 'deep', 'keep.txt'), 'utf8'), 'keep\n');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test.after(async () => {
  await fs.rm(fakeBin, { recursive: true, force: true });
});

test.run();
