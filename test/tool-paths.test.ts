/**
 * Every path error of the file tools is a tool error the model sees, never a crash of the
 * run: `.git/...` (in a worktree `.git` is a file, so the file system says ENOTDIR), a file
 * used as a folder, a folder used as a file, a symlink loop, a name too long. Scripted model
 * on 127.0.0.1, real git repo and worktree.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { runTask } from '../src/run/runTask.ts';
import { finish, startFakeLlm, toolCall, type Reply } from './helpers/fakeLlm.ts';
import { makeWorkspace, repoFingerprint, writeTask } from './helpers/workspace.ts';

const LONG = 'x'.repeat(300);

/** Each call, and what the model must be told. */
const CALLS: Array<[string, Record<string, unknown>, RegExp]> = [
  ['read_file', { path: '.git/config' }, /^ERROR: refused: "\.git\/config" is inside \.git/],
  ['write_file', { path: '.git/hooks/pre-commit', content: '#!/bin/sh\ntouch /tmp/pwned\n' }, /^ERROR: refused: .*inside \.git/],
  ['edit_file', { path: '.git/HEAD', old: 'ref', new: 'pwned' }, /^ERROR: refused: .*inside \.git/],
  ['list_files', { path: '.git' }, /^ERROR: refused: .*inside \.git/],
  ['search', { pattern: 'url', path: '.GIT/config' }, /^ERROR: refused: .*inside \.git/],
  ['read_file', { path: 'bot/sizing.py/x' }, /^ERROR: "bot\/sizing\.py\/x" goes through a file as if it were a folder/],
  ['write_file', { path: 'bot/sizing.py/x.py', content: 'x = 1\n' }, /^ERROR: "bot\/sizing\.py\/x\.py" goes through a file as if it were a folder/],
  ['edit_file', { path: 'bot', old: 'a', new: 'b' }, /^ERROR: "bot" is a folder, not a file/],
  ['read_file', { path: 'loop-a' }, /^ERROR: refused: "loop-a" is a symlink loop/],
  ['write_file', { path: 'loop-a', content: 'x' }, /^ERROR: refused: "loop-a" is a symlink loop/],
  ['read_file', { path: `bot/${LONG}.py` }, /^ERROR: refused: .* is too long a name/],
  ['write_file', { path: `bot/${LONG}.py`, content: 'x' }, /^ERROR: refused: .* is too long a name/],
];

test('path errors in read_file/write_file/edit_file/list_files/search are tool errors the model sees; the run goes on', async () => {
  const script: Reply[] = [...CALLS.map(([name, args]) => toolCall(name, args)), toolCall('read_file', { path: 'bot/sizing.py' }), finish('Looked around.')];
  const llm = await startFakeLlm(script);
  const ws = await makeWorkspace({ llmUrl: llm.url });
  try {
    await fs.symlink('loop-b', path.join(ws.repo, 'loop-a'));
    await fs.symlink('loop-a', path.join(ws.repo, 'loop-b'));
    await execa('git', ['add', 'loop-a', 'loop-b'], { cwd: ws.repo });
    await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-m', 'a symlink loop'], { cwd: ws.repo });
    const before = await repoFingerprint(ws.repo);
    const hooks = await fs.readdir(path.join(ws.repo, '.git', 'hooks'));

    const task = await writeTask(ws.settings.layout.inbox, 'paths.md', '---\nproject: bot\nobjective: Probe the paths\nscope: ["**"]\n---\n');
    const result = await runTask(task, { settings: ws.settings });
    assert.is(result.status, 'ok', result.report.error?.message);
    assert.is(result.outcome, 'no_changes');
    assert.is(llm.requests.length, CALLS.length + 2, 'every scripted call was answered');
    CALLS.forEach(([name, args, expected], i) => {
      const answer = String(llm.requests[i + 1]!.body.messages.at(-1).content);
      assert.match(answer, expected, `${name} ${JSON.stringify(args).slice(0, 60)}: ${answer.slice(0, 200)}`);
    });
    // Control: a plain read after all that works.
    assert.match(String(llm.requests[CALLS.length + 1]!.body.messages.at(-1).content), /^bot\/sizing\.py \(\d+ lines\)/);
    assert.is(await repoFingerprint(ws.repo), before, 'the repo is byte-identical');
    assert.equal(await fs.readdir(path.join(ws.repo, '.git', 'hooks')), hooks, 'no hook planted');
  } finally {
    await llm.close();
    await ws.cleanup();
  }
});

test.run();
