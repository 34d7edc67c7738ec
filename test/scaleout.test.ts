/**
 * The BullMQ execution engine (issue 18) with a real redis-server (on a unix socket in a temp
 * folder, stopped by pid), a real `meta-agent watch` folder host and real `meta-agent worker`
 * processes with workspaces of their own (another machine, as far as the folders go). The
 * agent is the `command` engine running a small node script that leaves one marker file per
 * run (so "exactly once" is counted, not assumed), appends a line to README.md (so there is a
 * patch to file), and, while a `hold` file exists, waits for a `release` file (so a test can
 * kill a worker mid-run without timing anything).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { promises as fs, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startRedis, type Redis } from './helpers/redis.ts';
import { makeWorkspace, type TestWorkspace } from './helpers/workspace.ts';
import { killAll, killHard, list, publish, signal, startMetaAgent, startWatchReady, waitFor, waitForProgress, type WatchProc } from './helpers/procs.ts';

const AGENT = `
const fs = require('node:fs'); const path = require('node:path');
const marks = process.env.MARKS; const id = process.env.META_AGENT_TASK_ID;
fs.writeFileSync(path.join(marks, id + '.' + process.pid + '.' + Date.now() + '.run'), '');
const held = () => fs.existsSync(path.join(marks, 'hold')) && !fs.existsSync(path.join(marks, 'release'));
const finish = () => { fs.appendFileSync('README.md', '\\nnote from ' + id + '\\n'); console.log('done ' + id); };
(function wait() { if (held()) setTimeout(wait, 50); else finish(); })();
`;

interface Rig {
  ws: TestWorkspace;
  dir: string;
  marks: string;
  workerRoot: string;
  redisUrl: string;
  env: Record<string, string>;
}

async function makeRig(scanMs = 200): Promise<Rig> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-scaleout-'));
  const marks = path.join(dir, 'marks');
  await fs.mkdir(marks);
  const agent = path.join(dir, 'agent.cjs');
  await fs.writeFile(agent, AGENT);
  const execution = (lockS: number) => `execution:\n  engine: bullmq\n  lock_s: ${lockS}\n  max_stalled: 1`;
  const common = [
    'engine: command',
    `command:\n  run: ["${process.execPath}", ${JSON.stringify(agent)}]\n  sandbox: none\n  env_allow: ["MARKS"]`,
    `queue:\n  scan_interval_ms: ${scanMs}\n  settle_ms: 0`,
  ];
  const ws = await makeWorkspace({ project: '    scope: ["**"]', extra: [...common, execution(2)].join('\n') });
  // The worker's own workspace: no shared folders, the project fetched from the host's repo as its remote.
  const workerRoot = path.join(dir, 'worker-machine');
  await fs.mkdir(workerRoot);
  await fs.writeFile(
    path.join(workerRoot, 'meta-agent.yaml'),
    `${['projects:', '  bot:', '    repo: ./absent', `    remote: ${JSON.stringify(ws.repo)}`, '    scope: ["**"]', ...common, execution(2)].join('\n')}\n`,
  );
  const redisUrl = `unix://${path.join(dir, 'redis', 'redis.sock')}`;
  return { ws, dir, marks, workerRoot, redisUrl, env: { REDIS_URL: redisUrl, MARKS: marks, META_AGENT_LOG: 'json' } };
}

async function cleanup(rig: Rig, redis: Redis | null): Promise<void> {
  await killAll();
  await redis?.stop().catch(() => undefined);
  await rig.ws.cleanup();
  await fs.rm(rig.dir, { recursive: true, force: true });
}

/** A real `meta-agent worker` process in its own process group (killHard kills its agent too). */
function startWorker(rig: Rig, args: string[] = []): WatchProc {
  const proc = startMetaAgent(['worker', '--root', rig.workerRoot, ...args], rig.env);
  trackForKillAll(proc);
  return proc;
}

// procs.ts's killAll knows the watch processes it started; workers are tracked here.
const workers = new Set<WatchProc>();
function trackForKillAll(proc: WatchProc): void {
  workers.add(proc);
}
async function killWorkers(): Promise<void> {
  await Promise.all([...workers].map((w) => killHard(w)));
  workers.clear();
}

