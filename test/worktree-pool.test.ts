/**
 * The worktree pool (issue 19): reused slots are reset to the base commit for every run,
 * survive kill -9 of a run mid-way (the next run's slot is clean), re-check `link:` paths
 * every run, and a pruned slot's links are unlinked, never followed into the real repo.
 * Real git repos, a real `watch` process killed with SIGKILL, real files.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeWorkspace, worktreeCount } from './helpers/workspace.ts';
import { killAll, killHard, startWatchReady, waitFor } from './helpers/procs.ts';
import { runTask } from '../src/run/runTask.ts';
import { poolRoot, prunePool } from '../src/repo/worktreePool.ts';
import { loadSettings } from '../src/workspace/config.ts';
import { silentLogger } from '../src/log.ts';
import type { Engine, EngineContext, EngineResult } from '../src/engines/types.ts';

const QUEUE = ['queue:', '  settle_ms: 100', '  scan_interval_ms: 200', '  lease_stale_s: 2'].join('\n');
const TASK = (objective: string) => `---\nproject: bot\nobjective: ${objective}\nscope: ["**"]\n---\n`;

/** An engine that calls `act` in the worktree and finishes with no claim of its own. */
class ActingEngine implements Engine {
  readonly name = 'command' as const;
  readonly seen: string[] = [];
  constructor(private readonly act: (ctx: EngineContext) => Promise<void> = async () => undefined) {}
  async run(ctx: EngineContext): Promise<EngineResult> {
    this.seen.push(ctx.worktree);
    await this.act(ctx);
    return { finished: true, summary: 'done', risks: [], risk_level: 'low', next_actions: [], steps: 0, model: null, output_tail: null };
  }
}

async function slotDirs(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const project of await fs.readdir(root).catch(() => [] as string[])) {
    for (const name of await fs.readdir(path.join(root, project)).catch(() => [] as string[]))
      if (/^slot-\d+$/.test(name)) out.push(path.join(root, project, name));
  }
  return out.sort();
}

const exists = (file: string) =>
  fs.lstat(file).then(
    () => true,
    () => false,
  );

