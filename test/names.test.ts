/**
 * Bad task file names and bytes (issue 14, point 5), through a real `meta-agent watch`: a
 * name too long for the lease/ledger files is claimed under a shortened name (it used to
 * loop for ever on ENAMETOOLONG), an ignored name is logged once, invalid UTF-8 fails with
 * the byte offset, and a claim that fails for a reason no retry cures goes to failed/.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeWorkspace, readJson } from './helpers/workspace.ts';
import { killAll, list, publish, sleep, startWatchReady, waitFor } from './helpers/procs.ts';
import { startWatching, type Watcher } from '../src/service/watch.ts';
import { silentLogger } from '../src/log.ts';
import { injectFileFault } from '../src/workspace/files.ts';
import { MAX_TASK_NAME_BYTES, safeTaskName } from '../src/queue/folders.ts';
import { invalidUtf8Offset, parseTask } from '../src/contract/task.ts';
import type { Report } from '../src/contract/report.ts';

const CONFIG = [
  'engine: command',
  'command:',
  '  run: ["true"]',
  'queue:',
  '  settle_ms: 100',
  '  scan_interval_ms: 200',
  '  lease_stale_s: 1',
  '  shutdown_grace_s: 1',
].join('\n');
const TASK = '---\nproject: bot\nobjective: Report only\nscope: []\n---\n';

async function logText(root: string): Promise<string> {
  const dir = path.join(root, 'logs');
  const names = (await list(dir)).filter((n) => n.startsWith('meta-agent_') && n.endsWith('.log'));
  return (await Promise.all(names.map((n) => fs.readFile(path.join(dir, n), 'utf8')))).join('');
}

test('a 230-character name is claimed under a shortened name and runs once (no ENAMETOOLONG loop); `..md` is logged once and left alone', async () => {
  const ws = await makeWorkspace({ project: '    scope: ["**"]', extra: CONFIG });
  try {
    const { inbox, done, failed, processing } = ws.settings.layout;
    const proc = await startWatchReady(ws.root);
    const long = `${'a-very-long-task-name-'.repeat(10)}end.md`; // 225 bytes
    assert.ok(Buffer.byteLength(long) > 215);
    await publish(inbox, long, TASK);
    await publish(inbox, '..md', TASK);
    const short = safeTaskName(long);
    assert.ok(Buffer.byteLength(short) <= MAX_TASK_NAME_BYTES && short.endsWith('.md'), short);
    await waitFor(
      'the long task to be done',
      async () => (await list(done)).includes(short),
      20_000,
      async () => `done: ${await list(done)} failed: ${await list(failed)} inbox: ${await list(inbox, { dot: true })}\n${proc.output()}`,
    );
    const report = await readJson<Report>(path.join(ws.settings.layout.reports, `${short.replace(/\.md$/, '')}.json`));
    assert.is(report.status, 'ok', report.error?.message);
    await sleep(1500); // several scans
    assert.equal(await list(inbox, { dot: true }), ['..md']);
    assert.equal(await list(processing, { dot: true }), []);
    const log = await logText(ws.root);
    assert.is(log.split('\n').filter((l) => l.includes('"file":"..md"') && l.includes('ignored')).length, 1, 'the ignored name is logged once');
    assert.is(log.split('\n').filter((l) => l.includes('shortened name')).length, 1, 'the shortening is logged once');
    assert.not.match(log, /ENAMETOOLONG/);
    assert.ok(proc.alive());
  } finally {
    await killAll();
    await ws.cleanup();
  }
});

test('invalid UTF-8 fails the task with the byte offset (not run with U+FFFD in the objective)', async () => {
  const ws = await makeWorkspace({ project: '    scope: ["**"]', extra: CONFIG });
  try {
    const { inbox, failed } = ws.settings.layout;
    const proc = await startWatchReady(ws.root);
    const bytes = Buffer.concat([Buffer.from('---\nproject: bot\nobjective: Caf'), Buffer.from([0xe9]), Buffer.from(' menu\nscope: []\n---\n')]);
    await publish(inbox, 'latin1.md', bytes);
    await waitFor(
      'failed/latin1.md.error.md',
      async () => (await list(failed)).includes('latin1.md.error.md'),
      20_000,
      () => proc.output(),
    );
    const why = await fs.readFile(path.join(failed, 'latin1.md.error.md'), 'utf8');
    assert.match(why, 'not valid UTF-8 (at byte offset 31)');
  } finally {
    await killAll();
    await ws.cleanup();
  }
});

test('invalidUtf8Offset: valid text (U+FFFD itself, 4-byte emoji) passes; overlongs, surrogates and cut sequences are found', () => {
  assert.is(invalidUtf8Offset(Buffer.from('ok \uFFFD \u{1F600} é')), -1);
  assert.is(invalidUtf8Offset(Buffer.from([0x41, 0xc0, 0x80])), 1, 'overlong');
  assert.is(invalidUtf8Offset(Buffer.from([0x41, 0x42, 0xed, 0xa0, 0x80])), 2, 'surrogate');
  assert.is(invalidUtf8Offset(Buffer.from([0x41, 0xe2, 0x82])), 1, 'cut at the end');
  assert.is(invalidUtf8Offset(Buffer.from([0xef, 0xbf, 0x41])), 0, 'a bad sequence that starts like U+FFFD');
  assert.throws(() => parseTask(Buffer.from([0x2d, 0x2d, 0x2d, 0x0a, 0xff]), 'x.md'), /byte offset 4/);
});

test('a claim that fails for a reason no retry cures (ENAMETOOLONG on the ledger) goes to failed/ with the reason, once', async () => {
  const ws = await makeWorkspace({ project: '    scope: ["**"]', extra: CONFIG });
  const { layout } = ws.settings;
  let faults = 0;
  injectFileFault((file) => {
    if (file.includes(`${path.sep}ledger${path.sep}`) && file.includes('cursed')) {
      faults++;
      throw Object.assign(new Error(`ENAMETOOLONG: name too long, open '${file}'`), { code: 'ENAMETOOLONG', path: file });
    }
  });
  let watcher: Watcher | undefined;
  try {
    watcher = startWatching({ settings: ws.settings, log: silentLogger(), supervisorLog: silentLogger() });
    await watcher.ready;
    await publish(layout.inbox, 'cursed.md', TASK);
    await publish(layout.inbox, 'fine.md', TASK);
    await waitFor(
      'failed/cursed.md',
      async () => (await list(layout.failed)).includes('cursed.md'),
      10_000,
      async () => `inbox: ${await list(layout.inbox)} failed: ${await list(layout.failed)}`,
    );
    await waitFor('done/fine.md', async () => (await list(layout.done)).includes('fine.md'), 10_000);
    await sleep(1000);
    assert.is(faults, 1, 'tried once, not in a loop');
    assert.match(await fs.readFile(path.join(layout.failed, 'cursed.md.error.md'), 'utf8'), 'ENAMETOOLONG');
    assert.equal(await list(layout.inbox), []);
    assert.equal(await list(layout.processing, { dot: true }), []);
  } finally {
    injectFileFault(null);
    await watcher?.stop();
    await ws.cleanup();
  }
});

test.run();