const task = (i: number | string) => `---\nproject: bot\ntype: custom\nobjective: "Scale-out task ${i}"\nscope: ["README.md"]\n---\n\nAppend a note.\n`;

async function runsOf(rig: Rig, id: string): Promise<number> {
  return (await fs.readdir(rig.marks)).filter((n) => n.startsWith(`${id}.`) && n.endsWith('.run')).length;
}

async function state(rig: Rig, extra: WatchProc[] = []): Promise<string> {
  const l = rig.ws.settings.layout;
  const folders = {
    inbox: await list(l.inbox),
    processing: await list(l.processing),
    done: await list(l.done),
    failed: await list(l.failed),
    marks: await list(rig.marks),
  };
  return `${JSON.stringify(folders)}\n${extra.map((p) => p.output().slice(-3000)).join('\n-----\n')}`;
}

test.after.each(async () => {
  await killWorkers();
});

test('20 tasks, 2 worker processes: each runs exactly once, and the folder host files every result', async () => {
  const rig = await makeRig();
  const redis = await startRedis(path.join(rig.dir, 'redis'));
  try {
    const host = await startWatchReady(rig.ws.root, rig.env);
    const w1 = startWorker(rig, ['--concurrency', '2']);
    const w2 = startWorker(rig, ['--concurrency', '2']);
    const { layout } = rig.ws.settings;
    for (let i = 0; i < 20; i++) await publish(layout.inbox, `t${String(i).padStart(2, '0')}.md`, task(i));
    const settled = async () =>
      (await list(layout.done)).length + (await list(layout.failed)).filter((n) => n.endsWith('.md') && !n.endsWith('.error.md')).length;
    await waitForProgress(
      '20 tasks settled',
      async () => (await settled()) === 20,
      settled,
      60_000,
      () => state(rig, [host, w1, w2]),
    );
    for (let i = 0; i < 20; i++) {
      const id = `t${String(i).padStart(2, '0')}`;
      const report = JSON.parse(await fs.readFile(path.join(layout.reports, `${id}.json`), 'utf8'));
      assert.is(report.status, 'ok', `${id}: ${JSON.stringify(report.error)}`);
      assert.is(await runsOf(rig, id), 1, `${id} ran once`);
      assert.is(report.outcome, 'completed', id);
      assert.equal(report.changed_files, ['README.md']);
      assert.ok(existsSync(path.join(layout.root, report.patch_files[0])), `${id}: the patch the report names is filed`);
      // The sidecar the gate reads, <id>.patch.json (the soak's BullMQ mode found it filed as <id>.json: every patch was rejected).
      assert.is(report.patch_files[1], `${report.patch_files[0]}.json`, id);
      assert.ok(existsSync(path.join(layout.root, `${report.patch_files[0]}.json`)), `${id}: the sidecar is filed beside the patch`);
      assert.ok(existsSync(path.join(layout.reports, `${id}.trajectory.jsonl`)), `${id}: trajectory filed`);
      assert.match(await fs.readFile(path.join(layout.root, report.patch_files[0]), 'utf8'), `note from ${id}`);
    }
    assert.is((await list(layout.patches.pending)).filter((n) => n.endsWith('.patch')).length, 20);
    assert.equal(await list(layout.processing), []);
    assert.equal(await list(layout.failed), []);
    // The workers wrote nothing into the host's folders: their workspace is their own.
    assert.equal(await list(path.join(rig.workerRoot, 'reports')), []);
    assert.ok(w1.output().includes('job') || w2.output().includes('job'));
  } finally {
    await cleanup(rig, redis);
  }
});

/** One task's life with a rig and a running Redis; cleans up whatever happens. */
async function withRig(body: (rig: Rig, redis: { current: Redis | null }) => Promise<void>, startRedisFirst = true, scanMs = 200): Promise<void> {
  const rig = await makeRig(scanMs);
  const redis = { current: startRedisFirst ? await startRedis(path.join(rig.dir, 'redis')) : null };
  try {
    await body(rig, redis);
  } finally {
    await killWorkers();
    await cleanup(rig, redis.current);
  }
}

