/**
 * What a crash or a full disk leaves behind is cleaned up by the service itself: temp files
 * of killed writers are swept at start, and a claim whose ledger write failed does not stay
 * stuck in processing/. The watcher runs in-process, so faults can be injected (files.ts).
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startWatching, type Watcher } from '../src/service/watch.ts';
import { silentLogger } from '../src/log.ts';
import { injectFileFault } from '../src/workspace/files.ts';
import type { LedgerEntry } from '../src/queue/ledger.ts';
import { lockActivity, takeLease } from '../src/workspace/lease.ts';
import { recoverOrphans } from '../src/queue/recover.ts';
import { makeWorkspace } from './helpers/workspace.ts';
import { deadPid, list, publish, waitFor } from './helpers/procs.ts';

const QUEUE = 'queue:\n  settle_ms: 100\n  scan_interval_ms: 200\n  lease_stale_s: 1\n  shutdown_grace_s: 1';
const NOOP_ENGINE = 'engine: command\ncommand:\n  run: ["true"]';

const ENOSPC = (file: string) => Object.assign(new Error(`ENOSPC: no space left on device, write '${file}'`), { code: 'ENOSPC', path: file });
const present = (file: string) =>
  fs.stat(file).then(
    () => true,
    () => false,
  );

test("start-up removes the temp file of a writer killed with kill -9 (an old one), not a live writer's", async () => {
  const ws = await makeWorkspace({ extra: [NOOP_ENGINE, QUEUE].join('\n') });
  let watcher: Watcher | undefined;
  try {
    const dir = ws.settings.layout.patches.pending;
    // A writer that dies with SIGKILL halfway through a publish (files.ts names temps .<name>.<pid>.<hex>.tmp).
    const script = `require('fs').writeFileSync(require('path').join(process.argv[1], '.x.patch.' + process.pid + '.0badf00d.tmp'), 'half a patch'); process.kill(process.pid, 'SIGKILL');`;
    const killed = await execa(process.execPath, ['-e', script, dir], { reject: false });
    assert.is(killed.signal, 'SIGKILL');
    const [deadTemp] = (await fs.readdir(dir)).filter((n) => n.endsWith('.tmp'));
    assert.ok(deadTemp, 'the killed writer left its temp');
    const liveTemp = path.join(dir, `.y.patch.${process.pid}.0123abcd.tmp`);
    await fs.writeFile(liveTemp, 'being written');
    const old = new Date(Date.now() - 60_000); // older than lease_stale_s
    for (const f of [path.join(dir, deadTemp), liveTemp]) await fs.utimes(f, old, old);

    watcher = startWatching({ settings: ws.settings, log: silentLogger(), supervisorLog: silentLogger() });
    await watcher.ready;
    assert.not.ok(await present(path.join(dir, deadTemp)), "the dead writer's temp is gone once the service has started");
    assert.ok(await present(liveTemp), 'the temp of a live writer (this process) stays');
  } finally {
    await watcher?.stop();
    await ws.cleanup();
  }
});

test('a full disk when the claim is recorded (the ledger write fails): the task goes back to inbox/ and runs once the disk is fine', async () => {
  const ws = await makeWorkspace({ extra: [NOOP_ENGINE, QUEUE].join('\n') });
  const { layout } = ws.settings;
  let watcher: Watcher | undefined;
  let failed = 0;
  injectFileFault((file) => {
    if (file.includes(`${path.sep}ledger${path.sep}`) && failed++ === 0) throw ENOSPC(file);
  });
  try {
    watcher = startWatching({ settings: ws.settings, log: silentLogger(), supervisorLog: silentLogger() });
    await watcher.ready;
    await publish(layout.inbox, 'stuck.md', '---\nproject: bot\nobjective: Report only\nscope: []\n---\n');
    // Without the give-back it stays in processing/ with a live lease for as long as the process lives.
    await waitFor(
      'the task to be done',
      async () => (await list(layout.done)).includes('stuck.md'),
      8000,
      async () => `processing/: ${(await list(layout.processing, { dot: true })).join(' ')}`,
    );
    assert.ok(failed > 1, 'the ledger write failed once, then the claim was recorded');
    // The task reaches done/ before its lease is released (settleClaim): wait for that, bounded.
    await waitFor(
      'no claim, lock or owner note left in processing/',
      async () => (await list(layout.processing, { dot: true })).length === 0,
      5000,
      async () => (await list(layout.processing, { dot: true })).join(' '),
    );
    assert.equal(await list(layout.inbox), []);
    const ledger = (await list(path.join(layout.state, 'ledger'))).filter((n) => n.endsWith('.json'));
    assert.is(ledger.length, 1);
    const entry = JSON.parse(await fs.readFile(path.join(layout.state, 'ledger', ledger[0]!), 'utf8')) as LedgerEntry;
    assert.is(entry.runs.length, 1, 'only the recorded claim is a run');
    assert.not.ok(entry.runs[0]!.recovered, 'the task was handed back, not recovered as a crash');
  } finally {
    injectFileFault(null);
    await watcher?.stop();
    await ws.cleanup();
  }
});

test('a lease or lock whose owner note cannot be written is given back, not held with no owner', async () => {
  const ws = await makeWorkspace();
  try {
    const file = path.join(ws.settings.layout.processing, 'task.md');
    await fs.writeFile(file, 'x');
    // A folder where the note goes: writing it fails (as on a full disk).
    await fs.mkdir(path.join(ws.settings.layout.processing, '.task.md.owner.json'));
    assert.ok(
      await takeLease(file, 'run-1', 5000).then(
        () => false,
        () => true,
      ),
      'takeLease fails',
    );
    assert.not.ok(await present(path.join(ws.settings.layout.processing, '.task.md.lock')), 'the lease lock is released');
    const target = path.join(ws.settings.layout.state, 'gate');
    await fs.mkdir(path.join(ws.settings.layout.state, '.gate.owner.json'), { recursive: true });
    assert.ok(
      await lockActivity(target, { staleMs: 5000, wait: false }).then(
        () => false,
        () => true,
      ),
      'lockActivity fails',
    );
    assert.not.ok(await present(path.join(ws.settings.layout.state, '.gate.lock')), 'the activity lock is released');
  } finally {
    await ws.cleanup();
  }
});

test("a worker killed after it settled a task but before it released the lease: recovery removes the lease; a live owner's stays", async () => {
  const ws = await makeWorkspace({ extra: [NOOP_ENGINE, QUEUE].join('\n') });
  const { layout } = ws.settings;
  try {
    // What kill -9 leaves at that moment: processing/.<name>.lock/ and .<name>.owner.json, the task already in done/.
    const dead = await deadPid();
    await fs.mkdir(path.join(layout.processing, '.settled.md.lock'));
    await fs.writeFile(
      path.join(layout.processing, '.settled.md.owner.json'),
      JSON.stringify({ host: os.hostname(), pid: dead, run_id: 'r1', since: new Date().toISOString() }),
    );
    // A live worker in the middle of its settle: the file has just moved out, the lease is still held.
    const moving = path.join(layout.processing, 'moving.md');
    await fs.writeFile(moving, 'x');
    const lease = await takeLease(moving, 'r2', 1000);
    await fs.rename(moving, path.join(layout.done, 'moving.md'));

    await recoverOrphans(layout, 1000, silentLogger());
    const left = (await fs.readdir(layout.processing)).sort();
    assert.equal(left, ['.moving.md.lock', '.moving.md.owner.json'], "the dead worker's lease is gone, the live one stays");
    await lease.release();
    assert.equal(await fs.readdir(layout.processing), []);
  } finally {
    await ws.cleanup();
  }
});

test('the temp of a writer killed just before the start (too young for the first sweep) is removed once it is lease_stale_s old', async () => {
  const ws = await makeWorkspace({ extra: [NOOP_ENGINE, QUEUE].join('\n') });
  let watcher: Watcher | undefined;
  try {
    const dir = path.join(ws.settings.layout.state, 'ledger');
    await fs.mkdir(dir, { recursive: true });
    const script = `require('fs').writeFileSync(require('path').join(process.argv[1], '.t.md-0.json.' + process.pid + '.0badf00d.tmp'), '{'); process.kill(process.pid, 'SIGKILL');`;
    await execa(process.execPath, ['-e', script, dir], { reject: false });
    const [temp] = (await fs.readdir(dir)).filter((n) => n.endsWith('.tmp'));
    assert.ok(temp);
    watcher = startWatching({ settings: ws.settings, log: silentLogger(), supervisorLog: silentLogger() });
    await watcher.ready;
    assert.ok(await present(path.join(dir, temp)), "young at start: kept (its writer might be another host's)");
    await waitFor('the young dead temp to be swept', async () => !(await present(path.join(dir, temp))), 10_000);
  } finally {
    await watcher?.stop();
    await ws.cleanup();
  }
});

test('recovery cut short by a full disk (its ledger write fails): the task gets its name back at once, and a later scan returns it to inbox/', async () => {
  const ws = await makeWorkspace({ extra: [NOOP_ENGINE, QUEUE].join('\n') });
  const { layout } = ws.settings;
  try {
    // A claim whose worker is dead: the task in processing/ with the owner note of a dead pid.
    const dead = await deadPid();
    await fs.writeFile(path.join(layout.processing, 'orphan.md'), '---\nproject: bot\nobjective: x\n---\n');
    await fs.writeFile(
      path.join(layout.processing, '.orphan.md.owner.json'),
      JSON.stringify({ host: os.hostname(), pid: dead, run_id: 'r1', since: new Date().toISOString() }),
    );
    injectFileFault((file) => {
      if (file.includes(`${path.sep}ledger${path.sep}`)) throw ENOSPC(file);
    });
    let error: unknown = null;
    await recoverOrphans(layout, 1000, silentLogger()).catch((e: unknown) => (error = e));
    assert.match(String(error), /ENOSPC/);
    assert.equal(
      (await fs.readdir(layout.processing)).filter((n) => n.endsWith('.md')),
      ['orphan.md'],
      'back under its own name, not .taken-*',
    );
    injectFileFault(null);
    await new Promise((r) => setTimeout(r, 1100)); // an unleased claim is left alone for lease_stale_s
    const result = await recoverOrphans(layout, 1000, silentLogger());
    assert.is(result.returned.length, 1);
    assert.ok(await present(path.join(layout.inbox, 'orphan.md')));
  } finally {
    injectFileFault(null);
    await ws.cleanup();
  }
});

test.run();
