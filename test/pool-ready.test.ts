/**
 * A pool slot is reset when its run is filed (after the report), and the next run in this
 * process takes it without a git process; a mark another process or a moved base made stale
 * is not trusted. A no-op run collects its (empty) change with one git process. git is the
 * real one behind a recording shim on PATH, which also notes whether the run's report was
 * already written when each call ran.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { collectDiff } from '../src/repo/git.ts';
import { poolRoot, runsEndTheirProcesses } from '../src/repo/worktreePool.ts';
import { openWorktree } from '../src/repo/workspaceRepo.ts';
import { runTask } from '../src/run/runTask.ts';
import type { Engine, EngineContext, EngineResult } from '../src/engines/types.ts';
import { makeWorkspace, type TestWorkspace } from './helpers/workspace.ts';

const realGit = (await execa('sh', ['-c', 'command -v git'])).stdout.trim();
const shim = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-git-shim-'));
const calls = path.join(shim, 'calls.log');
// Each call: "<reports written so far> <args>"; REPORTS_DIR is set per test.
await fs.writeFile(
  path.join(shim, 'git'),
  `#!/bin/sh\nn=$(ls "$REPORTS_DIR" 2>/dev/null | grep -c '\\.json$')\nprintf '%s %s\\n' "$n" "$*" >> "${calls}"\nexec "${realGit}" "$@"\n`,
  { mode: 0o755 },
);
process.env.PATH = `${shim}${path.delimiter}${process.env.PATH}`;

const QUEUE = ['queue:', '  settle_ms: 100', '  lease_stale_s: 2', 'limits:', '  concurrency: 1'].join('\n');
const TASK = (objective: string) => `---\nproject: bot\nobjective: ${objective}\nscope: ["**"]\n---\n`;

/** Calls `act` in the worktree, after writing ENGINE into the call log (what came before it prepared the worktree). */
class ActingEngine implements Engine {
  readonly name = 'command' as const;
  constructor(private readonly act: (ctx: EngineContext) => Promise<void> = async () => undefined) {}
  async run(ctx: EngineContext): Promise<EngineResult> {
    await fs.appendFile(calls, 'ENGINE\n');
    await this.act(ctx);
    return { finished: true, summary: 'done', risks: [], risk_level: 'low', next_actions: [], steps: 0, model: null, output_tail: null };
  }
}

async function run(ws: TestWorkspace, name: string, act?: (ctx: EngineContext) => Promise<void>) {
  await fs.rm(calls, { force: true });
  await fs.writeFile(path.join(ws.settings.layout.inbox, `${name}.md`), TASK(name));
  const result = await runTask(path.join(ws.settings.layout.inbox, `${name}.md`), { settings: ws.settings, engine: new ActingEngine(act) });
  assert.is(result.status, 'ok', result.report.error?.message);
  const log = (await fs.readFile(calls, 'utf8')).split('\n').filter(Boolean);
  const engineAt = log.indexOf('ENGINE');
  return { result, before: log.slice(0, engineAt), after: log.slice(engineAt + 1) };
}

const slotOf = async (ws: TestWorkspace) => {
  const [project] = await fs.readdir(poolRoot(ws.settings.layout));
  return path.join(poolRoot(ws.settings.layout), project!, 'slot-0');
};
// Read-only, as the service's own status calls are (a plain `status` may rewrite the index's stat cache).
const status = async (dir: string) =>
  (await execa('git', ['status', '--porcelain', '--ignored', '--untracked-files=all'], { cwd: dir, env: { GIT_OPTIONAL_LOCKS: '0' } })).stdout;
const isResetCall = (line: string) => / (status|reset|clean|worktree add)\b/.test(line);

