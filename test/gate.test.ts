/**
 * The approval gate (patches/approved/ -> test in a fresh worktree -> commit with trailers, or
 * rejected/ with a reason): real repo, real pytest, patches proposed by runTask with the
 * scripted model. Crash safety with real processes killed by SIGKILL.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa, type ResultPromise } from 'execa';
import { runTask, type RunTaskResult } from '../src/run/runTask.ts';
import { approvePatch } from '../src/gate/decide.ts';
import { processApprovedPatch, type GateResult } from '../src/gate/gate.ts';
import { startWatching } from '../src/service/watch.ts';
import { ReportSchema } from '../src/contract/report.ts';
import { PatchSidecarSchema } from '../src/contract/patch.ts';
import { parseTask } from '../src/contract/task.ts';
import { silentLogger } from '../src/log.ts';
import { finish, startFakeLlm, toolCall, type FakeLlm, type Reply } from './helpers/fakeLlm.ts';
import {
  makeWorkspace,
  placeApprovedPatch,
  readJson,
  REPO_ROOT,
  repoFingerprint,
  worktreeCount,
  writeTask,
  type TestWorkspace,
  type WorkspaceOptions,
} from './helpers/workspace.ts';

const BIN = path.join(REPO_ROOT, 'bin', 'meta-agent.js');
const SIZING = 'bot/sizing.py';
const NOTE = '# Sizing is checked by the approval gate.\n';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = silentLogger();

// --- helpers ------------------------------------------------------------------------

interface Fixture {
  llm: FakeLlm;
  ws: TestWorkspace;
  close(): Promise<void>;
}

async function fixture(script: Reply[], options: WorkspaceOptions = {}): Promise<Fixture> {
  const llm = await startFakeLlm(script);
  const ws = await makeWorkspace({ ...options, llmUrl: llm.url });
  return {
    llm,
    ws,
    close: async () => {
      await llm.close();
      await ws.cleanup();
    },
  };
}

/** The scripted agent: one edit_file, then finish. */
function edit(file: string, old: string, replacement: string, summary = `Edit ${file}.`, risk = 'low'): Reply[] {
  return [toolCall('edit_file', { path: file, old, new: replacement }), finish(summary, risk)];
}
const addNote = (summary?: string, risk?: string) => edit(SIZING, 'def position_size(', `${NOTE}def position_size(`, summary, risk);

/** Runs a task in the workspace; the agent's change ends as patches/pending/<id>.patch. */
async function propose(ws: TestWorkspace, id: string, scope: string[] = ['bot/**']): Promise<RunTaskResult> {
  const file = await writeTask(ws.settings.layout.inbox, `${id}.md`, `---\nproject: bot\nobjective: Change for ${id}\nscope: ${JSON.stringify(scope)}\n---\n`);
  const result = await runTask(file, { settings: ws.settings });
  assert.ok(result.patch_path, `${id}: a patch is proposed (${result.report.error?.message ?? result.outcome})`);
  assert.is(result.patch_path, path.join(ws.settings.layout.patches.pending, `${id}.patch`));
  return result;
}

async function git(repo: string, args: string[]): Promise<string> {
  return (await execa('git', args, { cwd: repo })).stdout;
}

/** Commits on main that carry the gate's patch trailer. */
async function trailerCommits(repo: string): Promise<string[]> {
  return (await git(repo, ['log', 'main', '--format=%H', '--grep=Meta-Agent-Patch', '-F'])).split('\n').filter(Boolean);
}

const sha256 = (bytes: Buffer | string) => createHash('sha256').update(bytes).digest('hex');

async function approveAndGate(ws: TestWorkspace, id: string): Promise<GateResult> {
  const moved = await approvePatch(ws.settings, id);
  assert.is(moved, path.join(ws.settings.layout.patches.approved, `${id}.patch`));
  return processApprovedPatch(ws.settings, moved, log);
}

/** Names in a folder, without .gitkeep. */
async function list(dir: string): Promise<string[]> {
  return (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => n !== '.gitkeep').sort();
}

