#!/usr/bin/env node
/**
 * The test command's runner: the type check, the schema check, the linter and formatter check
 * (Biome), the function-length check and one uvu process per test
 * file, as many at a time as there are cores; then the timing-sensitive files alone, one
 * after another. Prints one line per file as it ends (its whole output when it failed),
 * kills a file's process group when it runs past its time limit, and always exits: 0 when
 * everything passed, 1 otherwise.
 *
 *   node scripts/test.mjs [--jobs N] [pattern]    pattern: a regex on test file names
 *
 * META_AGENT_TEST_JOBS sets the concurrency (default: the number of cores),
 * META_AGENT_TEST_TIMEOUT_S the per-file limit (default 600 s).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TEST_DIR = path.join(ROOT, 'test');

/**
 * Files whose tests measure or race time under load (deadlines, kill -9 at a chosen moment,
 * bursts of watch processes): run alone after the others, so a busy machine does not fail them.
 */
const ALONE = new Map([
  ['queue.test.ts', '500 tasks through four watch processes, each waiting for progress'],
  ['soak.test.ts', 'three simulated nights: restarts, kills and deadlines across many processes'],
]);

/**
 * Longest first makes the shortest wall time. Seconds seen on a (very busy) 2-core machine:
 * only their order matters. The last run's own times (TIMES_FILE) take precedence.
 */
const TYPICAL_S = {
  'gate.test.ts': 520,
  'gate-crash.test.ts': 475,
  'supervisor.test.ts': 385,
  'review.test.ts': 225,
  'ui.test.ts': 160,
  'failures.test.ts': 125,
  'cli.test.ts': 70,
  'run.test.ts': 65,
  'sandbox.test.ts': 55,
  'command-engine.test.ts': 45,
  typecheck: 40,
  'cycle-recovery.test.ts': 35,
  'watch.test.ts': 30,
  'schedule.test.ts': 30,
  'crash-leftovers.test.ts': 25,
  'escapes.test.ts': 25,
  'retention.test.ts': 15,
  'ui-review.test.ts': 100,
  'rerun.test.ts': 95,
  'stop.test.ts': 95,
  'hostile-checks.test.ts': 85,
  'cli-input.test.ts': 65,
  'gate-modes.test.ts': 50,
  'ui-untrusted.test.ts': 45,
  'progress.test.ts': 40,
  'doctor.test.ts': 30,
  'secrets.test.ts': 20,
  'finish-verify.test.ts': 120,
  'edit-tools.test.ts': 70,
  'run-command.test.ts': 70,
  'text-mode.test.ts': 50,
  'context.test.ts': 45,
  'model-compat.test.ts': 30,
  'findings.test.ts': 30,
  'prompt-prefix.test.ts': 20,
  'redaction.test.ts': 15,
  'incomplete.test.ts': 120,
  'faults.test.ts': 120,
  'names.test.ts': 50,
  'queue.test.ts': 450,
  'soak.test.ts': 200,
  'scaleout.test.ts': 500,
  'codex.test.ts': 120,
  'codex-safety.test.ts': 60,
  'command-sandbox.test.ts': 90,
  'streaming.test.ts': 10,
  'stall.test.ts': 45,
  'same-id.test.ts': 25,
  'leftover-agent.test.ts': 30,
  'gate-snapshot.test.ts': 10,
};
const TIMES_FILE = path.join(ROOT, 'node_modules', '.cache', 'meta-agent', 'test-times.json');

const args = process.argv.slice(2);
const jobsArg = args.indexOf('--jobs');
const jobs = Math.max(1, Number((jobsArg >= 0 ? args.splice(jobsArg, 2)[1] : undefined) ?? process.env.META_AGENT_TEST_JOBS ?? os.availableParallelism()) || 1);
const pattern = args[0] ? new RegExp(args[0]) : undefined;
const timeoutMs = Number(process.env.META_AGENT_TEST_TIMEOUT_S ?? 600) * 1000;