test('a slot is reset after its run is filed, and the next run in this process takes it without a git process before its engine', async () => {
  const ws = await makeWorkspace({ project: '    scope: ["**"]', extra: QUEUE });
  process.env.REPORTS_DIR = ws.settings.layout.reports;
  try {
    const first = await run(ws, 'one', async (ctx) => {
      await fs.writeFile(path.join(ctx.worktree, 'left.txt'), 'untracked\n');
      await fs.appendFile(path.join(ctx.worktree, 'README.md'), 'changed\n');
      await fs.mkdir(path.join(ctx.worktree, '__pycache__'));
      await fs.writeFile(path.join(ctx.worktree, '__pycache__', 'x.pyc'), 'ignored');
    });
    assert.ok(first.result.report.patch_files.length > 0, 'the change was filed');
    const resets = first.after.filter(isResetCall);
    assert.ok(resets.length > 0, `the slot was reset after the run: ${first.after.join(' | ')}`);
    assert.ok(
      resets.every((line) => line.startsWith('1 ')),
      `every reset call ran once the report was written: ${resets.join(' | ')}`,
    );
    const slot = await slotOf(ws);
    assert.is(await status(slot), '', 'clean at once, not at the next run');
    assert.ok(await fs.stat(`${slot}.ready`), 'marked ready');

    const second = await run(ws, 'two', async (ctx) => {
      assert.is(await status(ctx.worktree), '', 'the engine starts in a clean checkout');
      assert.not.ok(await fs.stat(path.join(ctx.worktree, 'left.txt')).catch(() => null));
    });
    assert.equal(second.before.filter(isResetCall), [], `no git process readied the slot: ${second.before.join(' | ')}`);
    assert.equal(
      second.after.filter((l) => / diff /.test(l)),
      [],
      'a run that changed nothing needs no diff process',
    );
  } finally {
    await ws.cleanup();
  }
});

test('a ready mark is not trusted when another process took the slot since (its token gone or changed), or the base moved', async () => {
  const ws = await makeWorkspace({ project: '    scope: ["**"]', extra: QUEUE });
  process.env.REPORTS_DIR = ws.settings.layout.reports;
  try {
    await run(ws, 'one');
    const slot = await slotOf(ws);
    const sawStray = async (ctx: EngineContext) => {
      assert.not.ok(await fs.stat(path.join(ctx.worktree, 'stray.txt')).catch(() => null), 'what the other process left is gone');
    };
    // Another process's run: it took the token away and left a file (killed before its reset).
    await fs.rm(`${slot}.ready`);
    await fs.writeFile(path.join(slot, 'stray.txt'), 'x');
    const gone = await run(ws, 'two', sawStray);
    assert.ok(
      gone.before.some((l) => / status /.test(l)),
      'checked before the engine',
    );

    // Another process's run that reset the slot and wrote its own token, then something wrote into it.
    await fs.writeFile(`${slot}.ready`, 'another-token');
    await fs.writeFile(path.join(slot, 'stray.txt'), 'x');
    const changed = await run(ws, 'three', sawStray);
    assert.ok(
      changed.before.some((l) => / status /.test(l)),
      'checked before the engine',
    );

    // The branch moved on since the slot was reset.
    await fs.appendFile(path.join(ws.repo, 'README.md'), 'a new commit\n');
    await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qam', 'moved'], { cwd: ws.repo });
    const head = (await execa('git', ['rev-parse', 'main'], { cwd: ws.repo })).stdout.trim();
    const moved = await run(ws, 'four', async (ctx) => {
      assert.is(ctx.baseCommit, head);
      assert.match(await fs.readFile(path.join(ctx.worktree, 'README.md'), 'utf8'), 'a new commit');
    });
    assert.ok(
      moved.before.some((l) => / reset /.test(l)),
      'reset to the new base',
    );
  } finally {
    await ws.cleanup();
  }
});

