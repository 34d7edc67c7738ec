/**
 * The folder host's side of Redis: one BullMQ Queue for each queue it may add to, Redis's
 * answers bounded in time, and one log line per outage (not one per poll).
 */
import { Queue } from 'bullmq';
import type { Logger } from 'pino';
import { MetaAgentError, toErrorInfo } from '../../contract/errors.ts';
import { allQueues, redisTarget, type RedisTarget } from '../../queue/bullmq/connection.ts';
import type { Settings } from '../../workspace/config.ts';

const ANSWER_MS = 5000;

export class HostQueues {
  private readonly queues = new Map<string, Queue>();
  private readonly target: RedisTarget;
  /** Why Redis is unreachable, while it is. */
  private outage: string | null = null;

  constructor(
    settings: Settings,
    private readonly log: Logger,
  ) {
    this.target = redisTarget(settings, false);
    for (const name of allQueues(settings)) {
      const queue = new Queue(name, { connection: this.target.connection });
      // Without a listener an 'error' event would end the process; the poll loop reports outages.
      queue.on('error', () => undefined);
      queue.waitUntilReady().catch(() => undefined);
      this.queues.set(name, queue);
    }
  }

  /** The queue `name`, one of `allQueues` (queueFor only gives those). */
  get(name: string): Queue {
    const queue = this.queues.get(name);
    if (!queue) throw new MetaAgentError('internal', `no BullMQ queue ${name} was opened`, { field: 'execution.routes' });
    return queue;
  }

  /** One clear line per outage, not one per poll. */
  unreachable(error: unknown): void {
    if (this.outage) return;
    const why = toErrorInfo(error).message;
    this.outage = why;
    const where = this.target.where;
    this.log.error(
      { redis: where, err: why },
      `Redis at ${where} is unreachable (${why}); claimed tasks wait in processing/ and are sent, or their results filed, when it is back`,
    );
  }

  reachable(): void {
    if (!this.outage) return;
    this.outage = null;
    this.log.info({ redis: this.target.where }, `Redis at ${this.target.where} is reachable again`);
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.queues.values()].map((q) => q.close()));
  }
}

/** Redis's answer, or an error after ANSWER_MS (BullMQ waits without end for a Redis it never reached). */
export async function answered<T>(call: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ANSWER_MS / 1000} s`)), ANSWER_MS);
  });
  try {
    return await Promise.race([call, late]);
  } finally {
    clearTimeout(timer);
  }
}
