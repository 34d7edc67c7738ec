/**
 * `meta-agent watch`: the service. Watchers on inbox/, patches/approved/ and
 * patches/rejected/ are hints; a periodic reconcile scan of the folders is the truth
 * (events get lost on Windows pastes, network shares and queue overflows).
 *
 * - inbox/: a file is taken once complete (published by rename, or unchanged for
 *   `queue.settle_ms` and parsing to a complete task; network or polled folders wait
 *   longer, volumes.ts), by one atomic rename into processing/; `limits.concurrency`
 *   tasks run at once, oldest first.
 * - processing/: claims of dead workers are recovered (see recover.ts).
 * - patches/approved/: each patch goes through the gate, one at a time across processes.
 * - patches/rejected/: a person's rejection is recorded in the task's report.
 * - a stop signal (SIGINT, SIGTERM, SIGHUP, SIGBREAK; cli.ts calls stop()): no new claims; running tasks, a gate run and a supervisor
 *   cycle get the grace period, then are aborted (tasks go back to inbox/ unharmed, a gate
 *   run's patch back to approved/); stop({ now: true }) (a second signal) skips the grace.
 *   Nothing stop() waits for is unbounded: what has not settled SETTLE_MS after the abort
 *   is logged and left to crash recovery at the next start.
 */
import { promises as fs, watch as fsWatch } from 'node:fs';
import path from 'node:path';
import { watch as chokidarWatch, type FSWatcher } from 'chokidar';
import type { Logger } from 'pino';
import type { Settings } from '../workspace/config.ts';
import { runTask, type RunTaskResult } from '../run/runTask.ts';
import type { Engine } from '../engines/types.ts';
import { MetaAgentError, toErrorInfo } from '../contract/errors.ts';
import { gateLock, processApprovedPatch, recordHumanRejection, recoverInterruptedGateRuns, type GateResult } from '../gate/gate.ts';
import { layoutDirs } from '../workspace/layout.ts';
import { recoverOrphans, removeDeadTemps } from './recover.ts';
import { ClaimChanged, MAX_TASK_NAME_BYTES, safeTaskName } from './folders.ts';
import { MAX_TASK_BYTES, parseTask } from '../contract/task.ts';
import { createHash } from 'node:crypto';
import { tempWriterPid } from '../workspace/files.ts';
import { pruneWorktrees } from './prune.ts';
import { prunePool } from '../run/worktreePool.ts';
import { applyRetention } from './retention.ts';
import { assertOneVolume, isNetworkFolder, pickupSettleMs } from './volumes.ts';
import { countTasks } from './retry.ts';
import { SETTLE_MS, bounded, hurrySwitch, windDown } from './windDown.ts';
import { createLogger } from '../log.ts';
import { makeRedactor } from '../safety/redact.ts';
import { startScheduler } from '../supervisor/service.ts';
import type { Scheduler } from '../supervisor/schedule.ts';
import { startRemoteExecution } from './bullmq/host.ts';

export interface WatchOptions {
  settings: Settings;
  log: Logger;
  /** Overrides queue.settle_ms / scan_interval_ms / poll (tests, benchmarks). */
  settleMs?: number;
  scanMs?: number;
  usePolling?: boolean;
  graceMs?: number;
  healthMs?: number;
  engine?: Engine;
  onResult?: (result: RunTaskResult) => void;
  onGate?: (result: GateResult) => void;
  onHealth?: (health: Health) => void;
  /** The schedule's clock (tests, the soak harness); default: the real time. */
  clock?: () => Date;
  /** Where cycles log; default logs/supervisor_YYYY-MM-DD.log. */
  supervisorLog?: Logger;
}

