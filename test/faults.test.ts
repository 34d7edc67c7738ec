/**
 * Faults that used to lose or double work (issue 14), reproduced with real `meta-agent watch`
 * processes: kill -9 at an exact moment (the process SIGKILLs itself at a named fault point,
 * META_AGENT_FAULT, see src/workspace/faults.ts), SIGSTOP/SIGCONT, two "machines" on one host
 * (META_AGENT_FAULT_HOSTNAME), a wall clock moved back (META_AGENT_FAULT_CLOCK_SKEW_FILE).
 * The engine is a small node script (no model): it notes each start, waits while a "hold"
 * file exists, and changes a file in the worktree so that every run files a patch.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeWorkspace, readJson, REPO_ROOT, type TestWorkspace } from './helpers/workspace.ts';
import { killAll, list, publish, signal, sleep, startWatchReady, waitFor, type WatchProc } from './helpers/procs.ts';
import type { LedgerEntry } from '../src/queue/ledger.ts';
import { leaseAlive, lockActivity, processStartTime, type OwnerNote } from '../src/workspace/lease.ts';
import type { Report } from '../src/contract/report.ts';
import { overrideHostName } from '../src/workspace/faults.ts';

const QUEUE = `queue:
  settle_ms: 200
  scan_interval_ms: 200
  lease_stale_s: 1
  shutdown_grace_s: 1`;

interface FaultWorkspace extends TestWorkspace {
  hold: string;
  starts: string;
}

/** Engine: append the task id to `starts`, wait while `hold` exists (60 s at most), then change NOTES.md. */
async function faultWorkspace(): Promise<FaultWorkspace> {
  const script = [
    "const fs = require('fs');",
    'const [hold, starts] = process.argv.slice(1);',
    "fs.appendFileSync(starts, process.env.META_AGENT_TASK_ID + '\\n');",
    'const end = Date.now() + 60000;',
    "(function wait() { if (!fs.existsSync(hold) || Date.now() > end) { fs.appendFileSync('NOTES.md', 'a line\\n'); process.exit(0); } setTimeout(wait, 50); })();",
  ].join(' ');
  const ws = await makeWorkspace({ project: '    scope: ["**"]', extra: [QUEUE, 'limits:', '  concurrency: 2'].join('\n') });
  const hold = path.join(ws.root, 'hold');
  const starts = path.join(ws.root, 'engine-starts');
  await fs.appendFile(
    path.join(ws.root, 'meta-agent.yaml'),
    `${['engine: command', 'command:', `  run: ${JSON.stringify([process.execPath, '-e', script, hold, starts])}`, '  sandbox: none'].join('\n')}\n`,
  );
  return { ...ws, hold, starts };
}

const taskText = (objective: string) => `---\nproject: bot\nobjective: ${objective}\nscope: ["NOTES.md"]\n---\n\nAdd a line to NOTES.md.\n`;
const engineStarts = async (ws: FaultWorkspace) => (await fs.readFile(ws.starts, 'utf8').catch(() => '')).split('\n').filter(Boolean);

async function ledger(ws: TestWorkspace): Promise<LedgerEntry[]> {
  const dir = path.join(ws.settings.layout.state, 'ledger');
  return Promise.all((await list(dir)).filter((n) => n.endsWith('.json')).map((n) => readJson<LedgerEntry>(path.join(dir, n))));
}

async function state(ws: TestWorkspace, procs: WatchProc[] = []): Promise<string> {
  const l = ws.settings.layout;
  const parts = await Promise.all(
    [l.inbox, l.processing, l.done, l.failed, l.reports, l.patches.pending].map(
      async (d) => `${path.relative(l.root, d)}: ${(await list(d, { dot: true })).join(' ')}`,
    ),
  );
  return [...parts, ...procs.map((p) => `--- watch ${p.pid}:\n${p.output().slice(-3000)}`)].join('\n');
}

/** Every report JSON of a task id: the current one and the archived ones of earlier runs. */
async function reportsOf(ws: TestWorkspace, id: string): Promise<Report[]> {
  const { reports, reportArchive } = ws.settings.layout;
  const files = (await list(reports))
    .filter((n) => n === `${id}.json` || (n.startsWith(`${id}.`) && /^\d+\.json$/.test(n.slice(id.length + 1))))
    .map((n) => path.join(reports, n));
  for (const run of await list(path.join(reportArchive, id))) {
    for (const n of await list(path.join(reportArchive, id, run))) if (n.endsWith('.json')) files.push(path.join(reportArchive, id, run, n));
  }
  return Promise.all(files.map((f) => readJson<Report>(f)));
}

