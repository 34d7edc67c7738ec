/**
 * What an agent leaves behind is hostile input to the service that reads or cleans up after
 * it: its last-message file made a link to a secret, a folder of the worktree made a link so
 * that link removal reaches outside, an untracked .gitattributes in a pooled worktree that
 * would steer the next run's checkout; and a job's task name from Redis that is a path.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { JobDataSchema } from '../src/queue/bullmq/job.ts';
import { openPooledWorktree } from '../src/repo/worktreePool.ts';
import { readAgentWrittenFile } from '../src/safety/paths.ts';
import { removeLinks } from '../src/workspace/links.ts';
import { makeWorkspace } from './helpers/workspace.ts';

async function tempDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-leftovers-'));
}

test('a last-message file made a link to a secret is not read; a regular one is, up to the cap', async () => {
  const dir = await tempDir();
  try {
    await fs.writeFile(path.join(dir, 'secret.env'), 'EXCHANGE_SECRET=canary-7f3a\n');
    await fs.symlink(path.join(dir, 'secret.env'), path.join(dir, 'last-message.md'));
    assert.is(await readAgentWrittenFile(path.join(dir, 'last-message.md')), null, 'a link is never followed');
    await fs.writeFile(path.join(dir, 'real.md'), 'Done: validated the inputs.');
    assert.is(await readAgentWrittenFile(path.join(dir, 'real.md')), 'Done: validated the inputs.', 'positive control');
    await fs.writeFile(path.join(dir, 'big.md'), 'x'.repeat(5000));
    assert.is((await readAgentWrittenFile(path.join(dir, 'big.md'), 100))?.length, 100, 'capped');
    await fs.mkdir(path.join(dir, 'folder.md'));
    assert.is(await readAgentWrittenFile(path.join(dir, 'folder.md')), null);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('link removal never goes through a folder the agent made a link: the file outside stays', async () => {
  const dir = await tempDir();
  try {
    const worktree = path.join(dir, 'worktree');
    const outside = path.join(dir, 'outside');
    await fs.mkdir(worktree);
    await fs.mkdir(outside);
    await fs.writeFile(path.join(outside, 'raw'), "the person's data");
    // `link: ["data/raw"]`; the agent replaced `data` with a link to a folder outside.
    await fs.symlink(outside, path.join(worktree, 'data'));
    assert.equal(await removeLinks(worktree, [path.join('data', 'raw')]), []);
    assert.is(await fs.readFile(path.join(outside, 'raw'), 'utf8'), "the person's data");
    // Positive control: a real folder with the link in it is cleaned.
    await fs.rm(path.join(worktree, 'data'));
    await fs.mkdir(path.join(worktree, 'data'));
    await fs.symlink(path.join(outside, 'raw'), path.join(worktree, 'data', 'raw'));
    assert.equal(await removeLinks(worktree, [path.join('data', 'raw')]), [path.join('data', 'raw')]);
    assert.is(await fs.readFile(path.join(outside, 'raw'), 'utf8'), "the person's data", 'unlinked, not followed');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test("a pooled worktree: an untracked .gitattributes the last run left does not change the next run's checkout", async () => {
  const ws = await makeWorkspace({ project: '    scope: ["**"]' });
  try {
    const project = ws.settings.projects.bot!;
    const first = await openPooledWorktree(ws.settings, project, 'run-1');
    // The last run's leftovers: an attributes file that turns every .py into CRLF on checkout, and an edit.
    await fs.writeFile(path.join(first.dir, '.gitattributes'), '*.py text eol=crlf\n');
    await fs.appendFile(path.join(first.dir, 'bot', 'sizing.py'), '# edited by the last run\n');
    await first.remove();
    const second = await openPooledWorktree(ws.settings, project, 'run-2');
    try {
      assert.is(second.dir, first.dir, 'the same slot, reused');
      const status = (await execa('git', ['status', '--porcelain', '--ignored'], { cwd: second.dir })).stdout;
      assert.is(status, '', 'a clean checkout of the base commit');
      const text = await fs.readFile(path.join(second.dir, 'bot', 'sizing.py'), 'utf8');
      assert.not.ok(text.includes('\r\n'), 'line endings as committed');
      assert.not.ok(text.includes('edited by the last run'));
    } finally {
      await second.remove();
    }
  } finally {
    await ws.cleanup();
  }
});

test("a job's task name from Redis is a file name, never a path", () => {
  const job = (name: string) => JobDataSchema.safeParse({ name, content: '', run_id: 'r1', project: 'bot' }).success;
  assert.ok(job('Задача 1.md'), 'positive control');
  for (const bad of ['../../etc/cron.d/x.md', 'a/b.md', 'a\\b.md', '..', 'x\0.md']) assert.not.ok(job(bad), bad);
  assert.ok(JobDataSchema.safeParse({ name: 'broken.md', content: '', run_id: 'r1', project: '' }).success, 'a task that does not parse has no project yet');
});

test.run();
