/**
 * The artifact store (execution.artifact_store, issue 18): retrain artifacts too large for a
 * BullMQ result go through a content-addressed folder shared by the workers and the folder
 * host. The store module on real files; a real retrain run (train and eval scripts in a real
 * git repo) packaged by bundleOf and filed by ResultFiler; and the whole path with a real
 * redis-server, a real `meta-agent watch` folder host and a real `meta-agent worker` process.
 * The worker's result is hostile input: a blob changed after it was stored, a hash that is not
 * one, a size that is not the blob's, must each fail filing with one clear line naming the task
 * and the artifact, leave nothing in patches/, and put the task into failed/ with the reason.
 */
import { createHash } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MetaAgentError } from '../src/contract/errors.ts';
import { PatchSidecarSchema } from '../src/contract/patch.ts';
import { ReportSchema } from '../src/contract/report.ts';
import { silentLogger } from '../src/log.ts';
import { ArtifactStore, artifactPolicy } from '../src/queue/bullmq/artifactStore.ts';
import type { Bundle } from '../src/queue/bullmq/job.ts';
import { claimTask } from '../src/queue/folders.ts';
import { applyRetention } from '../src/queue/retention.ts';
import { runTask } from '../src/run/runTask.ts';
import { bundleOf } from '../src/service/bullmq/bundle.ts';
import { ResultFiler } from '../src/service/bullmq/fileResult.ts';
import { settingsFromYaml } from '../src/workspace/config.ts';
import { layoutFor } from '../src/workspace/layout.ts';
import { killAll, killHard, list, publish, startMetaAgent, startWatchReady, waitFor, type WatchProc } from './helpers/procs.ts';
import { startRedis } from './helpers/redis.ts';
import { makeWorkspace, type TestWorkspace } from './helpers/workspace.ts';

const MiB = 1024 * 1024;
const RUN_ID = '20261201T010000Z-abc123';
const MODEL = 'models/model.pkl';

/** The model train.py writes: `size` bytes of a fixed pattern, so the test knows every byte. */
function modelBytes(size: number): Buffer {
  const block = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  return Buffer.concat(Array.from({ length: Math.ceil(size / 256) }, () => block)).subarray(0, size);
}
const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

const TRAIN_PY = `from pathlib import Path
root = Path(__file__).resolve().parent.parent
size = int((root / "tools" / "size.txt").read_text())
(root / "models").mkdir(exist_ok=True)
(root / "models" / "model.pkl").write_bytes((bytes(range(256)) * (size // 256 + 1))[:size])
`;
const EVAL_PY = `import json
from pathlib import Path
root = Path(__file__).resolve().parent.parent
(root / "models" / "candidate.json").write_text(json.dumps({"sharpe": 0.9}) + "\\n")
`;
const RETRAIN = `    scope: ["models/**"]
    retrain:
      train: "python3 tools/train.py"
      eval: "python3 tools/eval.py"
      metrics: models/candidate.json
      baseline: models/metrics.json
      metric: sharpe
      artifacts: [${MODEL}]`;
const TASK = '---\nproject: bot\ntype: retrain_model\nobjective: Weekly retrain\nscope: ["models/**"]\n---\n';

