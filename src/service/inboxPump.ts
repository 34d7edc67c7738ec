/**
 * inbox/ -> running tasks: a file the pickup judges complete is queued, then claimed by
 * one atomic rename into processing/ (runTask, or the BullMQ host); `limits.concurrency`
 * tasks run at once, oldest first. Each run is in-flight work of the lifecycle.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { MetaAgentError } from '../contract/errors.ts';
import type { Engine } from '../engines/types.ts';
import type { RemoteExecution } from './bullmq/host.ts';
import { ClaimChanged } from '../queue/folders.ts';
import type { InboxPickup } from '../queue/pickup.ts';
import { runTask, type RunTaskResult } from '../run/runTask.ts';
import type { Settings } from '../workspace/config.ts';
import type { Failures } from './health.ts';
import { STOP_CHECKS_GRACE_S, type Lifecycle } from './lifecycle.ts';

export interface InboxPumpOptions {
  settings: Settings;
  log: Logger;
  lifecycle: Lifecycle;
  failures: Failures;
  pickup: InboxPickup;
  /** execution.engine bullmq: tasks run on BullMQ workers; this process claims and files. */
  remote: RemoteExecution | null;
  concurrency: number;
  engine?: Engine;
  onResult?: (result: RunTaskResult) => void;
}

export class InboxPump {
  /** Names judged complete, oldest first, waiting for a free slot. */
  private readonly queue: string[] = [];
  /** Queued or running: considered no more until its run ends. */
  private readonly taken = new Set<string>();
  private readonly running = new Map<string, Promise<void>>();
  /** The bytes judged complete, by name (copied-in files only). */
  private readonly expected = new Map<string, string | undefined>();

  constructor(private readonly options: InboxPumpOptions) {}

  counts(): { running: number; queued: number } {
    return { running: this.running.size, queued: this.queue.length };
  }

  runningNames(): string[] {
    return [...this.running.keys()];
  }

  /** Looks at `inbox/<name>` (a watcher event, the scan); queues it once complete. */
  readonly consider = async (name: string): Promise<void> => {
    const skip = () => this.options.lifecycle.stopping || this.taken.has(name);
    if (skip()) return;
    const verdict = await this.options.pickup.judge(name, skip);
    if (!verdict.take) {
      if (verdict.recheckInMs !== undefined) setTimeout(() => void this.consider(name), verdict.recheckInMs).unref();
      return;
    }
    if (this.taken.has(name)) return; // judged twice at once: the first queued it
    this.taken.add(name);
    this.queue.push(name);
    this.expected.set(name, verdict.expectSha256);
    this.pump();
  };

  /** Considers every file in inbox/, oldest first. */
  async scan(): Promise<void> {
    const { layout } = this.options.settings;
    const names = await fs.readdir(layout.inbox).catch(() => [] as string[]);
    this.options.pickup.forgetAbsent(new Set(names));
    const withTimes = await Promise.all(names.map(async (n) => ({ n, t: (await fs.stat(path.join(layout.inbox, n)).catch(() => null))?.mtimeMs ?? 0 })));
    for (const { n } of withTimes.sort((a, b) => a.t - b.t || a.n.localeCompare(b.n))) await this.consider(n);
  }

  private pump(): void {
    const { lifecycle, concurrency } = this.options;
    while (!lifecycle.stopping && this.running.size < concurrency && this.queue.length > 0) {
      const name = this.queue.shift()!;
      const job = this.runOne(name).finally(() => {
        this.running.delete(name);
        this.taken.delete(name);
        this.pump();
      });
      this.running.set(name, job);
      lifecycle.track(job);
    }
  }

  private async runOne(name: string): Promise<void> {
    const { settings, log, lifecycle, failures, remote, engine } = this.options;
    const expectSha256 = this.expected.get(name);
    this.expected.delete(name);
    try {
      const result = remote
        ? await remote.run(name, { ...(expectSha256 ? { expectSha256 } : {}) })
        : await runTask(path.join(settings.layout.inbox, name), {
            settings,
            log,
            signal: lifecycle.signal,
            stopChecksGraceS: STOP_CHECKS_GRACE_S,
            ...(engine ? { engine } : {}),
            ...(expectSha256 ? { expectSha256 } : {}),
          });
      if (!result) return;
      if (result.status !== 'ok' && result.report.error?.kind !== 'interrupted')
        failures.note(`${result.report.finished_at} ${result.task_id}: ${result.report.error?.message ?? result.outcome}`);
      this.options.onResult?.(result);
    } catch (error) {
      // The claim rename failed with ENOENT: another worker (or a person) took it first.
      if (error instanceof ClaimChanged) {
        this.options.pickup.markChangedAfterClaim(name);
        log.info({ file: name }, error.message);
      } else if (error instanceof MetaAgentError && error.kind === 'input') log.debug({ file: name }, error.message);
      else failures.fail(`task ${name} could not be run`, error);
    }
  }
}
