/**
 * The agent dies with the service (issue 14, point 7): after kill -9 of `watch`, its agent
 * process (a child is not killed with its parent) keeps running. The recovery scan of the
 * next start kills it by the process group recorded in the dead owner's note. Linux only
 * (the group is read from /proc).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeWorkspace, readJson } from './helpers/workspace.ts';
import { killAll, signal, startWatchReady, waitFor } from './helpers/procs.ts';
import { pidAlive, type OwnerNote } from '../src/workspace/lease.ts';

test("kill -9 of watch mid-run: the orphaned agent is killed by the next start's recovery (by the recorded process group)", async () => {
  if (process.platform !== 'linux') return;
  const ws = await makeWorkspace({
    project: '    scope: ["**"]',
    extra: ['queue:', '  settle_ms: 100', '  scan_interval_ms: 200', '  lease_stale_s: 2'].join('\n'),
  });
  const hold = path.join(ws.root, 'hold');
  const pids = path.join(ws.root, 'agent-pids');
  const script =
    "const fs = require('fs'); const [hold, pids] = process.argv.slice(1); fs.appendFileSync(pids, process.pid + '\\n'); const end = Date.now() + 60000; (function wait() { if (!fs.existsSync(hold) || Date.now() > end) process.exit(0); setTimeout(wait, 50); })();";
  await fs.appendFile(
    path.join(ws.root, 'meta-agent.yaml'),
    `${['engine: command', 'command:', `  run: ${JSON.stringify([process.execPath, '-e', script, hold, pids])}`, '  sandbox: none'].join('\n')}\n`,
  );
  await fs.writeFile(hold, '');
  const agents = async () => (await fs.readFile(pids, 'utf8').catch(() => '')).split('\n').filter(Boolean).map(Number);
  try {
    const first = await startWatchReady(ws.root);
    await fs.writeFile(path.join(ws.settings.layout.inbox, 'orphan.md'), '---\nproject: bot\nobjective: Wait\nscope: []\n---\n');
    await waitFor(
      'the agent to start',
      async () => (await agents()).length === 1,
      20_000,
      () => first.output(),
    );
    const note = await readJson<OwnerNote>(path.join(ws.settings.layout.processing, '.orphan.md.owner.json'));
    assert.is(note.pgid, first.pid, "the owner note records the service's process group");
    const [agent] = await agents();
    signal(first, 'SIGKILL'); // the service only, not its group
    await first.exited;
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(pidAlive(agent!), 'positive control: the agent outlived the killed service');
    const second = await startWatchReady(ws.root);
    await waitFor(
      'the orphaned agent to be killed',
      () => !pidAlive(agent!),
      10_000,
      () => second.output(),
    );
    assert.ok(second.alive(), 'the recovering service itself lives on');
  } finally {
    await fs.rm(hold, { force: true });
    await killAll();
    await ws.cleanup();
  }
});

test("kill -9 of watch while a child still makes the run's worktree: the next start stops it before pruning, so no worktree is left", async () => {
  if (process.platform !== 'linux') return;
  const ws = await makeWorkspace({
    project: '    scope: ["**"]',
    extra: ['queue:', '  settle_ms: 100', '  scan_interval_ms: 200', '  lease_stale_s: 2'].join('\n'),
  });
  const pids = path.join(ws.root, 'agent-pids');
  // Stands for a `git worktree add` that outlives the killed service (a slow disk): once
  // its worktree is removed, it writes it again, as git finishing late would.
  const script =
    "const fs = require('fs'); const dir = process.cwd(); fs.appendFileSync(process.argv[1], process.pid + '\\n'); const end = Date.now() + 30000; (function poll() { if (Date.now() > end) process.exit(0); if (!fs.existsSync(dir)) { fs.mkdirSync(dir, { recursive: true }); fs.writeFileSync(dir + '/late.txt', 'x'); } setTimeout(poll, 10); })();";
  await fs.appendFile(
    path.join(ws.root, 'meta-agent.yaml'),
    `${['engine: command', 'command:', `  run: ${JSON.stringify([process.execPath, '-e', script, pids])}`, '  sandbox: none'].join('\n')}\n`,
  );
  const agents = async () => (await fs.readFile(pids, 'utf8').catch(() => '')).split('\n').filter(Boolean).map(Number);
  try {
    const first = await startWatchReady(ws.root);
    await fs.writeFile(path.join(ws.settings.layout.inbox, 'late.md'), '---\nproject: bot\nobjective: Wait\nscope: []\n---\n');
    await waitFor(
      'the child to start',
      async () => (await agents()).length === 1,
      20_000,
      () => first.output(),
    );
    const note = await readJson<OwnerNote>(path.join(ws.settings.layout.processing, '.late.md.owner.json'));
    const [agent] = await agents();
    signal(first, 'SIGKILL');
    await first.exited;
    const second = await startWatchReady(ws.root);
    await waitFor(
      'the child to be stopped',
      () => !pidAlive(agent!),
      10_000,
      () => second.output(),
    );
    await new Promise((r) => setTimeout(r, 500));
    const left = (await fs.readdir(ws.settings.layout.worktrees).catch(() => [] as string[])).filter((n) => n.startsWith(note.run_id));
    assert.equal(left, [], 'no worktree of the dead run is left');
  } finally {
    await killAll();
    await ws.cleanup();
  }
});

test.run();
