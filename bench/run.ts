/**
 * The benchmark suite: `npm run bench` (tsx bench/run.ts). Writes docs/benchmarks.md.
 *
 *   1. fs.watch floor      rename into a watched folder -> the fs.watch event (200 drops)
 *   2. pickup latency      rename into inbox/ -> the claim rename into processing/, seen by an
 *                          independent fs.watch on processing/ in this process; the service
 *                          (no-op engine) runs in a child process (200 drops, one at a time)
 *   3. pipeline overhead   runTask with the no-op engine vs the bare git floor, on a generated
 *                          repo of 5,000+ committed files; tasks/min at concurrency 1 and 2
 *   4. burst               1,000 tasks into a real `meta-agent watch` child (command engine
 *                          run: ["true"]): total time, peak RSS (VmHWM), exactly-once checks
 *
 * Everything happens in one temp folder, removed at the end (also on Ctrl-C).
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { watch as fsWatch, promises as fs, readFileSync, type FSWatcher } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { runTask } from '../src/run/runTask.ts';
import { SERVICE_NODE_FLAGS } from '../src/workspace/launch.ts';
import { startWatching } from '../src/service/watch.ts';
import { silentLogger } from '../src/log.ts';
import { userPrompt } from '../src/engines/prompt.ts';
import { denyMatcher, scopeMatcher } from '../src/safety/globs.ts';
import { makeRedactor } from '../src/safety/redact.ts';
import {
  fmt,
  otherBenchmarkSections,
  makeBenchWorkspace,
  makeTargetRepo,
  mdFiles,
  NoopEngine,
  progress,
  sleep,
  stageTasks,
  stats,
  taskText,
  waitFor,
  type Stats,
} from './lib.ts';

const PKG_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** `--out <file>` writes the report elsewhere (default docs/benchmarks.md). */
const outIndex = process.argv.indexOf('--out');
const DOC = outIndex > 0 && process.argv[outIndex + 1] ? path.resolve(process.argv[outIndex + 1]!) : path.join(PKG_ROOT, 'docs', 'benchmarks.md');

const PICKUP_DROPS = 200;
const REPO_FILES = 5000;
const OVERHEAD_WARMUP = 1;
/** Up to this many measured pairs, as long as OVERHEAD_BUDGET_MS lasts (at least OVERHEAD_MIN_RUNS). */
const OVERHEAD_RUNS = 20;
const OVERHEAD_MIN_RUNS = 6;
const OVERHEAD_BUDGET_MS = 40_000;
/** Throughput batches: sized so concurrency 1 takes about this long (MIN..MAX tasks). */
const THROUGHPUT_TARGET_MS = 20_000;
const THROUGHPUT_MIN_TASKS = 6;
const THROUGHPUT_MAX_TASKS = 40;
const PROMPT_RUNS = 5;
const BURST_TASKS = 1000;
const SMALL_REPO_FILES = 20;
/** The shipped defaults, written into meta-agent.yaml explicitly. */
const SETTLE_MS = 1500;
const SCAN_MS = 2000;

const GOAL_PICKUP_P50_MS = 100;
const GOAL_OVERHEAD_RATIO = 1.5;
const GOAL_PEAK_RSS_MB = 200;

const children = new Set<ChildProcess>();
/** 1-minute load average at the start and end of each phase: this machine may be shared. */
const loads: Array<{ phase: string; start: number; end: number; seconds: number; createS: number | null }> = [];

/** Runs one phase, noting the load and (with `gauge`) the file-creation speed of the temp folder just before it. */
async function phase<T>(name: string, body: () => Promise<T>, gauge = false): Promise<T> {
  const createS = gauge ? (await fileSpeed(path.join(tmpRoot, `file-speed-${loads.length}`))).createS : null;
  const start = os.loadavg()[0]!;
  const t0 = performance.now();
  const result = await body();
  loads.push({ phase: name, start, end: os.loadavg()[0]!, seconds: (performance.now() - t0) / 1000, createS });
  return result;
}
let tmpRoot = '';

async function cleanup(): Promise<void> {
  for (const child of children) if (child.exitCode === null && child.signalCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
  children.clear();
  if (tmpRoot) await fs.rm(tmpRoot, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined);
  tmpRoot = '';
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    progress(`${signal}: cleaning up`);
    void cleanup().then(() => process.exit(130));
  });
}

/** Resolves with performance.now() when fs.watch reports `name` in the watched folder. */
class EventClock {
  private readonly waiting = new Map<string, (t: number) => void>();
  private readonly seen = new Map<string, number>();
  private readonly watcher: FSWatcher;

  constructor(dir: string) {
    this.watcher = fsWatch(dir, (_event, filename) => {
      const t = performance.now();
      if (!filename) return;
      const name = filename.toString();
      if (this.seen.has(name)) return;
      this.seen.set(name, t);
      this.waiting.get(name)?.(t);
      this.waiting.delete(name);
    });
  }

  /** Call before the action that makes `name` appear. */
  expect(name: string, timeoutMs: number): Promise<number | null> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(name);
        resolve(null);
      }, timeoutMs);
      this.waiting.set(name, (t) => {
        clearTimeout(timer);
        resolve(t);
      });
    });
  }

  close(): void {
    this.watcher.close();
  }
}

