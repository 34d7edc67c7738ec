/**
 * A workspace's own id: random, made once and kept in `.meta-agent/instance-id`. BullMQ job
 * ids start with it, so two folder hosts sharing one Redis (two workspaces, or a test and a
 * benchmark) never take each other's jobs for their own: a task file with the same name and
 * content has the same ledger key in both.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Layout } from './layout.ts';

const known = new Map<string, Promise<string>>();

export function workspaceInstanceId(layout: Layout): Promise<string> {
  let id = known.get(layout.state);
  if (!id) {
    id = readOrMake(path.join(layout.state, 'instance-id'));
    known.set(layout.state, id);
    id.catch(() => known.delete(layout.state));
  }
  return id;
}

async function readOrMake(file: string): Promise<string> {
  const valid = (text: string | null) => (text && /^[0-9a-f]{16}$/.test(text.trim()) ? text.trim() : null);
  const existing = valid(await fs.readFile(file, 'utf8').catch(() => null));
  if (existing) return existing;
  await fs.mkdir(path.dirname(file), { recursive: true });
  const made = randomBytes(8).toString('hex');
  // 'wx': two processes starting at once keep the first one's id.
  await fs.writeFile(file, `${made}\n`, { flag: 'wx' }).catch(async (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
  const kept = valid(await fs.readFile(file, 'utf8'));
  if (!kept) throw new Error(`${file} does not hold a workspace id; remove it and start again`);
  return kept;
}
