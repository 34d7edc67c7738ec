/** Retention keeps logs/ and reports/ bounded: old files are archived (gzip), deleted only if configured. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { applyRetention } from '../src/queue/retention.ts';
import { silentLogger } from '../src/log.ts';
import { makeWorkspace } from './helpers/workspace.ts';

async function present(file: string): Promise<boolean> {
  return fs.stat(file).then(() => true, () => false);
}

async function setOld(file: string): Promise<void> {
  const old = new Date(Date.now() - 3 * 3600_000);
  await fs.utimes(file, old, old);
}

async function seed(root: string, settings: Awaited<ReturnType<typeof makeWorkspace>>['settings']) {
  const { layout } = settings;
  const files = {
    oldLog: path.join(layout.logs, 'meta-agent_2026-09-01.log'),
    newLog: path.join(layout.logs, 'meta-agent_2026-11-20.log'),
    oldReport: path.join(layout.reports, 'old.json'),
    pendingReport: path.join(layout.reports, 'still-pending.json'),
    newReport: path.join(layout.reports, 'new.json'),
  };
  await fs.writeFile(files.oldLog, '{"msg":"old"}\n');
  await fs.writeFile(files.newLog, '{"msg":"new"}\n');
  await fs.writeFile(files.oldReport, JSON.stringify({ finished_at: '2026-07-01T00:00:00Z' }));
  await fs.writeFile(path.join(layout.reports, 'old_report.md'), '# old');
  await fs.writeFile(path.join(layout.reports, 'old.trajectory.jsonl'), '{}\n');
  await fs.writeFile(files.pendingReport, JSON.stringify({ finished_at: '2026-07-01T00:00:00Z' }));
  await fs.writeFile(path.join(layout.patches.pending, 'still-pending.patch'), 'diff');
  await fs.writeFile(files.newReport, JSON.stringify({ finished_at: '2026-11-20T00:00:00Z' }));
  for (const f of Object.values(files)) await setOld(f);
  void root;
  return files;
}

test('archive: old logs and reports are gzipped into archive folders; recent ones and pending reports stay', async () => {
  const ws = await makeWorkspace({ extra: 'retention:\n  logs_days: 30\n  reports_days: 60' });
  try {
    const settings = { ...ws.settings, clock: () => new Date('2026-11-24T12:00:00Z') };
    const files = await seed(ws.root, settings);
    const result = await applyRetention(settings, silentLogger());
    assert.equal(result.logs, ['meta-agent_2026-09-01.log']);
    assert.equal(result.reports, ['old']);
    const { layout } = settings;
    assert.is(gunzipSync(await fs.readFile(path.join(layout.logs, 'archive', 'meta-agent_2026-09-01.log.gz'))).toString(), '{"msg":"old"}\n');
    assert.equal((await fs.readdir(path.join(layout.reportArchive, 'expired', '2026-07'))).sort(), ['old.json.gz', 'old.trajectory.jsonl.gz', 'old_report.md.gz']);
    for (const f of [files.newLog, files.newReport, files.pendingReport]) assert.ok(await fs.stat(f), `${path.basename(f)} stays`);
    assert.not.ok(await present(files.oldLog));
    assert.not.ok(await present(files.oldReport));
  } finally {
    await ws.cleanup();
  }
});

test('delete only when configured; a file written in the last hour is never touched', async () => {
  const ws = await makeWorkspace({ extra: 'retention:\n  logs_days: 30\n  reports_days: 60\n  action: delete' });
  try {
    const settings = { ...ws.settings, clock: () => new Date('2026-11-24T12:00:00Z') };
    const files = await seed(ws.root, settings);
    const busy = path.join(settings.layout.logs, 'meta-agent_2026-08-01.log');
    await fs.writeFile(busy, 'still being written');
    await applyRetention(settings, silentLogger());
    assert.not.ok(await present(files.oldLog));
    assert.not.ok(await present(path.join(settings.layout.logs, 'archive')));
    assert.ok(await fs.stat(busy), 'a log modified in the last hour stays');
  } finally {
    await ws.cleanup();
  }
});

test.run();