// --- 1. the fs.watch floor ------------------------------------------------------------------

async function measureFloor(dir: string): Promise<{ stats: Stats; missed: number }> {
  const watched = path.join(dir, 'watched');
  const staging = path.join(dir, 'staging');
  await fs.mkdir(watched, { recursive: true });
  const names = await stageTasks(staging, 'floor', PICKUP_DROPS);
  const clock = new EventClock(watched);
  const samples: number[] = [];
  let missed = 0;
  try {
    for (const name of names) {
      const event = clock.expect(name, 5000);
      const t0 = performance.now();
      await fs.rename(path.join(staging, name), path.join(watched, name));
      const t1 = await event;
      if (t1 === null) missed++;
      else samples.push(t1 - t0);
      await sleep(10);
    }
  } finally {
    clock.close();
  }
  return { stats: stats(samples), missed };
}

// --- 2. pickup latency --------------------------------------------------------------------------

interface PickupResult {
  claim: Stats;
  done: Stats;
  missed: number;
  failed: number;
}

async function measurePickup(dir: string, repo: string): Promise<PickupResult> {
  const ws = await makeBenchWorkspace(dir, repo, { concurrency: 2, settleMs: SETTLE_MS, scanMs: SCAN_MS });
  const { layout } = ws.settings;
  const names = await stageTasks(ws.staging, 'pickup', PICKUP_DROPS);
  const child = fork(path.join(PKG_ROOT, 'bench', 'noop-service.ts'), [ws.root], {
    cwd: PKG_ROOT,
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.add(child);
  const results = new Map<string, { status: string; error: string | null }>();
  const resultWaiters = new Map<string, () => void>();
  let ready = false;
  child.on('message', (m: { type: string; task_id?: string; status?: string; error?: string | null }) => {
    if (m.type === 'ready') ready = true;
    if (m.type === 'result' && m.task_id) {
      results.set(m.task_id, { status: m.status ?? '?', error: m.error ?? null });
      resultWaiters.get(m.task_id)?.();
    }
  });
  await waitFor(() => ready || child.exitCode !== null, 60_000, 'the no-op service to start');
  if (!ready) throw new Error(`the no-op service exited with ${child.exitCode}`);
  const claims = new EventClock(layout.processing);
  const dones = new EventClock(layout.done);
  const claimMs: number[] = [];
  const doneMs: number[] = [];
  let missed = 0;
  try {
    for (const [i, name] of names.entries()) {
      const id = name.replace(/\.md$/, '');
      const claimed = claims.expect(name, 10_000);
      const done = dones.expect(name, 30_000);
      const finished = new Promise<void>((resolve) => resultWaiters.set(id, resolve));
      const t0 = performance.now();
      await fs.rename(path.join(ws.staging, name), path.join(layout.inbox, name));
      const tClaim = await claimed;
      const tDone = await done;
      if (tClaim === null) missed++;
      else claimMs.push(tClaim - t0);
      if (tDone !== null) doneMs.push(tDone - t0);
      // The run is over (report written, file moved, lease released): the next drop finds an idle service.
      await Promise.race([finished, sleep(30_000)]);
      resultWaiters.delete(id);
      await sleep(20);
      if ((i + 1) % 50 === 0) progress(`pickup: ${i + 1}/${names.length} drops, claim p50 so far ${fmt(stats(claimMs).p50)} ms`);
    }
  } finally {
    claims.close();
    dones.close();
    child.send({ type: 'stop' });
    await new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)));
    children.delete(child);
  }
  const failed = [...results.values()].filter((r) => r.status !== 'ok').length + (names.length - results.size);
  if (failed) progress(`pickup: ${failed} task(s) did not finish ok: ${[...results.values()].find((r) => r.status !== 'ok')?.error ?? 'no result'}`);
  return { claim: stats(claimMs), done: stats(doneMs), missed, failed };
}

// --- 3. pipeline overhead and throughput ------------------------------------------------------

interface OverheadResult {
  repoFiles: number;
  floor: Stats;
  pipeline: Stats;
  beforeEngine: Stats;
  afterEngine: Stats;
  ratioP50: number;
  ratioMean: number;
  prompt: Stats;
  /** runTask minus the floor of the same pair: the absolute extra time per task. */
  extra: Stats;
  budgetCut: boolean;
  throughput: Array<{ concurrency: number; tasks: number; seconds: number; perMinute: number; failed: number }>;
}

async function gitFloorOnce(repo: string, dir: string): Promise<number> {
  const t0 = performance.now();
  await execa('git', ['worktree', 'add', '--detach', '--quiet', dir, 'HEAD'], { cwd: repo });
  await execa('git', ['diff'], { cwd: dir });
  await execa('git', ['worktree', 'remove', dir], { cwd: repo });
  return performance.now() - t0;
}

