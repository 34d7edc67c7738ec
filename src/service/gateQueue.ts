/**
 * patches/approved/ and patches/rejected/: each approved patch goes through the gate, one at
 * a time (the gate lock keeps it one at a time across processes too); a person's rejection
 * is recorded in the task's report. A gate run is in-flight work of the lifecycle: at stop it
 * gets the grace period, then is aborted, and its patch goes back to approved/.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { processApprovedPatch, recordHumanRejection, recoverInterruptedGateRuns, type GateResult } from '../gate/gate.ts';
import { isIgnoredName } from '../queue/pickup.ts';
import type { Settings } from '../workspace/config.ts';
import type { Failures } from './health.ts';
import type { Lifecycle } from './lifecycle.ts';

export interface GateQueueOptions {
  settings: Settings;
  log: Logger;
  lifecycle: Lifecycle;
  failures: Failures;
  onGate?: (result: GateResult) => void;
}

const isPatchName = (name: string) => !isIgnoredName(name) && name.toLowerCase().endsWith('.patch');

export class GateQueue {
  /** Approved patches to gate; the first is the one the gate runs. */
  private readonly queue: string[] = [];
  private readonly rejectedSeen = new Set<string>();
  private draining: Promise<void> | null = null;

  constructor(private readonly options: GateQueueOptions) {
    // An interrupted gate run left its patch under a private name: give it back at stop.
    options.lifecycle.afterStop(() => this.restoreInterrupted());
  }

  /** The patch the gate runs now (or runs next), if any. */
  current(): string | null {
    return this.queue[0] ?? null;
  }

  /** A file in patches/approved/ (a watcher event, the scan). */
  readonly considerApproved = (name: string): void => {
    if (this.options.lifecycle.stopping || !isPatchName(name) || this.queue.includes(name)) return;
    this.queue.push(name);
    this.drain();
  };

  /** A file in patches/rejected/: records the rejection (with `<name>.reason.md`, if any) once. */
  readonly considerRejected = async (name: string): Promise<void> => {
    const { settings, log, failures } = this.options;
    if (!isPatchName(name) || this.rejectedSeen.has(name)) return;
    this.rejectedSeen.add(name);
    const dir = settings.layout.patches.rejected;
    const reason = await fs.readFile(path.join(dir, `${name.replace(/\.patch$/i, '')}.reason.md`), 'utf8').catch(() => null);
    try {
      if (await recordHumanRejection(settings, path.join(dir, name), reason?.replace(/^#.*\n+/, '').trim() ?? null))
        log.info({ patch: name }, 'recorded a rejection by a person');
    } catch (error) {
      failures.fail(`could not record the rejection of ${name}`, error);
    }
  };

  /** The scan: restores interrupted gate runs (when none runs here), then considers every file in approved/ and rejected/. */
  async scan(): Promise<void> {
    const { patches } = this.options.settings.layout;
    if (!this.draining) await recoverInterruptedGateRuns(this.options.settings, this.options.log);
    for (const n of (await fs.readdir(patches.approved).catch(() => [] as string[])).sort()) this.considerApproved(n);
    for (const n of await fs.readdir(patches.rejected).catch(() => [] as string[])) await this.considerRejected(n);
  }

  private drain(): void {
    if (this.draining) return;
    const run = this.runQueue().finally(() => {
      this.draining = null;
    });
    this.draining = this.options.lifecycle.track(run);
  }

  private async runQueue(): Promise<void> {
    const { settings, log, lifecycle, failures, onGate } = this.options;
    while (!lifecycle.stopping && this.queue.length > 0) {
      const name = this.queue[0]!;
      try {
        const file = path.join(settings.layout.patches.approved, name);
        if (
          await fs.stat(file).then(
            () => true,
            () => false,
          )
        ) {
          const result = await processApprovedPatch(settings, file, log, lifecycle.signal);
          if (result.decision === 'rejected') failures.note(`${new Date().toISOString()} gate rejected ${name}: ${result.reason?.split('\n')[0]}`);
          if (result.decision !== 'skipped') onGate?.(result);
        }
      } catch (error) {
        if (lifecycle.signal.aborted) log.info({ patch: name }, 'the gate run was interrupted by the stop; the patch is gated again at the next start');
        else failures.fail(`the gate failed on ${name}`, error);
      } finally {
        this.queue.shift();
      }
    }
  }

  private async restoreInterrupted(): Promise<void> {
    if (this.draining) return; // still running: crash recovery at the next start
    await recoverInterruptedGateRuns(this.options.settings, this.options.log).catch((error: unknown) =>
      this.options.failures.fail('restoring an interrupted gate run failed', error),
    );
  }
}