test("where a run's processes may outlive it (not Linux), a slot is reset after its run but not marked: the next run checks it again", async () => {
  const ws = await makeWorkspace({ project: '    scope: ["**"]', extra: QUEUE });
  process.env.REPORTS_DIR = ws.settings.layout.reports;
  const platform = Object.getOwnPropertyDescriptor(process, 'platform')!;
  try {
    assert.ok(runsEndTheirProcesses('linux'));
    Object.defineProperty(process, 'platform', { ...platform, value: 'darwin' });
    await run(ws, 'one', async (ctx) => fs.writeFile(path.join(ctx.worktree, 'left.txt'), 'x'));
    const slot = await slotOf(ws);
    assert.is(await status(slot), '', 'reset after the run all the same');
    assert.not.ok(await fs.stat(`${slot}.ready`).catch(() => null), 'not marked ready');
    const second = await run(ws, 'two');
    assert.ok(
      second.before.some((l) => / status /.test(l)),
      `checked when taken: ${second.before.join(' | ')}`,
    );
  } finally {
    Object.defineProperty(process, 'platform', platform);
    await ws.cleanup();
  }
});

test('a slot whose lock was lost during its run (another host took it over) is neither reset nor marked by that run', async () => {
  const ws = await makeWorkspace({ project: '    scope: ["**"]', extra: QUEUE });
  process.env.REPORTS_DIR = ws.settings.layout.reports;
  try {
    await run(ws, 'one', async (ctx) => {
      await fs.writeFile(path.join(ctx.worktree, 'theirs.txt'), 'x');
      // The lock taken away under the run, as a host does with a lock stale past lease_stale_s.
      await fs.rm(path.join(path.dirname(ctx.worktree), `.${path.basename(ctx.worktree)}.owner.lock`), { recursive: true, force: true });
      await new Promise((r) => setTimeout(r, 1500));
    });
    const slot = await slotOf(ws);
    assert.ok(await fs.stat(path.join(slot, 'theirs.txt')), "not reset: the slot is the other host's now");
    assert.not.ok(await fs.stat(`${slot}.ready`).catch(() => null), 'not marked ready');
  } finally {
    await ws.cleanup();
  }
});

test('collectDiff: nothing staged onto an untouched index at base is no change (one git process); a mode change counts; a second collect keeps what the first staged; staged or committed through the checkout is found', async () => {
  const ws = await makeWorkspace({ project: '    scope: ["**"]' });
  process.env.REPORTS_DIR = '';
  const project = ws.settings.projects.bot!;
  const worktree = await openWorktree(project, ws.settings.layout.worktrees, 'diff-check');
  try {
    await fs.rm(calls, { force: true });
    assert.equal(await collectDiff(worktree), { patch: Buffer.alloc(0), files: [] });
    assert.is((await fs.readFile(calls, 'utf8')).trim().split('\n').length, 1, 'only `add --all --verbose`');

    await fs.chmod(path.join(worktree.dir, 'README.md'), 0o755);
    const first = await collectDiff(worktree);
    assert.equal(first.files, ['README.md'], 'an executable bit is a change');
    assert.match(first.patch.toString(), 'new mode 100755');
    // What keepIncomplete does after propose staged the change: nothing new to stage, the change is still there.
    const second = await collectDiff(worktree);
    assert.equal(second.files, ['README.md']);
    assert.equal(second.patch, first.patch);

    // Staged through the checkout's own .git (an unsandboxed agent can): `add` stages nothing
    // new, and the change is still found.
    const other = await openWorktree(project, ws.settings.layout.worktrees, 'diff-check-2');
    await fs.appendFile(path.join(other.dir, 'README.md'), 'x\n');
    await execa('git', ['add', 'README.md'], { cwd: other.dir });
    assert.equal((await collectDiff(other)).files, ['README.md'], 'staged before: found by the diff');
    // Committed through it: HEAD moved, the index matches it, the change is still found.
    const third = await openWorktree(project, ws.settings.layout.worktrees, 'diff-check-3');
    await fs.appendFile(path.join(third.dir, 'README.md'), 'y\n');
    await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qam', 'agent'], { cwd: third.dir });
    assert.equal((await collectDiff(third)).files, ['README.md'], 'committed: found by the diff');
    await other.remove();
    await third.remove();
  } finally {
    await worktree.remove();
    await ws.cleanup();
  }
});

test.run();
