/**
 * The reconcile scan runs one at a time: a tick that comes while a scan is under way (a slow
 * disk, a loaded machine) joins it. Two crash recoveries at once could each take the other's
 * file for a dead recoverer's when the clock went back (faults.test's clock test failed so).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { silentLogger } from '../src/log.ts';
import { Failures } from '../src/service/health.ts';
import { Lifecycle } from '../src/service/lifecycle.ts';
import { Reconciler } from '../src/service/reconciler.ts';
import { sleep } from './helpers/procs.ts';

test('a scan slower than the interval: ticks join the scan under way, never a second one at once', async () => {
  const lifecycle = new Lifecycle({ log: silentLogger(), graceMs: 0, describe: () => ({}) });
  let active = 0;
  let most = 0;
  let scans = 0;
  const slowStep = async () => {
    active++;
    most = Math.max(most, active);
    await sleep(150);
    active--;
    scans++;
  };
  const reconciler = new Reconciler([slowStep], lifecycle, new Failures(silentLogger()));
  let sameScan = false;
  try {
    reconciler.start(20);
    const first = reconciler.scan();
    sameScan = reconciler.scan() === first;
    await sleep(700);
  } finally {
    await lifecycle.stop({ now: true });
  }
  while (active > 0) await sleep(20);
  assert.ok(sameScan, 'asked again while it runs: the same scan');
  assert.is(most, 1, 'never two scans at once');
  assert.ok(scans >= 3, `it went on scanning: ${scans} scans`);
});

test.run();
