/** The service's health: folder counts, what runs, and the last error, for `health()` and the log's health line. */
import { promises as fs } from 'node:fs';
import type { Logger } from 'pino';
import { toErrorInfo } from '../contract/errors.ts';
import { countTasks } from '../queue/retry.ts';
import type { Layout } from '../workspace/layout.ts';
import type { Lifecycle } from './lifecycle.ts';

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

/** How often the log gets a health line. */
const HEALTH_LINE_MS = 60_000;

/** Remembers the last error (for the health line) and logs each. */
export class Failures {
  last: string | null = null;

  constructor(private readonly log: Logger) {}

  /** Logs `error` with what failed, and remembers it. */
  fail(what: string, error: unknown): void {
    this.last = `${new Date().toISOString()} ${what}: ${toErrorInfo(error).message}`;
    this.log.error({ err: toErrorInfo(error) }, what);
  }

  /** Remembers a failure logged elsewhere (a failed task, a patch the gate rejected); `line` starts with its time. */
  note(line: string): void {
    this.last = line;
  }
}

async function countFiles(dir: string, ext: string): Promise<number> {
  return (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => !n.startsWith('.') && n.toLowerCase().endsWith(ext)).length;
}

export async function readHealth(layout: Layout, work: { running: number; queued: number }, failures: Failures): Promise<Health> {
  return {
    inbox: await countTasks(layout.inbox),
    processing: await countTasks(layout.processing),
    running: work.running,
    queued: work.queued,
    pending_patches: await countFiles(layout.patches.pending, '.patch'),
    approved_patches: await countFiles(layout.patches.approved, '.patch'),
    done: await countTasks(layout.done),
    failed: await countTasks(layout.failed),
    last_error: failures.last,
  };
}

/** Logs a health line every minute until stop. */
export function healthLine(lifecycle: Lifecycle, health: () => Promise<Health>, log: Logger): void {
  lifecycle.every(HEALTH_LINE_MS, async () => {
    const h = await health();
    log.info(
      { health: h },
      `health: inbox ${h.inbox}, running ${h.running}, pending patches ${h.pending_patches}${h.last_error ? `, last error: ${h.last_error}` : ''}`,
    );
  });
}
