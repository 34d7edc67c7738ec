/**
 * `meta-agent doctor` with `execution.engine: bullmq` checks Redis (issue 18): a real Debian
 * redis-server on a unix socket in a temp folder, started with the settings under test and
 * stopped by pid. Every other check sees a healthy machine, so each Redis setting is the one
 * finding, or none.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeWorkspace, type TestWorkspace } from './helpers/workspace.ts';
import { BIN, killAll, startWatch, waitFor } from './helpers/procs.ts';
import { startFakeLlm, type FakeLlm } from './helpers/fakeLlm.ts';
import { startRedis as startRedisIn, type Redis } from './helpers/redis.ts';
import { diagnose, type DoctorProbes, type DoctorReport } from '../src/service/doctor.ts';
import { loadSettings } from '../src/workspace/config.ts';

const PASSWORD = 'pw-Zq81-never-printed';
const healthy: Partial<DoctorProbes> = { platform: 'linux', freeBytes: async () => 50 * 1024 ** 3, oneVolume: async () => undefined, redisTimeoutMs: 3000 };

let llm: FakeLlm;
let dir: string;
test.before(async () => {
  llm = await startFakeLlm(() => ({ body: { object: 'list', data: [{ id: 'scripted-model', object: 'model' }] } }));
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-doctor-redis-'));
});
test.after(async () => {
  await killAll();
  await llm.close();
  await fs.rm(dir, { recursive: true, force: true });
});

let servers = 0;
/** The shared helper's redis-server (helpers/redis.ts), each in a folder of its own. */
const startRedis = (args: string[] = []): Promise<Redis> => startRedisIn(path.join(dir, `redis-${++servers}`), args);

async function workspace(): Promise<TestWorkspace> {
  return makeWorkspace({ llmUrl: llm.url, extra: 'execution:\n  engine: bullmq\nsandbox: none' });
}

/** The doctor's findings other than the unsandboxed-checks warning every workspace here has. */
async function doctorOn(ws: TestWorkspace, redisUrl: string | undefined, starting = false): Promise<DoctorReport> {
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, ...(redisUrl ? { REDIS_URL: redisUrl } : {}) };
  const report = await diagnose(await loadSettings(ws.root, env), healthy, starting);
  const findings = report.findings.filter((f) => f.field !== 'sandbox');
  const errors = findings.filter((f) => f.level === 'error').length;
  return { ...report, findings, errors, warnings: findings.length - errors, ok: errors === 0 };
}

function theOneFinding(report: DoctorReport, level: 'error' | 'warning', field: string, text: RegExp): void {
  assert.is(report.findings.length, 1, JSON.stringify(report.findings, null, 2));
  const [f] = report.findings;
  assert.is(f!.level, level);
  assert.is(f!.field, field);
  assert.match(f!.message, text);
  assert.not.match(f!.message, /\n/, 'one line');
  assert.is(report.ok, level !== 'error');
}

async function withRedis(args: string[], body: (redis: Redis, ws: TestWorkspace) => Promise<void>): Promise<void> {
  const redis = await startRedis(args);
  const ws = await workspace();
  try {
    await body(redis, ws);
  } finally {
    await redis.stop();
    await ws.cleanup();
  }
}

test('Redis set up as docs/scale-out.md asks (noeviction, appendonly yes): no finding, and "redis" is checked (the positive control)', async () => {
  await withRedis([], async (redis, ws) => {
    const report = await doctorOn(ws, `unix://${redis.socket}`);
    assert.equal(report.findings, []);
    assert.ok(report.ok);
    assert.ok(report.checked.includes('redis'), report.checked.join(', '));
  });
});

test('the local engine: Redis is not checked at all, even with REDIS_URL pointing nowhere', async () => {
  const ws = await makeWorkspace({ llmUrl: llm.url, extra: 'sandbox: none' });
  try {
    const report = await doctorOn(ws, `unix://${path.join(dir, 'nothing-here.sock')}`);
    assert.equal(report.findings, []);
    assert.not.ok(report.checked.includes('redis'));
  } finally {
    await ws.cleanup();
  }
});

test('maxmemory-policy allkeys-lru: an error (BullMQ keys must never be evicted)', async () => {
  await withRedis(['--maxmemory-policy', 'allkeys-lru'], async (redis, ws) => {
    theOneFinding(await doctorOn(ws, `unix://${redis.socket}`), 'error', 'redis.maxmemory-policy', /allkeys-lru.*never be evicted.*noeviction/);
  });
});

test('appendonly no: a warning (a restart loses the queue, running tasks run once more)', async () => {
  await withRedis(['--appendonly', 'no'], async (redis, ws) => {
    theOneFinding(await doctorOn(ws, `unix://${redis.socket}`), 'warning', 'redis.appendonly', /appendonly no: a restart loses the queue.*runs once more/);
  });
});