async function measureOverhead(dir: string, repo: string): Promise<OverheadResult> {
  const ws = await makeBenchWorkspace(dir, repo, { concurrency: 1, settleMs: SETTLE_MS, scanMs: SCAN_MS });
  const repoFiles = (await execa('git', ['ls-files'], { cwd: repo })).stdout.split('\n').filter(Boolean).length;
  const floorDir = path.join(dir, 'floor-worktrees');
  await fs.mkdir(floorDir, { recursive: true });
  const engine = new NoopEngine();
  const log = silentLogger();
  const names = await stageTasks(ws.staging, 'overhead', OVERHEAD_WARMUP + OVERHEAD_RUNS);
  let budgetCut = false;
  let tBudget = 0;
  const floor: number[] = [];
  const pipeline: number[] = [];
  const before: number[] = [];
  const after: number[] = [];
  // Interleaved (floor, pipeline, floor, ...) so that cache and clock drift hit both alike.
  for (const [i, name] of names.entries()) {
    if (i === OVERHEAD_WARMUP) tBudget = performance.now() + OVERHEAD_BUDGET_MS;
    if (i >= OVERHEAD_WARMUP + OVERHEAD_MIN_RUNS && performance.now() > tBudget) {
      budgetCut = true;
      progress(`overhead: time budget used up after ${floor.length} pairs`);
      break;
    }
    const floorMs = await gitFloorOnce(repo, path.join(floorDir, `wt-${i}`));
    const inboxFile = path.join(ws.settings.layout.inbox, name);
    await fs.rename(path.join(ws.staging, name), inboxFile);
    const t0 = performance.now();
    const result = await runTask(inboxFile, { settings: ws.settings, log, engine });
    const t1 = performance.now();
    if (result.status !== 'ok') throw new Error(`overhead: ${name} did not run ok: ${result.report.error?.message}`);
    const tEngine = engine.calls.at(-1)!;
    if (i < OVERHEAD_WARMUP) continue;
    floor.push(floorMs);
    pipeline.push(t1 - t0);
    before.push(tEngine - t0);
    after.push(t1 - tEngine);
    if ((i + 1 - OVERHEAD_WARMUP) % 5 === 0)
      progress(
        `overhead: ${i + 1 - OVERHEAD_WARMUP}/${OVERHEAD_RUNS} pairs (floor p50 ${fmt(stats(floor).p50)} ms, pipeline p50 ${fmt(stats(pipeline).p50)} ms)`,
      );
  }
  const floorStats = stats(floor);
  const pipelineStats = stats(pipeline);

  // Diagnostic: the prompt (with its repo map) alone, which runTask builds before calling any engine.
  const promptTree = path.join(floorDir, 'prompt');
  await execa('git', ['worktree', 'add', '--detach', '--quiet', promptTree, 'HEAD'], { cwd: repo });
  const promptMs: number[] = [];
  try {
    const project = ws.settings.projects.bench!;
    const denied = denyMatcher([...project.deny, ...ws.settings.config.patch.protected]);
    const inScope = scopeMatcher([], project.scope);
    const redact = makeRedactor(ws.settings.env);
    const { parseTask } = await import('../src/contract/task.ts');
    const task = parseTask(taskText(0), 'prompt.md');
    for (let i = 0; i < PROMPT_RUNS + 1; i++) {
      const t0 = performance.now();
      await userPrompt({ task, worktree: promptTree, scopeGlobs: task.scope, denied, inScope, redact });
      if (i > 0) promptMs.push(performance.now() - t0);
    }
  } finally {
    await execa('git', ['worktree', 'remove', '--force', promptTree], { cwd: repo });
  }
  progress(`overhead: building the prompt alone takes p50 ${fmt(stats(promptMs).p50, 0)} ms on this repo`);

  const throughput: OverheadResult['throughput'] = [];
  const batchSize = Math.max(THROUGHPUT_MIN_TASKS, Math.min(THROUGHPUT_MAX_TASKS, Math.floor(THROUGHPUT_TARGET_MS / pipelineStats.p50)));
  for (const concurrency of [1, 2]) {
    const settings = await ws.configure({ concurrency, settleMs: SETTLE_MS, scanMs: SCAN_MS });
    const batch = await stageTasks(ws.staging, `tput-c${concurrency}`, batchSize);
    let okCount = 0;
    let failed = 0;
    let tLast = 0;
    const watcher = startWatching({
      settings,
      log,
      engine,
      usePolling: false,
      onResult: (r) => {
        if (r.status === 'ok') okCount++;
        else failed++;
        tLast = performance.now();
      },
    });
    await watcher.ready;
    const t0 = performance.now();
    for (const name of batch) await fs.rename(path.join(ws.staging, name), path.join(settings.layout.inbox, name));
    await waitFor(() => okCount + failed >= batch.length, 180_000, `${batch.length} tasks at concurrency ${concurrency}`);
    await watcher.stop();
    const seconds = (tLast - t0) / 1000;
    throughput.push({ concurrency, tasks: batch.length, seconds, perMinute: (batch.length / seconds) * 60, failed });
    progress(
      `throughput: concurrency ${concurrency}: ${batch.length} tasks in ${seconds.toFixed(1)} s = ${((batch.length / seconds) * 60).toFixed(0)} tasks/min`,
    );
  }
  return {
    repoFiles,
    floor: floorStats,
    pipeline: pipelineStats,
    beforeEngine: stats(before),
    afterEngine: stats(after),
    ratioP50: pipelineStats.p50 / floorStats.p50,
    ratioMean: pipelineStats.mean / floorStats.mean,
    prompt: stats(promptMs),
    extra: stats(pipeline.map((p, i) => p - floor[i]!)),
    budgetCut,
    throughput,
  };
}

