/**
 * The Redis connection of the BullMQ execution engine, from the URL in the variable that
 * `execution.redis_url_env` names (never from the YAML: the URL carries the password).
 *
 *   redis://:password@host:6379/0     rediss://... (TLS)     unix:///run/redis.sock?password=...&db=0
 */
import type { ConnectionOptions } from 'bullmq';
import { MetaAgentError } from '../../contract/errors.ts';
import type { Settings } from '../../workspace/config.ts';

export interface RedisTarget {
  connection: ConnectionOptions;
  /** Where, for logs and errors: never the password. */
  where: string;
}

/**
 * @param forWorker workers wait through an outage (commands queue up until Redis is back);
 *   the folder host fails fast so it can say so and try again at its next poll.
 */
export function redisTarget(settings: Settings, forWorker: boolean): RedisTarget {
  const variable = settings.config.execution.redis_url_env;
  const raw = settings.env[variable];
  const field = 'execution.redis_url_env';
  if (!raw)
    throw new MetaAgentError(
      'config',
      `execution.engine is bullmq, but ${variable} is not set: set it to the Redis URL (redis://:password@host:6379/0 or unix:///path/redis.sock); see docs/scale-out.md`,
      { file: 'meta-agent.yaml', field },
    );
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new MetaAgentError('config', `${variable} is not a URL (expected redis://:password@host:6379/0, rediss://... or unix:///path/redis.sock)`, {
      file: 'meta-agent.yaml',
      field,
    });
  }
  const common = {
    // BullMQ's workers need this; commands wait for the connection instead of failing after 20 tries.
    maxRetriesPerRequest: null,
    enableOfflineQueue: forWorker,
    retryStrategy: (times: number) => Math.min(200 * times, 2000),
    ...(url.searchParams.get('db') || url.pathname.length > 1 ? { db: Number(url.searchParams.get('db') ?? url.pathname.slice(1)) || 0 } : {}),
  };
  const password = decodeURIComponent(url.password) || url.searchParams.get('password') || undefined;
  const username = decodeURIComponent(url.username) || undefined;
  const auth = { ...(password ? { password } : {}), ...(username ? { username } : {}) };
  if (url.protocol === 'unix:') {
    return {
      connection: { ...common, db: Number(url.searchParams.get('db') ?? 0) || 0, path: decodeURIComponent(url.pathname), ...auth },
      where: `unix:${decodeURIComponent(url.pathname)}`,
    };
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new MetaAgentError('config', `${variable} must start with redis://, rediss:// or unix:// (got ${url.protocol}//)`, {
      file: 'meta-agent.yaml',
      field,
    });
  }
  const port = Number(url.port || 6379);
  return {
    connection: { ...common, host: url.hostname, port, ...auth, ...(url.protocol === 'rediss:' ? { tls: {} } : {}) },
    where: `${url.protocol}//${url.hostname}:${port}`,
  };
}

/** The queue a task type goes to (`execution.routes`, else `execution.queue`). */
export function queueFor(settings: Settings, type: string): string {
  const { routes, queue } = settings.config.execution;
  return (routes as Record<string, string | undefined>)[type] ?? queue;
}

/** Every queue the folder host may add to. */
export function allQueues(settings: Settings): string[] {
  const { routes, queue } = settings.config.execution;
  return [...new Set([queue, ...Object.values(routes as Record<string, string>)])];
}
