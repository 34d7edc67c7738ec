/**
 * What a crash or a full disk leaves behind is cleaned up by the service itself: temp files
 * of killed writers are swept at start, and a claim whose ledger write failed does not stay
 * stuck in processing/. The watcher runs in-process, so faults can be injected (files.ts).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startWatching, type Watcher } from '../src/queue/watch.ts';
import { silentLogger } from '../src/log.ts';
import { makeWorkspace } from './helpers/workspace.ts';

const QUEUE = 'queue:\n  settle_ms: 100\n  scan_interval_ms: 200\n  lease_stale_s: 1\n  shutdown_grace_s: 1';
const NOOP_ENGINE = 'engine: command\ncommand:\n  run: ["true"]';

const present = (file: string) => fs.stat(file).then(() => true, () => false);

test('start-up removes the temp file of a writer killed with kill -9 (an old one), not a live writer\'s', async () => {
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
    assert.not.ok(await present(path.join(dir, deadTemp)), 'the dead writer\'s temp is gone once the service has started');
    assert.ok(await present(liveTemp), 'the temp of a live writer (this process) stays');
  } finally {
    await watcher?.stop();
    await ws.cleanup();
  }
});

test.run();