// --- 4. the burst ---------------------------------------------------------------------------------

interface BurstResult {
  tasks: number;
  concurrency: number;
  seconds: number;
  perMinute: number;
  firstResultMs: number;
  baselineRssMb: number;
  peakRssMb: number;
  sampledPeakRssMb: number;
  checks: Array<{ what: string; expected: string; actual: string; ok: boolean }>;
  exitCode: number | null;
  lostClaims: number;
  errors: string[];
}

function procStatusKb(pid: number, field: 'VmRSS' | 'VmHWM'): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

async function measureBurst(dir: string, repo: string): Promise<BurstResult> {
  const concurrency = 2;
  const ws = await makeBenchWorkspace(dir, repo, { concurrency, settleMs: SETTLE_MS, scanMs: SCAN_MS, commandTrue: true });
  const { layout } = ws.settings;
  const names = await stageTasks(ws.staging, 'burst', BURST_TASKS);
  const child = spawn(process.execPath, [...SERVICE_NODE_FLAGS, path.join(PKG_ROOT, 'bin', 'meta-agent.js'), '--root', ws.root, 'watch'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH, HOME: process.env.HOME, LANG: process.env.LANG ?? 'C.UTF-8' },
  });
  children.add(child);
  const pid = child.pid!;
  const resultLines: Array<{ id: string; status: string }> = [];
  let ready = false;
  let tFirst = 0;
  let tLast = 0;
  let stderr = '';
  let buffered = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const line of lines) {
      if (line.startsWith('watching ')) ready = true;
      const m = /^(\S+): (OK|ERROR) \(/.exec(line);
      if (m) {
        resultLines.push({ id: m[1]!, status: m[2]! });
        tLast = performance.now();
        if (resultLines.length === 1) tFirst = tLast;
        if (resultLines.length % 100 === 0) progress(`burst: ${resultLines.length}/${names.length} reported`);
      }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-4000)));
  await waitFor(() => ready || child.exitCode !== null, 60_000, '`meta-agent watch` to start');
  if (!ready) throw new Error(`meta-agent watch exited with ${child.exitCode}: ${stderr}`);
  const baselineKb = procStatusKb(pid, 'VmRSS') ?? 0;
  let sampledPeakKb = baselineKb;
  const sampler = setInterval(() => {
    const kb = procStatusKb(pid, 'VmRSS');
    if (kb !== null && kb > sampledPeakKb) sampledPeakKb = kb;
  }, 50);
  const t0 = performance.now();
  for (const name of names) await fs.rename(path.join(ws.staging, name), path.join(layout.inbox, name));
  progress(`burst: ${names.length} tasks renamed into inbox/ in ${(performance.now() - t0).toFixed(0)} ms`);
  try {
    await waitFor(() => resultLines.length >= names.length || child.exitCode !== null, 200_000, `${names.length} burst results`);
  } finally {
    clearInterval(sampler);
  }
  // Anything extra (a duplicate run) would show up within a scan interval or two.
  await sleep(SCAN_MS + 500);
  const peakKb = procStatusKb(pid, 'VmHWM') ?? 0;
  child.kill('SIGTERM');
  const exitCode = await new Promise<number | null>((resolve) =>
    child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', (code) => resolve(code)),
  );
  children.delete(child);

  // Exactly once: every dropped name in done/, one report each, one run each in the ledger.
  const expected = new Set(names.map((n) => n.replace(/\.md$/, '')));
  const done = await mdFiles(layout.done);
  const doneIds = new Set(done.map((n) => n.replace(/\.md$/, '')));
  const reports = (await fs.readdir(layout.reports)).filter((n) => n.endsWith('.json'));
  let reportOk = 0;
  const reportIds = new Set<string>();
  const errors: string[] = [];
  for (const r of reports) {
    const report = JSON.parse(await fs.readFile(path.join(layout.reports, r), 'utf8')) as {
      task_id: string;
      status: string;
      error: { kind: string; message: string } | null;
    };
    reportIds.add(report.task_id);
    if (report.status === 'ok') reportOk++;
    else errors.push(`${report.task_id}: (${report.error?.kind}) ${report.error?.message.replace(/\s+/g, ' ').replaceAll(tmpRoot, '<tmp>')}`);
  }
  const ledgerDir = path.join(layout.state, 'ledger');
  const ledger = (await fs.readdir(ledgerDir).catch(() => [] as string[])).filter((n) => n.endsWith('.json'));
  let runs = 0;
  let multiRun = 0;
  let unfinalized = 0;
  for (const l of ledger) {
    const entry = JSON.parse(await fs.readFile(path.join(ledgerDir, l), 'utf8')) as { runs: Array<{ finalized_at?: string }> };
    runs += entry.runs.length;
    if (entry.runs.length !== 1) multiRun++;
    if (entry.runs.some((r) => !r.finalized_at)) unfinalized++;
  }
  const archived = await fs.readdir(layout.reportArchive).catch(() => [] as string[]);
  // Claims that lost the rename (the service queued a name twice, or another worker took it): debug lines in the log.
  let lostClaims = 0;
  for (const f of await fs.readdir(layout.logs).catch(() => [] as string[])) {
    if (f.endsWith('.log')) lostClaims += (await fs.readFile(path.join(layout.logs, f), 'utf8')).split('is no longer in inbox/').length - 1;
  }
  const resultIds = resultLines.map((r) => r.id);
  const same = (a: Set<string>) => a.size === expected.size && [...expected].every((id) => a.has(id));
  const n = String(names.length);
  const checks: BurstResult['checks'] = [
    { what: 'result lines printed by the service', expected: n, actual: String(resultLines.length), ok: resultLines.length === names.length },
    { what: 'distinct task ids among them', expected: n, actual: String(new Set(resultIds).size), ok: new Set(resultIds).size === names.length },
    {
      what: 'results with status OK',
      expected: n,
      actual: String(resultLines.filter((r) => r.status === 'OK').length),
      ok: resultLines.every((r) => r.status === 'OK'),
    },
    { what: 'files in done/ (exactly the dropped names)', expected: n, actual: String(done.length), ok: done.length === names.length && same(doneIds) },
    {
      what: 'reports (reports/*.json), distinct ids, status ok',
      expected: n,
      actual: `${reports.length} / ${reportIds.size} / ${reportOk}`,
      ok: reports.length === names.length && same(reportIds) && reportOk === names.length,
    },
    { what: 'earlier runs archived (reports/archive/)', expected: '0', actual: String(archived.length), ok: archived.length === 0 },
    {
      what: 'ledger entries / runs recorded / entries with more than one run',
      expected: `${n} / ${n} / 0`,
      actual: `${ledger.length} / ${runs} / ${multiRun}`,
      ok: ledger.length === names.length && runs === names.length && multiRun === 0 && unfinalized === 0,
    },
    {
      what: 'left in inbox/, processing/, failed/',
      expected: '0 / 0 / 0',
      actual: `${(await mdFiles(layout.inbox)).length} / ${(await mdFiles(layout.processing)).length} / ${(await mdFiles(layout.failed)).length}`,
      ok: false,
    },
  ];
  const last = checks[checks.length - 1]!;
  last.ok = last.actual === last.expected;
  const seconds = (tLast - t0) / 1000;
  return {
    tasks: names.length,
    concurrency,
    seconds,
    perMinute: (names.length / seconds) * 60,
    firstResultMs: tFirst - t0,
    baselineRssMb: (baselineKb * 1024) / 1e6,
    peakRssMb: (peakKb * 1024) / 1e6,
    sampledPeakRssMb: (sampledPeakKb * 1024) / 1e6,
    checks,
    exitCode,
    lostClaims,
    errors,
  };
}

