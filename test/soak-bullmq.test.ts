/**
 * The BullMQ soak mode's own invariants (soak/invariants.ts), on hand-made evidence: each
 * is shown to hold on a clean history and to fail on the breach it exists for. The mode
 * itself (`npm run soak -- --nights 10 --seed S --workers 2`, docs/soak-bullmq.md) takes
 * minutes a night on a loaded machine: it is not run here.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { layoutFor } from '../src/workspace/layout.ts';
import { checkFiledOnce, checkWorkerRuns, type Interruption } from '../soak/invariants.ts';

const started = (runId: string, pid: number) => ({ kind: 'started', runId, job: `t.md-${runId}`, pid, taskFile: 't.md', time: '' });
const kill = (runIds: string[]): Interruption => ({ night: 1, kind: 'worker_kill_mid_task', runIds, tasks: ['t.md'], at: 0 });

test('run-count: one start per run; one more per worker kill or Redis restart of that run, not of another', () => {
  assert.equal(checkWorkerRuns(1, [started('r1', 10)], []), []);
  assert.equal(checkWorkerRuns(1, [started('r1', 10), started('r1', 11)], [kill(['r1'])]), []);
  // Positive controls: a second start with no interruption, or with one of another run, is a breach.
  const unexplained = checkWorkerRuns(1, [started('r1', 10), started('r1', 11)], []);
  assert.is(unexplained.length, 1);
  assert.is(unexplained[0]!.invariant, 'run-count');
  assert.match(unexplained[0]!.detail, /started 2 times/);
  assert.is(checkWorkerRuns(1, [started('r1', 10), started('r1', 11)], [kill(['r2'])]).length, 1);
  assert.is(checkWorkerRuns(1, [started('r1', 10), started('r1', 11), started('r1', 12)], [kill(['r1'])]).length, 1, 'one kill, one extra run');
});

test('filed once: two reports of one run are a breach, wherever they are (archived, expired and gzipped)', async () => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-soak-bullmq-'));
  try {
    const layout = layoutFor(root);
    await fs.mkdir(layout.reports, { recursive: true });
    await fs.writeFile(path.join(layout.reports, 'a.json'), JSON.stringify({ run_id: 'r1' }));
    const expired = path.join(layout.reportArchive, 'expired', '2026-12');
    await fs.mkdir(expired, { recursive: true });
    await fs.writeFile(path.join(expired, 'b.json.gz'), gzipSync(JSON.stringify({ run_id: 'r2' })));
    assert.equal(await checkFiledOnce(1, layout, 0), []);
    await fs.writeFile(path.join(expired, 'a.json.gz'), gzipSync(JSON.stringify({ run_id: 'r1' })));
    const twice = await checkFiledOnce(1, layout, 0);
    assert.is(twice.length, 1);
    assert.is(twice[0]!.invariant, 'filed-twice');
    assert.match(twice[0]!.detail, /run r1 has 2 reports/);
    // A run the ledger says was reported ok, with no report anywhere.
    const ledger = path.join(layout.state, 'ledger');
    await fs.mkdir(ledger, { recursive: true });
    const at = new Date().toISOString();
    await fs.writeFile(
      path.join(ledger, 'c.json'),
      JSON.stringify({ key: 'c', name: 'c.md', sha256: 'x', runs: [{ run_id: 'r3', started_at: at, host: 'h', pid: 1, reported: { status: 'ok', at } }] }),
    );
    const missing = (await checkFiledOnce(1, layout, 0)).filter((b) => b.invariant === 'filed-result-missing');
    assert.is(missing.length, 1);
    assert.match(missing[0]!.detail, /run r3/);
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});

test.run();
