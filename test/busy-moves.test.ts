/**
 * Moves under an antivirus or OneDrive: a file held open fails a step of a move with EBUSY
 * (on Windows also EPERM/EACCES) for a while. Each step is retried on its own for
 * queue.busy_retry_s; a move never leaves one file under two names. The holds are injected
 * at the exact step (injectMoveFault), with Windows' codes where the platform is played.
 */
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { configureBusyRetry, injectMoveFault, publishUnique, replaceFile, type MoveStep } from '../src/workspace/files.ts';
import { moveUnique } from '../src/queue/folders.ts';
import { approvePatch } from '../src/gate/decide.ts';
import { makeWorkspace } from './helpers/workspace.ts';

function busy(code: string, file: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: resource busy or locked, ${file}`), { code, path: file });
}

/** Holds every file whose step and name match for `times` attempts (Infinity: for ever); counts the attempts. */
function hold(step: MoveStep, code: string, times: number, match: (file: string) => boolean = () => true) {
  const attempts: string[] = [];
  injectMoveFault((s, file) => {
    if (s !== step || !match(file)) return;
    attempts.push(file);
    const held = attempts.filter((f) => f === file).length;
    if (held <= times) throw busy(code, file);
  });
  return attempts;
}

async function tempDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-busy-'));
}

const list = async (dir: string) => (await fs.readdir(dir)).sort();

test.after.each(() => {
  injectMoveFault(null);
  configureBusyRetry({ budgetMs: 30_000, platform: process.platform });
});

test('EBUSY on the unlink step of a move: the unlink alone is retried, one name results (not task.md and task-2.md)', async () => {
  const dir = await tempDir();
  try {
    await fs.mkdir(path.join(dir, 'processing'));
    await fs.mkdir(path.join(dir, 'done'));
    const task = path.join(dir, 'processing', 'task.md');
    await fs.writeFile(task, 'Fix the bug.\n');
    const unlinks = hold('unlink', 'EBUSY', 3);
    const moved = await moveUnique(task, path.join(dir, 'done'));
    assert.is(moved, path.join(dir, 'done', 'task.md'));
    assert.equal(await list(path.join(dir, 'done')), ['task.md']);
    assert.equal(await list(path.join(dir, 'processing')), []);
    assert.is(await fs.readFile(moved, 'utf8'), 'Fix the bug.\n');
    assert.ok(unlinks.length >= 4, 'the unlink was retried until the holder let go');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('Windows (EPERM on the unlink of a temp name): a published task gets exactly one name in inbox/', async () => {
  configureBusyRetry({ platform: 'win32' });
  const dir = await tempDir();
  try {
    const attempts: Array<[MoveStep, string]> = [];
    let unlinkHolds = 2;
    injectMoveFault((step, file) => {
      attempts.push([step, path.basename(file)]);
      if (step === 'unlink' && unlinkHolds-- > 0) throw busy('EPERM', file);
    });
    const file = await publishUnique(dir, 'task', '.md', 'Fix the bug.\n');
    assert.is(path.basename(file), 'task.md');
    assert.equal(await list(dir), ['task.md'], 'no task-2.md, no temp file left');
    assert.equal(
      attempts.filter(([step]) => step === 'link').map(([, name]) => name),
      ['task.md'],
      'linked once, never re-linked',
    );
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('a held file (EBUSY for a while, then free) is replaced after the retries', async () => {
  const dir = await tempDir();
  try {
    const model = path.join(dir, 'model.pkl');
    await fs.writeFile(model, 'old');
    const attempts = hold('rename', 'EBUSY', 5, (f) => f === model);
    await replaceFile(model, 'new');
    assert.is(await fs.readFile(model, 'utf8'), 'new');
    assert.is(attempts.length, 6);
    assert.equal(await list(dir), ['model.pkl'], 'no temp file left');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('the budget ends with a clear error naming the file; the move did not happen (one name, the old one)', async () => {
  configureBusyRetry({ budgetMs: 300, platform: 'win32' });
  const dir = await tempDir();
  try {
    await fs.mkdir(path.join(dir, 'done'));
    const task = path.join(dir, 'task.md');
    await fs.writeFile(task, 'x\n');
    hold('unlink', 'EACCES', Infinity, (f) => f === task);
    try {
      await moveUnique(task, path.join(dir, 'done'));
      assert.unreachable('a file held for ever cannot be moved');
    } catch (error) {
      const e = error as NodeJS.ErrnoException;
      assert.is(e.code, 'EACCES');
      assert.is(e.path, task);
      assert.match(e.message, task);
      assert.match(e.message, /0\.3 s of retries \(queue\.busy_retry_s\)/);
    }
    assert.ok(existsSync(task));
    assert.equal(await list(path.join(dir, 'done')), [], 'the new name was removed again');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('EPERM of a hard link on Windows means "no hard links here": a rename at once, not 30 s of retries', async () => {
  configureBusyRetry({ platform: 'win32' });
  const dir = await tempDir();
  try {
    await fs.mkdir(path.join(dir, 'done'));
    const task = path.join(dir, 'task.md');
    await fs.writeFile(task, 'x\n');
    const links = hold('link', 'EPERM', Infinity);
    const moved = await moveUnique(task, path.join(dir, 'done'));
    assert.is(links.length, 1);
    assert.equal(await list(path.join(dir, 'done')), ['task.md']);
    assert.is(moved, path.join(dir, 'done', 'task.md'));
    assert.not.ok(existsSync(task));
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('off Windows, EPERM is a permission error: reported at once, not retried', async () => {
  configureBusyRetry({ platform: 'linux' });
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'report.json');
    await fs.writeFile(file, '{}');
    const attempts = hold('rename', 'EPERM', Infinity);
    try {
      await replaceFile(file, '{"a":1}');
      assert.unreachable('EPERM must be thrown');
    } catch (error) {
      assert.is((error as NodeJS.ErrnoException).code, 'EPERM');
    }
    assert.is(attempts.length, 1);
    // Control: the same hold as EBUSY is retried until it ends.
    const again = hold('rename', 'EBUSY', 2);
    await replaceFile(file, '{"a":1}');
    assert.is(again.length, 3);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('approving in a folder OneDrive holds: the patch and its sidecar land once in approved/; the budget comes from queue.busy_retry_s', async () => {
  const ws = await makeWorkspace({ extra: 'queue:\n  busy_retry_s: 0.25' });
  try {
    configureBusyRetry({ platform: 'win32' });
    const { pending, approved } = ws.settings.layout.patches;
    await fs.writeFile(path.join(pending, 'fix-1.patch'), 'diff --git a/x b/x\n');
    await fs.writeFile(path.join(pending, 'fix-1.patch.json'), '{}\n');
    const attempts = hold('unlink', 'EBUSY', 2);
    await approvePatch(ws.settings, 'fix-1');
    assert.equal(await list(approved), ['fix-1.patch', 'fix-1.patch.json']);
    assert.equal(
      (await list(pending)).filter((n) => !n.startsWith('.')),
      [],
    );
    assert.is(attempts.length, 6);
    // The configured budget (0.25 s) is what a lasting hold gets.
    await fs.writeFile(path.join(pending, 'fix-2.patch'), 'diff --git a/y b/y\n');
    hold('unlink', 'EBUSY', Infinity);
    try {
      await approvePatch(ws.settings, 'fix-2');
      assert.unreachable('held for ever');
    } catch (error) {
      assert.match((error as Error).message, /fix-2\.patch stayed busy .* for 0\.25 s of retries/);
    }
    assert.ok(existsSync(path.join(pending, 'fix-2.patch')));
    assert.not.ok(existsSync(path.join(approved, 'fix-2.patch')));
  } finally {
    await ws.cleanup();
  }
});

test.run();