test("kill -9 mid-run: the next run takes over the dead run's slot, and what the killed run wrote, committed or checked out is gone", async () => {
  if (process.platform === 'win32') return;
  const ws = await makeWorkspace({ project: '    scope: ["**"]', extra: QUEUE });
  const marker = path.join(ws.root, 'agent-wrote');
  // The agent: writes an untracked file, an ignored cache file, changes a tracked file,
  // commits on a new branch, then says so and waits to be killed.
  const script = [
    "const fs = require('fs'); const { execFileSync } = require('child_process');",
    "fs.writeFileSync('killed.txt', 'left by the killed run');",
    "fs.mkdirSync('__pycache__', { recursive: true }); fs.writeFileSync('__pycache__/x.pyc', 'cache');",
    "fs.appendFileSync('README.md', 'changed by the killed run');",
    "const g = (...a) => execFileSync('git', ['-c', 'user.name=a', '-c', 'user.email=a@a', ...a]);",
    "g('checkout', '-q', '-b', 'agent-branch'); g('add', 'README.md'); g('commit', '-q', '-m', 'agent');",
    `fs.writeFileSync(${JSON.stringify(marker)}, 'x');`,
    'setTimeout(() => {}, 60000);',
  ].join(' ');
  await fs.appendFile(
    path.join(ws.root, 'meta-agent.yaml'),
    `${['engine: command', 'command:', `  run: ${JSON.stringify([process.execPath, '-e', script])}`, '  sandbox: none'].join('\n')}\n`,
  );
  const base = (await execa('git', ['rev-parse', 'HEAD'], { cwd: ws.repo })).stdout.trim();
  try {
    const proc = await startWatchReady(ws.root);
    await fs.writeFile(path.join(ws.settings.layout.inbox, 'killed.md'), TASK('Write and wait'));
    await waitFor(
      'the agent to write its files',
      () => exists(marker),
      30_000,
      () => proc.output(),
    );
    await killHard(proc); // SIGKILL, the service and its agent together

    const [slot] = await slotDirs(poolRoot(ws.settings.layout));
    assert.ok(slot, 'the killed run used a pool slot');
    assert.ok(await exists(path.join(slot!, 'killed.txt')), "positive control: the killed run's file is in its slot");
    assert.match(await fs.readFile(path.join(slot!, 'README.md'), 'utf8'), 'changed by the killed run');

    const engine = new ActingEngine(async (ctx) => {
      assert.not.ok(await exists(path.join(ctx.worktree, 'killed.txt')), 'the untracked file is gone before the engine runs');
      assert.not.ok(await exists(path.join(ctx.worktree, '__pycache__')), 'the ignored cache is gone');
    });
    await fs.writeFile(path.join(ws.settings.layout.inbox, 'next.md'), TASK('Look around'));
    const result = await runTask(path.join(ws.settings.layout.inbox, 'next.md'), { settings: ws.settings, engine });
    assert.is(result.status, 'ok', result.report.error?.message);
    assert.equal(engine.seen, [slot], "the next run reused the dead run's slot");
    assert.is(result.outcome, 'no_changes');
    assert.equal(result.report.changed_files, [], "nothing of the killed run is in the next run's diff");
    assert.is(result.report.base_commit, base);
    const head = await execa('git', ['symbolic-ref', '-q', 'HEAD'], { cwd: slot!, reject: false });
    assert.is(head.exitCode, 1, "the slot's HEAD is detached again");
    assert.is((await execa('git', ['rev-parse', 'HEAD'], { cwd: slot! })).stdout.trim(), base);
    assert.is((await execa('git', ['rev-parse', 'main'], { cwd: ws.repo })).stdout.trim(), base, 'the real branch never moved');
    assert.not.match(await fs.readFile(path.join(ws.repo, 'README.md'), 'utf8'), 'changed by the killed run', 'the real repo was never written');
    assert.is(await worktreeCount(ws.repo), 0, 'no worktree outside the pool is left');
  } finally {
    await killAll();
    await ws.cleanup();
  }
});

test("a link: path replaced by a run is linked again for the next run; a pruned slot's link is unlinked, the real folder kept", async () => {
  const ws = await makeWorkspace({ project: '    scope: ["**"]\n    link: ["market"]', extra: QUEUE });
  await fs.appendFile(path.join(ws.repo, '.gitignore'), 'market/\n');
  await execa('git', ['add', '.gitignore'], { cwd: ws.repo });
  await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-m', 'ignore data'], { cwd: ws.repo });
  await fs.mkdir(path.join(ws.repo, 'market'));
  await fs.writeFile(path.join(ws.repo, 'market', 'prices.csv'), 'real data\n');
  const settings = await loadSettings(ws.root, { PATH: process.env.PATH, HOME: process.env.HOME });
  try {
    // Run 1 replaces the link by a folder of its own.
    const first = new ActingEngine(async (ctx) => {
      const link = path.join(ctx.worktree, 'market');
      assert.ok((await fs.lstat(link)).isSymbolicLink(), 'the link is there');
      await fs.unlink(link);
      await fs.mkdir(link);
      await fs.writeFile(path.join(link, 'prices.csv'), 'planted by the run\n');
    });
    await fs.writeFile(path.join(settings.layout.inbox, 'one.md'), TASK('Plant'));
    await runTask(path.join(settings.layout.inbox, 'one.md'), { settings, engine: first });
    // Run 2 in the same slot sees the real link again.
    const second = new ActingEngine(async (ctx) => {
      const link = path.join(ctx.worktree, 'market');
      assert.ok((await fs.lstat(link)).isSymbolicLink(), 'linked again');
      assert.is(await fs.readFile(path.join(link, 'prices.csv'), 'utf8'), 'real data\n');
    });
    await fs.writeFile(path.join(settings.layout.inbox, 'two.md'), TASK('Check'));
    const result = await runTask(path.join(settings.layout.inbox, 'two.md'), { settings, engine: second });
    assert.is(result.status, 'ok', result.report.error?.message);
    assert.equal(second.seen, first.seen, 'the same slot');
    const [slot] = await slotDirs(poolRoot(settings.layout));
    // Given back after the run: reset, its links unlinked first (the reset never reaches through one).
    assert.not.ok(await exists(path.join(slot!, 'market')), 'the slot holds no link between runs');
    assert.is(await fs.readFile(path.join(ws.repo, 'market', 'prices.csv'), 'utf8'), 'real data\n', 'the reset left the real folder alone');
    // A run killed mid-way leaves its link in the slot.
    await fs.symlink(path.join(ws.repo, 'market'), path.join(slot!, 'market'));
    assert.ok((await fs.lstat(path.join(slot!, 'market'))).isSymbolicLink(), 'positive control: the slot holds the link before the prune');

    // Pruned as it no longer fits the config (the links changed): unlinked, not followed.
    await fs.writeFile(
      path.join(ws.root, 'meta-agent.yaml'),
      (await fs.readFile(path.join(ws.root, 'meta-agent.yaml'), 'utf8')).replace('link: ["market"]', 'link: []'),
    );
    const changed = await loadSettings(ws.root, { PATH: process.env.PATH, HOME: process.env.HOME });
    const removed = await prunePool(changed, silentLogger());
    assert.equal(removed, [slot]);
    assert.not.ok(await exists(slot!), 'the slot is gone');
    assert.is(await fs.readFile(path.join(ws.repo, 'market', 'prices.csv'), 'utf8'), 'real data\n', 'the real folder is untouched');
    const list = (await execa('git', ['worktree', 'list', '--porcelain'], { cwd: ws.repo })).stdout;
    assert.not.match(list, 'slot-', 'the repo no longer lists the slot');
  } finally {
    await ws.cleanup();
  }
});