// --- the report -------------------------------------------------------------------------------------

const met = (ok: boolean) => (ok ? '**met**' : '**not met**');
const fmtAuto = (ms: number) => fmt(ms, ms < 10 ? 2 : 1);
const statRow = (label: string, s: Stats) =>
  `| ${label} | ${s.n} | ${fmtAuto(s.p50)} | ${fmtAuto(s.p90)} | ${fmtAuto(s.p99)} | ${fmtAuto(s.min)} | ${fmtAuto(s.max)} | ${fmtAuto(s.mean)} |`;
const STAT_HEAD = ['| | n | p50 (ms) | p90 (ms) | p99 (ms) | min (ms) | max (ms) | mean (ms) |', '|---|---|---|---|---|---|---|---|'];

/** Creating and removing 5,000 small files in the temp folder: the file-system speed every git number here rests on. */
async function fileSpeed(dir: string): Promise<{ createS: number; removeS: number }> {
  const t0 = performance.now();
  for (let d = 0; d < 50; d++) {
    const sub = path.join(dir, `d${d}`);
    await fs.mkdir(sub, { recursive: true });
    await Promise.all(Array.from({ length: 100 }, (_, i) => fs.writeFile(path.join(sub, `f${i}.py`), `x = ${i}\n`)));
  }
  const t1 = performance.now();
  await fs.rm(dir, { recursive: true, force: true });
  return { createS: (t1 - t0) / 1000, removeS: (performance.now() - t1) / 1000 };
}

async function machine(): Promise<string[]> {
  const cpus = os.cpus();
  const gitVersion = (await execa('git', ['--version']).catch(() => ({ stdout: 'git ?' }))).stdout.trim();
  const fsType = (await execa('df', ['-T', os.tmpdir()]).catch(() => ({ stdout: '' }))).stdout.split('\n')[1]?.split(/\s+/)[1] ?? '?';
  return [
    `- Node ${process.version} (${process.arch}), ${gitVersion}`,
    `- ${cpus.length} CPU(s): ${cpus[0]?.model.trim() ?? '?'}`,
    `- ${os.type()} ${os.release()} (${os.platform()}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM`,
    `- Temp folder ${os.tmpdir()} on ${fsType}`,
  ];
}

function reproduceCommand(): string {
  return `${process.env.TMPDIR ? `TMPDIR=${process.env.TMPDIR} ` : ''}npm run bench${DOC === path.join(PKG_ROOT, 'docs', 'benchmarks.md') ? '' : ` -- --out ${path.relative(PKG_ROOT, DOC)}`}`;
}

