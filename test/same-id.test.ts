/**
 * Two task files with the same `id:` dropped together (issue 14, point 6), through a real
 * `meta-agent watch` with two slots: the runs of one id take turns, so each run has its own
 * report and its own trajectory; the earlier run's are archived under reports/archive/<id>/<run_id>/.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { silentLogger } from '../src/log.ts';
import { recoverOrphans } from '../src/queue/recover.ts';
import { holdTaskId } from '../src/queue/taskIdLock.ts';
import { makeWorkspace, readJson, REPO_ROOT } from './helpers/workspace.ts';
import { killAll, list, publish, startWatchReady, waitFor } from './helpers/procs.ts';
import type { Report } from '../src/contract/report.ts';

test('same id twice at once: one report and one trajectory per run, no <id>.<ms>.json', async () => {
  // The engine takes a moment, so that both runs would overlap.
  const engine = ['engine: command', 'command:', `  run: ${JSON.stringify([process.execPath, '-e', 'setTimeout(() => {}, 1500)'])}`].join('\n');
  const queue = ['queue:', '  settle_ms: 100', '  scan_interval_ms: 200', '  lease_stale_s: 2', 'limits:', '  concurrency: 2'].join('\n');
  const ws = await makeWorkspace({ project: '    scope: ["**"]', extra: [engine, queue].join('\n') });
  try {
    const { inbox, done, reports, reportArchive } = ws.settings.layout;
    const proc = await startWatchReady(ws.root);
    const text = (n: number) => `---\nid: twin\nproject: bot\nobjective: Twin ${n}\nscope: []\n---\n`;
    await Promise.all([publish(inbox, 'twin-1.md', text(1)), publish(inbox, 'twin-2.md', text(2))]);
    await waitFor(
      'both done',
      async () => (await list(done)).length === 2,
      30_000,
      () => proc.output(),
    );
    assert.equal(
      (await list(reports)).filter((n) => n.startsWith('twin')),
      ['twin.json', 'twin.trajectory.jsonl', 'twin_report.md'],
    );
    const latest = await readJson<Report>(path.join(reports, 'twin.json'));
    const archived = await list(path.join(reportArchive, 'twin'));
    assert.is(archived.length, 1, `one earlier run archived: ${archived}`);
    const earlier = await readJson<Report>(path.join(reportArchive, 'twin', archived[0]!, 'twin.json'));
    assert.is(archived[0], earlier.run_id, 'archived under its run id');
    assert.is.not(earlier.run_id, latest.run_id);
    assert.equal([earlier.objective, latest.objective].sort(), ['Twin 1', 'Twin 2']);
    for (const [dir, report] of [
      [path.join(reportArchive, 'twin', archived[0]!), earlier],
      [reports, latest],
    ] as const) {
      const lines = (await fs.readFile(path.join(dir, 'twin.trajectory.jsonl'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { role?: string; prompt?: string });
      assert.is(lines.filter((l) => l.role === 'command').length, 1, 'one run in each trajectory');
      assert.match(lines[0]!.prompt ?? '', report.objective, "the trajectory is its own run's");
    }
  } finally {
    await killAll();
    await ws.cleanup();
  }
});

/** A child process that takes the task-id lock of `id` and then waits (or is killed). */
async function childHoldingTaskId(root: string, id: string) {
  const lockModule = path.join(REPO_ROOT, 'src', 'queue', 'taskIdLock.ts');
  const layoutModule = path.join(REPO_ROOT, 'src', 'workspace', 'layout.ts');
  const code = `const { holdTaskId } = await import(${JSON.stringify(lockModule)}); const { layoutFor } = await import(${JSON.stringify(layoutModule)});
await holdTaskId(layoutFor(${JSON.stringify(root)}), ${JSON.stringify(id)}, 60000, undefined, 60000); console.log('held'); setInterval(() => {}, 1000);`;
  const child = execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: REPO_ROOT, reject: false });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => String(d).includes('held') && resolve());
    void child.then((r) => reject(new Error(`the child ended: ${r.stderr}`)));
  });
  return { child }; // wrapped: an async function would wait for a returned subprocess
}

test('task-id locks: a dead run\'s lock is cleared by recovery even if its id never runs again; a live one is kept; a lock "in the future" is old', async () => {
  const ws = await makeWorkspace({ project: '    scope: ["**"]' });
  const children: Array<ReturnType<typeof execa>> = [];
  try {
    const { layout } = ws.settings;
    const runs = path.join(layout.state, 'runs');
    const { child: dead } = await childHoldingTaskId(ws.root, 'killed-mid-run');
    children.push(dead);
    const { child: live } = await childHoldingTaskId(ws.root, 'still-running');
    children.push(live);
    dead.kill('SIGKILL');
    await dead.catch(() => undefined);
    // A lock with no owner note (killed between taking it and writing the note), its time
    // two hours ahead: the clock was set back since.
    await fs.writeFile(path.join(runs, 'clock-back'), '');
    await fs.mkdir(path.join(runs, '.clock-back.lock'));
    const ahead = new Date(Date.now() + 2 * 3600_000);
    await fs.utimes(path.join(runs, '.clock-back.lock'), ahead, ahead);
    // Positive control: a fresh lock with no note (its owner about to write it) is kept.
    await fs.writeFile(path.join(runs, 'just-taken'), '');
    await fs.mkdir(path.join(runs, '.just-taken.lock'));
    const before = (await fs.readdir(runs)).filter((n) => n.endsWith('.lock')).sort();
    assert.equal(before, ['.clock-back.lock', '.just-taken.lock', '.killed-mid-run.lock', '.still-running.lock']);
    await recoverOrphans(layout, 60_000, silentLogger());
    const after = (await fs.readdir(runs)).filter((n) => n.endsWith('.lock')).sort();
    assert.equal(after, ['.just-taken.lock', '.still-running.lock'], 'the dead and the clock-back locks are gone; the live and the fresh ones stay');
    // The cleared id can be held again at once; the live one cannot.
    const release = await holdTaskId(layout, 'clock-back', 60_000, undefined, 1000);
    await release();
    const waitSignal = AbortSignal.timeout(600);
    const held = await holdTaskId(layout, 'still-running', 60_000, waitSignal, 60_000).then(
      () => 'taken',
      (e: unknown) => (waitSignal.aborted ? 'waited' : String(e)),
    );
    assert.is(held, 'waited', "a live run's lock is never taken over");
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await Promise.all(children.map((c) => c.catch(() => undefined)));
    await ws.cleanup();
  }
});

test.run();