test('CONFIG not allowed (managed Redis; here renamed away): a warning that the settings could not be checked', async () => {
  await withRedis(['--rename-command', 'CONFIG', ''], async (redis, ws) => {
    theOneFinding(await doctorOn(ws, `unix://${redis.socket}`), 'warning', 'redis.maxmemory-policy', /could not be checked/);
  });
});

test('the URL variable unset, or not a URL: an error naming the variable', async () => {
  const ws = await workspace();
  try {
    theOneFinding(await doctorOn(ws, undefined), 'error', 'execution.redis_url_env', /REDIS_URL is not set/);
    const bad = await doctorOn(ws, `not a url ${PASSWORD}`);
    theOneFinding(bad, 'error', 'execution.redis_url_env', /REDIS_URL is not a URL/);
    assert.not.ok(JSON.stringify(bad).includes(PASSWORD), 'the value is not printed');
  } finally {
    await ws.cleanup();
  }
});

test('no server at the socket: an "unreachable" error with the address (a warning at watch start, which waits for Redis)', async () => {
  const ws = await workspace();
  try {
    const socket = path.join(dir, 'nobody-listens.sock');
    theOneFinding(await doctorOn(ws, `unix://${socket}`), 'error', 'redis', new RegExp(`Redis at unix:${socket} is unreachable`));
    theOneFinding(await doctorOn(ws, `unix://${socket}`, true), 'warning', 'redis', /is unreachable.*tasks wait in processing\//);
  } finally {
    await ws.cleanup();
  }
});

test('a password-protected Redis: the right password is fine; a wrong or missing one is an error; the password is never in the output (`doctor --json`, text)', async () => {
  await withRedis(['--requirepass', PASSWORD], async (redis, ws) => {
    const good = `unix://${redis.socket}?password=${PASSWORD}`;
    assert.equal((await doctorOn(ws, good)).findings, [], 'positive control: the password in the URL is used');
    const wrong = await doctorOn(ws, `unix://${redis.socket}?password=${PASSWORD}-wrong`);
    theOneFinding(wrong, 'error', 'redis', /refused the connection \(WRONGPASS.*put its password \(requirepass\) in REDIS_URL/);
    assert.not.ok(JSON.stringify(wrong).includes(PASSWORD));
    const none = await doctorOn(ws, `unix://${redis.socket}`);
    theOneFinding(none, 'error', 'redis', /refused the connection \(NOAUTH/);

    // The CLI, with the allkeys-lru error too so there is something to print; it exits (the connection is closed).
    const env = { ...process.env, REDIS_URL: `unix://${redis.socket}?password=${PASSWORD}` };
    await execa('redis-cli', ['-s', redis.socket, '-a', PASSWORD, '--no-auth-warning', 'CONFIG', 'SET', 'maxmemory-policy', 'allkeys-lru']);
    const json = await execa(process.execPath, [BIN, 'doctor', '--json', '--root', ws.root], { env, reject: false, timeout: 60_000 });
    assert.is(json.exitCode, 2, json.stderr);
    const report = JSON.parse(json.stdout) as DoctorReport;
    assert.ok(report.findings.some((f) => f.field === 'redis.maxmemory-policy' && f.level === 'error'));
    const text = await execa(process.execPath, [BIN, 'doctor', '--root', ws.root], { env, reject: false, all: true, timeout: 60_000 });
    assert.match(text.stdout, /^error: redis\.maxmemory-policy: Redis at unix:.* has maxmemory-policy allkeys-lru/m);
    for (const out of [json.stdout, json.stderr, text.all!]) assert.not.ok(out.includes(PASSWORD), out);
  });
});

test('`watch` refuses to start on a Redis error (allkeys-lru); with Redis unreachable it starts, the warning printed', async () => {
  await withRedis(['--maxmemory-policy', 'allkeys-lru'], async (redis, ws) => {
    const env = { ...process.env, REDIS_URL: `unix://${redis.socket}` };
    const refused = await execa(process.execPath, [BIN, 'watch', '--root', ws.root], { env, reject: false, all: true, timeout: 60_000 });
    assert.is(refused.exitCode, 2, refused.all);
    assert.match(refused.all!, /error: redis\.maxmemory-policy: .*allkeys-lru/);
    assert.match(refused.all!, /not starting/);

    const proc = startWatch(ws.root, { REDIS_URL: `unix://${path.join(dir, 'nobody-listens.sock')}` });
    try {
      await waitFor(
        'watching',
        () => proc.output().includes('watching ') || !proc.alive(),
        30_000,
        () => proc.output(),
      );
      assert.ok(proc.alive(), proc.output());
      assert.match(proc.output(), /warning: redis: Redis at unix:.* is unreachable/);
    } finally {
      await killAll();
    }
  });
});

test.run();
