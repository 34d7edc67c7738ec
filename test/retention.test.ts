/**
 * Retention keeps logs/ and reports/ (task and cycle reports) bounded: old files are archived
 * (gzip), deleted only if configured; temp files of dead processes are swept.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { applyRetention } from '../src/queue/retention.ts';
import { silentLogger } from '../src/log.ts';
import { makeWorkspace } from './helpers/workspace.ts';

async function present(file: string): Promise<boolean> {
  return fs.stat(file).then(
    () => true,
    () => false,
  );
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
    assert.equal((await fs.readdir(path.join(layout.reportArchive, 'expired', '2026-07'))).sort(), [
      'old.json.gz',
      'old.trajectory.jsonl.gz',
      'old_report.md.gz',
    ]);
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

test('cycle reports: reports/cycles/<id>.json and .md leave with reports_days, by finished_at (a lone .md by its mtime)', async () => {
  const ws = await makeWorkspace({ extra: 'retention:\n  reports_days: 60' });
  try {
    const settings = { ...ws.settings, clock: () => new Date('2026-11-24T12:00:00Z') };
    const dir = path.join(settings.layout.reports, 'cycles');
    await fs.mkdir(dir, { recursive: true });
    const cycle = async (id: string, finished: string) => {
      await fs.writeFile(path.join(dir, `${id}.json`), JSON.stringify({ cycle_id: id, finished_at: finished }));
      await fs.writeFile(path.join(dir, `${id}.md`), `# ${id}`);
    };
    await cycle('20260701T0230-daily-old', '2026-07-01T02:40:00Z');
    await cycle('20261120T0230-daily-new', '2026-11-20T02:40:00Z');
    // A crash between the .md and the .json: only the .md, written long ago.
    await fs.writeFile(path.join(dir, '20260601T0230-daily-lone.md'), '# lone');
    const longAgo = new Date(Date.now() - 100 * 86_400_000);
    await fs.utimes(path.join(dir, '20260601T0230-daily-lone.md'), longAgo, longAgo);
    const result = await applyRetention(settings, silentLogger());
    assert.equal(result.cycles, ['20260601T0230-daily-lone', '20260701T0230-daily-old']);
    assert.equal((await fs.readdir(dir)).sort(), ['20261120T0230-daily-new.json', '20261120T0230-daily-new.md'], 'the recent cycle stays');
    const archived = path.join(settings.layout.reportArchive, 'expired', '2026-07', 'cycles');
    assert.equal((await fs.readdir(archived)).sort(), ['20260701T0230-daily-old.json.gz', '20260701T0230-daily-old.md.gz']);
    assert.is(gunzipSync(await fs.readFile(path.join(archived, '20260701T0230-daily-old.md.gz'))).toString(), '# 20260701T0230-daily-old');
    assert.equal(await fs.readdir(path.join(settings.layout.reportArchive, 'expired', longAgo.toISOString().slice(0, 7), 'cycles')), [
      '20260601T0230-daily-lone.md.gz',
    ]);
  } finally {
    await ws.cleanup();
  }
});

test('cycle reports are deleted, not archived, with action: delete', async () => {
  const ws = await makeWorkspace({ extra: 'retention:\n  reports_days: 60\n  action: delete' });
  try {
    const settings = { ...ws.settings, clock: () => new Date('2026-11-24T12:00:00Z') };
    const dir = path.join(settings.layout.reports, 'cycles');
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(dir, 'c-old.json'), JSON.stringify({ cycle_id: 'c-old', finished_at: '2026-07-01T00:00:00Z' }));
    await fs.writeFile(path.join(dir, 'c-old.md'), '# old');
    assert.equal((await applyRetention(settings, silentLogger())).cycles, ['c-old']);
    assert.equal(await fs.readdir(dir), []);
    assert.not.ok(await present(path.join(settings.layout.reportArchive, 'expired')));
  } finally {
    await ws.cleanup();
  }
});

/** A pid that surely ran and is gone: a child that has exited. */
async function deadPid(): Promise<number> {
  const child = execa('true');
  await child;
  return child.pid!;
}

test('temp files of dead processes are removed anywhere in the workspace; a live or young one, and git checkouts, are left alone', async () => {
  const ws = await makeWorkspace({ extra: 'queue:\n  lease_stale_s: 30' });
  try {
    const { layout } = ws.settings;
    const dead = await deadPid();
    const old = new Date(Date.now() - 3600_000);
    const temp = async (dir: string, name: string, pid: number, age: Date | null = old) => {
      await fs.mkdir(dir, { recursive: true });
      const file = path.join(dir, `.${name}.${pid}.deadbeef.tmp`);
      await fs.writeFile(file, 'half written');
      if (age) await fs.utimes(file, age, age);
      return file;
    };
    const gone = [
      await temp(layout.patches.pending, 'x.patch', dead),
      await temp(path.join(layout.reports, 'cycles'), 'c.json', dead),
      await temp(path.join(layout.state, 'ledger'), 'k.json', dead),
      await temp(path.join(layout.reportArchive, 'expired', '2026-07'), 'old.json.gz', dead),
    ];
    const kept = [
      await temp(layout.reports, 'live.json', process.pid), // its writer runs
      await temp(layout.reports, 'young.json', dead, null), // written just now (maybe by another host)
      await temp(path.join(ws.repo, 'bot'), 'theirs.py', dead), // a git checkout is not ours
    ];
    await fs.writeFile(path.join(layout.reports, '.notes.tmp'), 'not named by meta-agent');
    await setOld(path.join(layout.reports, '.notes.tmp'));
    kept.push(path.join(layout.reports, '.notes.tmp'));
    const result = await applyRetention(ws.settings, silentLogger());
    assert.equal(result.temps.sort(), [...gone].sort());
    for (const f of gone) assert.not.ok(await present(f), `${path.relative(ws.root, f)} is removed`);
    for (const f of kept) assert.ok(await present(f), `${path.relative(ws.root, f)} stays`);
  } finally {
    await ws.cleanup();
  }
});

test.run();
