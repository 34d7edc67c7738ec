/**
 * The BullMQ execution engine's benchmark (issue 18): throughput with 1, 2 and 4 worker
 * processes on the no-op engine, and the per-task time of one task at a time on the
 * BullMQ path vs the local path. A real redis-server on a unix socket; the folder host is
 * bench/noop-service.ts (watch), the workers bench/noop-worker.ts, all on this machine.
 *
 *   npx tsx bench/scaleout.ts        writes its section of docs/benchmarks.md
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmt, writeBenchmarkSection, makeTargetRepo, progress, sleep, stageTasks, stats, type Stats } from './lib.ts';
import { initWorkspace } from '../src/workspace/init.ts';

const PKG_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TASKS = Number(process.env.BENCH_SCALEOUT_TASKS ?? 40);
const SERIAL = Number(process.env.BENCH_SCALEOUT_SERIAL ?? 15);
const children = new Set<ChildProcess>();

async function waitUntil(what: string, check: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (await check()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function yaml(repo: string, engine: 'local' | 'bullmq'): string {
  return [
    'engine: command',
    'command:',
    '  run: ["true"]',
    'sandbox: none',
    'projects:',
    '  bench:',
    `    repo: ${JSON.stringify(repo)}`,
    '    scope: ["**"]',
    'limits:',
    '  concurrency: 1',
    'queue:',
    '  settle_ms: 0',
    '  scan_interval_ms: 2000',
    '  poll: false',
    'execution:',
    `  engine: ${engine}`,
    '',
  ].join('\n');
}

interface Host {
  child: ChildProcess;
  results: number[];
  stop(): Promise<void>;
}

async function startHost(root: string, env: NodeJS.ProcessEnv): Promise<Host> {
  const child = fork(path.join(PKG_ROOT, 'bench', 'noop-service.ts'), [root], {
    cwd: PKG_ROOT,
    execArgv: ['--import', 'tsx'],
    env,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.add(child);
  const results: number[] = [];
  let ready = false;
  child.on('message', (m: { type: string; status?: string; error?: string | null }) => {
    if (m.type === 'ready') ready = true;
    if (m.type === 'result') {
      if (m.status !== 'ok') throw new Error(`a task failed: ${m.error}`);
      results.push(performance.now());
    }
  });
  await waitUntil('the folder host to start', () => ready, 120_000);
  return { child, results, stop: () => stopChild(child) };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(15_000)]);
    if (child.exitCode === null) child.kill('SIGKILL');
  }
  children.delete(child);
}

async function startWorkers(n: number, root: string, env: NodeJS.ProcessEnv): Promise<ChildProcess[]> {
  return Array.from({ length: n }, () => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(PKG_ROOT, 'bench', 'noop-worker.ts'), root], { cwd: PKG_ROOT, env, stdio: 'inherit' });
    children.add(child);
    return child;
  });
}

async function workspace(dir: string, repo: string, engine: 'local' | 'bullmq'): Promise<{ root: string; staging: string; workerRoot: string }> {
  const root = path.join(dir, `host-${engine}-${Math.random().toString(36).slice(2, 8)}`);
  await initWorkspace(root, { withConfig: false });
  await fs.writeFile(path.join(root, 'meta-agent.yaml'), yaml(repo, engine));
  const workerRoot = `${root}-worker`;
  await fs.mkdir(workerRoot, { recursive: true });
  await fs.writeFile(path.join(workerRoot, 'meta-agent.yaml'), yaml(repo, engine));
  return { root, staging: path.join(root, 'staging'), workerRoot };
}

/** All TASKS dropped at once; seconds from the drop to the last filed result. */
async function throughput(dir: string, repo: string, workers: number, env: NodeJS.ProcessEnv): Promise<{ seconds: number; perS: number }> {
  const ws = await workspace(dir, repo, 'bullmq');
  const host = await startHost(ws.root, env);
  const procs = await startWorkers(workers, ws.workerRoot, env);
  try {
    // A warm-up task: every worker process has started and cloned the repo before the clock runs.
    const warm = await stageTasks(ws.staging, 'warm', workers * 2);
    for (const n of warm) await fs.rename(path.join(ws.staging, n), path.join(ws.root, 'inbox', n));
    await waitUntil('the warm-up', () => host.results.length === warm.length, 300_000);
    const names = await stageTasks(ws.staging, `w${workers}`, TASKS);
    const before = host.results.length;
    const t0 = performance.now();
    for (const n of names) await fs.rename(path.join(ws.staging, n), path.join(ws.root, 'inbox', n));
    await waitUntil(`${TASKS} tasks on ${workers} workers`, () => host.results.length === before + TASKS, 600_000);
    const seconds = (host.results.at(-1)! - t0) / 1000;
    return { seconds, perS: TASKS / seconds };
  } finally {
    await Promise.all(procs.map(stopChild));
    await host.stop();
  }
}

