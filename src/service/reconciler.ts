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
  constructor(
    private readonly steps: ScanStep[],
    private readonly lifecycle: Lifecycle,
    private readonly failures: Failures,
  ) {}

  /** Scans every `ms` until stop. */
  start(ms: number): void {
    this.lifecycle.every(ms, () => void this.scan());
  }

  /** One scan (none once stopping). */
  async scan(): Promise<void> {
    if (this.lifecycle.stopping) return;
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
