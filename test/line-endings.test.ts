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
import { processApprovedPatch } from '../src/gate/gate.ts';
import { undoCrlfResave } from '../src/gate/crlfPatch.ts';
import { applyChecker } from '../src/ui/applyCheck.ts';
import { PatchSidecarSchema } from '../src/contract/patch.ts';
import { silentLogger } from '../src/log.ts';
import { makeWorkspace, placeApprovedPatch, readJson, type TestWorkspace } from './helpers/workspace.ts';

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
const toolCtx = (repo: string) =>
  ({ worktree: repo, inScope: () => true, denied: denyMatcher([]), redact: makeRedactor({}) }) as unknown as Parameters<typeof writeFile>[0];

/** `added deleted path` rows of the working tree's diff against HEAD (new files included). */
async function numstat(repo: string): Promise<string[]> {
  await git(repo, ['add', '--all']);
  return (await git(repo, ['diff', '--cached', '--numstat']))
    .split('\n')
    .filter(Boolean)
    .map((row) => row.replace(/\t/g, ' '));
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
    const answer = await editFile(toolCtx(repo), {
      path: 'bot/strategy.py',
      old: '    risk = 0.01\n    return balance * risk\n',
      new: '    risk = 0.02\n    return balance * risk\n',
    });
    assert.match(answer, /^edited bot\/strategy\.py at line 2/);
    assert.equal(await numstat(repo), ['1 1 bot/strategy.py']);
    assert.not.match((await fs.readFile(path.join(repo, 'bot/strategy.py'), 'utf8')).replace(/\r\n/g, ''), /\n/, 'no bare LF');
  } finally {
    await cleanup();
  }
});