function render(
  info: string[],
  totalS: number,
  floor: Awaited<ReturnType<typeof measureFloor>>,
  pickup: PickupResult,
  overhead: OverheadResult,
  burst: BurstResult,
): string {
  const pickupMet = pickup.claim.p50 < GOAL_PICKUP_P50_MS && pickup.missed === 0;
  const overheadMet = overhead.ratioP50 <= GOAL_OVERHEAD_RATIO;
  const rssMet = burst.peakRssMb < GOAL_PEAK_RSS_MB;
  const onceMet = burst.checks.every((c) => c.ok);
  const L: string[] = [];
  L.push('# Benchmarks', '');
  L.push('<!-- Generated by `npm run bench` (bench/run.ts); do not edit by hand. -->', '');
  L.push(`Run on ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}; the whole suite took ${totalS.toFixed(0)} s.`, '');
  L.push('## Machine', '', ...info, '');
  L.push(
    'The conditions while the suite ran: the 1-minute load average, and the time to create 5,000 small files (50',
    'folders of 100, with Node) in the temp folder before the git-heavy phases, as a rough gauge of the file system.',
    'On a shared or virtual machine the speed of file-heavy work (git worktree add writes 5,000 files and reads',
    '5,000 objects) can change several-fold from one minute to the next, and not always in step with these two',
    'gauges; that is why the git floor and the pipeline are measured interleaved and compared as a ratio, and why',
    'the absolute extra time per task is given as well.',
    '',
    '| phase | seconds | load at start | load at end | 5,000-file create before it (s) |',
    '|---|---|---|---|---|',
    ...loads.map(
      (l) => `| ${l.phase} | ${l.seconds.toFixed(0)} | ${l.start.toFixed(2)} | ${l.end.toFixed(2)} | ${l.createS === null ? '' : l.createS.toFixed(2)} |`,
    ),
    '',
  );
  L.push('## Reproduce', '', '```sh', 'npm ci', `${reproduceCommand()}        # = tsx bench/run.ts; writes ${path.relative(PKG_ROOT, DOC)}`, '```', '');
  L.push(
    'Everything runs in one temp folder that is removed at the end; no network. The workspaces use the shipped queue',
    `defaults, written out in meta-agent.yaml: \`queue.settle_ms: ${SETTLE_MS}\`, \`queue.scan_interval_ms: ${SCAN_MS}\`, \`queue.poll: false\`.`,
    'Task files have an empty scope and are written into a staging folder on the same volume first (mtime in the',
    'past, like `createTask`), then published with one `rename()` into `inbox/`, so the service takes them at once',
    '(`settle_ms` only applies to files still being copied in).',
    '',
  );
  L.push('## Summary', '', '| Goal | Result | |', '|---|---|---|');
  L.push(
    `| Pickup p50 under ${GOAL_PICKUP_P50_MS} ms (renamed-in files) | p50 ${fmt(pickup.claim.p50)} ms, p99 ${fmt(pickup.claim.p99)} ms (fs.watch floor p50 ${fmt(floor.stats.p50, 2)} ms) | ${met(pickupMet)} |`,
  );
  L.push(
    `| Pipeline overhead within ${GOAL_OVERHEAD_RATIO}x the git floor (${overhead.repoFiles} files) | ${overhead.ratioP50.toFixed(2)}x at p50 (${fmt(overhead.pipeline.p50, 0)} ms vs ${fmt(overhead.floor.p50, 0)} ms) | ${met(overheadMet)} |`,
  );
  L.push(`| Peak RSS under ${GOAL_PEAK_RSS_MB} MB for a burst of ${burst.tasks} | ${burst.peakRssMb.toFixed(1)} MB (VmHWM) | ${met(rssMet)} |`);
  L.push(`| Every burst task processed exactly once | ${burst.checks.filter((c) => c.ok).length}/${burst.checks.length} checks pass | ${met(onceMet)} |`);
  L.push('');

  L.push('## 1. Pickup latency', '');
  L.push(
    `${PICKUP_DROPS} drops, one at a time: each task file is renamed into \`inbox/\`, and the next one is dropped only after`,
    'the previous run finished (report written, file in `done/`), plus 20 ms; so this is the latency of an idle service.',
    '',
    '- **fs.watch floor**: in this process, `fs.watch` on a plain folder; time from just before `rename()` into it to',
    '  the event. The least any watcher-based service can do on this machine.',
    '- **claim**: time from just before `rename()` into `inbox/` until the task file appears in `processing/` (the',
    "  claim is the service's own atomic rename). The service (`startWatching` with the no-op engine) runs in a",
    '  child process (`bench/noop-service.ts`); the claim is seen by an independent `fs.watch` on `processing/` in',
    '  the benchmark process, so it is the real rename time, not a time the service reports about itself, and it',
    '  does not include worktree creation (that comes after the claim).',
    '- **drop to done**: from the same start until the file appears in `done/`: the whole run on a',
    `  ${SMALL_REPO_FILES}-file repo (claim, lease, ledger, worktree, no-op engine, diff, report, move).`,
    '',
  );
  L.push(...STAT_HEAD);
  L.push(statRow('fs.watch floor', floor.stats));
  L.push(statRow('claim (inbox/ -> processing/)', pickup.claim));
  L.push(statRow('drop to done/', pickup.done));
  L.push('');
  L.push(`Drops whose claim was not seen within 10 s: ${pickup.missed} (floor: ${floor.missed}). Tasks that did not finish ok: ${pickup.failed}.`, '');
  L.push(
    `Goal: claim p50 under ${GOAL_PICKUP_P50_MS} ms: ${met(pickupMet)} (p50 ${fmt(pickup.claim.p50)} ms, ${(pickup.claim.p50 / floor.stats.p50).toFixed(0)}x the floor; p99 ${fmt(pickup.claim.p99)} ms).`,
    '',
  );

  L.push('## 2. Pipeline overhead per task', '');
  L.push(
    `Target repo: ${overhead.repoFiles} small committed files (generated, ${REPO_FILES / 100} folders of 100). ${overhead.floor.n} measured pairs after ${OVERHEAD_WARMUP} warm-up pair(s),`,
    'interleaved (floor, run, floor, run, ...), sequential, in this process.',
    '',
    '- **git floor**: the least a worktree-based run must do, timed with execa: `git worktree add --detach --quiet <dir> HEAD`,',
    '  `git diff` in it, `git worktree remove <dir>`.',
    '- **runTask (no-op engine)**: `runTask(file, {settings, engine})` on a file in `inbox/`, from call to return:',
    '  claim, lease, ledger, task parsing, worktree, prompt (repo map), the engine (returns at once), diff',
    '  (`git add --all` + `git diff --cached`), report, move to `done/`, worktree removal.',
    "- **before / after engine**: the same runs split at the moment the no-op engine's `run()` is called.",
    '',
  );
  L.push(...STAT_HEAD);
  L.push(statRow('git floor', overhead.floor));
  L.push(statRow('runTask (no-op engine)', overhead.pipeline));
  L.push(statRow('  of which before the engine', overhead.beforeEngine));
  L.push(statRow('  of which after the engine', overhead.afterEngine));
  L.push(statRow('diagnostic: building the prompt alone', overhead.prompt));
  L.push('');
  L.push(
    'The last row is `userPrompt()` (system rules, task, repo map) called on its own on a fresh worktree of the same',
    `repo, ${overhead.prompt.n} times: runTask builds the prompt before it calls any engine, so it is part of "before the engine".`,
    '',
  );
  if (overhead.budgetCut)
    L.push(`(The ${OVERHEAD_BUDGET_MS / 1000} s time budget of this section ran out, so it has ${overhead.floor.n} pairs instead of ${OVERHEAD_RUNS}.)`, '');
  L.push(
    `Ratio runTask / git floor: **${overhead.ratioP50.toFixed(2)}x** at p50 (${overhead.ratioMean.toFixed(2)}x on means). In absolute terms, runTask minus`,
    `the floor of the same pair: p50 ${fmt(overhead.extra.p50, 0)} ms (min ${fmt(overhead.extra.min, 0)}, max ${fmt(overhead.extra.max, 0)} ms); this part depends much less on the file-system speed`,
    'than the floor does, so on a machine where the floor is fast the ratio is higher.',
    '',
  );
  L.push(`Goal: within ${GOAL_OVERHEAD_RATIO}x the git floor: ${met(overheadMet)}.`, '');
  L.push('### Throughput (no-op engine, same repo)', '');
  L.push(
    'A batch of tasks renamed into `inbox/` at once, in-process `startWatching` (no-op engine) with `limits.concurrency`',
    `set in meta-agent.yaml; time from the first rename to the last result. The batch size is chosen from the`,
    `runTask p50 above so that concurrency 1 takes about ${THROUGHPUT_TARGET_MS / 1000} s (${THROUGHPUT_MIN_TASKS} to ${THROUGHPUT_MAX_TASKS} tasks); both concurrencies get the same size.`,
    '',
    '| limits.concurrency | tasks | seconds | tasks/min | not ok |',
    '|---|---|---|---|---|',
    ...overhead.throughput.map((t) => `| ${t.concurrency} | ${t.tasks} | ${t.seconds.toFixed(1)} | ${t.perMinute.toFixed(0)} | ${t.failed} |`),
    '',
  );
  if (overhead.throughput.length === 2) {
    L.push(
      `Concurrency 2 gives ${(overhead.throughput[1]!.perMinute / overhead.throughput[0]!.perMinute).toFixed(2)}x the rate of concurrency 1 on ${os.cpus().length} CPU(s). No goal was set for this.`,
      '',
    );
  }

  L.push(`## 3. Burst of ${burst.tasks} tasks`, '');
  L.push(
    `The real service as a child process, started as \`npm start\` starts it: \`node ${SERVICE_NODE_FLAGS.join(' ')} bin/meta-agent.js --root <ws> watch\` with \`engine: command\`,`,
    `\`command.run: ["true"]\`, \`limits.concurrency: ${burst.concurrency}\`, on a ${SMALL_REPO_FILES}-file repo. All ${burst.tasks} task files are renamed into`,
    '`inbox/` in one loop; the time runs from the first rename to the last result line the service prints.',
    '',
    "- **peak RSS**: `VmHWM` of the service process from `/proc/<pid>/status` after the burst (the kernel's high-water",
    "  mark of resident memory over the process's life). The git and `true` children it spawns are separate",
    '  processes and not included. Also shown: RSS right after start-up, and the peak of `VmRSS` sampled every 50 ms.',
    '',
    '| | value |',
    '|---|---|',
    `| tasks | ${burst.tasks} |`,
    `| total time | ${burst.seconds.toFixed(1)} s |`,
    `| rate | ${burst.perMinute.toFixed(0)} tasks/min |`,
    `| first result after | ${fmt(burst.firstResultMs, 0)} ms |`,
    `| RSS after start-up | ${burst.baselineRssMb.toFixed(1)} MB |`,
    `| peak RSS, sampled VmRSS every 50 ms | ${burst.sampledPeakRssMb.toFixed(1)} MB |`,
    `| **peak RSS (VmHWM)** | **${burst.peakRssMb.toFixed(1)} MB** |`,
    `| service exit code after SIGTERM | ${burst.exitCode ?? 'signal'} |`,
    '',
    `Goal: peak RSS under ${GOAL_PEAK_RSS_MB} MB: ${met(rssMet)}. (MB = 10^6 bytes.)`,
    '',
    '### Exactly once',
    '',
    '| check | expected | actual | |',
    '|---|---|---|---|',
    ...burst.checks.map((c) => `| ${c.what} | ${c.expected} | ${c.actual} | ${c.ok ? 'ok' : '**FAIL**'} |`),
    '',
    `Every task processed exactly once: ${met(onceMet)}.`,
    '',
    ...(burst.errors.length
      ? [
          `Runs that ended in an error (${burst.errors.length}; at most 5 shown):`,
          '',
          ...burst.errors.slice(0, 5).map((e) => `- ${e.replaceAll('|', '\\|')}`),
          '',
        ]
      : []),
    `Claim attempts that lost the rename race (log lines "is no longer in inbox/"; a second queue entry for a name`,
    `already claimed, harmless for exactly-once because the claim is one atomic rename): ${burst.lostClaims}.`,
    '',
  );
  return L.join('\n');
}

