/**
 * The one process-tree killer and the bounded runner (safety/processes.ts): a timeout or a
 * stop ends the command and everything it started, including a grandchild that ignores
 * SIGTERM. Windows' branch (taskkill /T /F) is shown through an injected spawner.
 */
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { killTree, runBounded } from '../src/safety/processes.ts';

const POSIX = process.platform !== 'win32';

/** Alive and not a zombie (an orphan waits for its reaper, which may be slow in a container). */
function alive(pid: number): boolean {
  if (process.platform === 'linux') {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
    } catch {
      return false;
    }
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitUntil(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** sh that starts a grandchild ignoring SIGTERM, writes its pid to `pidFile`, and waits. */
function stubbornTree(pidFile: string): string[] {
  return ['-c', `sh -c 'trap "" TERM; echo $$ > "${pidFile}"; while :; do sleep 1; done' & wait`];
}

test('killTree on POSIX kills the whole group: a grandchild that ignores SIGTERM dies; killing only the child leaves it (the control)', async () => {
  if (!POSIX) return;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-kill-'));
  const grandchildren: number[] = [];
  try {
    for (const how of ['child only', 'tree'] as const) {
      const pidFile = path.join(dir, `${how.replace(' ', '-')}.pid`);
      const child = spawn('sh', stubbornTree(pidFile), { detached: true, stdio: 'ignore' });
      await waitUntil('the grandchild started', () => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '');
      const grandchild = Number(readFileSync(pidFile, 'utf8').trim());
      grandchildren.push(grandchild);
      if (how === 'child only') {
        process.kill(child.pid!, 'SIGKILL');
        await new Promise((r) => child.once('exit', r));
        await new Promise((r) => setTimeout(r, 300));
        assert.ok(alive(grandchild), 'killing only the direct child leaves the grandchild running');
        process.kill(grandchild, 'SIGKILL');
      } else {
        await killTree(child.pid, 'SIGTERM');
        await new Promise((r) => setTimeout(r, 300));
        assert.ok(alive(grandchild), 'SIGTERM alone does not end it (it ignores SIGTERM)');
        await killTree(child.pid, 'SIGKILL');
        await waitUntil('the grandchild is gone', () => !alive(grandchild));
      }
    }
  } finally {
    for (const pid of grandchildren) if (alive(pid)) process.kill(pid, 'SIGKILL');
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('killTree on Windows runs taskkill /T /F /PID <pid> (the whole tree, forced), and never throws when taskkill fails', async () => {
  const calls: Array<[string, string[]]> = [];
  await killTree(4321, 'SIGTERM', { platform: 'win32', spawn: async (file, args) => void calls.push([file, args]) });
  assert.equal(calls, [['taskkill', ['/T', '/F', '/PID', '4321']]]);
  await killTree(4321, 'SIGKILL', { platform: 'win32', spawn: async () => Promise.reject(new Error('ENOENT taskkill')) });
  await killTree(undefined, 'SIGKILL', { platform: 'win32', spawn: async (file, args) => void calls.push([file, args]) });
  assert.is(calls.length, 1, 'no pid: nothing to kill');
});

test('runBounded: a timeout ends the command and its SIGTERM-ignoring grandchild, and says it timed out', async () => {
  if (!POSIX) return;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-bounded-'));
  const pidFile = path.join(dir, 'grandchild.pid');
  try {
    let output = '';
    const result = await runBounded('sh', ['-c', `echo started; ${stubbornTree(pidFile)[1]}`], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '' },
      timeoutMs: 1500,
      graceMs: 300,
      onOutput: (text) => (output += text),
    });
    assert.ok(result.timedOut);
    assert.is(result.startError, null);
    assert.match(output, /started/);
    const grandchild = Number(readFileSync(pidFile, 'utf8').trim());
    assert.ok(grandchild > 0);
    await waitUntil('the grandchild is gone', () => !alive(grandchild));
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('runBounded: an abort stops it (aborted, not timed out); an exit code comes back as is; a missing program is a start error', async () => {
  if (!POSIX) return;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-bounded-'));
  try {
    const env = { PATH: process.env.PATH ?? '' };
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 300);
    const stopped = await runBounded('sh', ['-c', 'sleep 60'], { cwd: dir, env, timeoutMs: 60_000, signal: controller.signal, onOutput: () => undefined });
    assert.ok(stopped.aborted);
    assert.not.ok(stopped.timedOut);
    const exited = await runBounded('sh', ['-c', 'echo $META_AGENT_CHECK; exit 3'], { cwd: dir, env, timeoutMs: 60_000, onOutput: () => undefined });
    assert.is(exited.exitCode, 3);
    assert.is(exited.startError, null);
    const missing = await runBounded(path.join(dir, 'no-such-program'), [], { cwd: dir, env, timeoutMs: 60_000, onOutput: () => undefined });
    assert.is(missing.exitCode, null);
    assert.match(missing.startError ?? '', /ENOENT|no-such-program/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test.run();
