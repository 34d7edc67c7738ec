/**
 * The soak harness: N simulated nights of unattended operation against the real service.
 *
 * One workspace in a temp folder, the real `meta-agent watch` process (restarted after each
 * kill), a scripted model on 127.0.0.1 and a scripted person. Each night the simulated clock
 * (META_AGENT_CLOCK_FILE) goes to 02:29 then 02:31 in Kyiv (daily_maintenance; on Saturdays
 * 03:01 too: weekly_retrain); during the day the person approves, rejects, drops tasks and
 * commits. Faults come at random from a seeded PRNG: kill -9 mid-task and mid-gate, clock
 * jumps, a full disk (META_AGENT_FAULT_ENOSPC), and the model's 429s, 500s, hangs and
 * malformed tool calls. After every night the invariants (soak/invariants.ts) are checked;
 * a breach fails the run, naming the night and the seed.
 */
import { promises as fs, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { layoutFor, type Layout } from '../src/workspace/layout.ts';
import { ledgerKey } from '../src/queue/ledger.ts';
import type { LedgerEntry } from '../src/queue/ledger.ts';
import { sleep } from '../test/helpers/procs.ts';
import { REPO_ROOT } from '../test/helpers/workspace.ts';
import { Prng } from './prng.ts';
import { addDays, firstFriday, iso, SimClock, zonedInstant, type LocalDate } from './time.ts';
import { startScriptedModel, STEP_TOKENS, type ScriptedModel } from './llm.ts';
import { makeSoakWorkspace, type SoakConfig, type SoakWorkspace } from './workspace.ts';
import { Service } from './service.ts';
import { approveByHand, commitByHand, dropTask, humanTaskText, rejectByHand, sha256 } from './human.ts';
import {
  checkBuildGreen,
  checkCommits,
  checkCycles,
  checkLedger,
  checkLeftovers,
  checkNothingLost,
  checkPatches,
  checkRetention,
  cycleReports,
  metaCommits,
  names,
  newTracking,
  patchKey,
  trackLedger,
  type Breach,
  type Tracking,
} from './invariants.ts';
import { FOUND_BUGS, FOUND_BUGS_BULLMQ } from './found.ts';
import type { CycleReport } from '../src/contract/cycle.ts';
import { renderReport } from './report.ts';
import { Redis, WorkerSlot, workerConfig, type JobEvent } from './cluster.ts';
import { checkFiledOnce, checkWorkerRuns, type Interruption } from './invariants.ts';

export interface SoakOptions {
  nights: number;
  seed: number;
  /** Where to write the Markdown report (null: nowhere). */
  out: string | null;
  /** No faults at all (a baseline run). */
  noFaults?: boolean;
  /** Keep the temp folder (its path is printed). */
  keep?: boolean;
  /** Stop at the first night with a failing breach (default true). */
  failFast?: boolean;
  log?: (line: string) => void;
  /** The command line to print as "reproduce with". */
  command?: string;
  /**
   * The BullMQ mode (issue 18) with this many `meta-agent worker` processes: `watch` is the
   * folder host, a real redis-server runs in the temp folder (soak/cluster.ts). 0: the local mode.
   */
  workers?: number;
}

/** execution.lock_s of the BullMQ mode: a killed worker's job runs again after this (and one stalled check). */
const LOCK_S = 8;
/**
 * The BullMQ mode's limits: a worker's run also fetches the repository and its job waits for
 * a free worker, and a killed worker's job starts again only after lock_s and a stalled check;
 * with the local mode's 40/45 s, on a loaded 2-core machine, cycles gave up on tasks that
 * were still running (a cycle-report breach that says nothing about the engine).
 */
const CLUSTER_TIMEOUTS = { taskTimeoutS: 90, waitTimeoutS: 180 };

/** How long a frozen service stays stopped: past the soak's lease_stale_s (3 s) and proper-lockfile's floor. */
const FREEZE_MS = 5000;

export type FaultKind =
  | 'kill_mid_task_night'
  | 'kill_mid_task_day'
  | 'kill_mid_gate'
  | 'kill_gate_after_commit'
  | 'clock_jump'
  | 'enospc_window'
  | 'human_conflicting_commit'
  | 'freeze_mid_task'
  | 'stalled_writer'
  | 'clock_back_mid_task'
  | ClusterFaultKind;

/** The BullMQ mode's own faults. */
export type ClusterFaultKind = 'worker_kill_mid_task' | 'worker_sigterm_mid_task' | 'redis_restart' | 'redis_restart_empty';

export interface NightRecord {
  night: number;
  date: string;
  weekday: string;
  cycles: Array<{ cycle_id: string; goal: string; status: string; tasks: number; spent: number; served: number; budget: number }>;
  faults: string[];
  approved: number;
  rejected: number;
  dropped: number;
  commits: number;
  breaches: number;
  wallMs: number;
}

export interface SoakStats {
  nights: number;
  nightsRun: number;
  seed: number;
  tasks: { total: number; supervisor: number; human: number; redo: number; done: number; failed: number };
  runs: number;
  patches: { produced: number; applied: number; rejectedByGate: number; rejectedByHuman: number; pending: number; conflicts: number };
  commits: { meta: number; human: number };
  faults: Record<string, number>;
  faultsSkipped: Record<string, number>;
  recoveries: Record<string, number>;
  llm: { requests: number };
  peakRssKb: number;
  diskBytes: number;
  wallMs: number;
  serviceStarts: number;
  /** The meta-agent commit under test. */
  version: string;
  /** The BullMQ mode's figures (null: the local mode). */
  cluster: null | {
    workers: number;
    workerStarts: number;
    redisStarts: number;
    jobStarts: number;
    extraRuns: number;
    lockS: number;
    taskTimeoutS: number;
    waitTimeoutS: number;
  };
}

export interface Observation {
  night: number;
  kind: string;
  detail: string;
}

export interface SoakResult {
  ok: boolean;
  observations: Observation[];
  failing: Breach[];
  stats: SoakStats;
  nights: NightRecord[];
  markdown: string;
  command: string;
}

const TZ = 'Europe/Kyiv';
const RETENTION = { logs_days: 2, reports_days: 3 };
/** daily audit (2 steps) + risk review (1 step) fit; a retried or malformed step makes the budget bite. */
const BUDGET_TOKENS = 6000;
/** queue.lease_stale_s (3 s, soak/workspace.ts) plus the sweep's own second and a scan or two. */
const TEMP_SWEEP_MS = 5500;
const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

/** The BullMQ mode's faults of one night (drawn from their own stream: the local mode's plan stays what it was for a seed). */
interface ClusterPlan {
  workerKill: null | { phase: 'night' | 'day'; delayMs: number };
  workerTerm: null | { phase: 'night' | 'day'; delayMs: number };
  redis: null | { phase: 'night' | 'day'; delayMs: number; withData: boolean };
}

interface NightPlan {
  killTask: null | 'night' | 'day';
  killTaskDelayMs: number;
  killGate: null | 'random' | 'commit';
  killGateDelayMs: number;
  enospc: null | { phase: 'night' | 'day'; afterMs: number; durationMs: number };
  clockJump: null | { hours: number; minutes: number };
  commit: null | 'conflicting' | 'elsewhere';
  commitFirst: boolean;
  drops: Array<{ slow: boolean; type: 'custom' | 'audit_code' }>;
  /** SIGSTOP of the service past lease_stale_s while it runs a task, then SIGCONT (issue 14). */
  freeze: boolean;
  /** One slow drop stalls longer than settle_ms between its chunks (a slow network copy). */
  stall: boolean;
  /** The service's wall clock set back an hour while it runs a task, until the end of the day (issue 14). */
  clockBack: boolean;
  redrop: boolean;
}

interface Armed {
  kind: FaultKind;
  night: number;
  condition: () => Promise<boolean>;
  delayMs: number;
  fired: boolean;
  busy: boolean;
}

/** Runs in progress, for emergencyCleanup(): the process groups to kill (the service, workers) and Redis. */
const active = new Set<{ base: string; keep: boolean; pid: () => number | null; groups?: () => number[]; redis?: () => number | null }>();

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const soak = new Soak(options);
  return soak.run();
}