const hold = (rig: Rig) => fs.writeFile(path.join(rig.marks, 'hold'), '');
const release = (rig: Rig) => fs.writeFile(path.join(rig.marks, 'release'), '');
const waitRuns = (rig: Rig, id: string, n: number, procs: WatchProc[]) =>
  waitFor(
    `run ${n} of ${id}`,
    async () => (await runsOf(rig, id)) >= n,
    90_000,
    () => state(rig, procs),
  );
const waitIn = (rig: Rig, dir: string, name: string, procs: WatchProc[]) =>
  waitFor(
    `${name} in ${path.basename(dir)}/`,
    () => existsSync(path.join(dir, name)),
    90_000,
    () => state(rig, procs),
  );

/** Exactly one filed result: one report of this run, one patch, the task in done/, nothing left over. */
async function assertFiledOnce(rig: Rig, id: string): Promise<void> {
  const { layout } = rig.ws.settings;
  const report = JSON.parse(await fs.readFile(path.join(layout.reports, `${id}.json`), 'utf8'));
  assert.is(report.status, 'ok', JSON.stringify(report.error));
  assert.equal(await list(layout.done), [`${id}.md`]);
  assert.equal(await list(layout.failed), []);
  assert.equal(await list(layout.processing), []);
  assert.equal(
    (await list(layout.patches.pending)).filter((n) => n.endsWith('.patch')),
    [path.basename(report.patch_files[0])],
  );
  assert.equal(
    (await list(layout.patches.pending)).filter((n) => !n.endsWith('.patch')),
    [`${path.basename(report.patch_files[0])}.json`],
    'the patch and its sidecar <id>.patch.json, nothing else',
  );
  assert.equal(await list(layout.reportArchive), [], 'no earlier report of this task was archived: one report');
  const ledger = path.join(layout.state, 'ledger');
  const names = (await fs.readdir(ledger)).filter((n) => n.endsWith('.json') && !n.startsWith('.'));
  const readEntries = () => Promise.all(names.map(async (n) => JSON.parse(await fs.readFile(path.join(ledger, n), 'utf8'))));
  // The task reaches done/ just before the ledger marks the run finalized: wait for that step, do not race it.
  await waitFor(
    'the ledger to mark the run finalized',
    async () => (await readEntries()).every((e) => e.runs.every((r: { finalized_at?: string }) => r.finalized_at)),
    30_000,
  );
  const entries = await readEntries();
  assert.is(entries.length, 1, `one ledger entry: ${(await fs.readdir(ledger)).join(', ')}`);
  assert.is(entries[0].runs.length, 1, 'one ledger run');
  assert.is(entries[0].runs[0].run_id, report.run_id);
  assert.ok(entries[0].runs[0].finalized_at);
}

test('a worker killed with kill -9 once: the job runs again on another worker and is filed', async () => {
  await withRig(async (rig) => {
    await hold(rig);
    const host = await startWatchReady(rig.ws.root, rig.env);
    const w1 = startWorker(rig);
    await publish(rig.ws.settings.layout.inbox, 'k1.md', task('k1'));
    await waitRuns(rig, 'k1', 1, [host, w1]);
    await killHard(w1);
    await release(rig);
    const w2 = startWorker(rig);
    await waitIn(rig, rig.ws.settings.layout.done, 'k1.md', [host, w2]);
    assert.is(await runsOf(rig, 'k1'), 2);
    await assertFiledOnce(rig, 'k1');
  });
});

test('a worker killed with kill -9 twice: the task goes to failed/ with the reason', async () => {
  await withRig(async (rig) => {
    await hold(rig);
    const { layout } = rig.ws.settings;
    const host = await startWatchReady(rig.ws.root, rig.env);
    const w1 = startWorker(rig);
    await publish(layout.inbox, 'k2.md', task('k2'));
    await waitRuns(rig, 'k2', 1, [host, w1]);
    await killHard(w1);
    const w2 = startWorker(rig);
    await waitRuns(rig, 'k2', 2, [host, w2]);
    await killHard(w2);
    const w3 = startWorker(rig);
    await waitIn(rig, layout.failed, 'k2.md.error.md', [host, w3]);
    assert.is(await runsOf(rig, 'k2'), 2, 'not run a third time');
    assert.match(await fs.readFile(path.join(layout.failed, 'k2.md.error.md'), 'utf8'), /died twice/);
    assert.equal(await list(layout.processing), []);
    assert.equal(await list(layout.done), []);
  });
});

