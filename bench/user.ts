/**
 * What a user meets (issue 19): `npm run bench:user` (tsx bench/user.ts). Writes its section
 * of docs/benchmarks.md (between the user-bench markers).
 *
 * Two real `meta-agent watch` services side by side, each in its own workspace on the same
 * generated target repo, both with `engine: command`, `command.run: ["true"]` and their own
 * shipped queue defaults:
 *   - "today": the code at --baseline (default: the commit this work started from),
 *     extracted with `git archive` into the temp folder;
 *   - "now": this checkout.
 * Interleaved in one loop, one drop at a time each: a task file written with a fresh mtime
 * and renamed into inbox/ (rename -> report: until reports/<id>.json appears), then the git
 * floors on the same repo: a fresh worktree (`worktree add` + `add --all` + `diff --cached` +
 * `worktree remove`) and a reused one (`reset --hard` + `clean -ffdx` + `add --all` + `diff
 * --cached`). Then files copied in 3 chunks (last chunk -> report), and a burst of 1,000
 * renamed-in tasks into "now" (peak RSS, exactly once, CPU per task). Spawns and CPU are
 * counted inside each service by a preload (bench/countSpawns.mjs), start-up excluded.
 *
 *   node --import tsx bench/user.ts [--files 5000,50000] [--drops 10] [--burst 1000] [--heap-cap] [--baseline <ref>]
 * (--heap-cap: a second burst with node's default heap sizes, to compare with the shipped flags, workspace/launch.ts)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, promises as fs, readdirSync, readFileSync, watch as fsWatch } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { initWorkspace } from '../src/workspace/init.ts';
import { SERVICE_NODE_FLAGS } from '../src/workspace/launch.ts';
import { fmt, writeBenchmarkSection, makeTargetRepo, progress, sleep, stats, taskText, waitFor, type Stats } from './lib.ts';

const PKG_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
};
const SIZES = arg('files', '5000,50000')
  .split(',')
  .map(Number)
  .filter((n) => n > 0);
const DROPS = Number(arg('drops', '10'));
const BURST = Number(arg('burst', '1000'));
const BASELINE = arg('baseline', 'd6f0f55');
const CHUNK_DROPS = 3;

const children = new Set<ChildProcess>();
let tmpRoot = '';
async function cleanup(): Promise<void> {
  for (const child of children) if (child.exitCode === null && child.pid) child.kill('SIGKILL');
  if (tmpRoot) await fs.rm(tmpRoot, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined);
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void cleanup().then(() => process.exit(130)));

/** The file system of `dir` and whether it has a journal (ext4: a jbd2 entry for its device). */
function fileSystemOf(dir: string): string {
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f.length > 3);
  let best: string[] = [];
  for (const f of mounts) if ((dir === f[1] || dir.startsWith(f[1]!.endsWith('/') ? f[1]! : `${f[1]}/`)) && f[1]!.length >= (best[1]?.length ?? 0)) best = f;
  const [device, point, type, options] = best;
  if (type !== 'ext4') return `${type} (${device} on ${point})`;
  let journals: string[] = [];
  try {
    journals = readdirSync('/proc/fs/jbd2');
  } catch {
    // no journals at all
  }
  const dev = path.basename(device ?? '');
  const journaled = journals.some((j) => j.startsWith(`${dev}-`));
  return `ext4 ${journaled ? 'with a journal' : 'without a journal'} (${device} on ${point}; ${options}; /proc/fs/jbd2: ${journals.join(', ') || 'none'})`;
}

/** performance.now() when `name` appears in `dir`. */
class Appearances {
  private readonly waiting = new Map<string, (t: number) => void>();
  private readonly watcher;
  constructor(dir: string) {
    this.watcher = fsWatch(dir, (_e, f) => {
      const t = performance.now();
      const name = f?.toString();
      if (name && this.waiting.has(name) && existsSync(path.join(dir, name))) {
        this.waiting.get(name)!(t);
        this.waiting.delete(name);
      }
    });
  }
  expect(name: string, ms: number): Promise<number | null> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(name);
        resolve(null);
      }, ms);
      this.waiting.set(name, (t) => {
        clearTimeout(timer);
        resolve(t);
      });
    });
  }
  close() {
    this.watcher.close();
  }
}

interface Service {
  name: string;
  root: string;
  child: ChildProcess;
  statsFile: string;
  reports: Appearances;
  snapshot(): Promise<{ spawns: number; self_ms: number; children_ms: number }>;
  stop(): Promise<void>;
}

