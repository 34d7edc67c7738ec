/**
 * `meta-agent watch`: the service, put together from its parts. Watchers on inbox/,
 * patches/approved/ and patches/rejected/ are hints; a periodic reconcile scan of the
 * folders is the truth (events get lost on Windows pastes, network shares and queue overflows).
 *
 * - inbox/ (inboxPump.ts, queue/pickup.ts): a file is taken once complete (published by
 *   rename, or unchanged for `queue.settle_ms` and parsing to a complete task; network or
 *   polled folders wait longer, volumes.ts), by one atomic rename into processing/;
 *   `limits.concurrency` tasks run at once, oldest first.
 * - processing/: claims of dead workers are recovered (the reconcile scan, recover.ts).
 * - patches/approved/ and patches/rejected/ (gateQueue.ts): each patch goes through the gate,
 *   one at a time across processes; a person's rejection is recorded in the task's report.
 * - retention (retentionTimer.ts) and the supervisor's schedule (scheduleTimer.ts).
 * - a stop signal (SIGINT, SIGTERM, SIGHUP, SIGBREAK; cli.ts calls stop()), lifecycle.ts: no
 *   new claims; running tasks and a gate run get the grace period, then are aborted (tasks go
 *   back to inbox/ unharmed, a gate run's patch back to approved/); stop({ now: true }) (a
 *   second signal) skips the grace. Nothing stop() waits for is unbounded: what has not
 *   settled SETTLE_MS after the abort is logged and left to crash recovery at the next start.
 */
import type { Logger } from 'pino';
import type { Engine } from '../engines/types.ts';
import { gateLock, type GateResult } from '../gate/gate.ts';
import type { RemoteExecution } from './bullmq/host.ts';
import { InboxPickup } from '../queue/pickup.ts';
import { pruneWorktrees } from '../queue/prune.ts';
import { recoverOrphans } from '../queue/recover.ts';
import { assertOneVolume, hearsEveryWrite, isNetworkFolder, pickupSettleMs } from '../queue/volumes.ts';
import type { RunTaskResult } from '../run/runTask.ts';
import { prunePool } from '../repo/worktreePool.ts';
import type { Settings } from '../workspace/config.ts';
import { layoutDirs } from '../workspace/layout.ts';
import { watchFolder, watchInbox } from './folderWatch.ts';
import { GateQueue } from './gateQueue.ts';
import { Failures, healthLine, readHealth, type Health } from './health.ts';
import { InboxPump } from './inboxPump.ts';
import { Lifecycle } from './lifecycle.ts';
import { Reconciler, lateTempSweep } from './reconciler.ts';
import { hourlyRetention } from './retentionTimer.ts';
import { startScheduleTimer } from './scheduleTimer.ts';

export { isIgnoredName } from '../queue/pickup.ts';
export type { Health } from './health.ts';

export interface WatchOptions {
  settings: Settings;
  log: Logger;
  /** Overrides queue.settle_ms / scan_interval_ms / poll (tests, benchmarks). */
  settleMs?: number;
  scanMs?: number;
  usePolling?: boolean;
  graceMs?: number;
  engine?: Engine;
  onResult?: (result: RunTaskResult) => void;
  onGate?: (result: GateResult) => void;
  /** The schedule's clock (tests, the soak harness); default: the real time. */
  clock?: () => Date;
  /** Where cycles log; default logs/supervisor_YYYY-MM-DD.log. */
  supervisorLog?: Logger;
}

export interface Watcher {
  /** Resolves when start-up (checks, recovery, the first scan) is done; rejects on a bad workspace. */
  ready: Promise<void>;
  /**
   * Stops claiming, gives running work the grace period, then aborts it (tasks go back to
   * inbox/). `now`: no grace (a second Ctrl-C); also hurries a stop already under way.
   */
  stop(options?: { now?: boolean }): Promise<void>;
  health(): Promise<Health>;
}

/** The service's parts, wired; nothing runs until start(). */
interface Parts {
  lifecycle: Lifecycle;
  failures: Failures;
  pickup: InboxPickup;
  pump: InboxPump;
  gates: GateQueue;
  reconciler: Reconciler;
  concurrency: number;
  health: () => Promise<Health>;
}

export function startWatching(options: WatchOptions): Watcher {
  const parts = assemble(options);
  const ready = start(options, parts);
  parts.lifecycle.starting(ready);
  return { ready, health: parts.health, stop: (stopOptions) => parts.lifecycle.stop(stopOptions) };
}