test('SIGTERM to a worker: the job goes back to the queue and is not counted as a crash', async () => {
  await withRig(async (rig) => {
    await hold(rig);
    const host = await startWatchReady(rig.ws.root, rig.env);
    const w1 = startWorker(rig);
    await publish(rig.ws.settings.layout.inbox, 's1.md', task('s1'));
    await waitRuns(rig, 's1', 1, [host, w1]);
    signal(w1, 'SIGTERM');
    assert.is((await w1.exited).code, 0, w1.output());
    // Had SIGTERM counted as a stall, this kill -9 would be the second and fail the task.
    const w2 = startWorker(rig);
    await waitRuns(rig, 's1', 2, [host, w2]);
    await killHard(w2);
    await release(rig);
    const w3 = startWorker(rig);
    await waitIn(rig, rig.ws.settings.layout.done, 's1.md', [host, w3]);
    assert.is(await runsOf(rig, 's1'), 3);
    await assertFiledOnce(rig, 's1');
  });
});

for (const point of ['bullmq-before-add', 'after-report', 'after-ledger', 'bullmq-before-filing']) {
  test(`the folder host killed at ${point}: the next start files exactly one result, without another run`, async () => {
    await withRig(async (rig) => {
      const { layout } = rig.ws.settings;
      const crashing = await startWatchReady(rig.ws.root, { ...rig.env, META_AGENT_FAULT: point });
      const w1 = startWorker(rig);
      await publish(layout.inbox, 'h1.md', task('h1'));
      assert.is((await crashing.exited).signal, 'SIGKILL', crashing.output());
      assert.equal(await list(layout.done), []);
      assert.is(await runsOf(rig, 'h1'), point === 'bullmq-before-add' ? 0 : 1);
      const host = await startWatchReady(rig.ws.root, rig.env);
      await waitIn(rig, layout.done, 'h1.md', [host, w1]);
      assert.is(await runsOf(rig, 'h1'), 1);
      await assertFiledOnce(rig, 'h1');
    });
  });
}

// Found by the soak's BullMQ mode (seed 18, night 2): scans overlap when one takes longer than
// scan_interval_ms, and two of them adopted the same task (two followers; one failed to file).
test('two folder hosts (two workspaces) on one Redis, the same task file in each: each runs it and files its own result', async () => {
  await withRig(async (rig) => {
    // A second workspace using the same Redis and queue (found by the scale-out benchmark: the
    // same name and content made the same job id, and the second host took the first one's job).
    const other = await makeRig();
    try {
      const hostA = await startWatchReady(rig.ws.root, rig.env);
      const hostB = await startWatchReady(other.ws.root, { ...other.env, REDIS_URL: rig.redisUrl });
      const w1 = startWorker(rig);
      await publish(rig.ws.settings.layout.inbox, 'same.md', task('same'));
      await waitIn(rig, rig.ws.settings.layout.done, 'same.md', [hostA, w1]);
      await publish(other.ws.settings.layout.inbox, 'same.md', task('same'));
      await waitIn(other, other.ws.settings.layout.done, 'same.md', [hostB, w1]);
      // The worker ran it once for each workspace (its marks are the worker's, rig's).
      assert.is(await runsOf(rig, 'same'), 2);
      await assertFiledOnce(rig, 'same');
      const report = JSON.parse(await fs.readFile(path.join(other.ws.settings.layout.reports, 'same.json'), 'utf8'));
      assert.is(report.status, 'ok', JSON.stringify(report.error));
      assert.ok(report.run_id !== JSON.parse(await fs.readFile(path.join(rig.ws.settings.layout.reports, 'same.json'), 'utf8')).run_id);
    } finally {
      await other.ws.cleanup();
      await fs.rm(other.dir, { recursive: true, force: true });
    }
  });
});