test('write_file keeps an LF file LF (a model writing CRLF there), a mixed file line for line, and a UTF-8 BOM', async () => {
  const mixed = 'a = 1\r\nb = 2\nc = 3\r\n';
  const bom = `\uFEFF${crlf('# notes\nline\n')}`;
  const { repo, cleanup } = await repoWith({ 'lf.py': 'x = 1\ny = 2\n', 'mixed.py': mixed, 'notes.md': bom });
  try {
    const ctx = toolCtx(repo);
    await writeFile(ctx, { path: 'lf.py', content: 'x = 1\r\ny = 3\r\n' });
    await writeFile(ctx, { path: 'mixed.py', content: 'a = 1\nb = 2\nc = 4\nd = 5\n' });
    await writeFile(ctx, { path: 'notes.md', content: '# notes\nline two\n' });
    assert.is(await fs.readFile(path.join(repo, 'lf.py'), 'utf8'), 'x = 1\ny = 3\n');
    // Unchanged lines keep their own endings; new ones get the majority (CRLF: 2 of 3).
    assert.is(await fs.readFile(path.join(repo, 'mixed.py'), 'utf8'), 'a = 1\r\nb = 2\nc = 4\r\nd = 5\r\n');
    assert.is(await fs.readFile(path.join(repo, 'notes.md'), 'utf8'), `\uFEFF${crlf('# notes\nline two\n')}`);
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
    // An existing file without a line break yet: as a new file of its kind.
    await fs.writeFile(path.join(repo, 'one.py'), 'x = 1');
    assert.is(await write('one.py'), 'one\r\ntwo\r\n', 'a one-line .py file in a CRLF .py repository');
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

// --- the gate -------------------------------------------------------------------------

const WIN_FILE = 'bot/win_orders.py';
const WIN = crlf('ORDERS = []\n\n\ndef place(order):\n    ORDERS.append(order)\n    return len(ORDERS)\n');

/** A workspace (no checks: the line endings are the point) whose repo also stores a CRLF file, committed as is. */
async function crlfWorkspace(): Promise<TestWorkspace> {
  const ws = await makeWorkspace({ project: '    scope: ["**"]' });
  await git(ws.repo, ['config', 'core.autocrlf', 'false']);
  await fs.writeFile(path.join(ws.repo, WIN_FILE), WIN);
  await git(ws.repo, ['add', WIN_FILE]);
  await git(ws.repo, ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-m', 'a CRLF file']);
  return ws;
}

/** The diff git makes for `change` (applied to the checkout, then undone): what the agent proposes. */
async function proposedPatch(repo: string, change: () => Promise<void>): Promise<string> {
  await change();
  await git(repo, ['add', '--all']);
  const patch = (await execa('git', ['diff', '--cached', '--binary'], { cwd: repo, stripFinalNewline: false })).stdout;
  await git(repo, ['reset', '--quiet', '--hard']);
  return patch;
}

const inboxTasks = async (ws: TestWorkspace) => (await fs.readdir(ws.settings.layout.inbox)).filter((n) => n.endsWith('.md'));

test('gate: a patch an editor re-saved with CRLF applies (LF, CRLF and new files as proposed), says so, and drops no redo task', async () => {
  const ws = await crlfWorkspace();
  try {
    const sizing = path.join(ws.repo, 'bot/sizing.py');
    const sizingBefore = await fs.readFile(sizing, 'utf8');
    assert.not.ok(sizingBefore.includes('\r'), 'bot/sizing.py is stored with LF');
    const patch = await proposedPatch(ws.repo, async () => {
      await fs.writeFile(sizing, `# checked by the gate\n${sizingBefore}`);
      await fs.writeFile(path.join(ws.repo, WIN_FILE), WIN.replace('return len(ORDERS)', 'return len(ORDERS) - 0'));
      await fs.writeFile(path.join(ws.repo, 'bot/win_new.py'), 'A = 1\r\nB = 2');
    });
    assert.match(patch, /^\+B = 2\n\\ No newline at end of file$/m, 'the proposal has a file without a final newline');
    const file = await placeApprovedPatch(ws, 'resaved', patch, ['bot/sizing.py', WIN_FILE, 'bot/win_new.py']);
    // Notepad: every line break CRLF (the CRLF file's content lines already were).
    await fs.writeFile(file, patch.replace(/\r?\n/g, '\r\n'));

    const result = await processApprovedPatch(ws.settings, file, silentLogger());
    assert.is(result.decision, 'applied', result.reason ?? '');
    const record = await readJson(path.join(ws.settings.layout.patches.applied, 'resaved.result.json'));
    assert.is(record.crlf_normalised, true, 'the record says the gate normalised it');
    assert.is(record.edited, false, 'after normalising it is the proposed patch, byte for byte');
    assert.equal(await inboxTasks(ws), [], 'no redo task');
    // The commit has exactly the proposed content: LF stays LF, CRLF stays CRLF, a one-line change is one line.
    assert.is(await git(ws.repo, ['show', 'main:bot/sizing.py']), `# checked by the gate\n${sizingBefore}`.replace(/\n$/, ''));
    const stat = (await git(ws.repo, ['show', '--numstat', '--format=', 'main'])).split('\n').map((r) => r.replace(/\t/g, ' '));
    assert.equal(stat.sort(), ['1 0 bot/sizing.py', '1 1 bot/win_orders.py', '2 0 bot/win_new.py']);
    const committed = await execa('git', ['show', `main:${WIN_FILE}`], { cwd: ws.repo, stripFinalNewline: false });
    assert.is(committed.stdout, WIN.replace('return len(ORDERS)', 'return len(ORDERS) - 0'));
    const added = await execa('git', ['show', 'main:bot/win_new.py'], { cwd: ws.repo, stripFinalNewline: false });
    assert.is(added.stdout, 'A = 1\r\nB = 2');
  } finally {
    await ws.cleanup();
  }
});

test('gate: a git-made patch that changes CRLF content (LF headers) is applied as it is, not normalised', async () => {
  const ws = await crlfWorkspace();
  try {
    const patch = await proposedPatch(ws.repo, () => fs.writeFile(path.join(ws.repo, WIN_FILE), WIN.replace('ORDERS = []', 'ORDERS = [None]')));
    assert.match(patch, /^-ORDERS = \[\]\r$/m, 'the patch carries the CRLF content');
    const file = await placeApprovedPatch(ws, 'crlf-content', patch, [WIN_FILE]);
    const result = await processApprovedPatch(ws.settings, file, silentLogger());
    assert.is(result.decision, 'applied', result.reason ?? '');
    const record = await readJson(path.join(ws.settings.layout.patches.applied, 'crlf-content.result.json'));
    assert.is(record.crlf_normalised, false);
    const committed = await execa('git', ['show', `main:${WIN_FILE}`], { cwd: ws.repo, stripFinalNewline: false });
    assert.is(committed.stdout, WIN.replace('ORDERS = []', 'ORDERS = [None]'));
  } finally {
    await ws.cleanup();
  }
});

test('gate: a re-saved patch that really conflicts is still rejected as a conflict (with its redo task)', async () => {
  const ws = await crlfWorkspace();
  try {
    const sizing = path.join(ws.repo, 'bot/sizing.py');
    const before = await fs.readFile(sizing, 'utf8');
    const patch = await proposedPatch(ws.repo, () => fs.writeFile(sizing, before.replace('def position_size(', 'def position_size_v2(')));
    const file = await placeApprovedPatch(ws, 'stale', patch, ['bot/sizing.py']);
    await fs.writeFile(file, patch.replace(/\n/g, '\r\n'));
    // Meanwhile main changed those lines.
    await fs.writeFile(sizing, before.replace('def position_size(', 'def position_size_other('));
    await git(ws.repo, ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-am', 'moved on']);
    const result = await processApprovedPatch(ws.settings, file, silentLogger());
    assert.is(result.decision, 'rejected');
    assert.match(result.reason!, /conflicts in bot\/sizing\.py/);
    assert.is((await inboxTasks(ws)).length, 1, 'the redo task of a real conflict');
  } finally {
    await ws.cleanup();
  }
});

test("the dashboard's apply check says a re-saved patch applies (as the gate will apply it)", async () => {
  const ws = await crlfWorkspace();
  try {
    const sizing = path.join(ws.repo, 'bot/sizing.py');
    const before = await fs.readFile(sizing, 'utf8');
    const patch = await proposedPatch(ws.repo, () => fs.writeFile(sizing, `# note\n${before}`));
    const file = await placeApprovedPatch(ws, 'shown', patch, ['bot/sizing.py']);
    const sidecar = PatchSidecarSchema.parse(await readJson(`${file}.json`));
    const status = applyChecker(ws.settings);
    assert.is((await status(sidecar, file))!.applies, 'clean', 'positive control: as proposed');
    await fs.writeFile(file, patch.replace(/\n/g, '\r\n'));
    assert.is((await status(sidecar, file))!.applies, 'clean', 're-saved with CRLF');
  } finally {
    await ws.cleanup();
  }
});

test('undoCrlfResave: headers LF, content as the file is stored, no CR before "\\ No newline at end of file"', () => {
  const resaved = crlf(
    'diff --git a/lf.txt b/lf.txt\n--- a/lf.txt\n+++ b/lf.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n\\ No newline at end of file\ndiff --git a/w.txt b/w.txt\n--- a/w.txt\n+++ b/w.txt\n@@ -1 +1 @@\n-x\n+y\n',
  );
  const stored = (p: string) => (p === 'w.txt' ? true : p === 'lf.txt' ? false : null);
  assert.is(
    undoCrlfResave(resaved, stored, false),
    'diff --git a/lf.txt b/lf.txt\n--- a/lf.txt\n+++ b/lf.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n\\ No newline at end of file\ndiff --git a/w.txt b/w.txt\n--- a/w.txt\n+++ b/w.txt\n@@ -1 +1 @@\n-x\r\n+y\r\n',
  );
});

test.run();
