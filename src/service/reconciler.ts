/**
 * The reconcile scan: the truth, where folder watchers are hints (events get lost on Windows
 * pastes, network shares and queue overflows). Every `queue.scan_interval_ms` it runs its
 * steps in order; a step that throws ends that scan (logged), the next one tries again.
 */
import type { Layout } from '../workspace/layout.ts';
import { removeDeadTemps } from '../queue/recover.ts';
import type { Failures } from './health.ts';
import type { Lifecycle } from './lifecycle.ts';

/** One part of the scan (retention, crash recovery, inbox/, the gate's folders). */
export type ScanStep = () => Promise<unknown>;

export class Reconciler {
  /** The scan under way: one at a time. */
  private current: Promise<void> | null = null;

  constructor(
    private readonly steps: ScanStep[],
    private readonly lifecycle: Lifecycle,
    private readonly failures: Failures,
  ) {}

  /** Scans every `ms` until stop. */
  start(ms: number): void {
    this.lifecycle.every(ms, () => void this.scan());
  }

  /**
   * One scan (none once stopping). A scan asked for while one is under way (a tick on a slow
   * disk, a scan at start) is that one: two recoveries at once would each take the other's
   * file in hand for a dead recoverer's (recover.ts restoreTakenName, when the clock went back).
   */
  scan(): Promise<void> {
    if (this.lifecycle.stopping) return Promise.resolve();
    this.current ??= this.runSteps().finally(() => {
      this.current = null;
    });
    return this.current;
  }

  private async runSteps(): Promise<void> {
    try {
      for (const step of this.steps) await step();
    } catch (error) {
      this.failures.fail('the reconcile scan failed', error);
    }
  }
}

/**
 * The temps of a process killed just before this start are too young for the sweep at start
 * (it waits lease_stale_s): sweeps once more when they are old enough.
 */
export function lateTempSweep(layout: Layout, staleMs: number, failures: Failures): ScanStep {
  let sweepAt: number | null = performance.now() + staleMs + 1000;
  return async () => {
    if (sweepAt === null || performance.now() < sweepAt) return;
    sweepAt = null;
    await removeDeadTemps(layout, staleMs).catch((error: unknown) => failures.fail('removing dead temp files failed', error));
  };
}