/** `nodeFlags`: node's flags for the service; by default what `npm start` and `service install` use for this checkout, none for the baseline's code. */
async function startService(
  name: string,
  codeDir: string,
  root: string,
  repo: string,
  concurrency = 2,
  nodeFlags: readonly string[] = codeDir === PKG_ROOT ? SERVICE_NODE_FLAGS : [],
): Promise<Service> {
  await initWorkspace(root, { withConfig: false });
  await fs.mkdir(path.join(root, 'staging'), { recursive: true });
  const yaml = [
    'engine: command',
    'command:',
    '  run: ["true"]',
    // The agent unsandboxed, as on Windows (no bubblewrap there), and as the code at the
    // baseline ran it (it had no agent sandbox); this checkout's sandbox would add a bwrap
    // start and, as root, handing the worktree to nobody.
    ...(codeDir === PKG_ROOT ? ['  sandbox: none'] : []),
    'sandbox: none',
    'projects:',
    '  bench:',
    `    repo: ${JSON.stringify(repo)}`,
    '    scope: ["**"]',
    'limits:',
    `  concurrency: ${concurrency}`,
    'queue:',
    '  poll: false',
    '',
  ].join('\n');
  await fs.writeFile(path.join(root, 'meta-agent.yaml'), yaml);
  const statsFile = path.join(root, 'service-stats.json');
  const child = spawn(
    process.execPath,
    [...nodeFlags, '--import', path.join(PKG_ROOT, 'bench', 'countSpawns.mjs'), path.join(codeDir, 'bin', 'meta-agent.js'), '--root', root, 'watch'],
    {
      cwd: codeDir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH, HOME: process.env.HOME, LANG: process.env.LANG ?? 'C.UTF-8', BENCH_STATS_FILE: statsFile },
    },
  );
  children.add(child);
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out = (out + c).slice(-20000)));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (out = (out + c).slice(-20000)));
  await waitFor(() => out.includes('watching ') || child.exitCode !== null, 120_000, `${name} to start`);
  if (child.exitCode !== null) throw new Error(`${name} exited: ${out}`);
  const snapshot = async () => {
    await fs.rm(statsFile, { force: true });
    child.kill('SIGUSR2');
    await waitFor(() => existsSync(statsFile), 5000, `${name} stats`);
    await sleep(20);
    return JSON.parse(await fs.readFile(statsFile, 'utf8')) as { spawns: number; self_ms: number; children_ms: number };
  };
  return {
    name,
    root,
    child,
    statsFile,
    reports: new Appearances(path.join(root, 'reports')),
    snapshot,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
      children.delete(child);
    },
  };
}

/** Writes a task with a fresh mtime and renames it in; ms until its report appears. */
async function dropByRename(svc: Service, id: string): Promise<number | null> {
  const staged = path.join(svc.root, 'staging', `${id}.md`);
  await fs.writeFile(staged, taskText(0).replace('Benchmark task 0', `Benchmark ${id}`));
  const seen = svc.reports.expect(`${id}.json`, 180_000);
  const t0 = performance.now();
  await fs.rename(staged, path.join(svc.root, 'inbox', `${id}.md`));
  const t1 = await seen;
  return t1 === null ? null : t1 - t0;
}

/** Copies a task in 3 chunks 300 ms apart (the front matter closes in the last); ms from the last chunk to the report. */
async function dropByChunks(svc: Service, id: string): Promise<number | null> {
  const file = path.join(svc.root, 'inbox', `${id}.md`);
  const seen = svc.reports.expect(`${id}.json`, 180_000);
  await fs.writeFile(file, '---\nproject: bench\n');
  await sleep(300);
  await fs.appendFile(file, 'type: custom\nscope: []\n');
  await sleep(300);
  const t0 = performance.now();
  await fs.appendFile(file, `objective: "Chunked ${id}"\n---\n\nNo-op.\n`);
  const t1 = await seen;
  return t1 === null ? null : t1 - t0;
}

async function timed(body: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await body();
  return performance.now() - t0;
}

const git = (cwd: string, args: string[]) => execa('git', args, { cwd });

interface SizeResult {
  files: number;
  drops: Record<'today' | 'now' | 'freshFloor' | 'poolFloor', Stats>;
  chunks: Record<'today' | 'now', Stats>;
  perTask: Record<'today' | 'now', { spawns: number; cpu_ms: number; tasks: number }>;
}

