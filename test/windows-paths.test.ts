/**
 * Windows paths: every git call runs with core.longpaths (worktrees of a deep repo pass 260
 * characters), and path rules ignore case where the file system does (NTFS: `.ENV` is `.env`).
 * The platform is played (setGitPlatform, a platform argument); git is the real one behind a
 * recording shim on PATH.
 */
import { promises as fs, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gitArgs, setGitPlatform } from '../src/workspace/gitArgs.ts';
import { collectDiff, git, isGitRepo, resolveBranch } from '../src/repo/git.ts';
import { openWorktree } from '../src/repo/workspaceRepo.ts';
import { denyMatcher, scopeMatcher } from '../src/safety/globs.ts';
import { assessRisk } from '../src/run/risk.ts';
import { makeWorkspace, REPO_ROOT } from './helpers/workspace.ts';

const realGit = (await execa('sh', ['-c', 'command -v git'])).stdout.trim();
const shim = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-git-shim-'));
const calls = path.join(shim, 'calls.log');
await fs.writeFile(path.join(shim, 'git'), `#!/bin/sh\nprintf '%s\\n' "$*" >> "${calls}"\nexec "${realGit}" "$@"\n`, { mode: 0o755 });
process.env.PATH = `${shim}${path.delimiter}${process.env.PATH}`;

async function gitCalls(run: () => Promise<void>): Promise<string[]> {
  await fs.rm(calls, { force: true });
  await run();
  return (await fs.readFile(calls, 'utf8').catch(() => '')).split('\n').filter(Boolean);
}

/** The git calls of what the run and the gate do: open a worktree, change it, collect the diff, remove it. */
async function worktreeRound(): Promise<string[]> {
  const ws = await makeWorkspace();
  try {
    const project = ws.settings.projects.bot!;
    return await gitCalls(async () => {
      assert.ok(await isGitRepo(ws.repo));
      await resolveBranch(ws.repo, 'main');
      const worktree = await openWorktree(project, ws.settings.layout.worktrees, 'run-long');
      await fs.writeFile(path.join(worktree.dir, 'NOTES.md'), 'x\n');
      const diff = await collectDiff(worktree);
      assert.equal(diff.files, ['NOTES.md']);
      await git(worktree.dir, ['status', '--porcelain']);
      await worktree.remove();
    });
  } finally {
    await ws.cleanup();
  }
}

test.after.each(() => setGitPlatform(process.platform));

test('gitArgs: -c core.longpaths=true in front on win32 only', () => {
  assert.equal(gitArgs(['status', '--porcelain'], 'win32'), ['-c', 'core.longpaths=true', 'status', '--porcelain']);
  assert.equal(gitArgs(['status', '--porcelain'], 'linux'), ['status', '--porcelain']);
  assert.equal(gitArgs(['status'], 'darwin'), ['status']);
});

test('on win32 every git process of a run (worktree add, add, diff, remove) gets core.longpaths=true', async () => {
  setGitPlatform('win32');
  const seen = await worktreeRound();
  assert.ok(
    seen.some((c) => c.includes('worktree add')) && seen.some((c) => c.includes('worktree remove')) && seen.some((c) => c.includes('diff --cached --binary')),
    seen.join('\n'),
  );
  assert.equal(
    seen.filter((c) => !c.startsWith('-c core.longpaths=true ')),
    [],
    'calls without core.longpaths',
  );
});

test('off Windows git calls are unchanged', async () => {
  setGitPlatform('linux');
  const seen = await worktreeRound();
  assert.ok(seen.length > 5);
  assert.equal(
    seen.filter((c) => c.includes('core.longpaths')),
    [],
  );
});

test('every git spawn in src/ passes its arguments through gitArgs', () => {
  const offenders: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.ts')) {
        readFileSync(full, 'utf8')
          .split('\n')
          .forEach((line, i) => {
            if (/(execa|\.pipe|spawn|execFile)\(\s*'git',(?!\s*gitArgs\()/.test(line)) offenders.push(`${path.relative(REPO_ROOT, full)}:${i + 1}`);
          });
      }
    }
  };
  walk(path.join(REPO_ROOT, 'src'));
  assert.equal(offenders, []);
});

test('deny globs ignore case on both platforms: .ENV is .env', () => {
  const denied = denyMatcher(['private/**']);
  for (const rel of ['.ENV', 'bot/.Env', 'SECRETS/token.txt', 'Private/notes.txt', 'keys/Server.PEM', '.GIT/config']) assert.ok(denied(rel), rel);
  assert.not.ok(denied('bot/strategy.py'), 'control: an ordinary file is not denied');
});

test('scope globs ignore case on win32 (NTFS), not on linux', () => {
  const win = scopeMatcher(['bot/**'], ['bot/**', 'tests/**'], 'win32');
  const linux = scopeMatcher(['bot/**'], ['bot/**', 'tests/**'], 'linux');
  assert.ok(win('Bot/Strategy.py'));
  assert.ok(win('bot/strategy.py'));
  assert.not.ok(win('tests/test_x.py'), 'control: outside the task scope on win32 too');
  assert.not.ok(linux('Bot/Strategy.py'), 'on linux Bot/ is another folder');
  assert.ok(linux('bot/strategy.py'));
});

test('risk rules ignore case on win32: Bot/Execution/orders.py is high risk', () => {
  const project = { risk: [{ paths: ['bot/execution/**'], level: 'high' as const }] };
  assert.is(assessRisk('low', ['Bot/Execution/orders.py'], project as never, 'win32').level, 'high');
  assert.is(assessRisk('low', ['Bot/Execution/orders.py'], project as never, 'linux').level, 'low');
  assert.is(assessRisk('low', ['bot/execution/orders.py'], project as never, 'linux').level, 'high');
});

test.after(async () => {
  await fs.rm(shim, { recursive: true, force: true });
});

test.run();