/** One task at a time: ms from the drop to the filed result. */
async function serial(dir: string, repo: string, engine: 'local' | 'bullmq', env: NodeJS.ProcessEnv): Promise<Stats> {
  const ws = await workspace(dir, repo, engine);
  const host = await startHost(ws.root, env);
  const procs = engine === 'bullmq' ? await startWorkers(1, ws.workerRoot, env) : [];
  const samples: number[] = [];
  try {
    const names = await stageTasks(ws.staging, `s-${engine}`, SERIAL + 1);
    for (const [i, n] of names.entries()) {
      const before = host.results.length;
      const t0 = performance.now();
      await fs.rename(path.join(ws.staging, n), path.join(ws.root, 'inbox', n));
      await waitUntil('a serial task', () => host.results.length > before, 300_000);
      if (i > 0) samples.push(host.results.at(-1)! - t0); // the first one warms up (clone, compile)
      await sleep(50);
    }
    return stats(samples);
  } finally {
    await Promise.all(procs.map(stopChild));
    await host.stop();
  }
}

async function main(): Promise<void> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-bench-scaleout-'));
  const sock = path.join(dir, 'redis.sock');
  const redis = spawn(
    'redis-server',
    ['--port', '0', '--unixsocket', sock, '--save', '', '--appendonly', 'yes', '--dir', dir, '--maxmemory-policy', 'noeviction'],
    { stdio: 'ignore' },
  );
  try {
    await waitUntil('redis-server', () => existsSync(sock), 20_000);
    const env = { ...process.env, REDIS_URL: `unix://${sock}` };
    const repo = path.join(dir, 'repo');
    await makeTargetRepo(repo, 200);
    const started = new Date();
    const rows: string[] = [];
    for (const n of [1, 2, 4]) {
      progress(`throughput: ${TASKS} tasks, ${n} worker(s)`);
      const r = await throughput(dir, repo, n, env);
      rows.push(`| ${n} | ${TASKS} | ${r.seconds.toFixed(1)} | ${r.perS.toFixed(2)} |`);
    }
    progress(`serial: ${SERIAL} tasks one at a time, local`);
    const local = await serial(dir, repo, 'local', env);
    progress(`serial: ${SERIAL} tasks one at a time, bullmq (1 worker)`);
    const remote = await serial(dir, repo, 'bullmq', env);
    const load = os.loadavg()[0]!.toFixed(2);
    const text = [
      '## Scale-out: the BullMQ execution engine (issue 18)',
      '',
      '(BENCH_SCALEOUT_TASKS, BENCH_SCALEOUT_SERIAL: the counts.)',
      '',
      `Run on ${started.toISOString().replace(/\.\d+Z$/, 'Z')}: Node ${process.version}, ${os.cpus().length} CPU(s), ${os.type()} ${os.release()}, 1-minute load ${load} at the end.`,
      `A Debian redis-server on a unix socket; the folder host (\`watch\`, bench/noop-service.ts) and every worker`,
      '(bench/noop-worker.ts, concurrency 1) are processes on this one machine, sharing its cores. The engine does',
      'nothing: what is measured is the path around it (claim, ledger, job, git fetch + worktree in the worker, report,',
      `filing). Target repo: 200 files. See [scale-out.md](scale-out.md).`,
      '',
      '### Throughput',
      '',
      `${TASKS} tasks dropped at once into \`inbox/\` (after a warm-up of two tasks per worker); time from the drop to the last filed result.`,
      '',
      '| workers | tasks | seconds | tasks/s |',
      '|---|---|---|---|',
      ...rows,
      '',
      '### Per-task time, one task at a time',
      '',
      `${SERIAL} tasks, each dropped when the previous one was filed: ms from the drop to the filed result.`,
      '',
      '| path | p50 | p90 | max | mean |',
      '|---|---|---|---|---|',
      `| local (\`execution.engine: local\`) | ${fmt(local.p50, 0)} | ${fmt(local.p90, 0)} | ${fmt(local.max, 0)} | ${fmt(local.mean, 0)} |`,
      `| bullmq, 1 worker | ${fmt(remote.p50, 0)} | ${fmt(remote.p90, 0)} | ${fmt(remote.max, 0)} | ${fmt(remote.mean, 0)} |`,
      '',
      `Overhead of the BullMQ path per task at p50: ${fmt(remote.p50 - local.p50, 0)} ms (a git fetch of the remote, a job round trip through`,
      'Redis, the folder host polling the job every 100 ms, the bundle copied back).',
      '',
    ].join('\n');
    await writeBenchmarkSection('scaleout-bench', 'npx tsx bench/scaleout.ts', text);
    progress('wrote its section of docs/benchmarks.md');
  } finally {
    for (const c of children) c.kill('SIGKILL');
    redis.kill('SIGTERM');
    await sleep(500);
    await fs.rm(dir, { recursive: true, force: true });
  }
}

await main();