const cleanups: (() => Promise<unknown>)[] = [];
test.after.each(async () => {
  await killAll();
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function tempDir(prefix: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A workspace whose repo trains a model of `size` bytes (committed, so a worker's clone has it). */
async function retrainWorkspace(size: number, extra = ''): Promise<TestWorkspace> {
  const ws = await makeWorkspace({ project: RETRAIN, extra: `sandbox: none\n${extra}` });
  cleanups.push(() => ws.cleanup());
  await fs.mkdir(path.join(ws.repo, 'tools'));
  await fs.writeFile(path.join(ws.repo, 'tools', 'train.py'), TRAIN_PY);
  await fs.writeFile(path.join(ws.repo, 'tools', 'eval.py'), EVAL_PY);
  await fs.writeFile(path.join(ws.repo, 'tools', 'size.txt'), `${size}\n`);
  await execa('git', ['add', '--all'], { cwd: ws.repo });
  await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-m', 'retrain tools'], { cwd: ws.repo });
  return ws;
}

/** A worker's retrain run of `retrain.md` under RUN_ID in a workspace of its own, as jobHandler.ts runs it. */
async function workerRun(size: number) {
  const ws = await retrainWorkspace(size);
  const taskFile = path.join(ws.root, 'task', 'retrain.md');
  await fs.mkdir(path.dirname(taskFile), { recursive: true });
  await fs.writeFile(taskFile, TASK);
  const result = await runTask(taskFile, { settings: ws.settings, log: silentLogger(), runId: RUN_ID });
  assert.is(result.outcome, 'completed', JSON.stringify(result.report.error));
  assert.equal(result.report.retrain?.artifacts, [MODEL]);
  return { layout: ws.settings.layout, report: result.report };
}

/** The folder host's claim of `retrain.md` for RUN_ID. */
async function hostClaim() {
  const ws = await makeWorkspace({ project: RETRAIN });
  cleanups.push(() => ws.cleanup());
  const layout = ws.settings.layout;
  await fs.writeFile(path.join(layout.inbox, 'retrain.md'), TASK);
  return { layout, claim: await claimTask(layout, path.join(layout.inbox, 'retrain.md'), RUN_ID, 30_000) };
}

async function rejection(promise: Promise<unknown>): Promise<MetaAgentError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  assert.instance(error, MetaAgentError);
  assert.not.match((error as MetaAgentError).message, /\n/, 'one line');
  return error as MetaAgentError;
}

// --- the store module ----------------------------------------------------------------------------

test('put is idempotent: the same bytes twice give one blob at sha256/<2 hex>/<hash>, used again (its time renewed), no temp left', async () => {
  const dir = await tempDir('meta-agent-store-');
  const store = new ArtifactStore(path.join(dir, 'store'));
  const data = modelBytes(300_000);
  const file = path.join(dir, 'model.pkl');
  await fs.writeFile(file, data);
  // A share that is not mounted is not made into a local folder.
  const unmounted = await rejection(store.put(file));
  assert.is(unmounted.field, 'execution.artifact_store');
  assert.match(unmounted.message, /is not a folder here \(is the share mounted\?\)/);
  assert.not.ok(existsSync(store.dir));
  await fs.mkdir(store.dir);

  const first = await store.put(file);
  assert.equal(first, { sha256: sha(data), bytes: data.length });
  const blob = path.join(dir, 'store', 'sha256', sha(data).slice(0, 2), sha(data));
  assert.ok((await fs.readFile(blob)).equals(data));
  const old = new Date(Date.now() - 30 * 86_400_000);
  await fs.utimes(blob, old, old);

  const second = await store.put(file);
  assert.equal(second, first);
  assert.equal(await list(path.join(dir, 'store', 'sha256')), [sha(data).slice(0, 2)]);
  assert.equal(await list(path.join(dir, 'store', 'sha256', sha(data).slice(0, 2))), [sha(data)]);
  assert.equal(await list(path.join(dir, 'store', 'incoming'), { dot: true }), [], 'no temp file left');
  assert.ok((await fs.stat(blob)).mtimeMs > old.getTime() + 86_400_000, 'a blob used again is not old for retention');
  assert.ok((await fs.readFile(blob)).equals(data));
});

test('copyOut checks the blob: a byte-identical copy (positive control); changed, missing, wrong size or a bad hash each refused, nothing left', async () => {
  const dir = await tempDir('meta-agent-store-');
  const store = new ArtifactStore(path.join(dir, 'store'));
  await fs.mkdir(store.dir);
  const data = modelBytes(100_000);
  await fs.writeFile(path.join(dir, 'm'), data);
  const ref = await store.put(path.join(dir, 'm'));
  const out = path.join(dir, 'out');
  await fs.mkdir(out);

  await store.copyOut(ref, path.join(out, 'good'));
  assert.ok((await fs.readFile(path.join(out, 'good'))).equals(data));

  const cases: [string, () => Promise<void>, RegExp][] = [
    ['one byte more named', () => store.copyOut({ ...ref, bytes: ref.bytes + 1 }, path.join(out, 'a')), /has 100000 bytes, not 100001/],
    ['one byte fewer named', () => store.copyOut({ ...ref, bytes: ref.bytes - 1 }, path.join(out, 'b')), /more than the 99999 bytes/],
    ['missing', () => store.copyOut({ sha256: 'a'.repeat(64), bytes: 5 }, path.join(out, 'c')), /is not in the artifact store/],
    ['a path for a hash', () => store.copyOut({ sha256: '../../../etc/passwd', bytes: 5 }, path.join(out, 'd')), /is not a sha256/],
    ['upper-case hex', () => store.copyOut({ ...ref, sha256: ref.sha256.toUpperCase() }, path.join(out, 'e')), /is not a sha256/],
  ];
  for (const [what, attempt, message] of cases) assert.match((await rejection(attempt())).message, message, what);

  // Changed after it was stored: same size, one byte different.
  const blob = store.blobPath(ref.sha256);
  const tampered = Buffer.from(data);
  tampered[500] = (tampered[500]! + 1) % 256;
  await fs.writeFile(blob, tampered);
  assert.match((await rejection(store.copyOut(ref, path.join(out, 'f')))).message, /does not match its sha256/);
  assert.equal(await list(out), ['good'], 'no refused copy left behind');
});

test('config: artifact_store as a folder relative to the workspace, a file: URL; an http(s) URL is a clear error naming meta-agent.yaml', async () => {
  const layout = layoutFor(path.resolve('/srv/ws'));
  const yaml = (store: string) => `projects:\n  bot:\n    repo: ./r\nexecution:\n  engine: bullmq\n  artifact_store: ${JSON.stringify(store)}\n`;
  const storeOf = (store: string) => artifactPolicy(settingsFromYaml(yaml(store), layout, {})).store?.dir;
  assert.is(storeOf('shared/store'), path.join(layout.root, 'shared', 'store'));
  const absolute = path.resolve('/mnt/share/store');
  assert.is(storeOf(pathToFileURL(absolute).href), absolute);
  assert.is(artifactPolicy(settingsFromYaml('projects:\n  bot:\n    repo: ./r\n', layout, {})).store, null, 'none unless configured');
  assert.is(artifactPolicy(settingsFromYaml('projects:\n  bot:\n    repo: ./r\n', layout, {})).inlineBytes, MiB);
  for (const url of ['https://store.example.com/a', 'http://10.0.0.5/store', 's3://bucket/x']) {
    let error: unknown = null;
    try {
      settingsFromYaml(yaml(url), layout, {});
    } catch (e) {
      error = e;
    }
    assert.instance(error, MetaAgentError, url);
    assert.is((error as MetaAgentError).file, 'meta-agent.yaml');
    assert.is((error as MetaAgentError).field, 'execution.artifact_store');
    assert.match((error as MetaAgentError).message, /not built/);
  }
});

test('retention removes blobs not used for keep_results_days, and keeps the others', async () => {
  const ws = await makeWorkspace({ project: RETRAIN, extra: 'execution:\n  engine: bullmq\n  artifact_store: store\n  keep_results_days: 2' });
  cleanups.push(() => ws.cleanup());
  const store = artifactPolicy(ws.settings).store!;
  await fs.mkdir(store.dir);
  const files = ['old', 'new'].map((n) => path.join(ws.root, n));
  for (const f of files) await fs.writeFile(f, f);
  const [old, fresh] = [await store.put(files[0]!), await store.put(files[1]!)];
  const threeDaysAgo = new Date(Date.now() - 3 * 86_400_000);
  await fs.utimes(store.blobPath(old.sha256), threeDaysAgo, threeDaysAgo);
  const result = await applyRetention(ws.settings, silentLogger());
  assert.equal(result.blobs, [store.blobPath(old.sha256)]);
  assert.not.ok(existsSync(store.blobPath(old.sha256)));
  assert.ok(existsSync(store.blobPath(fresh.sha256)));
});

// --- packaging and filing, without Redis -----------------------------------------------------------

test('without a store, a retrain run whose artifacts pass 16 MiB fails with an error naming execution.artifact_store', async () => {
  const worker = await workerRun(17 * MiB);
  const error = await rejection(bundleOf(worker.layout, worker.report));
  assert.is(error.field, 'execution.artifact_store');
  assert.is(error.file, 'meta-agent.yaml');
  assert.match(error.message, /set execution\.artifact_store/);
  // The same run with a store: the model goes there, the result names it.
  const store = new ArtifactStore(await tempDir('meta-agent-store-'));
  const bundle = await bundleOf(worker.layout, worker.report, { store, inlineBytes: MiB });
  const expected = modelBytes(17 * MiB);
  assert.equal(bundle.patch?.artifacts, [{ path: MODEL, sha256: sha(expected), bytes: expected.length }]);
});

test('filing checks store references: a result naming a bad hash, a wrong size, or a changed blob fails the task with the artifact named; an intact one is filed', async () => {
  const worker = await workerRun(2 * MiB);
  const store = new ArtifactStore(await tempDir('meta-agent-store-'));
  const bundle = await bundleOf(worker.layout, worker.report, { store, inlineBytes: MiB });
  const ref = bundle.patch!.artifacts[0]!;
  assert.ok('sha256' in ref, 'over the inline limit: a store reference');
  // A worker that lies consistently: the same hash in its sidecar and in the reference.
  const withSidecarHash = (sha256: string): Bundle => {
    const sidecar = JSON.parse(bundle.patch!.sidecar);
    sidecar.artifacts[0].sha256 = sha256;
    return { ...bundle, patch: { ...bundle.patch!, sidecar: JSON.stringify(sidecar), artifacts: [{ path: MODEL, sha256, bytes: 2 * MiB }] } };
  };
  const withArtifact = (artifact: object): Bundle => ({ ...bundle, patch: { ...bundle.patch!, artifacts: [{ path: MODEL, ...artifact }] as never } });

  const bad: [string, Bundle, RegExp, () => Promise<void>][] = [
    ['a path for a hash', withArtifact({ sha256: '../../../../etc/passwd', bytes: 2 * MiB }), /the result names blob/, async () => undefined],
    [
      'a path for a hash, in the sidecar too',
      withSidecarHash('../../../../etc/passwd'),
      /"\.\.\/\.\.\/\.\.\/\.\.\/etc\/passwd" is not a sha256/,
      async () => undefined,
    ],
    ['a hash of 63 hex characters', withSidecarHash('a'.repeat(63)), /is not a sha256/, async () => undefined],
    [
      'a size that is not the sidecar one',
      withArtifact({ sha256: (ref as { sha256: string }).sha256, bytes: 5 }),
      /the result names blob/,
      async () => undefined,
    ],
    [
      'a blob changed after it was put',
      bundle,
      /does not match its sha256/,
      async () => {
        const blob = store.blobPath((ref as { sha256: string }).sha256);
        const data = await fs.readFile(blob);
        data[1000] = (data[1000]! + 1) % 256;
        await fs.writeFile(blob, data);
      },
    ],
  ];
  for (const [what, tampered, message, damage] of bad) {
    await damage();
    const host = await hostClaim();
    const result = await new ResultFiler(host.layout, silentLogger(), store).fileBundle(host.claim, tampered);
    assert.is(result, null, what);
    const explanation = await fs.readFile(path.join(host.layout.failed, 'retrain.md.error.md'), 'utf8');
    assert.match(explanation, new RegExp(`the worker's artifact ${MODEL} of retrain\\.md: `), what);
    assert.match(explanation, message, what);
    assert.equal(await list(host.layout.failed), ['retrain.md', 'retrain.md.error.md'], `${what}: the task is kept, in failed/`);
    assert.equal(await list(host.layout.processing), [], what);
    assert.equal(await list(host.layout.patches.pending, { dot: true }), [], `${what}: nothing half-filed in patches/`);
    assert.equal(await list(host.layout.reports), [], `${what}: no report of a result that was not filed`);
    assert.equal(await list(path.join(host.layout.state, 'filing')), [], `${what}: no staging left`);
  }

  // A folder host without execution.artifact_store cannot file a reference: it says so.
  const storeless = await hostClaim();
  assert.is(await new ResultFiler(storeless.layout, silentLogger()).fileBundle(storeless.claim, bundle), null);
  assert.match(await fs.readFile(path.join(storeless.layout.failed, 'retrain.md.error.md'), 'utf8'), /this folder host has no execution\.artifact_store/);

  // Positive control: the same bundle, its blob put again intact, is filed byte for byte.
  const model = path.join(worker.layout.root, worker.report.patch_files[0]!.replace(/\.patch$/, '.artifacts'), MODEL);
  await fs.rm(store.blobPath((ref as { sha256: string }).sha256));
  await store.put(model);
  const host = await hostClaim();
  const result = await new ResultFiler(host.layout, silentLogger(), store).fileBundle(host.claim, bundle);
  assert.is(result?.outcome, 'completed');
  const filed = path.join(host.layout.patches.pending, 'retrain.artifacts', MODEL);
  assert.ok((await fs.readFile(filed)).equals(modelBytes(2 * MiB)), 'filed byte for byte');
  const sidecar = PatchSidecarSchema.parse(JSON.parse(await fs.readFile(path.join(host.layout.patches.pending, 'retrain.patch.json'), 'utf8')));
  assert.equal(sidecar.artifacts, [{ path: MODEL, sha256: sha(modelBytes(2 * MiB)), bytes: 2 * MiB }]);
});

// --- the whole path: redis-server, folder host, worker process --------------------------------------

interface Rig {
  ws: TestWorkspace;
  dir: string;
  workerRoot: string;
  store: string;
  env: Record<string, string>;
}

/** A folder host and a worker machine (its own workspace; the store is the one folder they share). */
async function makeRig(size: number): Promise<Rig> {
  const dir = await tempDir('meta-agent-artifacts-');
  const store = path.join(dir, 'shared-store');
  await fs.mkdir(store);
  const redis = await startRedis(path.join(dir, 'redis'));
  cleanups.push(() => redis.stop());
  const execution = `execution:\n  engine: bullmq\n  lock_s: 5\n  artifact_store: ${JSON.stringify(store)}`;
  // The folder host runs no task: a no-op command agent keeps its start-up doctor off the network.
  const host = [
    `engine: command\ncommand:\n  run: ["${process.execPath}", "-e", ""]\n  sandbox: none`,
    'queue:\n  scan_interval_ms: 200\n  settle_ms: 0',
    execution,
  ];
  const ws = await retrainWorkspace(size, host.join('\n'));
  const workerRoot = path.join(dir, 'worker-machine');
  await fs.mkdir(workerRoot);
  // The worker names the same share by a file: URL (another machine mounts it elsewhere; the hash is what travels).
  const workerExecution = `execution:\n  engine: bullmq\n  lock_s: 5\n  artifact_store: ${pathToFileURL(store).href}`;
  const project = RETRAIN.replace('    scope:', `    remote: ${JSON.stringify(ws.repo)}\n    scope:`);
  await fs.writeFile(path.join(workerRoot, 'meta-agent.yaml'), `sandbox: none\nprojects:\n  bot:\n    repo: ./absent\n${project}\n${workerExecution}\n`);
  return { ws, dir, workerRoot, store, env: { REDIS_URL: redis.url, META_AGENT_LOG: 'json' } };
}

function startWorker(rig: Rig): WatchProc {
  const proc = startMetaAgent(['worker', '--root', rig.workerRoot], rig.env);
  cleanups.push(() => killHard(proc));
  return proc;
}

const blobsIn = async (store: string) => (await list(path.join(store, 'sha256')).catch(() => [] as string[])).length;

test('a retrain task on a worker: its 2 MiB model goes through the store and the folder host files it byte for byte', async () => {
  const rig = await makeRig(2 * MiB);
  const { layout } = rig.ws.settings;
  const host = await startWatchReady(rig.ws.root, rig.env);
  const worker = startWorker(rig);
  await publish(layout.inbox, 'retrain.md', TASK);
  await waitFor(
    'retrain.md in done/',
    () => existsSync(path.join(layout.done, 'retrain.md')),
    90_000,
    () => `${host.output()}\n---\n${worker.output()}`,
  );
  const report = ReportSchema.parse(JSON.parse(await fs.readFile(path.join(layout.reports, 'retrain.json'), 'utf8')));
  assert.is(report.status, 'ok', JSON.stringify(report.error));
  const expected = modelBytes(2 * MiB);
  const filed = path.join(layout.patches.pending, 'retrain.artifacts', MODEL);
  assert.ok((await fs.readFile(filed)).equals(expected), 'the model filed byte for byte');
  const sidecar = PatchSidecarSchema.parse(JSON.parse(await fs.readFile(path.join(layout.patches.pending, 'retrain.patch.json'), 'utf8')));
  assert.equal(sidecar.artifacts, [{ path: MODEL, sha256: sha(expected), bytes: expected.length }]);
  assert.is(await blobsIn(rig.store), 1, 'it travelled through the store');
  assert.ok(existsSync(path.join(rig.store, 'sha256', sha(expected).slice(0, 2), sha(expected))));
});

test('the folder host killed after the report, before the patch: the next start copies the model out of the store again and files it once', async () => {
  const rig = await makeRig(2 * MiB);
  const { layout } = rig.ws.settings;
  const crashing = await startWatchReady(rig.ws.root, { ...rig.env, META_AGENT_FAULT: 'after-ledger' });
  const worker = startWorker(rig);
  await publish(layout.inbox, 'retrain.md', TASK);
  assert.is((await crashing.exited).signal, 'SIGKILL', crashing.output());
  assert.ok(existsSync(path.join(layout.reports, 'retrain.json')), 'killed after the report');
  assert.equal(await list(layout.patches.pending, { dot: true }), [], 'and before anything reached patches/');

  const host = await startWatchReady(rig.ws.root, rig.env);
  await waitFor(
    'retrain.md in done/',
    () => existsSync(path.join(layout.done, 'retrain.md')),
    90_000,
    () => `${host.output()}\n---\n${worker.output()}`,
  );
  assert.ok((await fs.readFile(path.join(layout.patches.pending, 'retrain.artifacts', MODEL))).equals(modelBytes(2 * MiB)));
  assert.equal(await list(layout.patches.pending), ['retrain.artifacts', 'retrain.patch', 'retrain.patch.json']);
  assert.equal(await list(path.join(layout.state, 'filing')), [], 'the staging folder is gone');
});

test('a blob changed in the store before the host files it: the task goes to failed/ with the reason, nothing in patches/', async () => {
  const rig = await makeRig(2 * MiB);
  const { layout } = rig.ws.settings;
  // The folder host dies once the job is done, before filing; the blob is changed meanwhile.
  const crashing = await startWatchReady(rig.ws.root, { ...rig.env, META_AGENT_FAULT: 'bullmq-before-filing' });
  const worker = startWorker(rig);
  await publish(layout.inbox, 'retrain.md', TASK);
  assert.is((await crashing.exited).signal, 'SIGKILL', crashing.output());
  const expected = modelBytes(2 * MiB);
  const blob = path.join(rig.store, 'sha256', sha(expected).slice(0, 2), sha(expected));
  const data = await fs.readFile(blob);
  data[12345] = (data[12345]! + 1) % 256;
  await fs.writeFile(blob, data);

  const host = await startWatchReady(rig.ws.root, rig.env);
  const errorMd = path.join(layout.failed, 'retrain.md.error.md');
  await waitFor(
    'retrain.md in failed/',
    () => existsSync(errorMd),
    90_000,
    () => `${host.output()}\n---\n${worker.output()}`,
  );
  const explanation = await fs.readFile(errorMd, 'utf8');
  assert.match(explanation, /the worker's artifact models\/model\.pkl of retrain\.md: its blob in the artifact store does not match its sha256/);
  assert.ok(existsSync(path.join(layout.failed, 'retrain.md')), 'the task is kept: move it back into inbox/ to run it again');
  // The one log line, written just after the task reached failed/.
  await waitFor(
    'the log line',
    () => /the worker's result could not be filed: the worker's artifact models\/model\.pkl of retrain\.md/.test(host.output()),
    30_000,
    () => host.output(),
  );
  assert.equal(await list(layout.patches.pending, { dot: true }), []);
  assert.equal(await list(layout.processing), []);
});

test.run();
