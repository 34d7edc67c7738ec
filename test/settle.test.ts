/**
 * The short quiet period (issue 19): on a local disk a copied-in file is read after
 * queue.settle_ms (default 100 ms) and taken only once it parses to a complete task;
 * network or polled folders wait longer. The watch service runs with the shipped default
 * (no settle_ms in meta-agent.yaml, no override).
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startWatching } from '../src/service/watch.ts';
import { hearsEveryWrite, pickupSettleMs, REMOTE_SETTLE_MS } from '../src/queue/volumes.ts';
import { EVENT_PROOF_MS, InboxPickup } from '../src/queue/pickup.ts';
import { silentLogger } from '../src/log.ts';
import type { RunTaskResult } from '../src/run/runTask.ts';
import { makeWorkspace, readJson } from './helpers/workspace.ts';
import { sleep, waitFor } from './helpers/procs.ts';

test('pickupSettleMs: the configured quiet period on a local disk, at least REMOTE_SETTLE_MS on a network or polled folder', () => {
  assert.is(pickupSettleMs(100, { network: false, polled: false }), 100);
  assert.is(pickupSettleMs(100, { network: true, polled: false }), REMOTE_SETTLE_MS);
  assert.is(pickupSettleMs(100, { network: false, polled: true }), REMOTE_SETTLE_MS);
  assert.is(pickupSettleMs(5000, { network: true, polled: true }), 5000, 'a longer configured period is kept');
});

test('default settle: a file copied in 3 chunks over 2 s runs once, after the last chunk, with the whole text', async () => {
  const ws = await makeWorkspace({
    project: '    scope: ["**"]',
    extra: ['engine: command', 'command:', '  run: ["true"]', 'queue:', '  scan_interval_ms: 200'].join('\n'),
  });
  assert.is(ws.settings.config.queue.settle_ms, 100, 'the shipped default');
  const results: RunTaskResult[] = [];
  const watcher = startWatching({ settings: ws.settings, log: silentLogger(), usePolling: false, onResult: (r) => results.push(r) });
  try {
    await watcher.ready;
    const { inbox, done, state } = ws.settings.layout;
    const file = path.join(inbox, 'chunked.md');
    // In place, as a copy does: the front matter is open until the last chunk.
    await fs.writeFile(file, '---\nproject: bot\n');
    await sleep(1000);
    await fs.appendFile(file, 'scope: []\n');
    await sleep(1000);
    assert.equal(results, [], 'nothing ran before the last chunk');
    await fs.appendFile(file, 'objective: Review sizing END-MARKER\n---\nThe body.\n');
    await waitFor('the run', () => results.length >= 1, 20_000);
    await sleep(1000); // more quiet periods and scans: nothing runs twice
    assert.is(results.length, 1, 'ran once');
    assert.is(results[0]!.status, 'ok', results[0]!.report.error?.message);
    assert.is(results[0]!.report.objective, 'Review sizing END-MARKER', 'the last chunk was read');
    assert.equal(
      (await fs.readdir(done)).filter((n) => n.endsWith('.md')),
      ['chunked.md'],
    );
    const ledger = await fs.readdir(path.join(state, 'ledger'));
    assert.is(ledger.length, 1);
    assert.is((await readJson<{ runs: unknown[] }>(path.join(state, 'ledger', ledger[0]!))).runs.length, 1, 'one run in the ledger');
  } finally {
    await watcher.stop();
    await ws.cleanup();
  }
});

const COMPLETE = '---\nproject: bot\nobjective: Review sizing\nscope: []\n---\nThe body.\n';

test('Linux: a task written and renamed in at once (mtime not before ctime: no timestamp can tell) is taken by what the inbox events say, without the settle; one written in place waits for it', async () => {
  if (!(await hearsEveryWrite(os.tmpdir()))) {
    console.error('skipped: the temp folder is not on a local Linux file system (no event proof there)');
    return;
  }
  const ws = await makeWorkspace({
    project: '    scope: ["**"]',
    extra: ['engine: command', 'command:', '  run: ["true"]', 'queue:', '  settle_ms: 4000', '  scan_interval_ms: 200'].join('\n'),
  });
  const results: RunTaskResult[] = [];
  const watcher = startWatching({ settings: ws.settings, log: silentLogger(), usePolling: false, onResult: (r) => results.push(r) });
  try {
    await watcher.ready;
    const { inbox, root } = ws.settings.layout;
    const staged = path.join(root, 'renamed.md');
    await fs.writeFile(staged, COMPLETE.replace('Review sizing', 'Renamed in'));
    // An mtime ahead of the rename's ctime: the timestamp proof (ctime after mtime) cannot hold.
    const ahead = new Date(Date.now() + 60_000);
    await fs.utimes(staged, ahead, ahead);
    const t0 = performance.now();
    await fs.rename(staged, path.join(inbox, 'renamed.md'));
    await waitFor('the renamed task', () => results.length >= 1, 20_000);
    const tookMs = performance.now() - t0;
    assert.ok(tookMs < 2500, `taken in ${tookMs.toFixed(0)} ms, not after the 4000 ms settle`);
    assert.is(results[0]!.report.objective, 'Renamed in');

    // Control: the same bytes written in place make "change" events: the settle is waited.
    const t1 = performance.now();
    await fs.writeFile(path.join(inbox, 'in-place.md'), COMPLETE.replace('Review sizing', 'Written in place'));
    await sleep(2500);
    assert.is(results.length, 1, 'not taken before the settle');
    await waitFor('the task written in place', () => results.length >= 2, 20_000);
    assert.ok(performance.now() - t1 >= 4000, 'taken after the settle');
    assert.is(results[1]!.report.objective, 'Written in place');
  } finally {
    await watcher.stop();
    await ws.cleanup();
  }
});

test('InboxPickup event proof: only a name that appeared whole, was not written since, parses complete, and only where events are complete', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-pickup-'));
  const fresh = () => {
    const p = new InboxPickup(dir, silentLogger(), 60_000, 600_000);
    p.eventEvidence = true;
    return p;
  };
  const never = () => false;
  try {
    const put = async (name: string, text: string) => {
      await fs.writeFile(path.join(dir, name), text);
      // An mtime ahead of the ctime: the timestamp proof never holds in this test.
      const ahead = new Date(Date.now() + 60_000);
      await fs.utimes(path.join(dir, name), ahead, ahead);
    };
    await put('a.md', COMPLETE);
    const pickup = fresh();
    pickup.noteEvent('a.md', 'rename');
    const early = await pickup.judge('a.md', never);
    assert.equal(early.take, false);
    assert.ok(!early.take && early.recheckInMs! <= EVENT_PROOF_MS, 'looked at again once the events had their time');
    await sleep(EVENT_PROOF_MS + 5);
    const proven = await pickup.judge('a.md', never);
    assert.ok(proven.take && /^[0-9a-f]{64}$/.test(proven.expectSha256 ?? ''), 'taken, its bytes pinned');

    // Written after it appeared: the settle decides (60 s here).
    const written = fresh();
    written.noteEvent('a.md', 'rename');
    written.noteEvent('a.md', 'change');
    await sleep(EVENT_PROOF_MS + 5);
    assert.equal(await written.judge('a.md', never), { take: false, recheckInMs: 60_025 });

    // Appeared with its front matter still open (a writer renaming a partial file): not proven.
    await put('open.md', '---\nproject: bot\n');
    const open = fresh();
    open.noteEvent('open.md', 'rename');
    await sleep(EVENT_PROOF_MS + 5);
    assert.equal((await open.judge('open.md', never)).take, false);

    // Events of a name the scan found gone are forgotten (no growth over months of tasks).
    const gone = fresh();
    gone.noteEvent('a.md', 'rename');
    gone.forgetAbsent(new Set());
    await sleep(EVENT_PROOF_MS + 5);
    assert.equal((await gone.judge('a.md', never)).take, false, 'its event proof was forgotten');

    // Polling, a network share, a fuse or proc mount, another platform: events prove nothing.
    assert.not.ok(await hearsEveryWrite('/proc/self'), 'procfs is not a local disk');
    const off = new InboxPickup(dir, silentLogger(), 60_000, 600_000);
    off.noteEvent('a.md', 'rename');
    await sleep(EVENT_PROOF_MS + 5);
    assert.equal((await off.judge('a.md', never)).take, false);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test.run();