function assemble(options: WatchOptions): Parts {
  const { settings, log } = options;
  const { layout, config } = settings;
  const staleMs = config.queue.lease_stale_s * 1000;
  const lifecycle: Lifecycle = new Lifecycle({
    log,
    graceMs: options.graceMs ?? config.queue.shutdown_grace_s * 1000,
    describe: () => ({ running: pump.runningNames(), gate: gates.current() }),
  });
  const failures = new Failures(log);
  const remote = startRemote(settings, log, lifecycle);
  const concurrency = remote?.maxInFlight ?? config.limits.concurrency;
  // Set at start from the folder's kind (pickupSettleMs); options.settleMs wins.
  const pickup = new InboxPickup(layout.inbox, log, options.settleMs ?? config.queue.settle_ms, config.queue.incomplete_grace_s * 1000);
  const pump: InboxPump = new InboxPump({
    settings,
    log,
    lifecycle,
    failures,
    pickup,
    remote,
    concurrency,
    engine: options.engine,
    onResult: options.onResult,
  });
  const gates: GateQueue = new GateQueue({ settings, log, lifecycle, failures, onGate: options.onGate });
  const reconciler = new Reconciler(
    [
      hourlyRetention(settings, log, failures),
      lateTempSweep(layout, staleMs, failures),
      // A dead folder host's queued tasks are followed again, before recovery would return them to inbox/.
      ...(remote ? [() => remote.adopt()] : []),
      () => recoverOrphans(layout, staleMs, log),
      () => pump.scan(),
      () => gates.scan(),
    ],
    lifecycle,
    failures,
  );
  const health = () => readHealth(layout, pump.counts(), failures);
  return { lifecycle, failures, pickup, pump, gates, reconciler, concurrency, health };
}

/** execution.engine bullmq: tasks run on BullMQ workers; this process claims and files (bullmq/host.ts). */
function startRemote(settings: Settings, log: Logger, lifecycle: Lifecycle): RemoteExecution | null {
  if (settings.config.execution.engine !== 'bullmq') return null;
  // Loaded only here: BullMQ and its Redis client are ~30 MB a local service does not carry.
  const started = import('./bullmq/host.ts').then((host) => host.startRemoteExecution(settings, log));
  started.catch(() => undefined);
  const remote: RemoteExecution = {
    maxInFlight: settings.config.execution.max_in_flight,
    run: async (name, options) => (await started).run(name, options),
    adopt: async () => (await started).adopt(),
    close: async () => (await started).close(),
  };
  // Queued jobs go on without this process: the next start files them.
  lifecycle.onStop(() => remote.close());
  return remote;
}

async function start(options: WatchOptions, parts: Parts): Promise<void> {
  const { settings, log } = options;
  const { layout, config } = settings;
  const { lifecycle, pickup, pump, gates, reconciler } = parts;
  await assertOneVolume([...layoutDirs(layout).filter((d) => d !== layout.templates && d !== layout.logs)]);
  const network = await isNetworkFolder(layout.root);
  const poll = options.usePolling ?? (config.queue.poll === 'auto' ? network : config.queue.poll);
  if (options.settleMs === undefined) pickup.settleMs = pickupSettleMs(config.queue.settle_ms, { network, polled: poll });
  // inotify hears every write into inbox/ on a local Linux file system (pickup.ts: the event proof of a rename).
  pickup.eventEvidence = !poll && !network && (await hearsEveryWrite(layout.inbox));
  await pruneDeadWorktrees(settings, log, parts.failures);
  // Stopped while starting: start nothing more (stop() is not waiting for what comes next).
  if (lifecycle.stopping) return;
  const watching = { layout, log, lifecycle, poll };
  await Promise.all([
    watchInbox(watching, layout.inbox, (n, event) => {
      if (event) pickup.noteEvent(n, event);
      void pump.consider(n);
    }),
    watchFolder(watching, layout.patches.approved, gates.considerApproved),
    watchFolder(watching, layout.patches.rejected, (n) => void gates.considerRejected(n)),
  ]);
  reconciler.start(options.scanMs ?? config.queue.scan_interval_ms);
  healthLine(lifecycle, parts.health, log);
  await reconciler.scan();
  log.info(
    { root: layout.root, concurrency: parts.concurrency, polling: poll, settle_ms: pickup.settleMs },
    'watching inbox/, patches/approved/, patches/rejected/',
  );
  if (lifecycle.stopping) return;
  await startScheduleTimer({ settings, log, lifecycle, supervisorLog: options.supervisorLog, clock: options.clock, engine: options.engine });
}

/** Holding the gate lock (a dead gate run's is taken over), every gate-* worktree is a dead run's. */
async function pruneDeadWorktrees(settings: Settings, log: Logger, failures: Failures): Promise<void> {
  const releaseGate = await gateLock(settings, false);
  try {
    await pruneWorktrees(settings, log, { includeGate: releaseGate !== null });
    await prunePool(settings, log).catch((error: unknown) => failures.fail('pruning the worktree pool failed', error));
  } finally {
    await releaseGate?.();
  }
}
