/** A real Debian redis-server for the BullMQ tests: on a unix socket in a temp folder, stopped by pid. */
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import * as assert from 'uvu/assert';
import { waitFor } from './procs.ts';

export interface Redis {
  pid: number;
  url: string;
  socket: string;
  stop(): Promise<void>;
  flush(): Promise<void>;
}

/** A Debian redis-server on a unix socket, with the settings docs/scale-out.md asks for; `args` add to or override them. */
export async function startRedis(dir: string, args: readonly string[] = []): Promise<Redis> {
  await fs.mkdir(dir, { recursive: true });
  const socket = path.join(dir, 'redis.sock');
  const child = execa(
    'redis-server',
    [
      '--port',
      '0',
      '--unixsocket',
      socket,
      '--unixsocketperm',
      '700',
      '--save',
      '',
      '--appendonly',
      'yes',
      '--dir',
      dir,
      '--maxmemory-policy',
      'noeviction',
      ...args,
    ],
    { reject: false, stdio: 'ignore' },
  );
  const cli = (...args: string[]) => execa('redis-cli', ['-s', socket, ...args], { reject: false });
  // Answering is enough: with requirepass the answer is NOAUTH.
  await waitFor('redis-server to answer', async () => existsSync(socket) && /PONG|NOAUTH/.test((await cli('ping')).stdout), 20_000);
  return {
    pid: child.pid!,
    url: `unix://${socket}`,
    socket,
    async stop() {
      process.kill(child.pid!, 'SIGTERM');
      await child;
    },
    async flush() {
      assert.is((await cli('FLUSHALL')).stdout.trim(), 'OK');
    },
  };
}