const pendingPatches = async (ws: TestWorkspace) => (await list(ws.settings.layout.patches.pending)).filter((n) => n.endsWith('.patch'));

test('kill -9 after reports/<id>.json is written, before the ledger knows: recovery finalizes from the report (one agent run, one report, one patch)', async () => {
  const ws = await faultWorkspace();
  try {
    const { inbox, processing, done } = ws.settings.layout;
    const first = await startWatchReady(ws.root, { META_AGENT_FAULT: 'after-report' });
    await publish(inbox, 'once.md', taskText('Runs once'));
    assert.is((await first.exited).signal, 'SIGKILL', 'the fault point killed the worker');
    const note = await readJson<OwnerNote>(path.join(processing, '.once.md.owner.json'));
    const [written] = await reportsOf(ws, 'once');
    assert.is(written?.run_id, note.run_id, 'the report of the killed run is on disk');
    assert.not.ok((await ledger(ws))[0]!.runs[0]!.reported, 'the ledger was not told');

    const second = await startWatchReady(ws.root);
    await waitFor(
      'done/once.md',
      async () => (await list(done)).includes('once.md'),
      20_000,
      () => state(ws, [second]),
    );
    assert.equal(await engineStarts(ws), ['once'], 'the agent ran once');
    const reports = await reportsOf(ws, 'once');
    assert.equal(
      reports.map((r) => r.run_id),
      [note.run_id],
      "one report, the killed run's",
    );
    assert.is((await pendingPatches(ws)).length, 1, 'one patch');
    const [entry] = await ledger(ws);
    assert.equal(
      entry!.runs.map((r) => [r.run_id, r.recovered ?? null, r.reported?.status ?? null]),
      [[note.run_id, 'finalized_from_ledger', 'ok']],
    );
    assert.equal(await list(processing, { dot: true }), []);
    assert.equal(await list(inbox), []);
  } finally {
    await killAll();
    await ws.cleanup();
  }
});

test('kill -9 after the ledger was told (positive control of the old path): finalized, not run again', async () => {
  const ws = await faultWorkspace();
  try {
    const { inbox, done } = ws.settings.layout;
    const first = await startWatchReady(ws.root, { META_AGENT_FAULT: 'after-ledger' });
    await publish(inbox, 'told.md', taskText('Runs once'));
    assert.is((await first.exited).signal, 'SIGKILL');
    const second = await startWatchReady(ws.root);
    await waitFor(
      'done/told.md',
      async () => (await list(done)).includes('told.md'),
      20_000,
      () => state(ws, [second]),
    );
    assert.equal(await engineStarts(ws), ['told']);
    assert.is((await reportsOf(ws, 'told')).length, 1);
  } finally {
    await killAll();
    await ws.cleanup();
  }
});

test('a SIGSTOPped owner on this host, its lease long stale, is not taken over by a second watcher; on SIGCONT it finishes: one run, one report', async () => {
  const ws = await faultWorkspace();
  try {
    const { inbox, processing, done } = ws.settings.layout;
    await fs.writeFile(ws.hold, '');
    const owner = await startWatchReady(ws.root);
    await publish(inbox, 'frozen.md', taskText('Frozen owner'));
    await waitFor(
      'the engine to start',
      async () => (await engineStarts(ws)).length === 1,
      20_000,
      () => state(ws, [owner]),
    );
    signal(owner, 'SIGSTOP');
    const other = await startWatchReady(ws.root);
    // Far past lease_stale_s (1 s; proper-lockfile's floor is 2 s) and many scans of the other watcher.
    await sleep(5000);
    assert.equal(await engineStarts(ws), ['frozen'], 'the other watcher did not run it');
    assert.equal(await list(processing), ['frozen.md'], "still the frozen owner's claim");
    assert.is((await readJson<OwnerNote>(path.join(processing, '.frozen.md.owner.json'))).pid, owner.pid);

    signal(owner, 'SIGCONT');
    await fs.rm(ws.hold);
    await waitFor(
      'done/frozen.md',
      async () => (await list(done)).includes('frozen.md'),
      20_000,
      () => state(ws, [owner, other]),
    );
    assert.equal(await engineStarts(ws), ['frozen']);
    assert.is((await reportsOf(ws, 'frozen')).length, 1);
    assert.is((await pendingPatches(ws)).length, 1);
    assert.ok(owner.alive() && other.alive());
  } finally {
    await killAll();
    await ws.cleanup();
  }
});

