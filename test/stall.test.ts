/**
 * A writer that stalls (issue 14, point 1): a slow network copy or a program that writes a
 * task in two steps, longer apart than queue.settle_ms. Completion is decided by evidence:
 * a copied-in file is taken when it parses to a complete task (and is quiet), or failed
 * once it has stayed incomplete and unchanged for queue.incomplete_grace_s. Real `watch`
 * processes and a real writer process.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeWorkspace, readJson } from './helpers/workspace.ts';
import { killAll, list, sleep, startWatchReady, waitFor } from './helpers/procs.ts';
import { runTask } from '../src/run/runTask.ts';
import { ClaimChanged } from '../src/queue/folders.ts';
import { silentLogger } from '../src/log.ts';
import type { Report } from '../src/contract/report.ts';

const CONFIG = (grace: number) =>
  [
    'engine: command',
    'command:',
    '  run: ["true"]',
    'queue:',
    '  settle_ms: 200',
    '  scan_interval_ms: 200',
    '  lease_stale_s: 2',
    `  incomplete_grace_s: ${grace}`,
  ].join('\n');

/** A separate process writes `first` into `file` (in place, as a copy does), stalls `ms`, then appends `rest` and closes. */
function stallingWriter(file: string, first: string, rest: string, ms: number) {
  const script =
    "const fs = require('fs'); const [file, first, rest, ms] = process.argv.slice(1); const fd = fs.openSync(file, 'w'); fs.writeSync(fd, first); setTimeout(() => { fs.writeSync(fd, rest); fs.closeSync(fd); }, Number(ms));";
  return execa(process.execPath, ['-e', script, file, first, rest, String(ms)]);
}

test('a writer that stalls inside the front matter for 4 s (settle_ms 200): the task is taken once complete and runs whole, never failed', async () => {
  const ws = await makeWorkspace({ project: '    scope: ["**"]', extra: CONFIG(600) });
  try {
    const { inbox, done, failed, reports } = ws.settings.layout;
    const proc = await startWatchReady(ws.root);
    const writer = stallingWriter(path.join(inbox, 'stall.md'), '---\nproject: bot\nobj', 'ective: The whole objective\nscope: []\n---\n', 4000);
    await sleep(2500); // many settle periods and scans while the writer stalls
    assert.equal(await list(failed), [], 'not failed while incomplete and young');
    assert.equal(await list(inbox), ['stall.md'], 'not taken while incomplete');
    await writer;
    await waitFor(
      'done/stall.md',
      async () => (await list(done)).includes('stall.md'),
      20_000,
      async () => `failed: ${await list(failed)}\n${proc.output()}`,
    );
    const report = await readJson<Report>(path.join(reports, 'stall.json'));
    assert.is(report.objective, 'The whole objective');
    assert.is(report.status, 'ok', report.error?.message);
  } finally {
    await killAll();
    await ws.cleanup();
  }
});

test('a copied-in file that stays incomplete is failed once it is unchanged for incomplete_grace_s, with the reason', async () => {
  const ws = await makeWorkspace({ project: '    scope: ["**"]', extra: CONFIG(2) });
  try {
    const { inbox, failed } = ws.settings.layout;
    const proc = await startWatchReady(ws.root);
    await fs.writeFile(path.join(inbox, 'half.md'), '---\nproject: bot\n---\n');
    await waitFor(
      'failed/half.md.error.md',
      async () => (await list(failed)).includes('half.md.error.md'),
      20_000,
      () => proc.output(),
    );
    assert.match(await fs.readFile(path.join(failed, 'half.md.error.md'), 'utf8'), 'objective');
  } finally {
    await killAll();
    await ws.cleanup();
  }
});

test('a claim whose bytes are not the ones judged complete goes back to inbox/ (ClaimChanged), with no report and no run', async () => {
  const ws = await makeWorkspace({ project: '    scope: ["**"]', extra: CONFIG(600) });
  try {
    const { inbox, processing, reports } = ws.settings.layout;
    const file = path.join(inbox, 'moving.md');
    await fs.writeFile(file, '---\nproject: bot\nobjective: Grew after the check\nscope: []\n---\n');
    const error = await runTask(file, { settings: ws.settings, log: silentLogger(), expectSha256: '0'.repeat(64) }).then(
      () => null,
      (e: unknown) => e,
    );
    assert.instance(error, ClaimChanged);
    assert.equal(await list(inbox), ['moving.md']);
    assert.equal(await list(processing, { dot: true }), []);
    assert.equal(await list(reports), []);
    // Positive control: without a stale expectation the same file runs.
    const result = await runTask(file, { settings: ws.settings, log: silentLogger() });
    assert.is(result.status, 'ok', result.report.error?.message);
  } finally {
    await ws.cleanup();
  }
});

test.run();
