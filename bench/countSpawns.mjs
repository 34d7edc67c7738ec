// Preloaded into a benchmarked service (node --import ./bench/countSpawns.mjs ...): counts
// the child processes it starts and, at exit, writes the count and the CPU time of the
// process and of its waited-for children (git, the engine) to $BENCH_STATS_FILE.
import childProcess from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

const out = process.env.BENCH_STATS_FILE;
let spawns = 0;
const original = childProcess.spawn;
childProcess.spawn = function countedSpawn(...args) {
  spawns++;
  return original.apply(this, args);
};
syncBuiltinESMExports();

/** utime, stime, cutime, cstime of this process, in ms (Linux /proc; zeros elsewhere). */
function cpuTimes() {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const tick = 10; // USER_HZ is 100 on Linux
    return { self_ms: (Number(f[11]) + Number(f[12])) * tick, children_ms: (Number(f[13]) + Number(f[14])) * tick };
  } catch {
    return { self_ms: 0, children_ms: 0 };
  }
}

const write = () => writeFileSync(out, JSON.stringify({ spawns, ...cpuTimes() }));
// SIGUSR2: a snapshot now (the benchmark subtracts the start-up's); exit: the last one.
if (out) {
  process.on('SIGUSR2', write);
  process.on('exit', write);
}
