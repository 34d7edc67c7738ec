/**
 * The soak's BullMQ mode (issue 18): a real Debian `redis-server` on a unix socket in the
 * soak's temp folder (appendonly, noeviction, as docs/scale-out.md asks), stopped by pid and
 * started again on the same socket and folder, and real `meta-agent worker` processes, each
 * with a workspace of its own whose project remote is the soak's bot repository (another
 * machine, as far as the folders go). Workers are killed with SIGKILL (their whole process
 * group: the checks they run die with them) or stopped with SIGTERM, and started again.
 *
 * What each worker ran is read from its own log file (`<worker root>/logs/worker_*.log`,
 * pino JSON lines with the pid): `job started` names the job and the ledger run, and the
 * job's end is `job done`, `job failed` or `stopped: the job went back to the queue`.
 */
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { killHard, signal, sleep, startMetaAgent, waitFor, type WatchProc } from '../test/helpers/procs.ts';

export class Redis {
  readonly dir: string;
  readonly socket: string;
  private child: ResultPromise | null = null;
  starts = 0;

  constructor(base: string) {
    this.dir = path.join(base, 'redis');
    this.socket = path.join(this.dir, 'redis.sock');
  }

  get url(): string {
    return `unix://${this.socket}`;
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  async start(): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true });
    const args = [
      '--port',
      '0',
      '--unixsocket',
      this.socket,
      '--unixsocketperm',
      '700',
      '--save',
      '',
      '--appendonly',
      'yes',
      '--dir',
      this.dir,
      '--maxmemory-policy',
      'noeviction',
    ];
    this.child = execa('redis-server', args, { reject: false, stdio: 'ignore' });
    this.starts++;
    await waitFor('redis-server to answer', async () => existsSync(this.socket) && (await this.cli('ping')).stdout.trim() === 'PONG', 30_000);
  }

  /** SIGTERM by pid (Redis writes its append-only file and exits), then waits for the exit. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child?.pid) return;
    this.child = null;
    try {
      process.kill(child.pid, 'SIGTERM');
    } catch {
      // gone
    }
    const exited = await Promise.race([child.then(() => true), sleep(20_000).then(() => false)]);
    if (!exited) {
      process.kill(child.pid, 'SIGKILL');
      await child;
    }
  }

  /**
   * Stopped and started on the same socket and folder. `withData: false` removes the
   * append-only files in between: a Redis restarted without persistence (every job gone).
   */
  async restart(withData: boolean): Promise<void> {
    await this.stop();
    if (!withData) {
      await fs.rm(path.join(this.dir, 'appendonlydir'), { recursive: true, force: true });
      await fs.rm(path.join(this.dir, 'dump.rdb'), { force: true });
    }
    await this.start();
  }

  private cli(...args: string[]) {
    return execa('redis-cli', ['-s', this.socket, ...args], { reject: false });
  }
}

export interface JobEvent {
  pid: number;
  job: string;
  runId: string;
  taskFile: string;
  /** `started`, or how it ended on that worker. */
  kind: 'started' | 'done' | 'failed' | 'returned';
  time: string;
}

/** One worker machine: its workspace (root) and the process running in it now (restarted after each kill). */
export class WorkerSlot {
  proc: WatchProc | null = null;
  starts = 0;
  /** Set when the process exited without being asked to. */
  unexpectedExit: string | null = null;
  private expectingExit = false;
  private busy: Promise<void> = Promise.resolve();
  readonly failedStarts: string[] = [];
  private readonly offsets = new Map<string, number>();
  private readonly seen: JobEvent[] = [];
  private reading: Promise<JobEvent[]> | null = null;

  constructor(
    readonly name: string,
    readonly root: string,
    private readonly env: Record<string, string>,
  ) {}

  get pid(): number | null {
    return this.proc?.pid ?? null;
  }

  start(): Promise<void> {
    return this.serial(() => this.doStart());
  }

  /** kill -9 of the worker's process group (its checks too), then a new worker. */
  killAndRestart(): Promise<void> {
    return this.serial(async () => {
      await this.doKill();
      await this.doStart();
    });
  }

  /**
   * SIGTERM: the worker stops its runs and gives their jobs back; then a new worker. Returns
   * how the old one ended (a worker that does not exit within `ms` is killed, and says so).
   */
  stopAndRestart(ms = 30_000): Promise<string> {
    let how = '';
    return this.serial(async () => {
      const proc = this.proc;
      if (proc) {
        this.expectingExit = true;
        signal(proc, 'SIGTERM');
        const result = await Promise.race([proc.exited, sleep(ms).then(() => null)]);
        how = result ? `exited ${result.code ?? result.signal}` : `did not exit within ${ms / 1000} s of SIGTERM: killed`;
        await killHard(proc);
        this.proc = null;
      }
      await this.doStart();
    }).then(() => how);
  }