async function report(ws: TestWorkspace, id: string) {
  return ReportSchema.parse(await readJson(path.join(ws.settings.layout.reports, `${id}.json`)));
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function fileExists(file: string): Promise<boolean> {
  return fs.lstat(file).then(
    () => true,
    () => false,
  );
}

async function assertNoPatchLeftIn(dir: string): Promise<void> {
  const left = (await fs.readdir(dir)).filter((n) => n.includes('.patch'));
  assert.equal(left, [], `nothing left in ${path.basename(dir)}/ (private names included)`);
}

function cli(args: string[]): ResultPromise<{ reject: false; all: true }> {
  return execa(process.execPath, [BIN, ...args], { reject: false, all: true, env: { OPENAI_API_KEY: '' }, extendEnv: true, timeout: 60_000 }) as ResultPromise<{
    reject: false;
    all: true;
  }>;
}

/** Gate worktrees there now (a dead run's may be left until the service prunes it). */
async function gateWorktrees(ws: TestWorkspace): Promise<Set<string>> {
  return new Set((await list(ws.settings.layout.worktrees)).filter((n) => n.startsWith('gate-')));
}

/** A (new) gate worktree whose sizing.py has the patch applied: the checks are running in it. */
async function gateWorktreeWithPatch(ws: TestWorkspace, ignore = new Set<string>()): Promise<boolean> {
  const dir = ws.settings.layout.worktrees;
  for (const name of await list(dir)) {
    if (!name.startsWith('gate-') || name.endsWith('.exclude') || ignore.has(name)) continue;
    const text = await fs.readFile(path.join(dir, name, SIZING), 'utf8').catch(() => '');
    if (text.includes(NOTE)) return true;
  }
  return false;
}

/** The project's test command sleeps 2 s first, so a kill can land while the gate tests. */
async function slowTests(ws: TestWorkspace): Promise<void> {
  const file = ws.settings.layout.config;
  const yaml = await fs.readFile(file, 'utf8');
  const slow = yaml.replace('test: "python3 -m pytest -q -p no:cacheprovider"', `test: "sh -c 'sleep 2 && python3 -m pytest -q -p no:cacheprovider'"`);
  assert.is.not(slow, yaml, 'the test command was replaced');
  await fs.writeFile(file, slow);
}

// --- 6. apply or reject ----------------------------------------------------------------

test("a passing patch becomes one commit with the trailers; the user's other uncommitted change survives; files land in applied/", async () => {
  const f = await fixture(addNote('Document who checks the sizing inputs.', 'medium'));
  const { ws } = f;
  try {
    const head0 = (await git(ws.repo, ['rev-parse', 'main'])).trim();
    // The user is working in the real repo: an uncommitted edit and an untracked file.
    const readme = path.join(ws.repo, 'README.md');
    await fs.appendFile(readme, '\nwork in progress by the user\n');
    const readmeBytes = await fs.readFile(readme);
    await fs.writeFile(path.join(ws.repo, 'scratch-notes.txt'), 'mine\n');

    const run = await propose(ws, 'g1');
    assert.is(run.report.risk_level, 'medium');
    const patchSha = sha256(await fs.readFile(run.patch_path!));

    const result = await approveAndGate(ws, 'g1');
    assert.is(result.decision, 'applied', result.reason ?? '');
    assert.is(result.already_applied, false);
    const head = (await git(ws.repo, ['rev-parse', 'main'])).trim();
    assert.is(result.commit, head, 'the branch head is the new commit');

    // Exactly one new commit, on top of the old head, touching only the patch's file.
    assert.equal(await trailerCommits(ws.repo), [head]);
    assert.is((await git(ws.repo, ['rev-list', '--count', `${head0}..main`])).trim(), '1');
    assert.is((await git(ws.repo, ['rev-parse', `${head}^`])).trim(), head0);
    assert.is((await git(ws.repo, ['show', '--name-only', '--format=', head])).trim(), SIZING);
    const trailers = (await git(ws.repo, ['log', '-1', '--format=%(trailers:only,unfold)', head])).trim().split('\n');
    assert.equal(trailers, ['Meta-Agent-Task: g1', 'Risk: medium', `Meta-Agent-Patch: ${patchSha}`]);
    assert.is((await git(ws.repo, ['log', '-1', '--format=%s', head])).trim(), 'Document who checks the sizing inputs.');

    // The user's change: byte-identical and still uncommitted; the patched file is clean and current.
    assert.ok((await fs.readFile(readme)).equals(readmeBytes), 'README.md byte-identical');
    assert.equal((await git(ws.repo, ['status', '--porcelain', '--untracked-files=all'])).split('\n').sort(), [' M README.md', '?? scratch-notes.txt']);
    const sizing = await fs.readFile(path.join(ws.repo, SIZING), 'utf8');
    assert.ok(sizing.includes(NOTE), 'the checkout has the patched content');
    assert.is(sizing, await git(ws.repo, ['show', `main:${SIZING}`]).then((s) => `${s}\n`));
    assert.is(await git(ws.repo, ['status', '--porcelain', '--', SIZING]), '');
    assert.is(await git(ws.repo, ['diff', '--cached', '--name-only']), '', 'nothing staged');

    // Patch, sidecar and result in applied/; nothing left behind.
    const { applied, approved, pending } = ws.settings.layout.patches;
    assert.equal(await list(applied), ['g1.patch', 'g1.patch.json', 'g1.result.json']);
    assert.equal(await list(approved), []);
    assert.equal(await list(pending), []);
    assert.is(sha256(await fs.readFile(path.join(applied, 'g1.patch'))), patchSha);
    PatchSidecarSchema.parse(await readJson(path.join(applied, 'g1.patch.json')));
    const resultJson = await readJson(path.join(applied, 'g1.result.json'));
    assert.is(resultJson.decision, 'applied');
    assert.is(resultJson.commit, head);

    const rep = await report(ws, 'g1');
    assert.ok(rep.approval, 'report has an approval');
    assert.is(rep.approval!.decision, 'applied');
    assert.is(rep.approval!.by, 'gate');
    assert.is(rep.approval!.commit, head);
    assert.is(rep.approval!.branch, 'main');
    assert.is(rep.approval!.patch_sha256, patchSha);
    assert.is(rep.approval!.edited, false);
    assert.is(rep.approval!.tests?.passed, true);
    assert.is(rep.approval!.dry_run?.passed, true);
    assert.is(await worktreeCount(ws.repo), 0, 'the gate worktree is removed');
  } finally {
    await f.close();
  }
});

test('a patch that breaks a test is rejected with the output tail; no commit; report approval rejected', async () => {
  const f = await fixture(edit(SIZING, '    return math.floor(qty * 1_000_000) / 1_000_000', '    return 0.0', 'Simplify the rounding.'));
  const { ws } = f;
  try {
    const run = await propose(ws, 'bad');
    assert.is(run.report.tests?.passed, false, 'the run saw the failure too, and still proposed the patch');
    const before = await repoFingerprint(ws.repo);
    const head0 = (await git(ws.repo, ['rev-parse', 'main'])).trim();

    const result = await approveAndGate(ws, 'bad');
    assert.is(result.decision, 'rejected');
    assert.is(result.commit, null);
    assert.match(result.reason!, 'the tests failed');
    assert.is((await git(ws.repo, ['rev-parse', 'main'])).trim(), head0);
    assert.equal(await trailerCommits(ws.repo), []);
    assert.is(await repoFingerprint(ws.repo), before, 'the repo is byte-identical');

    const { rejected, approved, applied } = ws.settings.layout.patches;
    assert.equal(await list(rejected), ['bad.patch', 'bad.patch.json', 'bad.reason.md']);
    assert.equal(await list(approved), []);
    assert.equal(await list(applied), []);
    const reason = await fs.readFile(path.join(rejected, 'bad.reason.md'), 'utf8');
    assert.match(reason, 'the tests failed');
    assert.match(reason, 'test_risk_based_size', 'the output tail names the failing test');
    assert.match(reason, /\d+ failed/);

    const rep = await report(ws, 'bad');
    assert.is(rep.approval?.decision, 'rejected');
    assert.is(rep.approval?.by, 'gate');
    assert.is(rep.approval?.commit, null);
    assert.is(rep.approval?.tests?.passed, false);
    assert.is(await worktreeCount(ws.repo), 0);
  } finally {
    await f.close();
  }
});

test('a patch that conflicts with a newer HEAD is rejected naming the file, and a redo task appears in inbox/', async () => {
  const f = await fixture(edit(SIZING, '"""Risk-based position sizing."""', '"""Risk-based position sizing (agent wording)."""', 'Reword the docstring.'));
  const { ws } = f;
  try {
    await propose(ws, 'c1');
    // Meanwhile the user commits a different change to the same line.
    const file = path.join(ws.repo, SIZING);
    await fs.writeFile(file, (await fs.readFile(file, 'utf8')).replace('"""Risk-based position sizing."""', '"""Position sizing by risk (user wording)."""'));
    await git(ws.repo, ['-c', 'user.name=u', '-c', 'user.email=u@u', 'commit', '-qam', 'user: reword']);
    const head1 = (await git(ws.repo, ['rev-parse', 'main'])).trim();
    const before = await repoFingerprint(ws.repo);

    const result = await approveAndGate(ws, 'c1');
    assert.is(result.decision, 'rejected');
    assert.match(result.reason!, 'does not apply');
    assert.match(result.reason!, SIZING);
    assert.is((await git(ws.repo, ['rev-parse', 'main'])).trim(), head1);
    assert.equal(await trailerCommits(ws.repo), []);
    assert.is(await repoFingerprint(ws.repo), before);
    assert.match(await fs.readFile(file, 'utf8'), 'user wording');

    const { rejected } = ws.settings.layout.patches;
    assert.equal(await list(rejected), ['c1.patch', 'c1.patch.json', 'c1.reason.md']);
    const reason = await fs.readFile(path.join(rejected, 'c1.reason.md'), 'utf8');
    assert.match(reason, SIZING);
    assert.match(reason, 'c1-redo.md');

    // The follow-up task is a valid task for the same project and scope.
    const redo = path.join(ws.settings.layout.inbox, 'c1-redo.md');
    const task = parseTask(await fs.readFile(redo), 'c1-redo.md');
    assert.is(task.project, 'bot');
    assert.equal(task.scope, ['bot/**']);
    assert.match(task.objective, 'c1');
    assert.match(task.objective, SIZING);

    const rep = await report(ws, 'c1');
    assert.is(rep.approval?.decision, 'rejected');
    assert.equal(rep.approval?.conflicts, [SIZING]);
    assert.is(rep.approval?.follow_up_task, 'inbox/c1-redo.md');
    assert.is(await worktreeCount(ws.repo), 0);
  } finally {
    await f.close();
  }
});

test('a patch edited by hand to touch .env is rejected (deny list); the repo is byte-identical', async () => {
  const f = await fixture(addNote());
  const { ws } = f;
  try {
    // Scope "**": only the deny list stands between this patch and .env.
    const run = await propose(ws, 'sneaky', ['**']);
    await fs.appendFile(
      run.patch_path!,
      'diff --git a/.env b/.env\nnew file mode 100644\n--- /dev/null\n+++ b/.env\n@@ -0,0 +1 @@\n+EXCHANGE_API_KEY=attacker\n',
    );
    const envBytes = await fs.readFile(path.join(ws.repo, '.env'));
    const before = await repoFingerprint(ws.repo);

    const result = await approveAndGate(ws, 'sneaky');
    assert.is(result.decision, 'rejected');
    assert.match(result.reason!, 'deny list');
    assert.match(result.reason!, '.env');
    assert.is(await repoFingerprint(ws.repo), before, 'byte-identical');
    assert.ok((await fs.readFile(path.join(ws.repo, '.env'))).equals(envBytes));
    assert.equal(await trailerCommits(ws.repo), []);
    assert.match(await fs.readFile(path.join(ws.settings.layout.patches.rejected, 'sneaky.reason.md'), 'utf8'), 'deny list');
    assert.is((await report(ws, 'sneaky')).approval?.decision, 'rejected');
  } finally {
    await f.close();
  }
});

test("uncommitted changes in the patch's own file: rejected with that reason, the user's change intact", async () => {
  const f = await fixture(addNote());
  const { ws } = f;
  try {
    await propose(ws, 'mine');
    const file = path.join(ws.repo, SIZING);
    await fs.appendFile(file, '\n# the user is editing this file\n');
    const userBytes = await fs.readFile(file);
    const before = await repoFingerprint(ws.repo);

    const result = await approveAndGate(ws, 'mine');
    assert.is(result.decision, 'rejected');
    assert.match(result.reason!, `uncommitted changes in ${SIZING}`);
    assert.ok((await fs.readFile(file)).equals(userBytes), "the user's edit is intact");
    assert.is(await git(ws.repo, ['status', '--porcelain']), ` M ${SIZING}`);
    assert.is(await repoFingerprint(ws.repo), before);
    assert.equal(await trailerCommits(ws.repo), []);
    assert.equal(await list(ws.settings.layout.patches.rejected), ['mine.patch', 'mine.patch.json', 'mine.reason.md']);
  } finally {
    await f.close();
  }
});

// --- 7. crashes, copies, hostile patches ----------------------------------------------

test('a crash after the commit (patch back in approved/, nothing recorded): "already applied", still one commit', async () => {
  const f = await fixture(addNote());
  const { ws } = f;
  try {
    await propose(ws, 'p');
    const first = await approveAndGate(ws, 'p');
    assert.is(first.decision, 'applied', first.reason ?? '');
    const commit = first.commit!;
    const { applied, approved } = ws.settings.layout.patches;

    // The state a crash right after update-ref leaves: patch and sidecar still in approved/,
    // no result file, no approval in the report.
    await fs.rename(path.join(applied, 'p.patch'), path.join(approved, 'p.patch'));
    await fs.rename(path.join(applied, 'p.patch.json'), path.join(approved, 'p.patch.json'));
    await fs.rm(path.join(applied, 'p.result.json'));
    const reportFile = path.join(ws.settings.layout.reports, 'p.json');
    await fs.writeFile(reportFile, JSON.stringify({ ...(await readJson(reportFile)), approval: null }, null, 2));

    const again = await processApprovedPatch(ws.settings, path.join(approved, 'p.patch'), log);
    assert.is(again.decision, 'applied');
    assert.is(again.already_applied, true);
    assert.is(again.commit, commit);
    assert.equal(await trailerCommits(ws.repo), [commit]);
    assert.is((await git(ws.repo, ['rev-parse', 'main'])).trim(), commit);
    assert.equal(await list(applied), ['p.patch', 'p.patch.json', 'p.result.json']);
    assert.equal(await list(approved), []);
    const rep = await report(ws, 'p');
    assert.is(rep.approval?.decision, 'applied', 'the approval is recorded after the crash');
    assert.is(rep.approval?.commit, commit);

    // Only the patch moved back by hand (its sidecar stays in applied/): found by its trailer.
    await fs.rename(path.join(applied, 'p.patch'), path.join(approved, 'p.patch'));
    const third = await processApprovedPatch(ws.settings, path.join(approved, 'p.patch'), log);
    assert.is(third.decision, 'applied', third.reason ?? '');
    assert.is(third.already_applied, true);
    assert.equal(await trailerCommits(ws.repo), [commit]);
    assert.equal(await list(approved), []);
    assert.is(await git(ws.repo, ['status', '--porcelain']), '');
  } finally {
    await f.close();
  }
});

test('the same patch in approved/ twice ("x.patch", "x - Copy.patch"), gated concurrently, is applied once', async () => {
  const f = await fixture(addNote());
  const { ws } = f;
  try {
    const run = await propose(ws, 'x');
    const { approved, applied } = ws.settings.layout.patches;
    await fs.copyFile(run.patch_path!, path.join(approved, 'x - Copy.patch'));
    const moved = await approvePatch(ws.settings, 'x');
    const results = await Promise.all([
      processApprovedPatch(ws.settings, moved, log),
      processApprovedPatch(ws.settings, moved, log),
      processApprovedPatch(ws.settings, path.join(approved, 'x - Copy.patch'), log),
    ]);
    const commits = await trailerCommits(ws.repo);
    assert.is(commits.length, 1, `one commit (${results.map((r) => `${r.patch}:${r.decision}`).join(', ')})`);
    const fresh = results.filter((r) => r.decision === 'applied' && !r.already_applied);
    assert.is(fresh.length, 1, 'one gate run applied it');
    assert.is(fresh[0]!.commit, commits[0]);
    assert.is(results.filter((r) => r.decision === 'skipped').length, 1, 'the second call for the same file found it taken');
    assert.equal(await list(approved), []);

    // A later copy of the applied patch: recognised by its trailer, no second commit.
    await fs.copyFile(path.join(applied, 'x.patch'), path.join(approved, 'x - Copy (2).patch'));
    const copy = await processApprovedPatch(ws.settings, path.join(approved, 'x - Copy (2).patch'), log);
    assert.is(copy.decision, 'applied', copy.reason ?? '');
    assert.is(copy.already_applied, true);
    assert.equal(await trailerCommits(ws.repo), commits);
    assert.equal(await list(approved), []);
  } finally {
    await f.close();
  }
});

test('patches with ../, .git/, a rename into .git/ or a new symlink are rejected; the repo is byte-identical', async () => {
  const ws = await makeWorkspace();
  try {
    const head = (await git(ws.repo, ['rev-parse', 'main'])).trim();
    const { approved, rejected } = ws.settings.layout.patches;
    const place = (id: string, patch: string, files: string[]) => placeApprovedPatch(ws, id, patch, files);
    const hostile: Array<[string, string, RegExp]> = [
      [
        'dotdot',
        'diff --git a/../outside.txt b/../outside.txt\nnew file mode 100644\n--- /dev/null\n+++ b/../outside.txt\n@@ -0,0 +1 @@\n+pwned\n',
        /"\.\.\/outside\.txt" contains "\.\."/,
      ],
      [
        'dotgit',
        'diff --git a/.git/hooks/post-commit b/.git/hooks/post-commit\nnew file mode 100755\n--- /dev/null\n+++ b/.git/hooks/post-commit\n@@ -0,0 +1,2 @@\n+#!/bin/sh\n+touch pwned\n',
        /inside \.git\//,
      ],
      ['rename', 'diff --git a/bot/config.py b/.git/config\nsimilarity index 100%\nrename from bot/config.py\nrename to .git/config\n', /inside \.git\//],
      [
        'symlink',
        'diff --git a/bot/link.py b/bot/link.py\nnew file mode 120000\n--- /dev/null\n+++ b/bot/link.py\n@@ -0,0 +1 @@\n+/etc/passwd\n\\ No newline at end of file\n',
        /symlink/,
      ],
    ];
    const before = await repoFingerprint(ws.repo);
    const gitConfig = await fs.readFile(path.join(ws.repo, '.git', 'config'));
    for (const [id, patch, why] of hostile) {
      const result = await processApprovedPatch(ws.settings, await place(id, patch, []), log);
      assert.is(result.decision, 'rejected', id);
      assert.match(result.reason!, why, `${id}: ${result.reason}`);
      assert.match(result.reason!, 'not allowed');
      assert.is(result.moved_to, path.join(rejected, `${id}.patch`));
      assert.match(await fs.readFile(path.join(rejected, `${id}.reason.md`), 'utf8'), why);
      assert.is(await repoFingerprint(ws.repo), before, `${id}: the repo is byte-identical`);
    }
    assert.equal(await trailerCommits(ws.repo), []);
    assert.is((await git(ws.repo, ['rev-parse', 'main'])).trim(), head);
    assert.not.ok(await fileExists(path.join(ws.root, 'outside.txt')));
    assert.not.ok(await fileExists(path.join(ws.repo, '.git', 'hooks', 'post-commit')));
    assert.ok((await fs.readFile(path.join(ws.repo, '.git', 'config'))).equals(gitConfig));
    assert.equal(await list(approved), []);

    // Control: the same hand-made sidecar with a harmless patch is accepted, so the
    // rejections above come from the paths, not from the way these patches were made.
    const ok = 'diff --git a/bot/extra.py b/bot/extra.py\nnew file mode 100644\n--- /dev/null\n+++ b/bot/extra.py\n@@ -0,0 +1 @@\n+"""Harmless."""\n';
    const control = await processApprovedPatch(ws.settings, await place('control', ok, ['bot/extra.py']), log);
    assert.is(control.decision, 'applied', control.reason ?? '');
    assert.equal(await trailerCommits(ws.repo), [control.commit!]);
  } finally {
    await ws.cleanup();
  }
});

test('kill -9 of "approve --now" while the gate tests, then a restart: exactly one commit', async () => {
  const f = await fixture(addNote());
  const { ws } = f;
  try {
    await propose(ws, 'k1');
    await slowTests(ws);
    const { approved, applied } = ws.settings.layout.patches;
    const child = cli(['approve', 'k1', '--now', '--root', ws.root]);
    await waitFor('the gate to test the patch', () => gateWorktreeWithPatch(ws), 20_000);
    await sleep(400);
    child.kill('SIGKILL');
    const killed = await child;
    assert.is(killed.signal, 'SIGKILL', `the child was killed, not finished: ${killed.all}`);
    assert.equal(await trailerCommits(ws.repo), [], 'killed before the commit');
    assert.not.ok(await fileExists(path.join(approved, 'k1.patch')), 'the dead gate run left the patch under a private name');

    // Restart: the gate is run on the patch's name, as a restarted service would.
    const result = await processApprovedPatch(ws.settings, path.join(approved, 'k1.patch'), log);
    assert.is(result.decision, 'applied', `${result.decision}: ${result.reason}`);
    assert.equal(await trailerCommits(ws.repo), [result.commit!]);
    assert.ok(await fileExists(path.join(applied, 'k1.patch')));
    await assertNoPatchLeftIn(approved);
    assert.is((await report(ws, 'k1')).approval?.commit, result.commit);
  } finally {
    await f.close();
  }
});

test('kill -9 at several moments (gate just started, tests running), restarts by "watch": never two commits, finally one', async () => {
  const f = await fixture(addNote());
  const { ws } = f;
  const children: Array<ResultPromise> = [];
  try {
    await propose(ws, 'k2');
    await slowTests(ws);
    const { approved, applied } = ws.settings.layout.patches;
    const taken = async () => (await fs.readdir(approved)).some((n) => n.startsWith('.') && n.endsWith('k2.patch'));

    // 1. Killed as soon as the gate has taken the patch.
    const first = cli(['approve', 'k2', '--now', '--root', ws.root]);
    children.push(first);
    await waitFor('the gate to take the patch', taken, 20_000);
    first.kill('SIGKILL');
    assert.is((await first).signal, 'SIGKILL');
    assert.ok((await trailerCommits(ws.repo)).length <= 1);

    // 2. A restarted service picks it up; killed while the tests run.
    const leftover = await gateWorktrees(ws);
    const second = cli(['watch', '--root', ws.root]);
    children.push(second);
    await waitFor('the restarted service to test the patch', () => gateWorktreeWithPatch(ws, leftover), 25_000);
    await sleep(400);
    second.kill('SIGKILL');
    assert.is((await second).signal, 'SIGKILL');
    assert.equal(await trailerCommits(ws.repo), [], 'killed before the commit');

    // 3. Restarted again, left to finish, then stopped.
    const third = cli(['watch', '--root', ws.root]);
    children.push(third);
    await waitFor('the patch to be applied', () => fileExists(path.join(applied, 'k2.patch')), 30_000);
    await sleep(500);
    third.kill('SIGTERM');
    const stopped = await third;
    assert.is(stopped.exitCode, 0, stopped.all);

    const commits = await trailerCommits(ws.repo);
    assert.is(commits.length, 1, 'exactly one commit for the patch');
    assert.is((await git(ws.repo, ['rev-parse', 'main'])).trim(), commits[0]);
    await assertNoPatchLeftIn(approved);
    assert.equal(await list(applied), ['k2.patch', 'k2.patch.json', 'k2.result.json']);
    assert.is((await report(ws, 'k2')).approval?.commit, commits[0]);
    assert.is(await git(ws.repo, ['status', '--porcelain']), '');
  } finally {
    for (const child of children) child.kill('SIGKILL');
    await Promise.allSettled(children);
    await f.close();
  }
});

// --- 9. the service: moves by hand ----------------------------------------------------

test('with the service running, a patch moved into approved/ by rename is committed; one moved into rejected/ is recorded', async () => {
  const f = await fixture([
    ...addNote('Note on sizing.'),
    ...edit('bot/config.py', 'Exchange credentials are intentionally NOT handled here.', 'Exchange credentials are never handled here.', 'Reword config docs.'),
  ]);
  const { ws } = f;
  const gated: GateResult[] = [];
  try {
    await propose(ws, 'w1');
    await propose(ws, 'w2');
    const { pending, approved, rejected } = ws.settings.layout.patches;
    const watcher = startWatching({ settings: ws.settings, log, scanMs: 200, settleMs: 0, onGate: (r) => gated.push(r) });
    try {
      await watcher.ready;
      // Explorer-style moves: plain renames, nobody calls the gate.
      await fs.rename(path.join(pending, 'w1.patch.json'), path.join(approved, 'w1.patch.json'));
      await fs.rename(path.join(pending, 'w1.patch'), path.join(approved, 'w1.patch'));
      await fs.rename(path.join(pending, 'w2.patch'), path.join(rejected, 'w2.patch'));
      await fs.rename(path.join(pending, 'w2.patch.json'), path.join(rejected, 'w2.patch.json'));

      await waitFor('the commit', async () => (await trailerCommits(ws.repo)).length > 0 && gated.length > 0);
      await waitFor('the rejection to be recorded', async () => (await report(ws, 'w2')).approval !== null);
    } finally {
      await watcher.stop();
    }
    const commits = await trailerCommits(ws.repo);
    assert.is(commits.length, 1);
    assert.is(gated.length, 1);
    assert.is(gated[0]!.task_id, 'w1');
    assert.is(gated[0]!.commit, commits[0]);
    assert.match(await git(ws.repo, ['log', '-1', '--format=%B', commits[0]!]), 'Meta-Agent-Task: w1');
    assert.is((await report(ws, 'w1')).approval?.decision, 'applied');
    assert.is((await report(ws, 'w1')).approval?.commit, commits[0]);

    const w2 = (await report(ws, 'w2')).approval!;
    assert.is(w2.decision, 'rejected');
    assert.is(w2.by, 'human');
    assert.is(w2.commit, null);
    assert.ok(w2.reason && w2.reason.length > 0, 'a reason is recorded');
    assert.is(w2.patch_sha256, sha256(await fs.readFile(path.join(rejected, 'w2.patch'))));
    // The rejected change never reached the repo.
    assert.match(await fs.readFile(path.join(ws.repo, 'bot/config.py'), 'utf8'), 'intentionally NOT handled');
  } finally {
    await f.close();
  }
});

test.run();
