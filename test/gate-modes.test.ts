/**
 * The gate checks modes, not only paths: a patch that adds or retargets a symlink, adds or
 * changes a gitlink, or makes a file executable outside `patch.executable` is rejected with
 * the reason, and the user's repository stays byte-identical. A run whose agent (here a real
 * external program through the command engine) makes such a change proposes no patch.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { processApprovedPatch } from '../src/gate/gate.ts';
import { runTask } from '../src/run/runTask.ts';
import { silentLogger } from '../src/log.ts';
import { makeWorkspace, placeApprovedPatch, repoFingerprint, writeTask, type TestWorkspace } from './helpers/workspace.ts';

const log = silentLogger();

async function git(repo: string, args: string[]): Promise<string> {
  return (await execa('git', args, { cwd: repo })).stdout.trim();
}

async function commitAll(repo: string, message: string): Promise<void> {
  await git(repo, ['add', '--all']);
  await git(repo, ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-m', message]);
}

test('patches that add or retarget a symlink, add or change a gitlink, or add an executable bit are rejected; an allowed executable applies', async () => {
  const ws = await makeWorkspace({ extra: 'patch:\n  executable: ["scripts/*.sh"]' });
  try {
    // The user's repo has a symlink and a submodule pointer (gitlink) already.
    await fs.mkdir(path.join(ws.repo, 'notes'));
    await fs.writeFile(path.join(ws.repo, 'notes', 'today.txt'), 'today\n');
    await fs.symlink('today.txt', path.join(ws.repo, 'notes', 'current.txt'));
    await commitAll(ws.repo, 'notes with a symlink');
    const pinned = await git(ws.repo, ['rev-parse', 'HEAD']);
    await git(ws.repo, ['update-index', '--add', '--cacheinfo', `160000,${pinned},vendor/lib`]);
    await git(ws.repo, ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-m', 'a submodule pointer']);
    const head = await git(ws.repo, ['rev-parse', 'main']);
    const linkBlob = await git(ws.repo, ['rev-parse', 'main:notes/current.txt']);
    const other = '1'.repeat(40);

    const hostile: Array<[string, string, RegExp]> = [
      [
        'add-symlink',
        'diff --git a/bot/evil.py b/bot/evil.py\nnew file mode 120000\n--- /dev/null\n+++ b/bot/evil.py\n@@ -0,0 +1 @@\n+/etc/passwd\n\\ No newline at end of file\n',
        /adds the symlink "bot\/evil\.py"/,
      ],
      // git's own form of a retarget: only an index line carries the mode.
      [
        'retarget',
        `diff --git a/notes/current.txt b/notes/current.txt\nindex ${linkBlob}..${other} 120000\n--- a/notes/current.txt\n+++ b/notes/current.txt\n@@ -1 +1 @@\n-today.txt\n\\ No newline at end of file\n+/etc/passwd\n\\ No newline at end of file\n`,
        /retargets the symlink "notes\/current\.txt"/,
      ],
      // No index line at all: the text says nothing about modes; git apply still retargets the link. The applied tree is checked.
      [
        'retarget-bare',
        'diff --git a/notes/current.txt b/notes/current.txt\n--- a/notes/current.txt\n+++ b/notes/current.txt\n@@ -1 +1 @@\n-today.txt\n\\ No newline at end of file\n+/etc/passwd\n\\ No newline at end of file\n',
        /retargets the symlink "notes\/current\.txt"/,
      ],
      [
        'gitlink-change',
        `diff --git a/vendor/lib b/vendor/lib\nindex ${pinned}..${other} 160000\n--- a/vendor/lib\n+++ b/vendor/lib\n@@ -1 +1 @@\n-Subproject commit ${pinned}\n+Subproject commit ${other}\n`,
        /changes the submodule \(gitlink\) "vendor\/lib"/,
      ],
      [
        'gitlink-add',
        `diff --git a/vendor/other b/vendor/other\nnew file mode 160000\nindex 0000000..${other}\n--- /dev/null\n+++ b/vendor/other\n@@ -0,0 +1 @@\n+Subproject commit ${other}\n`,
        /adds the submodule \(gitlink\) "vendor\/other"/,
      ],
      ['exec-bit', 'diff --git a/bot/sizing.py b/bot/sizing.py\nold mode 100644\nnew mode 100755\n', /makes "bot\/sizing\.py" executable/],
      [
        'exec-new',
        'diff --git a/bot/tool.sh b/bot/tool.sh\nnew file mode 100755\n--- /dev/null\n+++ b/bot/tool.sh\n@@ -0,0 +1,2 @@\n+#!/bin/sh\n+echo hi\n',
        /makes "bot\/tool\.sh" executable/,
      ],
    ];
    const before = await repoFingerprint(ws.repo);
    const { rejected } = ws.settings.layout.patches;
    for (const [id, patch, why] of hostile) {
      const result = await processApprovedPatch(ws.settings, await placeApprovedPatch(ws, id, patch), log);
      assert.is(result.decision, 'rejected', `${id}: ${result.reason}`);
      assert.match(result.reason!, why, `${id}: ${result.reason}`);
      assert.is(result.moved_to, path.join(rejected, `${id}.patch`));
      assert.match(await fs.readFile(path.join(rejected, `${id}.reason.md`), 'utf8'), why);
      assert.is(await repoFingerprint(ws.repo), before, `${id}: the repo is byte-identical`);
      assert.is(await git(ws.repo, ['rev-parse', 'main']), head, `${id}: no commit`);
    }
    assert.is(await fs.readlink(path.join(ws.repo, 'notes', 'current.txt')), 'today.txt');
    assert.is(await git(ws.repo, ['rev-parse', 'main:vendor/lib']), pinned);

    // Control: an executable that patch.executable allows, and a plain edit, both apply.
    const allowed =
      'diff --git a/scripts/run.sh b/scripts/run.sh\nnew file mode 100755\n--- /dev/null\n+++ b/scripts/run.sh\n@@ -0,0 +1,2 @@\n+#!/bin/sh\n+echo run\n';
    const ok = await processApprovedPatch(ws.settings, await placeApprovedPatch(ws, 'allowed-exec', allowed), log);
    assert.is(ok.decision, 'applied', ok.reason ?? '');
    assert.match(await git(ws.repo, ['ls-tree', 'main', 'scripts/run.sh']), /^100755 blob /);
    const plain = 'diff --git a/notes/today.txt b/notes/today.txt\n--- a/notes/today.txt\n+++ b/notes/today.txt\n@@ -1 +1 @@\n-today\n+tomorrow\n';
    const edited = await processApprovedPatch(ws.settings, await placeApprovedPatch(ws, 'plain', plain), log);
    assert.is(edited.decision, 'applied', edited.reason ?? '');
    assert.is(await fs.readlink(path.join(ws.repo, 'notes', 'current.txt')), 'today.txt', 'the link itself is untouched');
  } finally {
    await ws.cleanup();
  }
});

/** An external agent (the command engine) that runs `script` in the worktree. */
async function commandWorkspace(script: string): Promise<{ ws: TestWorkspace; dir: string }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-modes-'));
  const file = path.join(dir, 'agent.mjs');
  await fs.writeFile(file, script);
  const ws = await makeWorkspace({
    extra: [
      'engine: command',
      'command:',
      `  run: [${JSON.stringify(process.execPath)}, ${JSON.stringify(file)}]`,
      'patch:',
      '  executable: ["scripts/*.sh"]',
    ].join('\n'),
  });
  return { ws, dir };
}

