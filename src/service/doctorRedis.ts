/**
 * The doctor's Redis checks, with `execution.engine: bullmq`: the URL's variable is set and
 * parses, Redis answers within a bounded time, and it is set up so BullMQ's queue survives
 * (noeviction, appendonly) on a version the pinned BullMQ runs on. One short connection of
 * its own, closed after; the password is never printed (errors name the variable and the
 * address only).
 */
import { isRedisVersionLowerThan, RedisConnection } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import { MetaAgentError, toErrorInfo } from '../contract/errors.ts';
import { redisTarget } from '../queue/bullmq/connection.ts';
import type { Settings } from '../workspace/config.ts';

type Level = 'error' | 'warning';
type Add = (level: Level, project: string | null, field: string, message: string) => void;

export interface RedisCheckOptions {
  timeoutMs: number;
  /**
   * `watch` at start: an unreachable Redis is a warning there, since the folder host and the
   * workers wait for it and go on (docs/scale-out.md); `doctor` says it is an error.
   */
  starting: boolean;
}

/** What the checks need to know of the server; null: CONFIG is not allowed (managed Redis). */
interface RedisFacts {
  version: string | null;
  maxmemoryPolicy: string | null;
  appendonly: string | null;
}

/** True when the checks found nothing (the caller lists Redis as checked). */
export async function checkRedis(settings: Settings, options: RedisCheckOptions, add: Add): Promise<boolean> {
  if (settings.config.execution.engine !== 'bullmq') return true;
  let connection: RedisOptions;
  let where: string;
  try {
    const target = redisTarget(settings, false);
    connection = target.connection as RedisOptions;
    where = target.where;
  } catch (error) {
    // The variable unset or not a URL: the messages name the variable, never its value.
    add('error', null, 'execution.redis_url_env', toErrorInfo(error).message);
    return false;
  }
  let facts: RedisFacts;
  try {
    facts = await redisFacts(connection, options.timeoutMs);
  } catch (error) {
    const why = scrub(toErrorInfo(error).message, connection.password);
    if (/NOAUTH|WRONGPASS/.test(why)) {
      const variable = settings.config.execution.redis_url_env;
      add('error', null, 'redis', `Redis at ${where} refused the connection (${why}); put its password (requirepass) in ${variable}`);
      return false;
    }
    const then = options.starting ? 'tasks wait in processing/ until it answers' : 'watch and worker wait for it; tasks are not run until it answers';
    add(options.starting ? 'warning' : 'error', null, 'redis', `Redis at ${where} is unreachable (${why}); ${then}`);
    return false;
  }
  return judge(facts, where, add);
}

function judge(facts: RedisFacts, where: string, add: Add): boolean {
  let fine = true;
  const flag = (level: Level, field: string, message: string) => {
    fine = false;
    add(level, null, field, message);
  };
  if (facts.maxmemoryPolicy === null) {
    flag(
      'warning',
      'redis.maxmemory-policy',
      `Redis at ${where} does not allow CONFIG GET (a managed Redis?), so its maxmemory-policy and appendonly could not be checked; make sure they are noeviction and yes`,
    );
  } else {
    if (facts.maxmemoryPolicy !== 'noeviction')
      flag(
        'error',
        'redis.maxmemory-policy',
        `Redis at ${where} has maxmemory-policy ${facts.maxmemoryPolicy}: BullMQ's keys must never be evicted (a task would be lost); set "maxmemory-policy noeviction"`,
      );
    if (facts.appendonly !== 'yes')
      flag(
        'warning',
        'redis.appendonly',
        `Redis at ${where} has appendonly ${facts.appendonly ?? 'unset'}: a restart loses the queue and every running task runs once more; set "appendonly yes"`,
      );
  }
  const { minimumVersion, recommendedMinimumVersion } = RedisConnection;
  if (facts.version && isRedisVersionLowerThan(facts.version, minimumVersion, 'redis'))
    flag('error', 'redis.version', `Redis at ${where} is version ${facts.version}; BullMQ needs at least ${minimumVersion}: upgrade Redis`);
  else if (facts.version && isRedisVersionLowerThan(facts.version, recommendedMinimumVersion, 'redis'))
    flag('warning', 'redis.version', `Redis at ${where} is version ${facts.version}; BullMQ recommends at least ${recommendedMinimumVersion}`);
  return fine;
}

/** One connection, no retries, everything within `timeoutMs`, closed whatever happens. */
async function redisFacts(connection: RedisOptions, timeoutMs: number): Promise<RedisFacts> {
  const client = new Redis({
    ...connection,
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  // The calls below fail with "Connection is closed."; the why (ECONNREFUSED, NOAUTH) comes as an event.
  let cause: Error | null = null;
  client.on('error', (error: Error) => {
    cause = error;
  });
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
  });
  try {
    return await Promise.race([askFacts(client), late]);
  } catch (error) {
    throw cause ?? error;
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}

async function askFacts(client: Redis): Promise<RedisFacts> {
  await client.connect();
  const pong = await client.ping();
  if (pong !== 'PONG') throw new MetaAgentError('config', `PING answered ${JSON.stringify(pong).slice(0, 40)}`);
  const info = await client.info('server');
  const version = /^redis_version:(\S+)/m.exec(info)?.[1] ?? null;
  const config = async (name: string): Promise<string | null> => {
    try {
      const answer = (await client.config('GET', name)) as string[];
      return answer[1] ?? null;
    } catch {
      // NOPERM or an unknown command (managed Redis): not checkable.
      return null;
    }
  };
  const maxmemoryPolicy = await config('maxmemory-policy');
  return { version, maxmemoryPolicy, appendonly: maxmemoryPolicy === null ? null : await config('appendonly') };
}

/** An error text without the password, should a client library ever echo it. */
function scrub(message: string, password: string | undefined): string {
  return password ? message.split(password).join('***') : message;
}
