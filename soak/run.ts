/**
 * `npm run soak -- --nights N [--seed S] [--workers W] [--out FILE] [--keep] [--no-faults] [--keep-going]`
 *
 * Runs the soak (soak/harness.ts) and writes its report: docs/soak.md for the full run
 * (30 nights, no --out), otherwise only where --out says. Exit code 0 when every invariant
 * held, 1 on a breach, 2 on bad arguments. `--workers W` is the BullMQ mode (issue 18): `watch` as
 * the folder host, a real redis-server and W real `meta-agent worker` processes, with worker kills
 * and Redis restarts among the faults (docs/soak-bullmq.md).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { emergencyCleanup, runSoak } from './harness.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function usage(message: string): never {
  process.stderr.write(`${message}\nusage: npm run soak -- [--nights N] [--seed S] [--workers W] [--out FILE] [--keep] [--no-faults] [--keep-going]\n`);
  process.exit(2);
}

function parse(argv: string[]) {
  const o = { nights: 30, seed: 1, out: undefined as string | undefined, keep: false, noFaults: false, keepGoing: false, workers: 0 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => argv[++i] ?? usage(`${a} needs a value`);
    if (a === '--nights') o.nights = Number(value());
    else if (a === '--seed') o.seed = Number(value());
    else if (a === '--out') o.out = value();
    else if (a === '--workers') o.workers = Number(value());
    else if (a === '--keep') o.keep = true;
    else if (a === '--no-faults') o.noFaults = true;
    else if (a === '--keep-going') o.keepGoing = true;
    else usage(`unknown argument ${a}`);
  }
  if (!Number.isInteger(o.nights) || o.nights < 1) usage('--nights must be a positive integer');
  if (!Number.isInteger(o.seed) || o.seed < 0) usage('--seed must be a non-negative integer');
  if (!Number.isInteger(o.workers) || o.workers < 0 || o.workers > 8) usage('--workers must be an integer from 0 (the local mode) to 8');
  return o;
}

const o = parse(process.argv.slice(2));
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    process.stderr.write(`[soak] ${sig}: killing the service and removing the temp folder\n`);
    emergencyCleanup();
    process.exit(130);
  });
}
// The full runs write their docs: 30 local nights docs/soak.md, 10 BullMQ nights docs/soak-bullmq.md.
const full = !o.noFaults && (o.workers ? o.nights === 10 : o.nights === 30);
const out = o.out ? path.resolve(o.out) : full ? path.join(REPO, 'docs', o.workers ? 'soak-bullmq.md' : 'soak.md') : null;
const command = [
  'npm run soak --',
  '--nights',
  String(o.nights),
  '--seed',
  String(o.seed),
  ...(o.workers ? ['--workers', String(o.workers)] : []),
  ...(o.noFaults ? ['--no-faults'] : []),
].join(' ');
const result = await runSoak({ nights: o.nights, seed: o.seed, out, keep: o.keep, noFaults: o.noFaults, failFast: !o.keepGoing, command, workers: o.workers });
const s = result.stats;
console.log(
  `[soak] ${result.ok ? 'PASS' : 'FAIL'}: ${s.nightsRun}/${s.nights} nights, seed ${s.seed}${s.cluster ? `, BullMQ mode (${s.cluster.workers} workers: ${s.cluster.jobStarts} job starts, ${s.cluster.extraRuns} extra, ${s.cluster.workerStarts} worker starts, ${s.cluster.redisStarts} Redis starts)` : ''}; ${s.tasks.total} tasks, ${s.patches.applied} patches applied, ${s.patches.rejectedByGate + s.patches.rejectedByHuman} rejected; faults ${JSON.stringify(s.faults)}; peak RSS ${(s.peakRssKb / 1024).toFixed(1)} MB; disk ${(s.diskBytes / 1048576).toFixed(1)} MB; ${(s.wallMs / 1000).toFixed(0)} s`,
);
for (const b of result.failing) console.log(`[soak] BREACH night ${b.night} (seed ${s.seed}): ${b.invariant}: ${b.detail}`);
if (out) console.log(`[soak] report: ${path.relative(process.cwd(), out) || out}`);
console.log(`[soak] reproduce: ${result.command}`);
process.exitCode = result.ok ? 0 : 1;
