/**
 * Two task files with the same `id:` dropped together (issue 14, point 6), through a real
 * `meta-agent watch` with two slots: the runs of one id take turns, so each run has its own
 * report and its own trajectory; the earlier run's are archived under reports/archive/<id>/<run_id>/.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeWorkspace, readJson } from './helpers/workspace.ts';
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
    await waitFor('both done', async () => (await list(done)).length === 2, 30_000, () => proc.output());
    assert.equal((await list(reports)).filter((n) => n.startsWith('twin')), ['twin.json', 'twin.trajectory.jsonl', 'twin_report.md']);
    const latest = await readJson<Report>(path.join(reports, 'twin.json'));
    const archived = await list(path.join(reportArchive, 'twin'));
    assert.is(archived.length, 1, `one earlier run archived: ${archived}`);
    const earlier = await readJson<Report>(path.join(reportArchive, 'twin', archived[0]!, 'twin.json'));
    assert.is(archived[0], earlier.run_id, 'archived under its run id');
    assert.is.not(earlier.run_id, latest.run_id);
    assert.equal([earlier.objective, latest.objective].sort(), ['Twin 1', 'Twin 2']);
    for (const [dir, report] of [[path.join(reportArchive, 'twin', archived[0]!), earlier], [reports, latest]] as const) {
      const lines = (await fs.readFile(path.join(dir, 'twin.trajectory.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { role?: string; prompt?: string });
      assert.is(lines.filter((l) => l.role === 'command').length, 1, 'one run in each trajectory');
      assert.match(lines[0]!.prompt ?? '', report.objective, 'the trajectory is its own run\'s');
    }
  } finally {
    await killAll();
    await ws.cleanup();
  }
});

test.run();