test('at proposal time, a symlink or an executable bit outside the rules is a scope violation and no patch; an allowed one is proposed', async () => {
  const hostile = await commandWorkspace(`
import { chmodSync, symlinkSync, writeFileSync } from 'node:fs';
symlinkSync('/etc/passwd', 'bot/evil.py');
chmodSync('bot/sizing.py', 0o755);
writeFileSync('bot/extra.py', '"""fine"""\\n');
`);
  const allowed = await commandWorkspace(`
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
mkdirSync('scripts', { recursive: true });
writeFileSync('scripts/run.sh', '#!/bin/sh\\necho run\\n');
chmodSync('scripts/run.sh', 0o755);
`);
  try {
    const task = '---\nproject: bot\nobjective: Change modes\nscope: ["**"]\n---\n';
    const bad = await runTask(await writeTask(hostile.ws.settings.layout.inbox, 'modes.md', task), { settings: hostile.ws.settings });
    assert.is(bad.outcome, 'scope_violation', bad.report.error?.message);
    assert.is(bad.patch_path, null);
    assert.match(bad.report.error!.message, /adds the symlink "bot\/evil\.py"/);
    assert.match(bad.report.error!.message, /makes "bot\/sizing\.py" executable/);
    assert.equal([...bad.report.scope_violations].sort(), ['bot/evil.py', 'bot/sizing.py']);
    assert.equal(
      (await fs.readdir(hostile.ws.settings.layout.patches.pending)).filter((n) => n.endsWith('.patch')),
      [],
    );

    const good = await runTask(await writeTask(allowed.ws.settings.layout.inbox, 'exec.md', task), { settings: allowed.ws.settings });
    assert.is(good.outcome, 'completed', good.report.error?.message);
    assert.ok(good.patch_path, 'a patch is proposed');
    assert.match(await fs.readFile(good.patch_path!, 'utf8'), 'new file mode 100755');
  } finally {
    await hostile.ws.cleanup();
    await allowed.ws.cleanup();
    await fs.rm(hostile.dir, { recursive: true, force: true });
    await fs.rm(allowed.dir, { recursive: true, force: true });
  }
});

test.run();