const node = process.execPath;
const checks = pattern
  ? []
  : [
      { name: 'typecheck', argv: [node, path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '--noEmit'] },
      { name: 'schema:check', argv: [node, '--import', 'tsx', path.join(ROOT, 'scripts', 'export-schema.ts'), '--check'] },
      // Biome: formatting and lint rules (biome.jsonc), read-only; `npm run format` fixes the formatting.
      { name: 'lint', argv: [node, path.join(ROOT, 'node_modules', '@biomejs', 'biome', 'bin', 'biome'), 'ci', '--colors=off', ROOT] },
      // No function over 80 lines in src/ (issue 17): a long one is split by job.
      { name: 'function-lengths', argv: [node, path.join(ROOT, 'scripts', 'function-lengths.mjs'), path.join(ROOT, 'src'), '80'] },
    ];
const files = readdirSync(TEST_DIR)
  .filter((f) => f.endsWith('.test.ts') && (!pattern || pattern.test(f)))
  .sort();
const lastTimes = readTimes();
const toJob = (f) => ({ name: f, argv: [node, '--import', 'tsx', path.join(TEST_DIR, f)], tests: true });
const expectedMs = (job) => lastTimes[job.name] ?? (TYPICAL_S[job.name] ?? 10) * 1000;
const byLastTime = (a, b) => expectedMs(b) - expectedMs(a);
const parallel = [...checks, ...files.filter((f) => !ALONE.has(f)).map(toJob)].sort(byLastTime);
const alone = files.filter((f) => ALONE.has(f)).map(toJob);

if (files.length === 0) {
  console.error(`no test file matches ${pattern}`);
  process.exit(1);
}

const started = Date.now();
const running = new Map(); // pid -> { job, startedAt }
const results = [];
const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;

process.on('SIGINT', () => interrupt('SIGINT'));
process.on('SIGTERM', () => interrupt('SIGTERM'));

console.log(`running ${parallel.length} job(s), ${jobs} at a time${alone.length ? `, then ${alone.map((j) => j.name).join(', ')} alone` : ''}`);
const heartbeat = setInterval(() => {
  if (running.size === 0) return;
  const now = Date.now();
  console.log(`  ... still running: ${[...running.values()].map((r) => `${r.job.name} (${seconds(now - r.startedAt)})`).join(', ')}`);
}, 60_000);

await pool(parallel, jobs, timeoutMs);
if (alone.length) console.log(`alone: ${alone.map((j) => `${j.name} (${ALONE.get(j.name)})`).join('; ')}`);
await pool(alone, 1, timeoutMs);
clearInterval(heartbeat);
summarize();

async function pool(queue, width, limitMs) {
  const next = [...queue];
  const worker = async () => {
    for (let job = next.shift(); job; job = next.shift()) results.push(await runJob(job, limitMs));
  };
  await Promise.all(Array.from({ length: Math.min(width, next.length) }, worker));
}