  /** SIGTERM, then SIGKILL of the group; no restart. */
  stop(ms = 15_000): Promise<void> {
    return this.serial(async () => {
      const proc = this.proc;
      if (!proc) return;
      this.expectingExit = true;
      signal(proc, 'SIGTERM');
      await Promise.race([proc.exited, sleep(ms)]);
      await killHard(proc);
      this.proc = null;
    });
  }

  settled(): Promise<void> {
    return this.busy;
  }

  output(tail = 3000): string {
    return (this.proc?.output() ?? '').slice(-tail);
  }

  /** Every job event in this worker's log files, oldest first (read on from where the last call stopped). */
  events(): Promise<JobEvent[]> {
    // One read at a time: two would parse the same lines twice.
    this.reading ??= this.readEvents().finally(() => (this.reading = null));
    return this.reading;
  }

  private async readEvents(): Promise<JobEvent[]> {
    const dir = path.join(this.root, 'logs');
    const files = (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => n.startsWith('worker_') && n.endsWith('.log')).sort();
    for (const f of files) {
      const file = path.join(dir, f);
      const from = this.offsets.get(file) ?? 0;
      const data = await fs.readFile(file).catch(() => null);
      if (!data || data.length <= from) continue;
      // Only whole lines: the rest is read next time.
      const end = data.lastIndexOf(0x0a) + 1;
      if (end <= from) continue;
      this.offsets.set(file, end);
      for (const line of data.subarray(from, end).toString('utf8').split('\n')) {
        if (!line.includes('"job"')) continue;
        let e: { pid?: number; job?: string; run_id?: string; task_file?: string; msg?: string; time?: string };
        try {
          e = JSON.parse(line);
        } catch {
          continue; // a line cut by a kill
        }
        const kind =
          e.msg === 'job started'
            ? 'started'
            : e.msg === 'job done'
              ? 'done'
              : e.msg?.startsWith('job failed')
                ? 'failed'
                : e.msg?.startsWith('stopped: the job went back')
                  ? 'returned'
                  : null;
        if (!kind || !e.job || typeof e.pid !== 'number') continue;
        this.seen.push({ pid: e.pid, job: e.job, runId: e.run_id ?? '', taskFile: e.task_file ?? '', kind, time: e.time ?? '' });
      }
    }
    return this.seen;
  }

  /** The jobs the current process started and has not ended (by its log). */
  async running(): Promise<JobEvent[]> {
    const pid = this.pid;
    if (!pid) return [];
    const open = new Map<string, JobEvent>();
    for (const e of await this.events()) {
      if (e.pid !== pid) continue;
      if (e.kind === 'started') open.set(e.job, e);
      else open.delete(e.job);
    }
    return [...open.values()];
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.busy.then(fn, fn);
    this.busy = next.then(
      () => undefined,
      () => undefined,
    );
    return next;
  }

  private async doStart(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      this.expectingExit = false;
      const proc = startMetaAgent(['worker', '--root', this.root], this.env);
      const failed = () => !proc.alive() || /^meta-agent: /m.test(proc.output());
      await waitFor(`worker ${this.name} to start`, () => proc.output().includes('worker: taking jobs') || failed(), 60_000).catch(() => undefined);
      if (proc.output().includes('worker: taking jobs') && proc.alive()) {
        this.proc = proc;
        this.starts++;
        void proc.exited.then((r) => {
          if (this.proc !== proc || this.expectingExit) return;
          this.unexpectedExit = `worker ${this.name} (pid ${proc.pid}) exited by itself: code ${r.code}, signal ${r.signal}\n${proc.output().slice(-3000)}`;
        });
        return;
      }
      this.failedStarts.push(`worker ${this.name} start ${attempt} (pid ${proc.pid}) failed:\n${proc.output().slice(-2000)}`);
      await killHard(proc);
      if (attempt >= 5) throw new Error(`worker ${this.name} did not start 5 times:\n${this.failedStarts.slice(-1)[0]}`);
      await sleep(1000);
    }
  }

  private async doKill(): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    this.expectingExit = true;
    await killHard(proc);
    this.proc = null;
  }
}

/**
 * The worker's `meta-agent.yaml`: the folder host's settings (model, engine, sandbox,
 * limits, execution), its project with `repo` pointing nowhere and `remote` at the bot's
 * repository, which is what a worker fetches.
 */
export function workerConfig(hostYaml: string, repo: string): string {
  const line = `    repo: ${JSON.stringify(repo)}\n`;
  if (!hostYaml.includes(line)) throw new Error('workerConfig: the host configuration has no project repo line to replace');
  return hostYaml
    .replace(line, `    repo: ./absent\n    remote: ${JSON.stringify(repo)}\n`)
    .replace('# Written by the soak harness (soak/workspace.ts).', '# A worker machine of the soak (soak/cluster.ts).');
}
