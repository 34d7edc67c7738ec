/**
 * The short quiet period (issue 19): on a local disk a copied-in file is read after
 * queue.settle_ms (default 100 ms) and taken only once it parses to a complete task;
 * network or polled folders wait longer. The watch service runs with the shipped default
 * (no settle_ms in meta-agent.yaml, no override).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startWatching } from '../src/service/watch.ts';
import { pickupSettleMs, REMOTE_SETTLE_MS } from '../src/queue/volumes.ts';
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

test.run();
