/**
 * The soak, short: 3 simulated nights (Friday, Saturday with weekly_retrain, Sunday) of the
 * real `meta-agent watch` with every kind of fault (soak/harness.ts), checked after each
 * night. `npm run soak -- --nights 30` is the full run (docs/soak.md).
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runSoak } from '../soak/harness.ts';

test('3 simulated nights with faults: every invariant holds, nothing is lost', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-soak-test-'));
  const out = path.join(dir, 'soak.md');
  const lines: string[] = [];
  try {
    const result = await runSoak({ nights: 3, seed: 3, out, log: (l) => lines.push(l), command: 'npm run soak -- --nights 3 --seed 3' });
    const s = result.stats;
    console.log(`    3 nights in ${(s.wallMs / 1000).toFixed(0)} s: ${s.tasks.total} tasks, ${s.patches.applied} applied, faults ${JSON.stringify(s.faults)}`);
    assert.equal(
      result.failing,
      [],
      `breaches:\n${result.failing.map((b) => `night ${b.night}: ${b.invariant}: ${b.detail}`).join('\n')}\n\nlog:\n${lines.join('\n')}`,
    );
    assert.ok(result.ok, lines.join('\n'));
    assert.is(s.nightsRun, 3);
    assert.is(result.nights[1]?.weekday, 'Sat', 'night 2 is a Saturday (weekly_retrain is scheduled)');
    // The short run still exercises the machinery: tasks ran, the gate applied patches, faults were injected.
    assert.ok(s.tasks.total >= 4, `tasks: ${JSON.stringify(s.tasks)}`);
    assert.ok(s.patches.produced >= 2 && s.patches.applied + s.patches.rejectedByGate >= 1, `the gate worked: ${JSON.stringify(s.patches)}`);
    assert.ok(Object.values(s.faults).reduce((a, b) => a + b, 0) >= 3, `faults: ${JSON.stringify(s.faults)}`);
    assert.ok(s.serviceStarts >= 2, 'the service was killed and restarted');
    // The report went where it was told, not to docs/soak.md.
    const md = await fs.readFile(out, 'utf8');
    assert.match(md, /^# Soak test: unattended nights/);
    assert.match(md, /npm run soak -- --nights 3 --seed 3/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test.run();
