import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { exists, publishFile, publishUnique, renameNoReplace, replaceFile, sha256File, tempNameFor } from '../src/workspace/files.ts';

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-files-'));
  try {
    return await fn(dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

async function rejected(promise: Promise<unknown>): Promise<NodeJS.ErrnoException> {
  try {
    await promise;
  } catch (error) {
    assert.instance(error, Error);
    return error as NodeJS.ErrnoException;
  }
  assert.unreachable('expected a rejection');
  throw new Error('unreachable');
}

async function listing(dir: string): Promise<string[]> {
  return (await fs.readdir(dir)).sort();
}

/** Every byte value, so an accidental text re-encoding would show. */
const BINARY = Uint8Array.from({ length: 256 }, (_, i) => i);

test('tempNameFor: a hidden .tmp name in the same folder', () => {
  const temp = tempNameFor('/a/b/report.md');
  assert.is(path.dirname(temp), '/a/b');
  assert.match(path.basename(temp), /^\.report\.md\..+\.tmp$/);
  assert.is.not(tempNameFor('/a/b/report.md'), temp, 'two temp names differ');
});

test('publishFile: creates the file with the content, no leftovers', async () => {
  await withTempDir(async (dir) => {
    const file = path.join(dir, 'task.md');
    await publishFile(file, 'hello\nworld\n');
    assert.is(await fs.readFile(file, 'utf8'), 'hello\nworld\n');
    await publishFile(path.join(dir, 'bin.dat'), BINARY);
    assert.equal([...(await fs.readFile(path.join(dir, 'bin.dat')))], [...BINARY]);
    assert.equal(await listing(dir), ['bin.dat', 'task.md']);
  });
});

test('publishFile: EEXIST when the file exists; existing bytes untouched; no leftovers', async () => {
  await withTempDir(async (dir) => {
    const file = path.join(dir, 'bin.dat');
    await fs.writeFile(file, BINARY);
    const before = await fs.readFile(file);
    const error = await rejected(publishFile(file, 'replacement'));
    assert.is(error.code, 'EEXIST');
    const after = await fs.readFile(file);
    assert.ok(after.equals(before), 'existing file changed');
    assert.equal(await listing(dir), ['bin.dat']);
  });
});

test('publishFile: a missing folder is an error, not a silent success', async () => {
  await withTempDir(async (dir) => {
    const error = await rejected(publishFile(path.join(dir, 'nope', 'x.md'), 'x'));
    assert.is(error.code, 'ENOENT');
    assert.equal(await listing(dir), []);
  });
});

test('publishUnique: stem, then -2, then -3; contents kept apart; no leftovers', async () => {
  await withTempDir(async (dir) => {
    const first = await publishUnique(dir, 'report', '.md', 'one');
    const second = await publishUnique(dir, 'report', '.md', 'two');
    const third = await publishUnique(dir, 'report', '.md', 'three');
    assert.is(first, path.join(dir, 'report.md'));
    assert.is(second, path.join(dir, 'report-2.md'));
    assert.is(third, path.join(dir, 'report-3.md'));
    assert.is(await fs.readFile(first, 'utf8'), 'one');
    assert.is(await fs.readFile(second, 'utf8'), 'two');
    assert.is(await fs.readFile(third, 'utf8'), 'three');
    assert.equal(await listing(dir), ['report-2.md', 'report-3.md', 'report.md']);
  });
});

test('publishUnique: skips a name taken by someone else', async () => {
  await withTempDir(async (dir) => {
    await fs.writeFile(path.join(dir, 'r.md'), 'theirs');
    await fs.writeFile(path.join(dir, 'r-2.md'), 'theirs too');
    const used = await publishUnique(dir, 'r', '.md', 'mine');
    assert.is(used, path.join(dir, 'r-3.md'));
    assert.is(await fs.readFile(path.join(dir, 'r.md'), 'utf8'), 'theirs');
    assert.is(await fs.readFile(path.join(dir, 'r-2.md'), 'utf8'), 'theirs too');
    assert.is(await fs.readFile(used, 'utf8'), 'mine');
    assert.equal(await listing(dir), ['r-2.md', 'r-3.md', 'r.md']);
  });
});

test('publishUnique: concurrent calls get distinct names and keep their own content', async () => {
  await withTempDir(async (dir) => {
    const n = 8;
    const used = await Promise.all(Array.from({ length: n }, (_, i) => publishUnique(dir, 'c', '.txt', `content ${i}`)));
    assert.is(new Set(used).size, n);
    for (const [i, file] of used.entries()) assert.is(await fs.readFile(file, 'utf8'), `content ${i}`);
    const expected = ['c.txt', ...Array.from({ length: n - 1 }, (_, i) => `c-${i + 2}.txt`)].sort();
    assert.equal(await listing(dir), expected);
  });
});

test('renameNoReplace: false when the target exists; both files untouched', async () => {
  await withTempDir(async (dir) => {
    const from = path.join(dir, 'from.md');
    const to = path.join(dir, 'to.md');
    await fs.writeFile(from, 'source');
    await fs.writeFile(to, 'target');
    assert.is(await renameNoReplace(from, to), false);
    assert.is(await fs.readFile(from, 'utf8'), 'source');
    assert.is(await fs.readFile(to, 'utf8'), 'target');
    assert.equal(await listing(dir), ['from.md', 'to.md']);
  });
});

test('renameNoReplace: true when free; the source is gone', async () => {
  await withTempDir(async (dir) => {
    const from = path.join(dir, 'from.md');
    await fs.mkdir(path.join(dir, 'done'));
    const to = path.join(dir, 'done', 'from.md');
    await fs.writeFile(from, 'source');
    assert.is(await renameNoReplace(from, to), true);
    assert.is(await exists(from), false);
    assert.is(await fs.readFile(to, 'utf8'), 'source');
    assert.equal(await listing(dir), ['done']);
  });
});

test('renameNoReplace: a missing source is an error', async () => {
  await withTempDir(async (dir) => {
    const error = await rejected(renameNoReplace(path.join(dir, 'missing'), path.join(dir, 'to')));
    assert.is(error.code, 'ENOENT');
    assert.is(await exists(path.join(dir, 'to')), false);
  });
});

test('replaceFile: replaces the content; creates a missing file; no leftovers', async () => {
  await withTempDir(async (dir) => {
    const file = path.join(dir, 'report.md');
    await fs.writeFile(file, 'old content that is longer than the new one');
    await replaceFile(file, 'new');
    assert.is(await fs.readFile(file, 'utf8'), 'new');
    await replaceFile(file, BINARY);
    assert.equal([...(await fs.readFile(file))], [...BINARY]);
    await replaceFile(path.join(dir, 'fresh.md'), 'fresh');
    assert.is(await fs.readFile(path.join(dir, 'fresh.md'), 'utf8'), 'fresh');
    assert.equal(await listing(dir), ['fresh.md', 'report.md']);
  });
});

test('exists: true for files, folders and dangling symlinks; false otherwise', async () => {
  await withTempDir(async (dir) => {
    await fs.writeFile(path.join(dir, 'f'), '');
    await fs.symlink(path.join(dir, 'nowhere'), path.join(dir, 'dangling'));
    assert.is(await exists(path.join(dir, 'f')), true);
    assert.is(await exists(dir), true);
    assert.is(await exists(path.join(dir, 'dangling')), true);
    assert.is(await exists(path.join(dir, 'nowhere')), false);
  });
});

test('sha256File: the SHA-256 of the bytes on disk', async () => {
  await withTempDir(async (dir) => {
    const abc = path.join(dir, 'abc.txt');
    await fs.writeFile(abc, 'abc');
    assert.is(await sha256File(abc), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    const empty = path.join(dir, 'empty');
    await fs.writeFile(empty, '');
    assert.is(await sha256File(empty), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    const bin = path.join(dir, 'bin');
    await fs.writeFile(bin, BINARY);
    assert.is(await sha256File(bin), createHash('sha256').update(BINARY).digest('hex'));
    const error = await rejected(sha256File(path.join(dir, 'missing')));
    assert.is(error.code, 'ENOENT');
  });
});

test.run();
