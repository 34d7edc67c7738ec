/**
 * How the long-running service's node is started (`npm start`, `service install`, the
 * schedule's systemd unit): with these V8 flags. They take effect only on node's command line
 * (or in NODE_OPTIONS): set from inside the process with v8.setFlagsFromString they change
 * nothing, the heap's sizes being fixed at start.
 *
 * - A small young generation: each run's short-lived objects (git output, parsed files, log
 *   lines) otherwise fill 16 MiB semi-spaces and are promoted; a 1,000-task burst then peaks
 *   at 195 MB instead of 110 MB, at the same throughput (docs/benchmarks.md).
 * - A heap cap, so a runaway (a bug, a hostile input that slips past a limit) ends the
 *   process, which the service manager restarts and the queue recovers from, instead of
 *   taking the machine's memory. 128 MB is three times the live heap of a run on a
 *   50,000-file repository.
 */
export const SERVICE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--max-old-space-size=128'];