test('a SIGSTOPped owner whose task another host took over (stale lease) wakes up and files nothing: one report, one patch; it does not crash', async () => {
  const ws = await faultWorkspace();
  try {
    const { inbox, processing, done } = ws.settings.layout;
    await fs.writeFile(ws.hold, '');
    const owner = await startWatchReady(ws.root, { META_AGENT_FAULT_HOSTNAME: 'host-a' });
    await publish(inbox, 'taken.md', taskText('Taken over'));
    await waitFor(
      'the engine to start',
      async () => (await engineStarts(ws)).length === 1,
      20_000,
      () => state(ws, [owner]),
    );
    const frozenRun = (await readJson<OwnerNote>(path.join(processing, '.taken.md.owner.json'))).run_id;
    signal(owner, 'SIGSTOP');
    await fs.rm(ws.hold); // the frozen owner's engine (not stopped) finishes; the owner cannot see it
    const other = await startWatchReady(ws.root, { META_AGENT_FAULT_HOSTNAME: 'host-b' });
    await waitFor(
      'done/taken.md by the other host',
      async () => (await list(done)).includes('taken.md'),
      30_000,
      () => state(ws, [other]),
    );
    const [byOther] = await reportsOf(ws, 'taken');
    assert.is.not(byOther?.run_id, frozenRun);

    signal(owner, 'SIGCONT');
    await waitFor(
      'the woken owner to notice',
      () => /lease of taken\.md was lost/.test(owner.output()),
      20_000,
      () => state(ws, [owner]),
    );
    await sleep(1000); // what it would file, it would file now
    assert.ok(owner.alive(), `the woken owner is still running:\n${owner.output().slice(-2000)}`);
    assert.equal(
      (await reportsOf(ws, 'taken')).map((r) => r.run_id),
      [byOther!.run_id],
      'one report: the run that owns the task',
    );
    assert.is((await pendingPatches(ws)).length, 1, 'one patch');
    assert.equal(await engineStarts(ws), ['taken', 'taken']);
    assert.equal(await list(done), ['taken.md']);
    assert.equal(await list(inbox), []);
    assert.equal(await list(processing, { dot: true }), []);
  } finally {
    await killAll();
    await ws.cleanup();
  }
});

test('the gate lock: a frozen holder whose lock another host took survives SIGCONT (onLost, no uncaught ECOMPROMISED)', async () => {
  const ws = await makeWorkspace();
  const target = path.join(ws.settings.layout.state, 'gate');
  const lost = path.join(ws.root, 'lost');
  const script = `
    import { lockActivity } from ${JSON.stringify(path.join(REPO_ROOT, 'src/workspace/lease.ts'))};
    import { overrideHostName } from ${JSON.stringify(path.join(REPO_ROOT, 'src/workspace/faults.ts'))};
    import { writeFileSync } from 'node:fs';
    overrideHostName('host-a');
    await lockActivity(${JSON.stringify(target)}, { staleMs: 2000, wait: false, onLost: (e) => writeFileSync(${JSON.stringify(lost)}, e.message) });
    console.log('locked');
    setTimeout(() => console.log('still alive'), 2000);
    setInterval(() => {}, 1000);
  `;
  const holder = execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO_ROOT, reject: false, all: true, buffer: false });
  let out = '';
  holder.all?.on('data', (c: Buffer) => (out += c.toString()));
  try {
    await waitFor(
      'the holder to lock',
      () => out.includes('locked'),
      20_000,
      () => out,
    );
    process.kill(holder.pid!, 'SIGSTOP');
    overrideHostName('host-b');
    assert.is(await lockActivity(target, { staleMs: 2000, wait: false }), null, 'positive control: a fresh lock of another host is respected');
    // Once stale (2 s without a refresh; a busy machine may take longer), another host takes it over.
    let release: (() => Promise<void>) | null = null;
    await waitFor(
      'another host to take the stale lock over',
      async () => Boolean((release = await lockActivity(target, { staleMs: 2000, wait: false }))),
      15_000,
      () => out,
    );
    process.kill(holder.pid!, 'SIGCONT');
    await waitFor(
      'the holder to be told',
      () =>
        fs.stat(lost).then(
          () => true,
          () => false,
        ),
      10_000,
      () => out,
    );
    await waitFor(
      'the holder to go on',
      () => out.includes('still alive'),
      10_000,
      () => out,
    );
    assert.not.match(out, /ECOMPROMISED|Unable to update/);
    await (release as (() => Promise<void>) | null)?.();
  } finally {
    overrideHostName(null);
    holder.kill('SIGKILL');
    await holder;
    await ws.cleanup();
  }
});

