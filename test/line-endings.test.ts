/**
 * Line endings on Windows repositories (core.autocrlf=false, files committed with CRLF):
 * the agent's write_file and edit_file keep each file's style, so a one-line fix is a
 * one-line diff; the gate takes a patch an editor re-saved with CRLF, says it did, and still
 * applies a git-made patch that changes CRLF content as it is. Real git repos in temp folders.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { editFile, writeFile } from '../src/engines/tools.ts';
import { makeRedactor } from '../src/safety/redact.ts';
import { denyMatcher } from '../src/safety/globs.ts';

const crlf = (s: string) => s.replace(/\n/g, '\r\n');

async function git(repo: string, args: string[]): Promise<string> {
  return (await execa('git', args, { cwd: repo })).stdout;
}

/** A repo that stores `files` as given (no conversion), committed. */
async function repoWith(files: Record<string, string>): Promise<{ repo: string; cleanup(): Promise<void> }> {
  const repo = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-eol-'));
  await git(repo, ['init', '--quiet', '--initial-branch', 'main']);
  await git(repo, ['config', 'core.autocrlf', 'false']);
  for (const [rel, text] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(repo, rel)), { recursive: true });
    await fs.writeFile(path.join(repo, rel), text);
  }
  await git(repo, ['add', '--all']);
  await git(repo, ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-m', 'initial']);
  return { repo, cleanup: () => fs.rm(repo, { recursive: true, force: true }) };
}

/** The file tools' context without settings: no syntax check runs after a write. */
const toolCtx = (repo: string) => ({ worktree: repo, inScope: () => true, denied: denyMatcher([]), redact: makeRedactor({}) }) as unknown as Parameters<typeof writeFile>[0];

/** `added deleted path` rows of the working tree's diff against HEAD (new files included). */
async function numstat(repo: string): Promise<string[]> {
  await git(repo, ['add', '--all']);
  return (await git(repo, ['diff', '--cached', '--numstat'])).split('\n').filter(Boolean).map((row) => row.replace(/\t/g, ' '));
}

const STRATEGY = crlf('def size(balance):\n    risk = 0.01\n    return balance * risk\n\n\ndef cap(x):\n    return min(x, 100)\n');

test('write_file in a CRLF repository: the model writes LF, the file stays CRLF and the fix is a one-line diff', async () => {
  const { repo, cleanup } = await repoWith({ 'bot/strategy.py': STRATEGY, 'bot/other.py': crlf('x = 1\n') });
  try {
    const lf = STRATEGY.replace(/\r\n/g, '\n').replace('risk = 0.01', 'risk = 0.02');
    await writeFile(toolCtx(repo), { path: 'bot/strategy.py', content: lf });
    assert.is(await fs.readFile(path.join(repo, 'bot/strategy.py'), 'utf8'), STRATEGY.replace('risk = 0.01', 'risk = 0.02'));
    assert.equal(await numstat(repo), ['1 1 bot/strategy.py']);
  } finally {
    await cleanup();
  }
});

test('edit_file in a CRLF repository: "old" and "new" with LF match and give a one-line diff', async () => {
  const { repo, cleanup } = await repoWith({ 'bot/strategy.py': STRATEGY });
  try {
    const answer = await editFile(toolCtx(repo), { path: 'bot/strategy.py', old: '    risk = 0.01\n    return balance * risk\n', new: '    risk = 0.02\n    return balance * risk\n' });
    assert.match(answer, /^edited bot\/strategy\.py at line 2/);
    assert.equal(await numstat(repo), ['1 1 bot/strategy.py']);
    assert.not.match((await fs.readFile(path.join(repo, 'bot/strategy.py'), 'utf8')).replace(/\r\n/g, ''), /\n/, 'no bare LF');
  } finally {
    await cleanup();
  }
});

test('write_file keeps an LF file LF (a model writing CRLF there), a mixed file line for line, and a UTF-8 BOM', async () => {
  const mixed = 'a = 1\r\nb = 2\nc = 3\r\n';
  const bom = '\uFEFF' + crlf('# notes\nline\n');
  const { repo, cleanup } = await repoWith({ 'lf.py': 'x = 1\ny = 2\n', 'mixed.py': mixed, 'notes.md': bom });
  try {
    const ctx = toolCtx(repo);
    await writeFile(ctx, { path: 'lf.py', content: 'x = 1\r\ny = 3\r\n' });
    await writeFile(ctx, { path: 'mixed.py', content: 'a = 1\nb = 2\nc = 4\nd = 5\n' });
    await writeFile(ctx, { path: 'notes.md', content: '# notes\nline two\n' });
    assert.is(await fs.readFile(path.join(repo, 'lf.py'), 'utf8'), 'x = 1\ny = 3\n');
    // Unchanged lines keep their own endings; new ones get the majority (CRLF: 2 of 3).
    assert.is(await fs.readFile(path.join(repo, 'mixed.py'), 'utf8'), 'a = 1\r\nb = 2\nc = 4\r\nd = 5\r\n');
    assert.is(await fs.readFile(path.join(repo, 'notes.md'), 'utf8'), '\uFEFF' + crlf('# notes\nline two\n'));
    assert.equal(await numstat(repo), ['1 1 lf.py', '2 1 mixed.py', '1 1 notes.md']);
  } finally {
    await cleanup();
  }
});

test('a new file follows .gitattributes eol, else the checked-out files with its extension, else the repository, else LF', async () => {
  const { repo, cleanup } = await repoWith({
    '.gitattributes': '*.bat eol=crlf\n*.sh eol=lf\n',
    'a.py': crlf('x = 1\n'),
    'b.py': crlf('y = 2\n'),
    'c.md': 'doc\n',
    'd.cfg': crlf('k = v\n'),
  });
  try {
    const ctx = toolCtx(repo);
    const write = async (rel: string) => {
      await writeFile(ctx, { path: rel, content: 'one\ntwo\n' });
      return fs.readFile(path.join(repo, rel), 'utf8');
    };
    assert.is(await write('run.bat'), 'one\r\ntwo\r\n', '.gitattributes eol=crlf');
    assert.is(await write('run.sh'), 'one\ntwo\n', '.gitattributes eol=lf');
    assert.is(await write('pkg/new.py'), 'one\r\ntwo\r\n', 'the .py files are CRLF');
    assert.is(await write('readme.md'), 'one\ntwo\n', 'the .md file is LF');
    // No file with the extension: the repository's majority (a.py, b.py, d.cfg CRLF; c.md, .gitattributes LF).
    assert.is(await write('data.toml'), 'one\r\ntwo\r\n', 'the repository is mostly CRLF');
  } finally {
    await cleanup();
  }
  const empty = await repoWith({ 'only.txt': 'lf\n' });
  try {
    await writeFile(toolCtx(empty.repo), { path: 'x.py', content: 'a\r\nb\r\n' });
    assert.is(await fs.readFile(path.join(empty.repo, 'x.py'), 'utf8'), 'a\nb\n', 'an LF repository: LF');
  } finally {
    await empty.cleanup();
  }
});

test.run();
