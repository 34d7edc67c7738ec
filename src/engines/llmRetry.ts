/**
 * Retries of one model request through a short outage: 429, 5xx, 408/409 and lost
 * connections are retried with exponential backoff and full jitter, honouring the server's
 * `retry-after-ms` / `Retry-After` (seconds or an HTTP date), for up to a time budget (and
 * optionally a count). The run's abort signal cuts a wait short.
 *
 * Hand-written rather than p-retry: the wait must come from the server's answer when it
 * gives one, which p-retry's fixed schedule cannot express. The SDK's own retries are off
 * (maxRetries: 0) so the two never multiply.
 */
import { setTimeout as sleepFor } from 'node:timers/promises';
import OpenAI from 'openai';

export interface RetryPolicy {
  budgetMs: number;
  maxRetries?: number;
  baseMs: number;
  capMs: number;
}

export interface RetryClock {
  now(): number;
  /** Rejects when the signal aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
  random(): number;
}

export const realClock: RetryClock = {
  now: () => Date.now(),
  sleep: (ms, signal) => sleepFor(ms, undefined, { signal }),
  random: Math.random,
};

export interface RetryNote {
  retry: number;
  waitMs: number;
  status: number | null;
  reason: string;
  fromServer: boolean;
}

/** Thrown when retrying stopped; `cause` is the last error of the request. */
export class RetriesExhausted extends Error {
  constructor(
    readonly last: unknown,
    readonly retries: number,
    readonly elapsedMs: number,
    /** Why it stopped: the time budget, the count, or a server asking for a wait beyond the budget. */
    readonly why: 'budget' | 'count' | 'server_wait',
    readonly serverWaitMs: number | null,
  ) {
    super(last instanceof Error ? last.message : String(last), { cause: last });
    this.name = 'RetriesExhausted';
  }
}

/** Full jitter (AWS architecture blog): a uniform wait in [0, min(cap, base * 2^retry)). */
export function backoffMs(retry: number, policy: Pick<RetryPolicy, 'baseMs' | 'capMs'>, random: () => number): number {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** retry);
  return Math.floor(random() * ceiling);
}

/** The wait a server asks for, in ms: `retry-after-ms`, else `Retry-After` in seconds or as an HTTP date. */
export function serverWaitMs(headers: Headers | undefined, now: number): number | null {
  if (!headers) return null;
  const ms = Number.parseFloat(headers.get('retry-after-ms') ?? '');
  if (Number.isFinite(ms) && ms >= 0) return ms;
  const value = headers.get('retry-after')?.trim();
  if (!value) return null;
  if (/^\d+(\.\d+)?$/.test(value)) return Number.parseFloat(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}

/** 408, 409, 429, 5xx and failed connections (timeouts included); never an abort by the run. */
export function isRetryable(error: unknown): boolean {
  if (error instanceof OpenAI.APIUserAbortError) return false;
  if (error instanceof OpenAI.APIConnectionError) return true;
  if (error instanceof OpenAI.APIError) {
    const status = error.status ?? 0;
    return status === 408 || status === 409 || status === 429 || status >= 500;
  }
  return false;
}

export async function withRetries<T>(
  attempt: () => Promise<T>,
  options: { policy: RetryPolicy; signal: AbortSignal; onRetry?: (note: RetryNote) => void; clock?: RetryClock },
): Promise<T> {
  const { policy, signal } = options;
  const clock = options.clock ?? realClock;
  const started = clock.now();
  for (let retry = 0; ; retry++) {
    try {
      return await attempt();
    } catch (error) {
      if (signal.aborted || !isRetryable(error)) throw error;
      const elapsed = clock.now() - started;
      const asked = serverWaitMs(error instanceof OpenAI.APIError ? error.headers : undefined, clock.now());
      const left = policy.budgetMs - elapsed;
      if (policy.maxRetries !== undefined && retry >= policy.maxRetries) throw new RetriesExhausted(error, retry, elapsed, 'count', asked);
      if (left <= 0) throw new RetriesExhausted(error, retry, elapsed, 'budget', asked);
      // A server that asks for a wait past the budget will not answer sooner: stop now.
      if (asked !== null && asked > left) throw new RetriesExhausted(error, retry, elapsed, 'server_wait', asked);
      const waitMs = Math.min(asked ?? backoffMs(retry, policy, clock.random), left);
      options.onRetry?.({
        retry: retry + 1,
        waitMs,
        status: error instanceof OpenAI.APIError ? (error.status ?? null) : null,
        reason: firstLine(error instanceof Error ? error.message : String(error)),
        fromServer: asked !== null,
      });
      try {
        await clock.sleep(waitMs, signal);
      } catch (sleepError) {
        if (signal.aborted) throw error;
        throw sleepError;
      }
    }
  }
}

const firstLine = (s: string) => (s.split('\n')[0] ?? s).slice(0, 200);