test("a pid reused by another process is not the owner: the owner note's start time must match (Linux)", async () => {
  if (process.platform !== 'linux') return;
  const ws = await makeWorkspace();
  try {
    const file = path.join(ws.settings.layout.processing, 'reused.md');
    await fs.writeFile(file, 'x');
    await fs.mkdir(path.join(ws.settings.layout.processing, '.reused.md.lock'));
    const note = (started: string | null): OwnerNote => ({
      host: os.hostname(),
      pid: process.pid,
      pid_started: started,
      run_id: 'r',
      since: new Date().toISOString(),
    });
    const write = (n: OwnerNote) => fs.writeFile(path.join(ws.settings.layout.processing, '.reused.md.owner.json'), JSON.stringify(n));
    const mine = processStartTime(process.pid);
    assert.ok(mine && /^\d+$/.test(mine), `a start time: ${mine}`);
    await write(note(mine));
    assert.ok(await leaseAlive(file, 60_000), 'positive control: this very process is alive');
    await write(note(String(Number(mine) + 1)));
    assert.not.ok(await leaseAlive(file, 60_000), 'same pid, another start time: dead');
    // No owner note (killed between the lock and the note): judged by the lock's time.
    await fs.rm(path.join(ws.settings.layout.processing, '.reused.md.owner.json'));
    const lock = path.join(ws.settings.layout.processing, '.reused.md.lock');
    await fs.utimes(lock, new Date(), new Date());
    assert.ok(await leaseAlive(file, 60_000), 'positive control: a fresh lock is alive');
    const ahead = new Date(Date.now() + 3600_000);
    await fs.utimes(lock, ahead, ahead);
    assert.not.ok(await leaseAlive(file, 60_000), 'a lock an hour "in the future" (the clock went back since its last refresh): dead');
  } finally {
    await ws.cleanup();
  }
});

test('the wall clock goes back an hour mid-run: the report is written (duration from the monotonic clock), and a claim dated "in the future" is recovered at once', async () => {
  const ws = await faultWorkspace();
  try {
    const { inbox, processing, done } = ws.settings.layout;
    const skew = path.join(ws.root, 'skew');
    await fs.writeFile(ws.hold, '');
    const proc = await startWatchReady(ws.root, { META_AGENT_FAULT_CLOCK_SKEW_FILE: skew });
    await publish(inbox, 'clock.md', taskText('Clock goes back'));
    await waitFor(
      'the engine to start',
      async () => (await engineStarts(ws)).length === 1,
      20_000,
      () => state(ws, [proc]),
    );
    await fs.writeFile(skew, String(-3600_000));
    await sleep(300);
    await fs.rm(ws.hold);
    await waitFor(
      'done/clock.md',
      async () => (await list(done)).includes('clock.md'),
      20_000,
      () => state(ws, [proc]),
    );
    const [report] = await reportsOf(ws, 'clock');
    assert.ok(report && report.duration_ms >= 0, `duration ${report?.duration_ms}`);
    assert.is((await pendingPatches(ws)).length, 1, 'the patch has its report');

    // A claim left without a lease (its worker died between the rename and the lease), written
    // by the kernel at the real time: an hour "in the future" for this process.
    await fs.writeFile(path.join(processing, 'orphan.md'), taskText('Left in processing'));
    await waitFor(
      'done/orphan.md',
      async () => (await list(done)).includes('orphan.md'),
      20_000,
      () => state(ws, [proc]),
    );
    assert.match(proc.output(), /in the future: the clock went back/);
  } finally {
    await killAll();
    await ws.cleanup();
  }
});

test.run();