export interface Health {
  inbox: number;
  processing: number;
  running: number;
  queued: number;
  pending_patches: number;
  approved_patches: number;
  done: number;
  failed: number;
  last_error: string | null;
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

const TEMP_NAME = /^(\.|~\$)|\.(tmp|part|crdownload|swp)$/i;
/** A stopped run's checks on its incomplete patch: stop() waits only SETTLE_MS for the run's report. */
const STOP_CHECKS_GRACE_S = 5;

/** Why a file's bytes are not a complete task yet (null: they are): what parsing it says. */
function incompleteReason(content: Buffer, name: string): string | null {
  try {
    parseTask(content, name);
    return null;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/** Names the queue never takes: dotfiles, office lock files, partial downloads. */
export function isIgnoredName(name: string): boolean {
  return TEMP_NAME.test(name);
}

export function startWatching(options: WatchOptions): Watcher {
  const { settings, log } = options;
  const { layout, config } = settings;
  // Set at start from the folder's kind (pickupSettleMs); options.settleMs wins.
  let settleMs = options.settleMs ?? config.queue.settle_ms;
  const scanMs = options.scanMs ?? config.queue.scan_interval_ms;
  const staleMs = config.queue.lease_stale_s * 1000;
  // execution.engine bullmq: tasks run on BullMQ workers; this process claims and files (bullmq/host.ts).
  const remote = config.execution.engine === 'bullmq' ? startRemoteExecution(settings, log) : null;
  const concurrency = remote?.maxInFlight ?? config.limits.concurrency;
  const abort = new AbortController();
  const seen = new Map<string, { size: number; mtimeMs: number; since: number }>();
  const queued: string[] = [];
  const queuedSet = new Set<string>();
  const running = new Map<string, Promise<void>>();
  const loggedNonTask = new Set<string>();
  const waitingLogged = new Set<string>();
  const changedAfterClaim = new Set<string>();
  const expected = new Map<string, string | undefined>();
  const incompleteGraceMs = config.queue.incomplete_grace_s * 1000;
  const gateQueue: string[] = [];
  const rejectedSeen = new Set<string>();
  let gateBusy: Promise<void> | null = null;
  let stopping = false;
  let lastError: string | null = null;
  let watchers: Array<Pick<FSWatcher, 'close'> | { close(): Promise<void> }> = [];
  let timers: NodeJS.Timeout[] = [];
  let scheduler: Scheduler | null = null;

  const fail = (what: string, error: unknown) => {
    lastError = `${new Date().toISOString()} ${what}: ${toErrorInfo(error).message}`;
    log.error({ err: toErrorInfo(error) }, what);
  };

  // --- inbox/ -----------------------------------------------------------------------
  const consider = async (name: string): Promise<void> => {
    if (stopping || queuedSet.has(name)) return;
    const file = path.join(layout.inbox, name);
    if (isIgnoredName(name)) {
      // Our own temps live for milliseconds; anything else a person may wonder about.
      if (!loggedNonTask.has(name) && tempWriterPid(name) === null && name !== '.gitkeep') log.info({ file: name }, 'ignored: names starting with "." or "~$" and temp/partial files (.tmp, .part, .crdownload, .swp) are never taken; rename it to take it');
      loggedNonTask.add(name);
      return;
    }
    if (!name.toLowerCase().endsWith('.md')) {
      if (!loggedNonTask.has(name)) log.warn({ file: name }, 'not a .md task file; left where it is');
      loggedNonTask.add(name);
      return;
    }
    if (safeTaskName(name) !== name && !loggedNonTask.has(name)) {
      loggedNonTask.add(name);
      log.warn({ file: name, claimed_as: safeTaskName(name) }, `the name is longer than ${MAX_TASK_NAME_BYTES} bytes; it is claimed under a shortened name`);
    }
    const stat = await fs.stat(file).catch(() => null);
    // A scan and a watcher event can consider one name at the same time: only the first may queue it.
    if (stopping || queuedSet.has(name)) return;
    if (!stat?.isFile()) return void seen.delete(name);
    // Renamed in after being written (createTask, temp+rename): complete at once (unless it
    // was put back because it changed after a claim: its writer may still be at it).
    // Otherwise (a copy in progress) wait until size and mtime stay put for settleMs.
    const publishedByRename = stat.ctimeMs - stat.mtimeMs > 1 && !changedAfterClaim.has(name);
    if (!publishedByRename && settleMs > 0) {
      const previous = seen.get(name);
      if (!previous || previous.size !== stat.size || previous.mtimeMs !== stat.mtimeMs) {
        seen.set(name, { size: stat.size, mtimeMs: stat.mtimeMs, since: performance.now() });
        setTimeout(() => void consider(name), settleMs + 25).unref();
        return;
      }
      if (performance.now() - previous.since < settleMs) return;
    }
    // Quiet is not complete (a writer may stall for minutes): a copied-in file is taken once it
    // parses to a complete task, or once it has not changed for incomplete_grace_s (then it fails).
    let expectSha256: string | undefined;
    if (!publishedByRename) {
      const content = stat.size <= MAX_TASK_BYTES ? await fs.readFile(file).catch(() => null) : Buffer.alloc(0);
      if (!content) return;
      const incomplete = stat.size <= MAX_TASK_BYTES ? incompleteReason(content, name) : null;
      const age = Date.now() - stat.mtimeMs; // "in the future" (the clock went back): old
      if (incomplete && age >= 0 && age < incompleteGraceMs) {
        if (!waitingLogged.has(name)) log.info({ file: name, reason: incomplete }, `not a complete task yet (${incomplete}); waiting for its writer (queue.incomplete_grace_s)`);
        waitingLogged.add(name);
        return; // the next scan looks again
      }
      expectSha256 = createHash('sha256').update(content).digest('hex');
    }
    seen.delete(name);
    waitingLogged.delete(name);
    changedAfterClaim.delete(name);
    queuedSet.add(name);
    queued.push(name);
    expected.set(name, expectSha256);
    pump();
  };

  const pump = () => {
    while (!stopping && running.size < concurrency && queued.length > 0) {
      const name = queued.shift()!;
      const job = runOne(name).finally(() => {
        running.delete(name);
        queuedSet.delete(name);
        pump();
      });
      running.set(name, job);
    }
  };

  const runOne = async (name: string) => {
    const expectSha256 = expected.get(name);
    expected.delete(name);
    try {
      // A stopped run's incomplete patch gets 5 s of checks: stop() waits only SETTLE_MS for its report.
      const result = remote
        ? await remote.run(name, { ...(expectSha256 ? { expectSha256 } : {}) })
        : await runTask(path.join(layout.inbox, name), { settings, log, signal: abort.signal, stopChecksGraceS: STOP_CHECKS_GRACE_S, ...(options.engine ? { engine: options.engine } : {}), ...(expectSha256 ? { expectSha256 } : {}) });
      if (!result) return;
      if (result.status !== 'ok' && result.report.error?.kind !== 'interrupted') lastError = `${result.report.finished_at} ${result.task_id}: ${result.report.error?.message ?? result.outcome}`;
      options.onResult?.(result);
    } catch (error) {
      // The claim rename failed with ENOENT: another worker (or a person) took it first.
      if (error instanceof ClaimChanged) {
        changedAfterClaim.add(name);
        log.info({ file: name }, error.message);
      } else if (error instanceof MetaAgentError && error.kind === 'input') log.debug({ file: name }, error.message);
      else fail(`task ${name} could not be run`, error);
    }
  };

  // --- patches/approved/ and patches/rejected/ ----------------------------------------
  const considerApproved = (name: string) => {
    if (stopping || isIgnoredName(name) || !name.toLowerCase().endsWith('.patch') || gateQueue.includes(name)) return;
    gateQueue.push(name);
    void drainGate();
  };

  const drainGate = async () => {
    if (gateBusy) return;
    gateBusy = (async () => {
      while (!stopping && gateQueue.length > 0) {
        const name = gateQueue[0]!;
        try {
          const file = path.join(layout.patches.approved, name);
          if (await fs.stat(file).then(() => true, () => false)) {
            const result = await processApprovedPatch(settings, file, log, abort.signal);
            if (result.decision === 'rejected') lastError = `${new Date().toISOString()} gate rejected ${name}: ${result.reason?.split('\n')[0]}`;
            if (result.decision !== 'skipped') options.onGate?.(result);
          }
        } catch (error) {
          if (abort.signal.aborted) log.info({ patch: name }, 'the gate run was interrupted by the stop; the patch is gated again at the next start');
          else fail(`the gate failed on ${name}`, error);
        } finally {
          gateQueue.shift();
        }
      }
    })().finally(() => {
      gateBusy = null;
    });
  };

  const considerRejected = async (name: string) => {
    if (isIgnoredName(name) || !name.toLowerCase().endsWith('.patch') || rejectedSeen.has(name)) return;
    rejectedSeen.add(name);
    const file = path.join(layout.patches.rejected, name);
    const reason = await fs.readFile(path.join(layout.patches.rejected, `${name.replace(/\.patch$/i, '')}.reason.md`), 'utf8').catch(() => null);
    try {
      if (await recordHumanRejection(settings, file, reason?.replace(/^#.*\n+/, '').trim() ?? null)) log.info({ patch: name }, 'recorded a rejection by a person');
    } catch (error) {
      fail(`could not record the rejection of ${name}`, error);
    }
  };

  // --- the reconcile scan: the truth ----------------------------------------------------
  let lastRetention = -Infinity;
  let tempSweepAt: number | null = performance.now() + staleMs + 1000;
  const scan = async () => {
    if (stopping) return;
    try {
      // Retention, at most hourly by the settings' clock (which a test may move fast).
      const now = settings.clock().getTime();
      if (now - lastRetention >= 3600_000) {
        lastRetention = now;
        await applyRetention(settings, log).catch((error: unknown) => fail('retention failed', error));
      }
      // The temps of a process killed just before this start are too young for the sweep at
      // start (it waits lease_stale_s): sweep once more when they are old enough.
      if (tempSweepAt !== null && performance.now() >= tempSweepAt) {
        tempSweepAt = null;
        await removeDeadTemps(layout, staleMs).catch((error: unknown) => fail('removing dead temp files failed', error));
      }
      // A dead folder host's queued tasks are followed again, before recovery would return them to inbox/.
      await remote?.adopt();
      await recoverOrphans(layout, staleMs, log);
      const names = await fs.readdir(layout.inbox).catch(() => [] as string[]);
      const present = new Set(names);
      for (const n of loggedNonTask) if (!present.has(n)) loggedNonTask.delete(n); // logged again if it comes back
      const withTimes = await Promise.all(names.map(async (n) => ({ n, t: (await fs.stat(path.join(layout.inbox, n)).catch(() => null))?.mtimeMs ?? 0 })));
      for (const { n } of withTimes.sort((a, b) => a.t - b.t || a.n.localeCompare(b.n))) await consider(n);
      if (!gateBusy) await recoverInterruptedGateRuns(settings, log);
      for (const n of (await fs.readdir(layout.patches.approved).catch(() => [] as string[])).sort()) considerApproved(n);
      for (const n of await fs.readdir(layout.patches.rejected).catch(() => [] as string[])) await considerRejected(n);
    } catch (error) {
      fail('the reconcile scan failed', error);
    }
  };

  const count = async (dir: string, ext: string) => (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => !n.startsWith('.') && n.toLowerCase().endsWith(ext)).length;
  const health = async (): Promise<Health> => ({
    inbox: await countTasks(layout.inbox),
    processing: await countTasks(layout.processing),
    running: running.size,
    queued: queued.length,
    pending_patches: await count(layout.patches.pending, '.patch'),
    approved_patches: await count(layout.patches.approved, '.patch'),
    done: await countTasks(layout.done),
    failed: await countTasks(layout.failed),
    last_error: lastError,
  });

  const start = async () => {
    await assertOneVolume([...layoutDirs(layout).filter((d) => d !== layout.templates && d !== layout.logs)]);
    const network = await isNetworkFolder(layout.root);
    const poll = options.usePolling ?? (config.queue.poll === 'auto' ? network : config.queue.poll);
    if (options.settleMs === undefined) settleMs = pickupSettleMs(config.queue.settle_ms, { network, polled: poll });
    // Holding the gate lock (a dead gate run's is taken over), every gate-* worktree is a dead run's.
    const releaseGate = await gateLock(settings, false);
    try {
      await pruneWorktrees(settings, log, { includeGate: releaseGate !== null });
      await prunePool(settings, log).catch((error: unknown) => fail('pruning the worktree pool failed', error));
    } finally {
      await releaseGate?.();
    }
    // Stopped while starting: start nothing more (stop() is not waiting for what comes next).
    if (stopping) return;
    const watchOptions = { depth: 0, ignoreInitial: true, usePolling: poll, interval: 500, ignored: (f: string) => isIgnoredName(path.basename(f)) && !layoutDirs(layout).includes(f) };
    const on = (dir: string, handler: (name: string) => void) => {
      const w = chokidarWatch(dir, watchOptions);
      w.on('add', (f) => handler(path.basename(f)));
      w.on('change', (f) => handler(path.basename(f)));
      w.on('error', (error) => log.warn({ err: toErrorInfo(error), dir }, 'watcher error; the reconcile scan goes on'));
      watchers.push(w);
      return new Promise<void>((resolve) => w.once('ready', () => resolve()));
    };
    // inbox/ with OS events (not polled): fs.watch names the file, where chokidar reads the
    // whole folder again on each event (seconds of CPU in a burst of 1,000). Our own
    // temps and names that left are sorted out by consider(); lost events by the scan.
    const onInbox = (dir: string, handler: (name: string) => void) => {
      if (poll) return on(dir, handler);
      const w = fsWatch(dir, (_event, name) => {
        if (name) handler(name.toString());
      });
      w.on('error', (error) => log.warn({ err: toErrorInfo(error), dir }, 'watcher error; the reconcile scan goes on'));
      watchers.push({ close: async () => w.close() });
      return Promise.resolve();
    };
    // Ready means chokidar has set up its fs watchers: closing one before that can leave an
    // inotify handle open, and the process then never exits.
    await Promise.all([onInbox(layout.inbox, (n) => void consider(n)), on(layout.patches.approved, considerApproved), on(layout.patches.rejected, (n) => void considerRejected(n))]);
    timers.push(setInterval(() => void scan(), scanMs));
    const healthMs = options.healthMs ?? 60_000;
    timers.push(
      setInterval(async () => {
        const h = await health();
        options.onHealth?.(h);
        log.info({ health: h }, `health: inbox ${h.inbox}, running ${h.running}, pending patches ${h.pending_patches}${h.last_error ? `, last error: ${h.last_error}` : ''}`);
      }, healthMs),
    );
    await scan();
    log.info({ root: layout.root, concurrency, polling: poll, settle_ms: settleMs }, 'watching inbox/, patches/approved/, patches/rejected/');
    if (stopping) return;
    const supervisorLog = options.supervisorLog ?? createLogger({ logsDir: layout.logs, prefix: 'supervisor', console: 'none', redact: makeRedactor(settings.env) });
    // Like the queue's runs: a stopped cycle task's incomplete patch gets 5 s of checks.
    scheduler = startScheduler(settings, supervisorLog, { signal: abort.signal, stopChecksGraceS: STOP_CHECKS_GRACE_S, ...(options.clock ? { clock: options.clock } : {}), ...(options.engine ? { engine: options.engine } : {}) });
    if (scheduler) {
      await scheduler.start();
      log.info({ jobs: config.supervisor.schedule.map((j) => `${j.cron} ${j.goal}`), timezone: config.supervisor.timezone }, 'supervisor schedule active');
    }
  };
  const ready = start();

  let stopped: Promise<void> | null = null;
  const { hurry, hurried } = hurrySwitch();

  const stopAll = async (): Promise<void> => {
    stopping = true;
    for (const t of timers) clearInterval(t);
    timers = [];
    // A running cycle is asked to stop creating tasks; it is aborted with the rest below.
    const schedulerStopped = scheduler?.stop() ?? Promise.resolve();
    // Queued jobs go on without this process: the next start files them.
    const remoteClosed = remote?.close() ?? Promise.resolve();
    // A start in progress finishes first (it starts nothing more once stopping), so the
    // watchers are closed after chokidar has set them up.
    await bounded(ready.catch(() => undefined), SETTLE_MS);
    for (const t of timers) clearInterval(t);
    timers = [];
    await bounded(Promise.all(watchers.map((w) => w.close())), SETTLE_MS);
    watchers = [];
    const grace = options.graceMs ?? config.queue.shutdown_grace_s * 1000;
    const work = () => Promise.allSettled([...running.values(), gateBusy ?? Promise.resolve(), schedulerStopped, remoteClosed]);
    const busy = running.size > 0 || gateBusy;
    if (busy && grace > 0) log.info({ running: [...running.keys()], gate: gateQueue[0] ?? null, grace_ms: grace }, 'stopping: waiting for running work');
    await windDown(work, busy ? grace : 0, hurried, () => abort.abort());
    if (running.size > 0 || gateBusy) log.warn({ running: [...running.keys()], gate: gateQueue[0] ?? null }, 'stopping without waiting longer: crash recovery at the next start returns what is left');
    // An interrupted gate run left its patch under a private name: give it back now.
    if (!gateBusy) await recoverInterruptedGateRuns(settings, log).catch((error: unknown) => fail('restoring an interrupted gate run failed', error));
  };

  return {
    ready,
    health,
    stop(stopOptions = {}) {
      if (stopOptions.now) hurry();
      stopped ??= stopAll();
      return stopped;
    },
  };
}
