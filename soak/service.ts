/**
 * The real service under test: `node bin/meta-agent.js watch --root <ws>` in its own process
 * group (test/helpers/procs.ts), killed with SIGKILL (the whole group: the sandboxed tests
 * it runs die with it) and restarted. Its peak RSS is read from /proc/<pid>/status (VmHWM),
 * the maximum over all its lives.
 */
import { readFileSync } from 'node:fs';
import { killHard, signal, sleep, startWatch, waitFor, type WatchProc } from '../test/helpers/procs.ts';

export class Service {
  private proc: WatchProc | null = null;
  private sampler: NodeJS.Timeout | null = null;
  private busy: Promise<void> = Promise.resolve();
  /** kB, the max VmHWM seen over all processes. */
  peakRssKb = 0;
  starts = 0;
  /** When the current process finished starting (Date.now()). */
  startedAt = 0;
  kills = 0;
  /** Pids of the processes killed with SIGKILL or that died by themselves. */
  /** Start-ups that failed (their output), for the harness to report. */
  readonly failedStarts: string[] = [];
  /** Set when the process exited without being asked to (a crash). */
  unexpectedExit: string | null = null;
  private expectingExit = false;
  /** The output of the processes that ended, then the current one (tail). */
  private pastOutput = '';

  constructor(
    private readonly root: string,
    private readonly env: Record<string, string>,
  ) {}

  get pid(): number | null {
    return this.proc?.pid ?? null;
  }

  alive(): boolean {
    return Boolean(this.proc?.alive());
  }

  /** Starts the service and waits until its start-up scan is done. */
  start(): Promise<void> {
    return this.serial(() => this.doStart());
  }

  /** kill -9 of the process group, then a restart (one at a time). */
  killAndRestart(): Promise<void> {
    return this.serial(async () => {
      await this.doKill();
      await this.doStart();
    });
  }

  /** SIGSTOP for `ms`, then SIGCONT: a frozen machine or a suspended laptop (the process only, not its agents). */
  freeze(ms: number): Promise<void> {
    return this.serial(async () => {
      const proc = this.proc;
      if (!proc) return;
      signal(proc, 'SIGSTOP');
      await sleep(ms);
      signal(proc, 'SIGCONT');
    });
  }

  /** SIGTERM, then SIGKILL if it does not exit within `ms`. */
  stop(ms = 15_000): Promise<void> {
    return this.serial(async () => {
      const proc = this.proc;
      if (!proc) return;
      this.sample();
      this.expectingExit = true;
      signal(proc, 'SIGTERM');
      const exited = await Promise.race([proc.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
      if (!exited) await killHard(proc);
      else await killHard(proc); // the group: anything it left behind
      this.retire();
    });
  }

  /** Waits until a kill/restart in progress is done. */
  settled(): Promise<void> {
    return this.busy;
  }

  output(tail = 4000): string {
    const all = this.pastOutput + (this.proc?.output() ?? '');
    return all.slice(-tail);
  }

  sample(): void {
    const pid = this.proc?.pid;
    if (!pid) return;
    try {
      const m = /VmHWM:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) this.peakRssKb = Math.max(this.peakRssKb, Number(m[1]));
    } catch {
      // gone, or no /proc
    }
  }

  private serial(fn: () => Promise<void>): Promise<void> {
    const next = this.busy.then(fn, fn);
    this.busy = next.catch(() => undefined);
    return next;
  }

  private async doStart(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      this.expectingExit = false;
      const proc = startWatch(this.root, this.env);
      // Ready: it printed that it is watching. Not ready: it exited, or printed `meta-agent: <error>` (start-up failed).
      const failed = () => !proc.alive() || /^meta-agent: /m.test(proc.output());
      await waitFor('the service to start', () => proc.output().includes('watching ') || failed(), 60_000).catch(() => undefined);
      if (proc.output().includes('watching ') && proc.alive()) {
        this.adopt(proc);
        return;
      }
      // A start that failed: noted (a breach), the process group killed, and a new try, as systemd would.
      this.failedStarts.push(`start ${attempt} (pid ${proc.pid}) failed${proc.alive() ? ' and the process did not exit' : ''}:\n${proc.output().slice(-2000)}`);
      await killHard(proc);
      if (attempt >= 5) throw new Error(`the service did not start 5 times:\n${this.failedStarts.slice(-1)[0]}`);
      await sleep(1000);
    }
  }

  private adopt(proc: WatchProc): void {
    this.proc = proc;
    this.starts++;
    this.startedAt = Date.now();
    void proc.exited.then((r) => {
      if (this.proc !== proc || this.expectingExit) return;
      this.unexpectedExit = `the service (pid ${proc.pid}) exited by itself: code ${r.code}, signal ${r.signal}\n${proc.output().slice(-3000)}`;
    });
    if (!this.sampler) {
      this.sampler = setInterval(() => this.sample(), 1000);
      this.sampler.unref();
    }
    this.sample();
  }

  private async doKill(): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    this.sample();
    this.expectingExit = true;
    await killHard(proc);
    this.kills++;
    this.retire();
  }

  private retire(): void {
    if (this.proc) this.pastOutput = (this.pastOutput + this.proc.output()).slice(-20_000);
    this.proc = null;
    if (this.sampler) clearInterval(this.sampler);
    this.sampler = null;
  }
}