/**
 * For a SIGINT/SIGTERM of the harness: kills the service process groups and removes the temp
 * folders, synchronously (nothing async runs after this).
 */
export function emergencyCleanup(): void {
  for (const run of active) {
    for (const pid of [run.pid(), ...(run.groups?.() ?? [])]) {
      if (!pid) continue;
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    const redis = run.redis?.();
    if (redis) {
      try {
        process.kill(redis, 'SIGKILL');
      } catch {
        // gone
      }
    }
    if (run.keep) continue;
    try {
      rmSync(run.base, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
  active.clear();
}

class Soak {
  private readonly log: (line: string) => void;
  private readonly prng: Prng;
  private ws!: SoakWorkspace;
  private layout!: Layout;
  private clock!: SimClock;
  private service!: Service;
  private model!: ScriptedModel;
  private readonly tracking: Tracking = newTracking();
  private readonly breaches: Breach[] = [];
  private readonly nights: NightRecord[] = [];
  private readonly faults: Record<string, number> = {};
  private readonly faultsSkipped: Record<string, number> = {};
  private armed: Armed[] = [];
  private poller: NodeJS.Timeout | null = null;
  private fastPoller: NodeJS.Timeout | null = null;
  private polling = false;
  private copying = new Set<string>();
  private night = 0;
  private nightFaults: string[] = [];
  private readonly faultsByNight = new Map<number, string[]>();
  private pendingSince = new Map<string, number>();
  private humanDropsText = new Map<string, string>();
  private humanRejected = new Set<string>();
  private humanCommitPaused = false;
  private lastMain = '';
  private enospcRuns: Promise<void>[] = [];
  private readonly t0 = Date.now();
  private commitCount = 0;
  private readonly observations: Observation[] = [];
  /** The BullMQ mode: Redis and the worker machines (null/empty in the local mode). */
  private redis: Redis | null = null;
  private slots: WorkerSlot[] = [];
  /** Worker kills and Redis restarts, with the runs each could make run once more. */
  private readonly interruptions: Interruption[] = [];
  /** Claims (name@run) the stuck-claim check saw, and when (Date.now()). */
  private readonly claimsSeen = new Map<string, number>();
  /** Real time the current night started (Date.now()). */
  private nightStartedAt = 0;

  constructor(private readonly options: SoakOptions) {
    this.log = options.log ?? ((line) => console.log(line));
    this.prng = new Prng(options.seed);
  }

  async run(): Promise<SoakResult> {
    const { nights, seed } = this.options;
    const base = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-soak-'));
    const handle = {
      base,
      keep: Boolean(this.options.keep),
      pid: () => this.service?.pid ?? null,
      groups: () => this.slots.map((w) => w.pid ?? 0),
      redis: () => this.redis?.pid ?? null,
    };
    // With --keep too: the processes go, the folder stays.
    active.add(handle);
    let result: SoakResult | null = null;
    try {
      this.model = await startScriptedModel({ seed, maxRetries: 2, ...(this.options.noFaults ? { rates: { p429: 0, p500: 0, hang: 0, malformed: 0 } } : {}) });
      const config: SoakConfig = {
        llmUrl: this.model.llm.url,
        budgetTokens: BUDGET_TOKENS,
        waitTimeoutS: this.options.workers ? CLUSTER_TIMEOUTS.waitTimeoutS : 45,
        taskTimeoutS: this.options.workers ? CLUSTER_TIMEOUTS.taskTimeoutS : 40,
        maxSteps: 6,
        retentionLogsDays: RETENTION.logs_days,
        retentionReportsDays: RETENTION.reports_days,
        timezone: TZ,
        ...(this.options.workers ? { bullmq: { lockS: LOCK_S, maxStalled: 1 } } : {}),
      };
      this.ws = await makeSoakWorkspace(base, config);
      const clusterEnv: Record<string, string> = {};
      if (this.options.workers) {
        this.redis = new Redis(base);
        await this.redis.start();
        clusterEnv.REDIS_URL = this.redis.url;
        const hostYaml = await fs.readFile(path.join(this.ws.root, 'meta-agent.yaml'), 'utf8');
        for (let i = 1; i <= this.options.workers; i++) {
          const root = path.join(base, 'workers', `w${i}`);
          await fs.mkdir(root, { recursive: true });
          await fs.writeFile(path.join(root, 'meta-agent.yaml'), workerConfig(hostYaml, this.ws.repo));
          // The same simulated time as the folder host (machines whose clocks agree); its own disk: no ENOSPC flag.
          this.slots.push(
            new WorkerSlot(`w${i}`, root, {
              ...clusterEnv,
              META_AGENT_CLOCK_FILE: this.ws.clockFile,
              OPENAI_BASE_URL: '',
              META_AGENT_MODEL: '',
              OPENAI_API_KEY: '',
            }),
          );
        }
      }
      this.layout = layoutFor(this.ws.root);
      const start = firstFriday(new Date(), TZ);
      const eve = addDays(start, -1);
      this.clock = new SimClock(this.ws.clockFile, this.at(eve, 18, 0));
      await this.clock.set(this.clock.now());
      this.log(`[soak] seed ${seed}, ${nights} night(s) from ${iso(start)} (${WEEKDAYS[start.dow]}), workspace ${this.ws.root}`);
      this.service = new Service(this.ws.root, {
        META_AGENT_CLOCK_FILE: this.ws.clockFile,
        META_AGENT_FAULT_ENOSPC: this.ws.enospcFlag,
        META_AGENT_FAULT_CLOCK_SKEW_FILE: this.clockSkewFile(),
        OPENAI_BASE_URL: '',
        META_AGENT_MODEL: '',
        OPENAI_API_KEY: '',
        ...clusterEnv,
      });
      await this.service.start();
      for (const w of this.slots) await w.start();
      if (this.slots.length) this.log(`[soak] BullMQ mode: ${this.slots.length} worker(s), redis-server pid ${this.redis!.pid} on ${this.redis!.socket}`);
      this.lastMain = await this.mainRef();
      this.startPollers();

      for (let n = 1; n <= nights; n++) {
        this.night = n;
        const failing = await this.runNight(n, addDays(start, n - 1));
        if (failing.length && this.options.failFast !== false) {
          this.log(`[soak] night ${n}: ${failing.length} breach(es); stopping (seed ${seed})`);
          break;
        }
      }
      result = await this.finish();
      return result;
    } finally {
      this.stopPollers();
      await fs.rm(this.ws?.enospcFlag ?? path.join(base, 'enospc.flag'), { force: true }).catch(() => undefined);
      await this.service?.stop().catch(() => undefined);
      await Promise.all(this.slots.map((w) => w.stop().catch(() => undefined)));
      await this.redis?.stop().catch(() => undefined);
      await this.model?.close().catch(() => undefined);
      active.delete(handle);
      if (this.options.keep) this.log(`[soak] kept ${base}`);
      else await fs.rm(base, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  private at(date: LocalDate, hh: number, mm: number): Date {
    return zonedInstant(TZ, date.y, date.m, date.d, hh, mm);
  }

  // --- one night and its day ----------------------------------------------------------------

  private plan(n: number): NightPlan {
    const r = this.prng.fork(`night-${n}`);
    const none = this.options.noFaults;
    // Each fault kind is forced once in every block of three nights (so a 3-night run sees them all), plus chance.
    const pos = (n - 1) % 3;
    const forced = (k: number) => !none && pos === (k + this.options.seed) % 3;
    const killTask = forced(0) || (!none && r.chance(0.2)) ? (r.chance(0.5) ? 'night' : 'day') : null;
    const killGate = forced(1) || (!none && r.chance(0.2)) ? (r.chance(0.5) ? 'commit' : 'random') : null;
    const enospc =
      forced(2) || (!none && r.chance(0.15))
        ? { phase: r.chance(0.5) ? ('night' as const) : ('day' as const), afterMs: r.int(0, 3000), durationMs: r.int(1000, 3000) }
        : null;
    const clockJump = forced(1) || (!none && r.chance(0.2)) ? { hours: r.int(2, 5), minutes: r.int(0, 59) } : null;
    const commit = r.chance(0.6) ? (r.chance(0.5) ? 'conflicting' : 'elsewhere') : null;
    const drops = Array.from({ length: r.int(0, 2) }, () => ({ slow: r.chance(0.4), type: r.chance(0.5) ? ('custom' as const) : ('audit_code' as const) }));
    const base: Omit<NightPlan, 'freeze' | 'stall' | 'clockBack'> = {
      killTask,
      killTaskDelayMs: r.int(0, 1500),
      killGate,
      killGateDelayMs: r.int(0, 1500),
      enospc,
      clockJump,
      commit,
      commitFirst: r.chance(0.5),
      drops,
      redrop: r.chance(0.15),
    };
    // Drawn last, so the faults above stay what they were for a seed.
    const freeze = forced(0) || (!none && r.chance(0.2));
    const stall = !none && (forced(2) || r.chance(0.3));
    const clockBack = forced(1) || (!none && r.chance(0.2));
    return { ...base, freeze, stall, clockBack };
  }

  private clusterPlan(n: number): ClusterPlan {
    const none: ClusterPlan = { workerKill: null, workerTerm: null, redis: null };
    if (!this.options.workers || this.options.noFaults) return none;
    const r = this.prng.fork(`bullmq-night-${n}`);
    // As in plan(): each kind forced once in every block of three nights, plus chance.
    const pos = (n - 1) % 3;
    const forced = (k: number) => pos === (k + this.options.seed) % 3;
    const phase = () => (r.chance(0.5) ? ('night' as const) : ('day' as const));
    const workerKill = forced(0) || r.chance(0.3) ? { phase: phase(), delayMs: r.int(0, 1500) } : null;
    const workerTerm = forced(1) || r.chance(0.3) ? { phase: phase(), delayMs: r.int(0, 1500) } : null;
    // The forced Redis restart of a block alternates: with its data (appendonly), then without (every job lost).
    const block = Math.floor((n - 1) / 3);
    const redisForced = forced(2);
    const redis =
      redisForced || r.chance(0.2)
        ? { phase: phase(), delayMs: r.int(0, 1500), withData: redisForced ? (block + this.options.seed) % 2 === 0 : r.chance(0.6) }
        : null;
    return { workerKill, workerTerm, redis };
  }

  /** Arms this phase's BullMQ faults: worker ones when a worker runs a job, Redis ones when a task is claimed. */
  private armCluster(plan: ClusterPlan, phase: 'night' | 'day', n: number): void {
    if (plan.workerKill?.phase === phase) this.arm('worker_kill_mid_task', n, async () => (await this.busyWorker()) !== null, plan.workerKill.delayMs);
    if (plan.workerTerm?.phase === phase) this.arm('worker_sigterm_mid_task', n, async () => (await this.busyWorker()) !== null, plan.workerTerm.delayMs);
    if (plan.redis?.phase === phase) this.arm(plan.redis.withData ? 'redis_restart' : 'redis_restart_empty', n, () => this.hasClaim(), plan.redis.delayMs);
  }

  /** A worker whose current process runs a job (by its log), the first in a seeded order. */
  private async busyWorker(): Promise<{ slot: WorkerSlot; running: JobEvent[] } | null> {
    // Only runs still claimed in processing/: a run whose job Redis lost goes on where it was,
    // and its end is not always logged; the host filed the re-run's result long ago.
    const claimed = new Set(await this.claimedRuns());
    for (const slot of this.slots) {
      if (!slot.proc) continue;
      const running = (await slot.running()).filter((e) => claimed.has(e.runId));
      if (running.length) return { slot, running };
    }
    return null;
  }

  /** The run ids of the claims in processing/ (their owner notes). */
  private async claimedRuns(): Promise<string[]> {
    const out: string[] = [];
    for (const name of (await names(this.layout.processing)).filter((x) => x.endsWith('.md'))) {
      const note = await fs.readFile(path.join(this.layout.processing, `.${name}.owner.json`), 'utf8').then(
        (t) => JSON.parse(t) as { run_id?: string },
        () => null,
      );
      if (note?.run_id) out.push(note.run_id);
    }
    return out;
  }

  private async runNight(n: number, date: LocalDate): Promise<Breach[]> {
    const started = Date.now();
    this.nightStartedAt = started;
    const plan = this.plan(n);
    const cplan = this.clusterPlan(n);
    const human = this.prng.fork(`human-${n}`);
    this.nightFaults = [];
    this.faultsByNight.set(n, this.nightFaults);
    const saturday = date.dow === 6;
    const record: NightRecord = {
      night: n,
      date: iso(date),
      weekday: WEEKDAYS[date.dow]!,
      cycles: [],
      faults: this.nightFaults,
      approved: 0,
      rejected: 0,
      dropped: 0,
      commits: 0,
      breaches: 0,
      wallMs: 0,
    };
    const before = this.breaches.length;

    // --- the night: the schedule runs daily_maintenance (and weekly_retrain on Saturdays).
    await this.waitIdle(n, 'the start of the night');
    await this.clock.set(this.at(date, 2, 29));
    await sleep(1200);
    if (plan.killTask === 'night') this.arm('kill_mid_task_night', n, () => this.hasClaim(), plan.killTaskDelayMs);
    if (plan.enospc?.phase === 'night') this.enospc(plan.enospc.afterMs, plan.enospc.durationMs, 'night');
    this.armCluster(cplan, 'night', n);
    await this.clock.set(this.at(date, 2, 31));
    const expected = [{ goal: 'daily_maintenance', from: this.at(date, 2, 29), to: this.at(date, 4, 0) }];
    await this.waitCycle(n, 'daily_maintenance', this.at(date, 2, 30));
    if (saturday) {
      await this.waitIdle(n, 'the daily cycle before the weekly one');
      await this.clock.set(this.at(date, 3, 1));
      expected.push({ goal: 'weekly_retrain', from: this.at(date, 2, 59), to: this.at(date, 4, 0) });
      await this.waitCycle(n, 'weekly_retrain', this.at(date, 3, 0));
    }
    await this.waitIdle(n, 'the end of the night');
    await this.endFaults();

    // --- the morning: the cycle reports.
    const { breaches: cycleBreaches, reports } = await checkCycles(n, this.layout, expected, STEP_TOKENS, this.model.served);
    this.breaches.push(...this.budgetOfExtraRuns(cycleBreaches, reports));
    record.cycles = reports.map((r) => ({
      cycle_id: r.cycle_id,
      goal: r.goal,
      status: r.status,
      tasks: r.tasks.length,
      spent: r.budget.spent_tokens,
      served: r.tasks.reduce((sum, x) => sum + (this.model.served.get(x.task_id) ?? 0), 0),
      budget: r.budget.tokens,
    }));

    // --- the day: the person reviews, drops tasks, commits; faults around the gate.
    await this.clock.set(this.at(date, 10, 0));
    await sleep(600);
    if (plan.killTask === 'day') this.arm('kill_mid_task_day', n, () => this.hasClaim(), plan.killTaskDelayMs);
    if (plan.freeze) this.arm('freeze_mid_task', n, () => this.hasClaim(), plan.killTaskDelayMs);
    if (plan.clockBack) this.arm('clock_back_mid_task', n, () => this.hasClaim(), plan.killTaskDelayMs);
    if (plan.killGate === 'random') this.arm('kill_mid_gate', n, () => this.gateBusy(), plan.killGateDelayMs);
    if (plan.killGate === 'commit') this.arm('kill_gate_after_commit', n, () => this.gateJustCommitted(), 0);
    if (plan.enospc?.phase === 'day') this.enospc(plan.enospc.afterMs, plan.enospc.durationMs, 'day');
    this.armCluster(cplan, 'day', n);

    const middle: Array<() => Promise<void>> = [];
    const doCommit = async () => {
      if (!plan.commit) return;
      this.humanCommitPaused = true;
      try {
        const { sha } = await commitByHand(this.ws.repo, plan.commit, `n${n}`);
        this.tracking.humanCommits.add(sha);
        this.lastMain = sha;
        this.commitCount++;
        record.commits++;
        if (plan.commit === 'conflicting') this.fault('human_conflicting_commit', `a commit of the person in bot/sizing.py`);
      } catch (error) {
        // meta-agent must never leave the person's repository so that they cannot commit.
        this.breaches.push({ night: n, invariant: 'person-blocked', detail: (error as Error).message.split('\n')[0]! });
      } finally {
        this.humanCommitPaused = false;
      }
    };
    middle.push(async () => {
      const pending = (await names(this.layout.patches.pending)).filter((x) => x.endsWith('.patch')).map((x) => x.slice(0, -'.patch'.length));
      const order = human.shuffle(pending);
      let approvedOne = false;
      for (const [i, id] of order.entries()) {
        const age = n - (this.pendingSince.get(id) ?? n);
        const roll = human.next();
        const mustDecide = age >= 2;
        const forceApprove = plan.killGate !== null && !approvedOne && i === order.length - 1;
        if (forceApprove || roll < 0.5 || (mustDecide && roll < 0.75)) {
          if (await approveByHand(this.layout, id)) {
            this.tracking.approved.add(id);
            record.approved++;
            approvedOne = true;
          }
        } else if (roll < 0.7 || mustDecide) {
          if (await rejectByHand(this.layout, id, `Not now (night ${n}): the person prefers to keep ${id} out.`)) {
            this.humanRejected.add(id);
            record.rejected++;
          }
        }
        await sleep(human.int(50, 400));
      }
    });
    for (const [k, d] of plan.drops.entries()) {
      middle.push(async () => {
        const name = `h-n${String(n).padStart(2, '0')}-${k + 1}.md`;
        const text = humanTaskText(`Human request ${n}.${k + 1}: add a small note to the sizing code or its tests`, d.type);
        // A stalled writer: a gap several times settle_ms (300 ms), inside the front matter.
        const stalled = plan.stall && k === 0;
        if (stalled) this.fault('stalled_writer', name);
        await this.drop(name, text, stalled ? { chunks: 3, gapMs: 1500 } : d.slow ? { chunks: human.int(3, 6), gapMs: human.int(60, 180) } : null);
        record.dropped++;
      });
    }
    if (plan.redrop && this.humanDropsText.size) {
      middle.push(async () => {
        const [name, text] = human.pick([...this.humanDropsText.entries()]);
        if ((await names(this.layout.inbox)).includes(name) || (await names(this.layout.processing)).includes(name)) return;
        await this.drop(name, text, null);
        record.dropped++;
      });
    }
    const shuffled = human.shuffle(middle);
    const actions = plan.commitFirst ? [doCommit, ...shuffled] : [...shuffled, doCommit];
    for (const action of actions) {
      await action();
      await sleep(human.int(100, 500));
    }
    if (plan.clockJump) {
      const t = new Date(this.clock.now().getTime() + (plan.clockJump.hours * 60 + plan.clockJump.minutes) * 60_000);
      await this.clock.set(t);
      this.fault('clock_jump', `10:00 -> +${plan.clockJump.hours}h${plan.clockJump.minutes}m`);
    }
    await this.waitIdle(n, 'the end of the day', 180_000);
    await this.endFaults();

    // --- the evening: retention runs on the clock move; then everything is checked.
    await this.clock.set(this.at(date, 18, 0));
    const retentionFrom = Date.now();
    await sleep(1500);
    await this.waitIdle(n, 'the evening');
    await this.checkEvening(n, this.at(date, 18, 0), retentionFrom);
    for (const id of (await names(this.layout.patches.pending)).filter((x) => x.endsWith('.patch')).map((x) => x.slice(0, -'.patch'.length)))
      if (!this.pendingSince.has(id)) this.pendingSince.set(id, n);

    record.breaches = this.breaches.length - before;
    record.wallMs = Date.now() - started;
    this.nights.push(record);
    const failing = this.breaches.slice(before);
    const cyc = record.cycles.map((c) => `${c.goal} ${c.status} ${c.tasks}t ${c.served}/${c.budget}tok`).join(', ') || 'no cycle report';
    this.log(
      `[soak] night ${n} ${record.date} ${record.weekday}: ${cyc}; approved ${record.approved}, rejected ${record.rejected}, dropped ${record.dropped}, commits ${record.commits}; faults: ${this.nightFaults.join(', ') || 'none'}; ${(record.wallMs / 1000).toFixed(1)} s${failing.length ? `; BREACHES: ${failing.map((b) => `${b.invariant}: ${b.detail}`).join(' | ')}` : ''}`,
    );
    return failing;
  }

  /** @param retentionFrom the real time the clock moved to `clockAt`: a report finished after it was never seen by that retention pass */
  private async checkEvening(n: number, clockAt: Date, retentionFrom: number): Promise<void> {
    // The service removes a killed process's temp files once they are lease_stale_s old (it
    // cannot tell a dead writer from another host's live one sooner): give a restart that long.
    const up = Date.now() - this.service.startedAt;
    if (up < TEMP_SWEEP_MS) await sleep(TEMP_SWEEP_MS - up);
    await this.waitIdle(n, 'the evening checks');
    const all = await cycleReports(this.layout);
    const checks: Array<Promise<Breach[]>> = [
      checkNothingLost(n, this.layout, this.tracking, all),
      checkPatches(n, this.layout, this.tracking),
      checkLedger(n, this.layout, this.tracking),
      checkCommits(n, this.layout, this.ws.repo, this.tracking),
      checkLeftovers(n, this.layout, this.ws.repo),
      checkBuildGreen(n, this.ws.repo),
      ...(this.slots.length
        ? [this.jobEvents().then((events) => checkWorkerRuns(n, events, this.interruptions)), checkFiledOnce(n, this.layout, this.nightStartedAt)]
        : []),
    ];
    for (const c of checks) this.breaches.push(...(await c));
    // Retention runs in a scan after the clock move: give it a few seconds to be done.
    let retention: Breach[] = [];
    for (let i = 0; i < 10; i++) {
      retention = await checkRetention(n, this.layout, RETENTION, clockAt, retentionFrom);
      if (retention.filter((b) => b.invariant === 'retention').length === 0) break;
      await sleep(500);
    }
    this.breaches.push(...retention);
    await this.restartIfDied(n);
  }

  // --- faults -------------------------------------------------------------------------------

  private fault(kind: FaultKind | string, detail: string, phase?: 'night' | 'day'): void {
    this.faults[kind] = (this.faults[kind] ?? 0) + 1;
    this.nightFaults.push(`${kind}${phase ? `@${phase}` : ''}${detail ? ` (${detail})` : ''}`);
  }

  /** Something worth reporting that is not a breach by itself. */
  private observe(kind: string, detail: string): void {
    this.observations.push({ night: this.night, kind, detail });
    this.log(`[soak] note: ${kind}: ${detail}`);
  }

  /** Milliseconds the service's wall clock (Date) is moved by: src/workspace/faults.ts. */
  private clockSkewFile(): string {
    return path.join(path.dirname(this.ws.clockFile), 'clock-skew-ms.txt');
  }

  private arm(kind: FaultKind, night: number, condition: () => Promise<boolean>, delayMs: number): void {
    this.armed.push({ kind, night, condition, delayMs, fired: false, busy: false });
  }

  /** Ends the phase's faults: unfired ones are counted as skipped (their moment never came). */
  private async endFaults(): Promise<void> {
    for (const a of this.armed) {
      while (a.busy) await sleep(50);
      if (!a.fired) this.faultsSkipped[a.kind] = (this.faultsSkipped[a.kind] ?? 0) + 1;
    }
    this.armed = [];
    await fs.writeFile(this.clockSkewFile(), '0\n'); // the clock set right again (NTP), if it was set back
    await Promise.all(this.enospcRuns);
    this.enospcRuns = [];
    await this.service.settled();
    for (const w of this.slots) await w.settled();
  }

  private enospc(afterMs: number, durationMs: number, phase: 'night' | 'day'): void {
    this.enospcRuns.push(
      (async () => {
        await sleep(afterMs);
        await fs.writeFile(this.ws.enospcFlag, 'full\n');
        this.fault('enospc_window', `${durationMs} ms`, phase);
        await sleep(durationMs);
        await fs.rm(this.ws.enospcFlag, { force: true });
      })(),
    );
  }

  /** One shot: waits the fault's delay, checks the moment is still there, then kill -9 and restart. */
  private async fire(a: Armed): Promise<void> {
    if (a.fired || a.busy) return;
    a.busy = true;
    try {
      if (a.delayMs) await sleep(a.delayMs);
      if (a.fired || !(await a.condition())) return; // the moment passed: wait for the next one
      a.fired = true;
      if (a.kind === 'worker_kill_mid_task' || a.kind === 'worker_sigterm_mid_task' || a.kind === 'redis_restart' || a.kind === 'redis_restart_empty') {
        const what = await this.fireCluster(a.kind);
        if (what === null) a.fired = false;
        else this.fault(a.kind, what);
        return;
      }
      const what = await this.describeMoment();
      if (a.kind === 'freeze_mid_task') await this.service.freeze(FREEZE_MS);
      else if (a.kind === 'clock_back_mid_task') await fs.writeFile(this.clockSkewFile(), `${-3_600_000}\n`);
      else await this.service.killAndRestart();
      this.fault(a.kind, what);
    } finally {
      a.busy = false;
    }
  }

  /**
   * A BullMQ fault, recorded with the runs it may make run once more: a worker's running jobs
   * (by its log), or for Redis every run in flight (claimed in processing/, or running on a
   * worker). Null: the moment passed.
   */
  private async fireCluster(kind: ClusterFaultKind): Promise<string | null> {
    if (kind === 'worker_kill_mid_task' || kind === 'worker_sigterm_mid_task') {
      const busy = await this.busyWorker();
      if (!busy) return null;
      const runIds = busy.running.map((e) => e.runId);
      const jobs = busy.running.map((e) => `${e.taskFile} (job ${e.job})`).join(', ');
      this.interruptions.push({ night: this.night, kind, runIds, tasks: busy.running.map((e) => e.taskFile), at: Date.now() });
      const pid = busy.slot.pid;
      if (kind === 'worker_kill_mid_task') {
        await busy.slot.killAndRestart();
        return `kill -9 of worker ${busy.slot.name} (pid ${pid}) running ${jobs}`;
      }
      const how = await busy.slot.stopAndRestart();
      return `SIGTERM to worker ${busy.slot.name} (pid ${pid}, ${how}) running ${jobs}`;
    }
    const redis = this.redis!;
    const processing = (await names(this.layout.processing)).filter((x) => x.endsWith('.md'));
    const runIds = new Set(await this.claimedRuns());
    const tasks = new Set(processing);
    for (const slot of this.slots) {
      for (const e of await slot.running()) {
        runIds.add(e.runId);
        tasks.add(e.taskFile);
      }
    }
    this.interruptions.push({ night: this.night, kind, runIds: [...runIds], tasks: [...tasks], at: Date.now() });
    const pid = redis.pid;
    const t0 = Date.now();
    await redis.restart(kind === 'redis_restart');
    return `redis-server pid ${pid} stopped (SIGTERM) and started again as pid ${redis.pid} in ${Date.now() - t0} ms${kind === 'redis_restart_empty' ? ', its append-only files removed' : ''}; processing: ${processing.join(' ') || '-'}`;
  }

  private async describeMoment(): Promise<string> {
    const processing = (await names(this.layout.processing)).filter((x) => x.endsWith('.md'));
    const approved = await names(this.layout.patches.approved, { dot: true });
    const taken = approved.filter((x) => x.startsWith('.taken-'));
    return [processing.length ? `processing: ${processing.join(' ')}` : '', taken.length ? `gate: ${taken.join(' ')}` : ''].filter(Boolean).join('; ');
  }

  private async hasClaim(): Promise<boolean> {
    return (await names(this.layout.processing)).some((x) => x.endsWith('.md'));
  }

  private async gateBusy(): Promise<boolean> {
    const approved = await names(this.layout.patches.approved, { dot: true });
    if (approved.some((x) => x.startsWith('.taken-'))) return true;
    return (await names(this.layout.worktrees)).some((x) => x.startsWith('gate-'));
  }

  /** The branch just moved to a commit the person did not make, and the gate has not filed it yet. */
  private async gateJustCommitted(): Promise<boolean> {
    if (this.humanCommitPaused) return false;
    const head = await this.mainRef();
    if (!head || head === this.lastMain) return false;
    if (this.tracking.humanCommits.has(head)) {
      this.lastMain = head;
      return false;
    }
    const results = (await names(this.layout.patches.applied)).filter((x) => x.endsWith('.result.json'));
    for (const r of results) {
      const text = await fs.readFile(path.join(this.layout.patches.applied, r), 'utf8').catch(() => '');
      if (text.includes(head)) {
        this.lastMain = head;
        return false;
      }
    }
    return true;
  }

  private async mainRef(): Promise<string> {
    const loose = await fs.readFile(path.join(this.ws.repo, '.git', 'refs', 'heads', 'main'), 'utf8').catch(() => null);
    if (loose) return loose.trim();
    return (await execa('git', ['rev-parse', 'refs/heads/main'], { cwd: this.ws.repo, reject: false })).stdout.trim();
  }

  // --- the person's drops and the poller ------------------------------------------------------

  private async drop(name: string, text: string, slow: { chunks: number; gapMs: number } | null): Promise<void> {
    const h = sha256(text);
    const { key } = ledgerKey(name, Buffer.from(text));
    this.tracking.humanDrops.set(key, (this.tracking.humanDrops.get(key) ?? 0) + 1);
    this.tracking.humanDropHashes.set(h, (this.tracking.humanDropHashes.get(h) ?? 0) + 1);
    this.humanDropsText.set(name, text);
    this.copying.add(name);
    try {
      await dropTask(this.layout.inbox, name, text, slow);
    } finally {
      this.tracking.inboxSeen.set(name, h);
      this.copying.delete(name);
    }
  }

  private startPollers(): void {
    this.poller = setInterval(() => void this.poll(), 100);
    this.fastPoller = setInterval(() => {
      for (const a of this.armed)
        if (a.kind === 'kill_gate_after_commit' && !a.fired && !a.busy)
          void this.fire(a).catch((error: unknown) => this.log(`[soak] fault ${a.kind} failed: ${String(error)}`));
    }, 5);
  }

  private stopPollers(): void {
    if (this.poller) clearInterval(this.poller);
    if (this.fastPoller) clearInterval(this.fastPoller);
    this.poller = this.fastPoller = null;
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      for (const n of await names(this.layout.inbox)) {
        if (!n.toLowerCase().endsWith('.md') || this.copying.has(n) || this.tracking.inboxSeen.has(n)) continue;
        const data = await fs.readFile(path.join(this.layout.inbox, n)).catch(() => null);
        if (data && !this.copying.has(n)) this.tracking.inboxSeen.set(n, sha256(data));
      }
      for (const n of (await names(this.layout.patches.pending)).filter((x) => x.endsWith('.patch'))) {
        // Only once the sidecar is there (published right after the patch): the key is task@run.
        if (!(await fs.stat(path.join(this.layout.patches.pending, `${n}.json`)).catch(() => null))) continue;
        const k = await patchKey(path.join(this.layout.patches.pending, n), this.layout);
        if (k) this.tracking.patchesSeen.set(k, n.slice(0, -'.patch'.length));
      }
      for (const a of this.armed) {
        if (a.fired || a.busy || a.kind === 'kill_gate_after_commit') continue;
        if (await a.condition()) void this.fire(a).catch((error: unknown) => this.log(`[soak] fault ${a.kind} failed: ${String(error)}`));
      }
    } catch {
      // a folder changed under us: the next poll sees it
    } finally {
      this.polling = false;
    }
  }

  // --- waiting --------------------------------------------------------------------------------

  private async folderState(): Promise<string> {
    const l = this.layout;
    const parts: string[] = [];
    for (const [k, dir] of Object.entries({ inbox: l.inbox, processing: l.processing, approved: l.patches.approved, worktrees: l.worktrees })) {
      const list = await names(dir, { dot: true });
      parts.push(`${k}: ${list.join(' ') || '-'}`);
    }
    return parts.join(' | ');
  }

  private async isIdle(): Promise<boolean> {
    const l = this.layout;
    if ((await names(l.inbox)).some((x) => x.toLowerCase().endsWith('.md'))) return false;
    if ((await names(l.processing, { dot: true })).some((x) => x.endsWith('.md'))) return false;
    if ((await names(l.patches.approved, { dot: true })).some((x) => x.endsWith('.patch'))) return false;
    // Worktrees are not waited for: those of running tasks and gate runs come with a claim or a
    // .taken-* patch; any other is a leftover (an invariant checks that).
    return !(await this.cycleRunning());
  }

  /** The service's scheduler holds its lock (a cycle is running in the live process). */
  private async cycleRunning(): Promise<boolean> {
    const dir = path.join(this.layout.state, 'supervisor');
    if (!(await fs.stat(path.join(dir, '.scheduler.lock')).catch(() => null))) return false;
    const owner = await fs.readFile(path.join(dir, '.scheduler.owner.json'), 'utf8').then(
      (t) => JSON.parse(t) as { pid?: number },
      () => null,
    );
    return owner?.pid === this.service.pid;
  }

  /**
   * Claims of the live service that the ledger does not know after a while: nobody runs them
   * (a claim is recorded in the ledger right after its rename). Reported, then the service
   * is restarted, as an operator would.
   */
  private async stuckClaims(n: number): Promise<boolean> {
    const l = this.layout;
    const ledger = path.join(l.state, 'ledger');
    const known = (await names(ledger)).join('\n');
    const stuck: string[] = [];
    for (const name of (await names(l.processing)).filter((x) => x.endsWith('.md'))) {
      const note = await fs
        .readFile(path.join(l.processing, `.${name}.owner.json`), 'utf8')
        .then((t) => JSON.parse(t) as { pid: number; run_id: string; since: string })
        .catch(() => null); // half-written: looked at again
      if (!note || note.pid !== this.service.pid) continue;
      // Its age by the harness's clock: `since` is the service's, which clock_back_mid_task sets an hour back
      // (a claim made then looked an hour old at once: seed 18's BullMQ night 2).
      const seen = this.claimsSeen.get(`${name}@${note.run_id}`) ?? Date.now();
      this.claimsSeen.set(`${name}@${note.run_id}`, seen);
      if (Date.now() - seen < 10_000) continue;
      let recorded = false;
      for (const f of known.split('\n').filter((x) => x.startsWith(name.replace(/[^A-Za-z0-9._-]/g, '_')))) {
        if ((await fs.readFile(path.join(ledger, f), 'utf8').catch(() => '')).includes(note.run_id)) recorded = true;
      }
      if (!recorded) stuck.push(`${name} (run ${note.run_id}, claimed ${note.since} by the live pid ${note.pid}, not in the ledger)`);
    }
    if (!stuck.length) return false;
    this.breaches.push({ night: n, invariant: 'stuck-claim', detail: `claimed but never run: ${stuck.join('; ')}` });
    this.observe('operator_restart', `night ${n}: the service was restarted to free ${stuck.length} stuck claim(s)`);
    await this.service.killAndRestart();
    return true;
  }

  /** The service exited by itself: a breach; then it is started again (as systemd would). */
  private async restartIfDied(n: number): Promise<void> {
    await this.service.settled();
    for (const failure of this.service.failedStarts.splice(0)) this.breaches.push({ night: n, invariant: 'service-start-failed', detail: failure });
    for (const w of this.slots) {
      await w.settled();
      for (const failure of w.failedStarts.splice(0)) this.breaches.push({ night: n, invariant: 'worker-start-failed', detail: failure });
      if (!w.unexpectedExit) continue;
      this.breaches.push({ night: n, invariant: 'worker-died', detail: w.unexpectedExit });
      w.unexpectedExit = null;
      await w.killAndRestart();
    }
    if (!this.service.unexpectedExit) return;
    this.breaches.push({ night: n, invariant: 'service-died', detail: this.service.unexpectedExit });
    this.service.unexpectedExit = null;
    await this.service.killAndRestart();
  }

  private async waitIdle(n: number, what: string, ms = 120_000): Promise<boolean> {
    const end = Date.now() + ms;
    let since: number | null = null;
    let lastStuckCheck = Date.now();
    while (Date.now() < end) {
      await this.restartIfDied(n);
      if (Date.now() - lastStuckCheck > 2000) {
        lastStuckCheck = Date.now();
        await this.stuckClaims(n);
      }
      if ((await this.isIdle()) && !this.armed.some((a) => a.busy)) {
        since ??= Date.now();
        if (Date.now() - since >= 1200) return true;
      } else since = null;
      await sleep(150);
    }
    this.breaches.push({ night: n, invariant: 'not-idle', detail: `the queue was not idle within ${ms / 1000} s at ${what}: ${await this.folderState()}` });
    // An operator would restart a stuck service: so does the harness, to go on with the nights.
    this.observe('operator_restart', `night ${n}: the service was restarted after the queue stayed busy at ${what}`);
    await this.service.killAndRestart();
    return false;
  }

  private async waitCycle(n: number, goal: string, since: Date, ms = 90_000): Promise<boolean> {
    const start = Date.now();
    let quietSince: number | null = null;
    while (Date.now() < start + ms) {
      const found = (await cycleReports(this.layout)).some((r) => r.goal === goal && Date.parse(r.started_at) >= since.getTime());
      if (found) return true;
      // No report, and nothing runs any more (the cycle died without one): stop waiting.
      await this.restartIfDied(n);
      if (Date.now() - start > 4000 && (await this.isIdle())) {
        quietSince ??= Date.now();
        if (Date.now() - quietSince > 3000) return false;
      } else quietSince = null;
      await sleep(200);
    }
    return false;
  }

  // --- the end ----------------------------------------------------------------------------------

  private async finish(): Promise<SoakResult> {
    const l = this.layout;
    const failing = this.breaches;
    const ledgerDir = path.join(l.state, 'ledger');
    const entries: LedgerEntry[] = [];
    for (const n of (await names(ledgerDir)).filter((x) => x.endsWith('.json')))
      entries.push(JSON.parse(await fs.readFile(path.join(ledgerDir, n), 'utf8')) as LedgerEntry);
    const recoveries: Record<string, number> = {};
    for (const e of entries) for (const r of e.runs) if (r.recovered) recoveries[r.recovered] = (recoveries[r.recovered] ?? 0) + 1;
    const logText = await this.serviceLogs();
    const count = (re: RegExp) => (logText.match(re) ?? []).length;
    recoveries.gate_run_resumed = count(/an interrupted gate run left this patch/g);
    recoveries.orphaned_worktrees_removed = count(/removed \d+ orphaned worktree/g);
    const results = await Promise.all(
      (await names(l.patches.applied))
        .filter((x) => x.endsWith('.result.json'))
        .map(async (x) => JSON.parse(await fs.readFile(path.join(l.patches.applied, x), 'utf8')) as { reason: string | null }),
    );
    recoveries.gate_already_applied = results.filter((r) => /already applied/.test(r.reason ?? '')).length;
    const reasons = await Promise.all(
      (await names(l.patches.rejected)).filter((x) => x.endsWith('.reason.md')).map((x) => fs.readFile(path.join(l.patches.rejected, x), 'utf8')),
    );
    const taskNames = [...(await names(l.done)), ...(await names(l.failed))].filter((x) => x.endsWith('.md') && !x.endsWith('.error.md'));
    await trackLedger(l, this.tracking);
    const inboxSeen = [...this.tracking.inboxSeen.keys()];
    const du = await execa('du', ['-sb', this.ws.root], { reject: false });
    this.service.sample();
    const stats: SoakStats = {
      nights: this.options.nights,
      nightsRun: this.nights.length,
      seed: this.options.seed,
      tasks: {
        total: inboxSeen.length,
        supervisor: inboxSeen.filter((x) => /^S\d+_/.test(x) && !x.includes('-redo')).length,
        human: inboxSeen.filter((x) => x.startsWith('h-') && !x.includes('-redo')).length,
        redo: inboxSeen.filter((x) => x.includes('-redo')).length,
        done: (await names(l.done)).filter((x) => x.endsWith('.md')).length,
        failed: taskNames.length - (await names(l.done)).filter((x) => x.endsWith('.md')).length,
      },
      runs: entries.reduce((s, e) => s + e.runs.length, 0),
      patches: {
        produced: this.tracking.patchesSeen.size,
        applied: (await metaCommits(this.ws.repo)).length,
        rejectedByGate: reasons.filter((r) => /rejected by the approval gate/.test(r)).length,
        rejectedByHuman: this.humanRejected.size,
        pending: (await names(l.patches.pending)).filter((x) => x.endsWith('.patch')).length,
        conflicts: reasons.filter((r) => /does not apply on/.test(r)).length,
      },
      commits: { meta: (await metaCommits(this.ws.repo)).length, human: this.commitCount },
      faults: { ...this.faults, ...Object.fromEntries(Object.entries(this.model.faults).filter(([, v]) => v > 0)) },
      faultsSkipped: this.faultsSkipped,
      recoveries,
      llm: { requests: this.model.llm.requests.length },
      peakRssKb: this.service.peakRssKb,
      diskBytes: Number(du.stdout.split(/\s/)[0]) || 0,
      wallMs: Date.now() - this.t0,
      serviceStarts: this.service.starts,
      version: '',
      cluster: null,
    };
    if (this.slots.length) {
      const starts = (await this.jobEvents()).filter((e) => e.kind === 'started');
      const byRun = new Map<string, number>();
      for (const e of starts) byRun.set(e.runId, (byRun.get(e.runId) ?? 0) + 1);
      stats.cluster = {
        workers: this.slots.length,
        workerStarts: this.slots.reduce((sum, w) => sum + w.starts, 0),
        redisStarts: this.redis?.starts ?? 0,
        jobStarts: starts.length,
        extraRuns: [...byRun.values()].reduce((sum, k) => sum + k - 1, 0),
        lockS: LOCK_S,
        ...CLUSTER_TIMEOUTS,
      };
    }
    const command =
      this.options.command ??
      `npm run soak -- --nights ${this.options.nights} --seed ${this.options.seed}${this.options.workers ? ` --workers ${this.options.workers}` : ''}`;
    const head = await execa('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, reject: false });
    const dirty = await execa('git', ['status', '--porcelain', '--', 'src', 'bin'], { cwd: REPO_ROOT, reject: false });
    stats.version = head.exitCode === 0 ? `${head.stdout.trim()}${dirty.stdout.trim() ? ' (src/ or bin/ modified)' : ''}` : 'unknown (not a git checkout)';
    const ok = failing.length === 0 && this.nights.length === this.options.nights;
    const markdown = renderReport({
      ok,
      observations: this.observations,
      stats,
      nights: this.nights,
      failing,
      command,
      foundBugs: this.slots.length ? FOUND_BUGS_BULLMQ : FOUND_BUGS,
      retention: RETENTION,
      budget: BUDGET_TOKENS,
      stepTokens: STEP_TOKENS,
    });
    if (this.options.out) {
      await fs.mkdir(path.dirname(this.options.out), { recursive: true });
      await fs.writeFile(this.options.out, markdown);
    }
    return { ok, observations: this.observations, failing, stats, nights: this.nights, markdown, command };
  }

  /**
   * The BullMQ mode allows one extra run per worker kill or Redis restart (checkWorkerRuns),
   * and an extra run of a cycle's task spends tokens again: the steps the lost attempt recorded
   * (job progress, then the ledger) are carried into the re-run as the local mode does (B19),
   * but not the model call a killed worker died waiting for, nor what a worker spent after the
   * folder host's last look before Redis lost the job. For a cycle one of whose tasks was
   * interrupted so, what the model served may pass the budget: an observation.
   * The report's own spend (budget.spent_tokens) stays a breach, and so does every other cycle.
   */
  private budgetOfExtraRuns(breaches: Breach[], reports: CycleReport[]): Breach[] {
    if (!this.slots.length) return breaches;
    return breaches.filter((b) => {
      if (b.invariant !== 'budget') return true;
      const cycle = reports.find((r) => b.detail.startsWith(`cycle ${r.cycle_id}: the model served`));
      const hit = cycle?.tasks.find((t) => this.interruptions.some((i) => i.tasks.some((f) => f === `${t.task_id}.md` || f.startsWith(`${t.task_id}-`))));
      if (!cycle || !hit) return true;
      this.observe(
        'budget_extra_run',
        `${b.detail} (an extra run of ${hit.task_id} after ${this.interruptions
          .filter((i) => i.tasks.some((f) => f.startsWith(hit.task_id)))
          .map((i) => i.kind)
          .join(', ')})`,
      );
      return false;
    });
  }

  /** Every job start and end on every worker, from their logs. */
  private async jobEvents(): Promise<JobEvent[]> {
    return (await Promise.all(this.slots.map((w) => w.events()))).flat();
  }

  private async serviceLogs(): Promise<string> {
    const parts: string[] = [];
    for (const n of (await names(this.layout.logs)).filter((x) => x.endsWith('.log')))
      parts.push(await fs.readFile(path.join(this.layout.logs, n), 'utf8').catch(() => ''));
    return parts.join('');
  }
}