/** Runs one job in its own process group; resolves when it exits or was killed for running too long. */
function runJob(job, defaultLimitMs) {
  // A file known to take long (real Redis and worker processes, the real Codex CLI) gets twice its typical time.
  const limitMs = Math.max(defaultLimitMs, (TYPICAL_S[job.name] ?? 0) * 2000);
  return new Promise((resolve) => {
    const startedAt = Date.now();
    const child = spawn(job.argv[0], job.argv.slice(1), {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: process.platform !== 'win32', // its own process group, killed as a whole
      env: { ...process.env, FORCE_COLOR: '0' },
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    running.set(child.pid, { job, startedAt, child });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, limitMs);
    child.on('error', (error) => (output += `\n${error.message}\n`));
    // 'exit', not 'close': a process it leaves behind may hold the pipes open.
    child.on('exit', async (code, signal) => {
      clearTimeout(timer);
      const ms = Date.now() - startedAt;
      // A helper process ending with it (tsx's esbuild service) may need a moment; what is still
      // there after a second was left behind: named, then killed with the group.
      const leftovers = process.platform === 'win32' || timedOut ? [] : await leftBehind(child.pid);
      if (leftovers.length) killGroup(child.pid);
      // Give the pipes a moment to deliver the last output, then stop waiting for them.
      await new Promise((r) => setTimeout(r, 100));
      child.stdout.destroy();
      child.stderr.destroy();
      running.delete(child.pid);
      const result = { ...job, code, signal, timedOut, leftovers, ms, output, counts: counts(output) };
      report(result);
      resolve(result);
    });
  });
}

function killGroup(pid) {
  if (process.platform === 'win32') {
    spawnSync('taskkill', ['/pid', String(pid), '/T', '/F'], { stdio: 'ignore' });
    return;
  }
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function groupAlive(pid) {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The live processes still in the group of `pgid` a second after its leader exited ('pid command'). */
async function leftBehind(pgid) {
  let members = [];
  for (let i = 0; i < 10; i++) {
    if (!groupAlive(pgid)) return [];
    const ps = spawnSync('ps', ['-e', '-o', 'pid=,pgid=,stat=,args='], { encoding: 'utf8' });
    // Zombies are dead already (waiting for init to reap them): not left running.
    members = (ps.stdout ?? '')
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => Number(f[1]) === pgid && !f[2]?.startsWith('Z'));
    if (members.length === 0) return [];
    await new Promise((r) => setTimeout(r, 100));
  }
  return members.map((f) => `${f[0]} ${f.slice(3).join(' ').slice(0, 100)}`);
}

/** uvu's summary lines: Total / Passed / Skipped. */
function counts(output) {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: colour codes are stripped from the output
  const plain = output.replace(/\x1b\[[0-9;]*m/g, '');
  const num = (label) => {
    const all = [...plain.matchAll(new RegExp(`^\\s*${label}:\\s+(\\d+)`, 'gm'))];
    return all.length ? Number(all[all.length - 1][1]) : undefined;
  };
  return { total: num('Total'), passed: num('Passed'), skipped: num('Skipped') };
}

function passed(r) {
  return r.code === 0 && !r.timedOut;
}

function report(r) {
  const c = r.counts;
  const what = r.tests && c.total !== undefined ? `${c.passed}/${c.total} passed${c.skipped ? `, ${c.skipped} skipped` : ''}` : '';
  const status = r.timedOut ? 'TIMEOUT' : passed(r) ? 'ok' : 'FAIL';
  console.log(`${status.padEnd(7)} ${r.name.padEnd(28)} ${what.padEnd(22)} ${seconds(r.ms)}`);
  if (r.timedOut) console.log(`        ran past its limit: its process group was killed`);
  if (r.leftovers.length) console.log(`        left ${r.leftovers.length} process(es) running after it exited (killed): ${r.leftovers.join('; ')}`);
  if (!passed(r)) {
    const why = r.code !== null ? `exit code ${r.code}` : `signal ${r.signal}`;
    console.log(`        ${why}; its output:\n${indent(r.output.trimEnd())}\n`);
  }
}

function indent(text) {
  return text
    .split('\n')
    .map((l) => `    | ${l}`)
    .join('\n');
}

function summarize() {
  const failed = results.filter((r) => !passed(r));
  const tests = results.filter((r) => r.tests);
  const total = tests.reduce((n, r) => n + (r.counts.total ?? 0), 0);
  const ok = tests.reduce((n, r) => n + (r.counts.passed ?? 0), 0);
  const skipped = tests.reduce((n, r) => n + (r.counts.skipped ?? 0), 0);
  console.log(
    `\n${tests.length} test files, ${ok}/${total} tests passed${skipped ? `, ${skipped} skipped` : ''}; wall time ${seconds(Date.now() - started)} (${jobs} at a time)`,
  );
  if (failed.length) console.log(`FAILED: ${failed.map((r) => r.name).join(', ')}`);
  saveTimes();
  process.exit(failed.length ? 1 : 0);
}

function interrupt(signal) {
  for (const pid of running.keys()) killGroup(pid);
  console.log(`\n${signal}: stopped; killed ${running.size} running job(s)`);
  process.exit(130);
}

function readTimes() {
  try {
    return JSON.parse(readFileSync(TIMES_FILE, 'utf8'));
  } catch {
    return {};
  }
}

function saveTimes() {
  try {
    const times = readTimes();
    for (const r of results) if (passed(r)) times[r.name] = r.ms; // a failed run's time says little
    mkdirSync(path.dirname(TIMES_FILE), { recursive: true });
    writeFileSync(TIMES_FILE, `${JSON.stringify(times, null, 2)}\n`);
  } catch {
    // only an ordering hint
  }
}