async function measureSize(files: number, oldCode: string): Promise<SizeResult> {
  const dir = path.join(tmpRoot, `repo-${files}`);
  const repo = path.join(dir, 'target');
  progress(`${files} files: generating the repo`);
  await makeTargetRepo(repo, files);
  const services = {
    today: await startService('today', oldCode, path.join(dir, 'ws-today'), repo),
    now: await startService('now', PKG_ROOT, path.join(dir, 'ws-now'), repo),
  };
  const samples = { today: [] as number[], now: [] as number[], freshFloor: [] as number[], poolFloor: [] as number[] };
  const chunkSamples = { today: [] as number[], now: [] as number[] };
  const floorDir = path.join(dir, 'floor');
  const poolTree = path.join(floorDir, 'pooled');
  await fs.mkdir(floorDir, { recursive: true });
  await git(repo, ['worktree', 'add', '--detach', '--quiet', poolTree, 'HEAD']);
  try {
    const before = { today: await services.today.snapshot(), now: await services.now.snapshot() };
    // A first drop each (the pool's slot is made, caches fill): not measured, like a warm-up.
    for (const key of ['today', 'now'] as const) await dropByRename(services[key], `warm-${key}`);
    const drops = files >= 20_000 ? Math.max(3, Math.ceil(DROPS / 3)) : DROPS;
    for (let i = 0; i < drops; i++) {
      const order = i % 2 === 0 ? (['today', 'now'] as const) : (['now', 'today'] as const);
      for (const key of order) {
        const ms = await dropByRename(services[key], `r${i}-${key}`);
        if (ms !== null) samples[key].push(ms);
      }
      const fresh = path.join(floorDir, `fresh-${i}`);
      samples.freshFloor.push(
        await timed(async () => {
          await git(repo, ['worktree', 'add', '--detach', '--quiet', fresh, 'HEAD']);
          await git(fresh, ['add', '--all']);
          await git(fresh, ['diff', '--cached', '--name-only', 'HEAD']);
          await git(repo, ['worktree', 'remove', '--force', fresh]);
        }),
      );
      await fs.writeFile(path.join(poolTree, 'leftover.txt'), 'x'); // what a run leaves
      samples.poolFloor.push(
        await timed(async () => {
          await git(poolTree, ['reset', '--hard', '--quiet', 'HEAD']);
          await git(poolTree, ['clean', '-ffdxq']);
          await git(poolTree, ['add', '--all']);
          await git(poolTree, ['diff', '--cached', '--name-only', 'HEAD']);
        }),
      );
      progress(
        `${files} files: drop ${i + 1}/${drops}: today ${fmt(samples.today.at(-1) ?? NaN, 0)} ms, now ${fmt(samples.now.at(-1) ?? NaN, 0)} ms, fresh floor ${fmt(samples.freshFloor.at(-1)!, 0)} ms, pool floor ${fmt(samples.poolFloor.at(-1)!, 0)} ms`,
      );
    }
    for (let i = 0; i < CHUNK_DROPS; i++) {
      for (const key of ['today', 'now'] as const) {
        const ms = await dropByChunks(services[key], `c${i}-${key}`);
        if (ms !== null) chunkSamples[key].push(ms);
      }
    }
    const after = { today: await services.today.snapshot(), now: await services.now.snapshot() };
    const tasks = drops + CHUNK_DROPS + 1;
    const per = (key: 'today' | 'now') => ({
      tasks,
      spawns: (after[key].spawns - before[key].spawns) / tasks,
      cpu_ms: (after[key].self_ms + after[key].children_ms - before[key].self_ms - before[key].children_ms) / tasks,
    });
    return {
      files,
      drops: { today: stats(samples.today), now: stats(samples.now), freshFloor: stats(samples.freshFloor), poolFloor: stats(samples.poolFloor) },
      chunks: { today: stats(chunkSamples.today), now: stats(chunkSamples.now) },
      perTask: { today: per('today'), now: per('now') },
    };
  } finally {
    for (const svc of Object.values(services)) {
      svc.reports.close();
      await svc.stop();
    }
  }
}

interface BurstResult {
  tasks: number;
  seconds: number;
  peakMb: number;
  cpuPerTaskMs: number;
  spawnsPerTask: number;
  checks: Array<{ what: string; expected: number; actual: number }>;
  env: string;
}