test('a slot in use by a live run is not taken: a second run beside it gets its own slot, and prune leaves a busy slot alone', async () => {
  const ws = await makeWorkspace({ project: '    scope: ["**"]', extra: [QUEUE, 'limits:', '  concurrency: 1'].join('\n') });
  try {
    const { inbox } = ws.settings.layout;
    let releaseFirst: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (releaseFirst = resolve));
    let started: () => void = () => undefined;
    const firstStarted = new Promise<void>((resolve) => (started = resolve));
    const first = new ActingEngine(async (ctx) => {
      await fs.writeFile(path.join(ctx.worktree, 'busy.txt'), 'x');
      started();
      await held;
    });
    await fs.writeFile(path.join(inbox, 'a.md'), TASK('Hold'));
    await fs.writeFile(path.join(inbox, 'b.md'), TASK('Beside'));
    const running = runTask(path.join(inbox, 'a.md'), { settings: ws.settings, engine: first });
    await firstStarted;
    const [slot] = await slotDirs(poolRoot(ws.settings.layout));
    assert.equal(await prunePool(ws.settings, silentLogger(), { all: true }), [], 'the busy slot is not pruned');
    assert.ok(await exists(path.join(slot!, 'busy.txt')), 'and its work is intact');
    const beside = new ActingEngine(async (ctx) => assert.not.ok(await exists(path.join(ctx.worktree, 'busy.txt'))));
    const second = await runTask(path.join(inbox, 'b.md'), { settings: ws.settings, engine: beside });
    assert.is(second.status, 'ok', second.report.error?.message);
    assert.is.not(beside.seen[0], slot, 'not the busy slot (concurrency 1: a fresh worktree)');
    releaseFirst();
    const firstResult = await running;
    assert.equal(firstResult.report.changed_files, ['busy.txt'], "the held run's own change is its diff");
    assert.is(await worktreeCount(ws.repo), 0, 'the fresh worktree was removed');
    assert.equal(await prunePool(ws.settings, silentLogger(), { all: true }), [slot], 'free again: pruned with all');
  } finally {
    await ws.cleanup();
  }
});

test.run();