test('a restarted folder host whose scans overlap adopts a left task once, and files it once', async () => {
  await withRig(
    async (rig) => {
      const { layout } = rig.ws.settings;
      const crashing = await startWatchReady(rig.ws.root, { ...rig.env, META_AGENT_FAULT: 'bullmq-before-filing' });
      const w1 = startWorker(rig);
      await publish(layout.inbox, 'o1.md', task('o1'));
      assert.is((await crashing.exited).signal, 'SIGKILL', crashing.output());
      const host = await startWatchReady(rig.ws.root, rig.env);
      await waitIn(rig, layout.done, 'o1.md', [host, w1]);
      const adopted = host
        .output()
        .split('\n')
        .filter((l) => l.includes('following its job again'));
      assert.is(adopted.length, 1, host.output());
      assert.not.match(host.output(), /filing an adopted task failed/);
      assert.is(await runsOf(rig, 'o1'), 1);
      await assertFiledOnce(rig, 'o1');
    },
    true,
    5,
  );
});

test('Redis flushed mid-run: the job is added again; at most one extra run, one filed result', async () => {
  await withRig(async (rig, redis) => {
    await hold(rig);
    const host = await startWatchReady(rig.ws.root, rig.env);
    const w1 = startWorker(rig, ['--concurrency', '2']);
    await publish(rig.ws.settings.layout.inbox, 'f1.md', task('f1'));
    await waitRuns(rig, 'f1', 1, [host, w1]);
    await redis.current!.flush();
    await waitFor(
      'the host to notice',
      () => host.output().includes('gone from Redis'),
      60_000,
      () => state(rig, [host, w1]),
    );
    await release(rig);
    await waitIn(rig, rig.ws.settings.layout.done, 'f1.md', [host, w1]);
    const story = () =>
      [host, w1]
        .flatMap((p) =>
          p
            .output()
            .split('\n')
            .filter((l) => /gone from|job started|job done|job failed|stalled|Redis/.test(l)),
        )
        .join('\n');
    assert.ok((await runsOf(rig, 'f1')) <= 2, story());
    await assertFiledOnce(rig, 'f1');
  });
});

test('Redis unreachable at start: a clear error, and the task runs once Redis is there', async () => {
  await withRig(async (rig, redis) => {
    const host = await startWatchReady(rig.ws.root, rig.env);
    const w1 = startWorker(rig);
    await publish(rig.ws.settings.layout.inbox, 'u1.md', task('u1'));
    await waitFor(
      'the unreachable error',
      // The folder host's own line once it tried to send the claimed task (the doctor's warning at start says so earlier).
      () => host.output().includes('claimed tasks wait in processing/'),
      60_000,
      () => state(rig, [host, w1]),
    );
    assert.match(host.output(), /Redis at unix:.*redis\.sock is unreachable/);
    assert.match(host.output(), /warning: redis: Redis at unix:.*redis\.sock is unreachable/, "the doctor's warning at start");
    assert.equal(await list(rig.ws.settings.layout.processing), ['u1.md'], 'claimed and kept, not lost');
    redis.current = await startRedis(path.join(rig.dir, 'redis'));
    await waitIn(rig, rig.ws.settings.layout.done, 'u1.md', [host, w1]);
    assert.is(await runsOf(rig, 'u1'), 1);
    await assertFiledOnce(rig, 'u1');
  }, false);
});

test('Redis unreachable mid-run (stopped and started again): a clear error, no loss, at most one extra run', async () => {
  await withRig(async (rig, redis) => {
    await hold(rig);
    const host = await startWatchReady(rig.ws.root, rig.env);
    const w1 = startWorker(rig);
    await publish(rig.ws.settings.layout.inbox, 'm1.md', task('m1'));
    await waitRuns(rig, 'm1', 1, [host, w1]);
    await redis.current!.stop();
    redis.current = null;
    await waitFor(
      'the unreachable error',
      () => host.output().includes('is unreachable'),
      60_000,
      () => state(rig, [host, w1]),
    );
    redis.current = await startRedis(path.join(rig.dir, 'redis'));
    await release(rig);
    await waitIn(rig, rig.ws.settings.layout.done, 'm1.md', [host, w1]);
    assert.ok((await runsOf(rig, 'm1')) <= 2);
    await assertFiledOnce(rig, 'm1');
  });
});

test.run();