async function measureBurst(nodeFlags: readonly string[], label: string): Promise<BurstResult> {
  const dir = path.join(tmpRoot, `burst-${label}`);
  const repo = path.join(dir, 'target');
  await makeTargetRepo(repo, 20);
  const root = path.join(dir, 'ws');
  const svc = await startService('burst', PKG_ROOT, root, repo, 2, nodeFlags);
  try {
    const staging = path.join(root, 'staging');
    for (let i = 0; i < BURST; i++) await fs.writeFile(path.join(staging, `b${String(i).padStart(4, '0')}.md`), taskText(i));
    const before = await svc.snapshot();
    const t0 = performance.now();
    for (const name of await fs.readdir(staging)) await fs.rename(path.join(staging, name), path.join(root, 'inbox', name));
    const count = async () => (await fs.readdir(path.join(root, 'done'))).filter((n) => n.endsWith('.md')).length;
    let last = -1;
    let lastChange = performance.now();
    for (;;) {
      const n = await count();
      if (n >= BURST) break;
      if (n !== last) [last, lastChange] = [n, performance.now()];
      else if (performance.now() - lastChange > 60_000) throw new Error(`burst stuck at ${n}`);
      await sleep(100);
    }
    const seconds = (performance.now() - t0) / 1000;
    await sleep(3000); // a duplicate run would show within a scan or two
    const after = await svc.snapshot();
    const status = readFileSync(`/proc/${svc.child.pid}/status`, 'utf8');
    const peakKb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
    const reports = (await fs.readdir(path.join(root, 'reports'))).filter((n) => /^b\d{4}\.json$/.test(n));
    const okReports = (
      await Promise.all(reports.map(async (r) => JSON.parse(await fs.readFile(path.join(root, 'reports', r), 'utf8')).status === 'ok'))
    ).filter(Boolean).length;
    const ledgerDir = path.join(root, '.meta-agent', 'ledger');
    const ledger = await Promise.all(
      (await fs.readdir(ledgerDir)).map(async (n) => JSON.parse(await fs.readFile(path.join(ledgerDir, n), 'utf8')) as { runs: unknown[] }),
    );
    const list = async (d: string) => (await fs.readdir(path.join(root, d))).filter((n) => n.endsWith('.md')).length;
    return {
      tasks: BURST,
      seconds,
      peakMb: (peakKb * 1024) / 1e6,
      cpuPerTaskMs: (after.self_ms + after.children_ms - before.self_ms - before.children_ms) / BURST,
      spawnsPerTask: (after.spawns - before.spawns) / BURST,
      env: nodeFlags.length ? `node ${nodeFlags.join(' ')} (as shipped: npm start, service install)` : "node's defaults (no flags)",
      checks: [
        { what: 'files in done/', expected: BURST, actual: await count() },
        { what: 'reports, status ok', expected: BURST, actual: okReports },
        { what: 'ledger entries', expected: BURST, actual: ledger.length },
        { what: 'ledger entries with more than one run', expected: 0, actual: ledger.filter((e) => e.runs.length > 1).length },
        { what: 'left in inbox/ + processing/ + failed/', expected: 0, actual: (await list('inbox')) + (await list('processing')) + (await list('failed')) },
      ],
    };
  } finally {
    svc.reports.close();
    await svc.stop();
  }
}

const row = (label: string, s: Stats) => `| ${label} | ${s.n} | ${fmt(s.p50, 0)} | ${fmt(s.p90, 0)} | ${fmt(s.min, 0)} | ${fmt(s.max, 0)} |`;