async function main(): Promise<void> {
  const tStart = performance.now();
  tmpRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-bench-'));
  progress(`temp folder ${tmpRoot}`);
  try {
    const info = await machine();
    progress(`1/4 fs.watch floor: ${PICKUP_DROPS} renames`);
    const floor = await phase('1. fs.watch floor', () => measureFloor(path.join(tmpRoot, 'floor')));
    progress(`floor: p50 ${fmt(floor.stats.p50, 2)} ms, p99 ${fmt(floor.stats.p99, 2)} ms`);

    const smallRepo = path.join(tmpRoot, 'small-repo');
    await makeTargetRepo(smallRepo, SMALL_REPO_FILES);
    progress(`2/4 pickup latency: ${PICKUP_DROPS} drops into a no-op service (child process)`);
    const pickup = await phase('1. pickup latency', () => measurePickup(path.join(tmpRoot, 'ws-pickup'), smallRepo));
    progress(`pickup: claim p50 ${fmt(pickup.claim.p50)} ms, p99 ${fmt(pickup.claim.p99)} ms; drop to done p50 ${fmt(pickup.done.p50)} ms`);

    progress(`3/4 pipeline overhead: generating a repo of ${REPO_FILES} files`);
    const bigRepo = path.join(tmpRoot, 'big-repo');
    await phase('2. generating the 5,000-file repo', () => makeTargetRepo(bigRepo, REPO_FILES));
    const overhead = await phase('2. overhead + throughput', () => measureOverhead(path.join(tmpRoot, 'ws-overhead'), bigRepo), true);
    progress(`overhead: runTask p50 ${fmt(overhead.pipeline.p50, 0)} ms vs git floor p50 ${fmt(overhead.floor.p50, 0)} ms = ${overhead.ratioP50.toFixed(2)}x`);

    progress(`4/4 burst: ${BURST_TASKS} tasks into \`meta-agent watch\` (child process)`);
    const burst = await phase('3. burst', () => measureBurst(path.join(tmpRoot, 'ws-burst'), smallRepo), true);
    progress(
      `burst: ${burst.tasks} tasks in ${burst.seconds.toFixed(1)} s, peak RSS ${burst.peakRssMb.toFixed(1)} MB; exactly-once checks ${burst.checks.every((c) => c.ok) ? 'pass' : 'FAIL'}`,
    );

    const totalS = (performance.now() - tStart) / 1000;
    await fs.mkdir(path.dirname(DOC), { recursive: true });
    const kept = await otherBenchmarkSections();
    await fs.writeFile(DOC, `${render(info, totalS, floor, pickup, overhead, burst).trimEnd()}\n${kept ? `\n${kept}\n` : ''}`);
    progress(`wrote ${path.relative(process.cwd(), DOC) || DOC} (${totalS.toFixed(0)} s in all)`);
  } finally {
    await cleanup();
  }
}

main().catch(async (error) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  await cleanup();
  process.exit(1);
});