async function main(): Promise<void> {
  tmpRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-userbench-'));
  const started = new Date();
  const load0 = os.loadavg()[0]!;
  const oldCode = path.join(tmpRoot, 'today');
  await fs.mkdir(oldCode);
  const archive = await execa('git', ['archive', '--format=tar', BASELINE], { cwd: PKG_ROOT, encoding: 'buffer' });
  await execa('tar', ['-x', '-C', oldCode], { input: archive.stdout });
  await fs.symlink(path.join(PKG_ROOT, 'node_modules'), path.join(oldCode, 'node_modules'), 'junction');
  const baselineSha = (await execa('git', ['rev-parse', '--short', BASELINE], { cwd: PKG_ROOT })).stdout.trim();
  const results: SizeResult[] = [];
  for (const files of SIZES) results.push(await measureSize(files, oldCode));
  const bursts: BurstResult[] = [];
  if (BURST > 0) {
    progress('burst, the service started as shipped (workspace/launch.ts flags)');
    bursts.push(await measureBurst(SERVICE_NODE_FLAGS, 'shipped'));
    if (process.argv.includes('--heap-cap')) {
      progress("burst, node's default heap sizes (no flags), to compare");
      bursts.push(await measureBurst([], 'defaults'));
    }
  }
  const load1 = os.loadavg()[0]!;
  const lines: string[] = [
    '## What a user meets (issue 19)',
    '',
    `Run on ${started.toISOString().replace(/\.\d+Z$/, 'Z')}, ${((Date.now() - started.getTime()) / 1000).toFixed(0)} s; 1-minute load ${load0.toFixed(2)} at the start, ${load1.toFixed(2)} at the end`,
    `(the machine was shared with other jobs: compare the ratios within this run, not absolute times). Temp folder: ${fileSystemOf(os.tmpdir())}.`,
    '',
    `Two real \`meta-agent watch\` services side by side on the same generated repo (\`engine: command\`, \`run: ["true"]\`,`,
    `\`limits.concurrency: 2\`, each with its own shipped queue defaults): **today** is the code at ${baselineSha} (before the worktree pool and`,
    'the short settle), **now** is this checkout. One loop, interleaved: a task file written with a fresh mtime and',
    'renamed into `inbox/` (**rename -> report**: until `reports/<id>.json` appears) to each service, then the git floors on the',
    'same repo: **fresh floor** = `worktree add` + `add --all` + `diff --cached` + `worktree remove`; **pool floor** =',
    '`reset --hard` + `clean -ffdx` + `add --all` + `diff --cached` in a reused worktree (after a file was left in it).',
    'A first drop to each service is not measured. **Chunks**: a file copied into `inbox/` in 3 chunks 300 ms apart, the',
    'front matter closed by the last; time from the last chunk to the report. Spawns and CPU (the service and its',
    'children: git, the engine) are counted inside each service (bench/countSpawns.mjs), start-up excluded.',
    '"now" takes a renamed-in file by the inbox events (Linux), and resets its pool slot after the report is written:',
    'that reset is not in rename -> report, but it is in the spawns and CPU per task.',
    '',
  ];
  for (const r of results) {
    const ratioToday = r.drops.now.p50 / r.drops.today.p50;
    const ratioFloor = r.drops.now.p50 / r.drops.poolFloor.p50;
    lines.push(
      `### ${r.files.toLocaleString('en')} files`,
      '',
      '| ms | n | p50 | p90 | min | max |',
      '|---|---|---|---|---|---|',
      row('rename -> report, today', r.drops.today),
      row('rename -> report, now', r.drops.now),
      row('fresh floor (worktree add)', r.drops.freshFloor),
      row('pool floor (reset + clean + diff)', r.drops.poolFloor),
      row('last chunk -> report, today', r.chunks.today),
      row('last chunk -> report, now', r.chunks.now),
      '',
      `| per task | spawns | CPU ms (service + children) |`,
      '|---|---|---|',
      `| today | ${r.perTask.today.spawns.toFixed(1)} | ${r.perTask.today.cpu_ms.toFixed(0)} |`,
      `| now | ${r.perTask.now.spawns.toFixed(1)} | ${r.perTask.now.cpu_ms.toFixed(0)} |`,
      '',
      `rename -> report p50, now / today: **${ratioToday.toFixed(3)}x** (goal under 0.2x: **${ratioToday < 0.2 ? 'met' : 'not met'}**); now / pool floor: **${ratioFloor.toFixed(2)}x** (goal under 1.2x: **${ratioFloor < 1.2 ? 'met' : 'not met'}**).`,
      '',
    );
  }
  for (const b of bursts) {
    lines.push(
      `### Burst of ${b.tasks} renamed-in tasks into "now" (20-file repo), ${b.env}`,
      '',
      `${b.seconds.toFixed(1)} s (${((b.tasks / b.seconds) * 60).toFixed(0)} tasks/min); **peak RSS (VmHWM) ${b.peakMb.toFixed(1)} MB** (goal under 150 MB: **${b.peakMb < 150 ? 'met' : 'not met'}**);`,
      `CPU per task ${b.cpuPerTaskMs.toFixed(0)} ms (service + children); ${b.spawnsPerTask.toFixed(1)} spawns per task.`,
      '',
      '| exactly once | expected | actual | |',
      '|---|---|---|---|',
      ...b.checks.map((c) => `| ${c.what} | ${c.expected} | ${c.actual} | ${c.expected === c.actual ? 'ok' : '**FAIL**'} |`),
      '',
    );
  }
  const section = lines.join('\n');
  await writeBenchmarkSection('user-bench', 'node --import tsx bench/user.ts', section);
  process.stdout.write(`${section}\n`);
}

try {
  await main();
} finally {
  await cleanup();
}
