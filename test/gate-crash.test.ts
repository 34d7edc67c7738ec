/**
 * The gate when it dies or fails half-way through filing a decision: a full disk after the
 * branch moved, kill -9 at the moment of a given write (a child process that kills itself
 * there), kill -9 of the service while the gate tests. The next run must finish the job: one
 * commit, one record that shows the tests, one redo task, no leftovers.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { injectFileFault } from '../src/workspace/files.ts';
import { runTask } from '../src/run/runTask.ts';
import { approvePatch } from '../src/gate/decide.ts';
import { processApprovedPatch, recoverInterruptedGateRuns } from '../src/gate/gate.ts';
import { clearGitLocksOfDeadGate } from '../src/gate/repoOps.ts';
import { startWatching } from '../src/service/watch.ts';
import { silentLogger } from '../src/log.ts';
import { makeWorkspace, readJson, runUntilKilled, type TestWorkspace } from './helpers/workspace.ts';
import { deadPid, killHard, list, sleep, startWatchReady, waitFor } from './helpers/procs.ts';

const log = silentLogger();
const QUEUE = 'queue:\n  settle_ms: 100\n  scan_interval_ms: 200\n  lease_stale_s: 1\n  shutdown_grace_s: 1';
/** The command engine adds a line to README.md: a patch without any model. */
const EDITING_ENGINE = `engine: command\ncommand:\n  run: ["sh", "-c", "echo '# a note' >> README.md"]`;

interface AppliedRecord {
  task_id: string;
  decision: string;
  commit: string | null;
  reason: string | null;
  follow_up_task: string | null;
  tests: { passed: boolean } | null;
  dry_run: { passed: boolean } | null;
}

/** A workspace with patches/approved/<id>.patch (README.md gets a line; the tests and the dry run pass). */
async function approved(id: string): Promise<{ ws: TestWorkspace; patch: string }> {
  const ws = await makeWorkspace({ extra: [EDITING_ENGINE, QUEUE].join('\n') });
  const file = path.join(ws.settings.layout.inbox, `${id}.md`);
  await fs.writeFile(file, `---\nproject: bot\nobjective: Add a note to the README\nscope: ["**"]\n---\n`);
  const result = await runTask(file, { settings: ws.settings });
  assert.ok(result.patch_path, `a patch is proposed (${result.report.error?.message ?? result.outcome})`);
  return { ws, patch: await approvePatch(ws.settings, id) };
}

/** Commits on main that carry the gate's patch trailer. */
async function trailerCommits(repo: string): Promise<string[]> {
  return (await execa('git', ['log', 'main', '--format=%H', '--grep=Meta-Agent-Patch', '-F'], { cwd: repo })).stdout.split('\n').filter(Boolean);
}

const snapshots = (ws: TestWorkspace) => list(path.join(ws.settings.layout.state, 'gate-snapshots'), { dot: true });

/**
 * Runs the gate on `patch` in a child process that kill -9s itself at the first file write
 * whose name matches `at`: exactly the state a crash there leaves on disk.
 */
async function gateKilledAt(ws: TestWorkspace, patch: string, at: RegExp): Promise<void> {
  await runUntilKilled(
    ws,
    `the gate at ${at}`,
    (src) => [
      `import path from 'node:path';`,
      `import { injectFileFault } from ${src('workspace/files.ts')};`,
      `import { loadSettings } from ${src('workspace/config.ts')};`,
      `import { processApprovedPatch } from ${src('gate/gate.ts')};`,
      `import { silentLogger } from ${src('log.ts')};`,
      `const [root, patch, at] = process.argv.slice(2);`,
      `const settings = await loadSettings(root, { PATH: process.env.PATH, HOME: process.env.HOME });`,
      `injectFileFault((file) => { if (new RegExp(at).test(path.basename(file))) process.kill(process.pid, 'SIGKILL'); });`,
      `const r = await processApprovedPatch(settings, patch, silentLogger());`,
      `console.log('not killed: ' + r.decision);`,
    ],
    [patch, at.source],
  );
}

/** What a restarted service does first: give the interrupted run's patch its name back, then gate it. */
async function restartGate(ws: TestWorkspace, name: string) {
  await recoverInterruptedGateRuns(ws.settings, log);
  return processApprovedPatch(ws.settings, path.join(ws.settings.layout.patches.approved, name), log);
}

test('a full disk while the gate files an applied patch: the call fails (no unhandled rejection, not rejected); the next run files it, tested', async () => {
  const { ws, patch } = await approved('filing');
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  try {
    const { patches } = ws.settings.layout;
    // The disk is full when the gate adds its decision to reports/filing.json (after the branch moved).
    injectFileFault((file) => {
      if (path.basename(file).startsWith('.filing.json.'))
        throw Object.assign(new Error(`ENOSPC: no space left on device, write '${file}'`), { code: 'ENOSPC' });
    });
    const failed = await processApprovedPatch(ws.settings, patch, log).then(
      (r) => `${r.decision}: ${r.reason}`,
      (e: Error) => e.message,
    );
    injectFileFault(null);
    await sleep(300);
    assert.equal(unhandled, [], 'no unhandled rejection (in `watch`, Node would exit with code 1)');
    assert.match(failed, /^ENOSPC/, 'the error reaches the caller');
    const commits = await trailerCommits(ws.repo);
    assert.is(commits.length, 1, 'the branch moved before the error');
    assert.equal(
      (await list(patches.rejected)).filter((n) => n.endsWith('.patch')),
      [],
      'a committed patch is never filed as rejected',
    );

    const again = await restartGate(ws, 'filing.patch');
    assert.is(again.decision, 'applied', again.reason ?? '');
    assert.is(again.commit, commits[0]);
    const record = await readJson<AppliedRecord>(path.join(patches.applied, 'filing.result.json'));
    assert.is(record.tests?.passed, true, 'the record shows the tests that ran before the error');
    assert.is(record.dry_run?.passed, true);
    assert.equal(await list(patches.approved, { dot: true }), []);
    assert.equal(await snapshots(ws), []);
  } finally {
    injectFileFault(null);
    process.off('unhandledRejection', onUnhandled);
    await ws.cleanup();
  }
});

test('kill -9 after the gate moved the branch: the next run records the tests that passed, and removes the snapshot', async () => {
  const { ws, patch } = await approved('crashy');
  try {
    const { patches } = ws.settings.layout;
    const sha = createHash('sha256')
      .update(await fs.readFile(patch))
      .digest('hex');
    // Its first write after `git update-ref`: the approval in reports/crashy.json.
    await gateKilledAt(ws, patch, /^\.crashy\.json\./);
    const commits = await trailerCommits(ws.repo);
    assert.is(commits.length, 1, 'killed after the commit');
    assert.ok((await snapshots(ws)).includes(`${sha}.patch`), 'the killed run left its snapshot');

    const again = await restartGate(ws, 'crashy.patch');
    assert.is(again.decision, 'applied', again.reason ?? '');
    assert.is(again.already_applied, true);
    const record = await readJson<AppliedRecord>(path.join(patches.applied, 'crashy.result.json'));
    assert.is(record.commit, commits[0]);
    assert.is(record.tests?.passed, true, 'the tests the killed run passed are on record');
    assert.is(record.dry_run?.passed, true);
    assert.equal(await snapshots(ws), [], 'no snapshot left');
    assert.equal(await trailerCommits(ws.repo), commits);
  } finally {
    await ws.cleanup();
  }
});

test('kill -9 while the gate writes the result of an applied patch: a restarted service finishes the filing', async () => {
  const { ws, patch } = await approved('half');
  try {
    const { patches } = ws.settings.layout;
    await gateKilledAt(ws, patch, /^\.half\.result\.json\./);
    const commits = await trailerCommits(ws.repo);
    assert.is(commits.length, 1, 'killed after the commit');

    const watcher = startWatching({ settings: ws.settings, log, supervisorLog: log });
    try {
      await watcher.ready;
      await waitFor('the result in applied/', async () => (await list(patches.applied)).includes('half.result.json'), 20_000);
      await sleep(300);
    } finally {
      await watcher.stop();
    }
    const record = await readJson<AppliedRecord>(path.join(patches.applied, 'half.result.json'));
    assert.is(record.decision, 'applied');
    assert.is(record.commit, commits[0]);
    assert.equal(await list(patches.applied), ['half.patch', 'half.patch.json', 'half.result.json']);
    assert.equal(await list(patches.approved, { dot: true }), [], 'nothing left behind in approved/');
    assert.equal(await trailerCommits(ws.repo), commits);
  } finally {
    await ws.cleanup();
  }
});

test('kill -9 between dropping the redo task of a conflicting patch and filing the rejection: the redo task is dropped once', async () => {
  const { ws, patch } = await approved('clash');
  try {
    const { patches, inbox } = ws.settings.layout;
    // The person's own commit at the same spot (the end of README.md): the patch conflicts.
    await fs.appendFile(path.join(ws.repo, 'README.md'), 'A line of the person.\n');
    await execa('git', ['-c', 'user.name=p', '-c', 'user.email=p@p', 'commit', '--quiet', '-am', 'person'], { cwd: ws.repo });
    // Its first write after dropping clash-redo.md: the rejection in reports/clash.json.
    await gateKilledAt(ws, patch, /^\.clash\.json\./);
    assert.equal(
      (await list(inbox)).filter((n) => n.startsWith('clash-redo')),
      ['clash-redo.md'],
      'the killed run dropped the redo task',
    );

    const again = await restartGate(ws, 'clash.patch');
    assert.is(again.decision, 'rejected');
    assert.match(again.reason!, 'clash-redo.md');
    assert.equal(
      (await list(inbox)).filter((n) => n.startsWith('clash-redo')),
      ['clash-redo.md'],
      'no second redo task',
    );
    assert.ok((await list(patches.rejected)).includes('clash.patch'));
    assert.equal(await snapshots(ws), [], 'no snapshot or marker left');
  } finally {
    await ws.cleanup();
  }
});

test("kill -9 of the service while the gate tests, and a restart at once: the dead run's worktree and lock are removed", async () => {
  const { ws } = await approved('gated');
  const { layout } = ws.settings;
  // Back to pending/: the first service approves nothing until the tests are slow.
  await fs.rename(path.join(layout.patches.approved, 'gated.patch'), path.join(layout.patches.pending, 'gated.patch'));
  await fs.rename(path.join(layout.patches.approved, 'gated.patch.json'), path.join(layout.patches.pending, 'gated.patch.json'));
  const yaml = await fs.readFile(layout.config, 'utf8');
  const slow = yaml.replace('test: "python3 -m pytest -q -p no:cacheprovider"', 'test: "sleep 3"');
  assert.is.not(slow, yaml, 'the test command was replaced');
  await fs.writeFile(layout.config, slow);
  const gateWorktrees = async () => (await list(layout.worktrees)).filter((n) => n.startsWith('gate-'));
  try {
    const first = await startWatchReady(ws.root);
    await approvePatch(ws.settings, 'gated');
    await waitFor('a gate worktree', async () => (await gateWorktrees()).length > 0, 20_000);
    const dead = await gateWorktrees();
    await killHard(first);
    assert.ok(
      await fs.stat(path.join(layout.state, '.gate.lock')).then(
        () => true,
        () => false,
      ),
      'the killed run left its lock',
    );

    const second = await startWatchReady(ws.root);
    try {
      await waitFor('the patch applied', async () => (await list(layout.patches.applied)).includes('gated.result.json'), 30_000);
      await waitFor(
        'no gate worktree',
        async () => (await gateWorktrees()).length === 0,
        5_000,
        async () => (await gateWorktrees()).join(', '),
      );
      const worktrees = (await execa('git', ['worktree', 'list', '--porcelain'], { cwd: ws.repo })).stdout
        .split('\n')
        .filter((l) => l.startsWith('worktree ') && !/[\\/]pool-worktrees[\\/]/.test(l));
      assert.is(worktrees.length, 1, `only the checkout itself (and the runs' pool slots) (killed run: ${dead.join(', ')}): ${worktrees.join('; ')}`);
      assert.not.ok(
        await fs.stat(path.join(layout.state, '.gate.lock')).then(
          () => true,
          () => false,
        ),
        'no gate lock once idle',
      );
    } finally {
      await killHard(second);
    }
  } finally {
    await ws.cleanup();
  }
});

/** Turns the approved patch `id` into a retrain-like one: models/model.bin travels beside it and the gate installs it. */
async function withModelArtifact(ws: TestWorkspace, id: string): Promise<void> {
  const { patches } = ws.settings.layout;
  const model = Buffer.from('candidate model v2\n');
  await fs.mkdir(path.join(ws.repo, 'models'), { recursive: true });
  await fs.writeFile(path.join(ws.repo, 'models', 'model.bin'), 'baseline model v1\n');
  await fs.mkdir(path.join(patches.approved, `${id}.artifacts`, 'models'), { recursive: true });
  await fs.writeFile(path.join(patches.approved, `${id}.artifacts`, 'models', 'model.bin'), model);
  const sidecarFile = path.join(patches.approved, `${id}.patch.json`);
  const sidecar = await readJson<Record<string, unknown>>(sidecarFile);
  sidecar.artifacts = [{ path: 'models/model.bin', sha256: createHash('sha256').update(model).digest('hex'), bytes: model.length }];
  await fs.writeFile(sidecarFile, JSON.stringify(sidecar));
  // Git-ignored like a real model, so the checkout stays clean.
  await fs.appendFile(path.join(ws.repo, '.git', 'info', 'exclude'), 'models/*.bin\n');
}

test('kill -9 after the gate moved the branch, before it installed the artifacts: the next run installs them (once, the old file kept as .previous)', async () => {
  const { ws, patch } = await approved('model');
  try {
    await withModelArtifact(ws, 'model');
    await gateKilledAt(ws, patch, /^\.model\.bin\./);
    assert.is((await trailerCommits(ws.repo)).length, 1, 'killed after the commit');
    assert.is(await fs.readFile(path.join(ws.repo, 'models', 'model.bin'), 'utf8'), 'baseline model v1\n', 'not installed yet');

    const again = await restartGate(ws, 'model.patch');
    assert.is(again.decision, 'applied', again.reason ?? '');
    assert.is(again.already_applied, true);
    assert.is(await fs.readFile(path.join(ws.repo, 'models', 'model.bin'), 'utf8'), 'candidate model v2\n', 'installed by the next run');
    assert.is(await fs.readFile(path.join(ws.repo, 'models', 'model.previous.bin'), 'utf8'), 'baseline model v1\n', 'the old model is kept');
  } finally {
    await ws.cleanup();
  }
});

test("git locks a killed gate left in the person's repository are removed by the next gate run", async () => {
  const { ws, patch } = await approved('locked');
  try {
    await withModelArtifact(ws, 'locked');
    const gitDir = path.join(ws.repo, '.git');
    // Killed while it wrote into the repository (after the branch moved), as git itself would be mid-command.
    await gateKilledAt(ws, patch, /^\.model\.bin\./);
    for (const lock of ['HEAD.lock', 'index.lock']) await fs.writeFile(path.join(gitDir, lock), '');
    const commit = await execa('git', ['-c', 'user.name=p', '-c', 'user.email=p@x', 'commit', '--allow-empty', '-m', 'mine'], { cwd: ws.repo, reject: false });
    assert.is.not(commit.exitCode, 0, 'the person cannot commit while the locks are there');

    const again = await restartGate(ws, 'locked.patch');
    assert.is(again.decision, 'applied', again.reason ?? '');
    assert.not.ok(await fs.stat(path.join(gitDir, 'HEAD.lock')).catch(() => null), 'HEAD.lock removed');
    assert.not.ok(await fs.stat(path.join(gitDir, 'index.lock')).catch(() => null), 'index.lock removed');
    const mine = await execa('git', ['-c', 'user.name=p', '-c', 'user.email=p@x', 'commit', '--allow-empty', '-m', 'mine'], { cwd: ws.repo, reject: false });
    assert.is(mine.exitCode, 0, mine.stderr);
  } finally {
    await ws.cleanup();
  }
});

test("git locks older than the dead gate run are not its own: left alone; a live gate run's note is left alone", async () => {
  const ws = await makeWorkspace({ extra: QUEUE });
  try {
    const gitDir = path.join(ws.repo, '.git');
    const note = path.join(ws.settings.layout.state, 'gate-repo-op.json');
    const dead = await deadPid();
    await fs.mkdir(path.dirname(note), { recursive: true });
    await fs.writeFile(note, JSON.stringify({ host: os.hostname(), pid: dead, repo: ws.repo, branch: 'main', started_ms: Date.now() }));
    const older = path.join(gitDir, 'HEAD.lock');
    await fs.writeFile(older, '');
    const old = new Date(Date.now() - 60_000);
    await fs.utimes(older, old, old);
    await fs.writeFile(path.join(gitDir, 'index.lock'), '');
    assert.equal(await clearGitLocksOfDeadGate(ws.settings, log), [path.join(gitDir, 'index.lock')]);
    assert.ok(await fs.stat(older), 'a lock from before the gate run started stays');
    assert.not.ok(await fs.stat(note).catch(() => null), 'the note is gone');

    // A note of a live process (another gate run writing right now): nothing is touched.
    const live = execa(process.execPath, ['-e', 'setTimeout(() => {}, 10000)']);
    await fs.writeFile(note, JSON.stringify({ host: os.hostname(), pid: live.pid, repo: ws.repo, branch: 'main', started_ms: Date.now() - 120_000 }));
    assert.equal(await clearGitLocksOfDeadGate(ws.settings, log), []);
    assert.ok((await fs.stat(older)) && (await fs.stat(note)));
    live.kill('SIGKILL');
    await live.catch(() => undefined);
  } finally {
    await ws.cleanup();
  }
});

test('kill -9 in the middle of the move into applied/ (linked there, private name not yet removed): the next run finishes the move, no second filing', async () => {
  const { ws, patch } = await approved('halfway');
  try {
    const { patches } = ws.settings.layout;
    const first = await processApprovedPatch(ws.settings, patch, log);
    assert.is(first.decision, 'applied', first.reason ?? '');
    // The state a crash between link() and unlink() leaves, before the sidecar followed.
    await fs.link(path.join(patches.applied, 'halfway.patch'), path.join(patches.approved, '.taken-0badf00d-halfway.patch'));
    await fs.rename(path.join(patches.applied, 'halfway.patch.json'), path.join(patches.approved, 'halfway.patch.json'));

    const again = await restartGate(ws, 'halfway.patch');
    assert.is(again.decision, 'skipped', 'nothing left to gate');
    assert.equal(await list(patches.approved, { dot: true }), [], 'approved/ is empty');
    assert.equal(await list(patches.applied), ['halfway.patch', 'halfway.patch.json', 'halfway.result.json'], 'one filing, complete');
    assert.is((await trailerCommits(ws.repo)).length, 1);
  } finally {
    await ws.cleanup();
  }
});

test('a second proposal identical to an applied patch (a re-run of the task) is filed as already applied, with the tests its commit passed', async () => {
  const { ws, patch } = await approved('again');
  try {
    const { patches } = ws.settings.layout;
    const first = await processApprovedPatch(ws.settings, patch, log);
    assert.is(first.decision, 'applied', first.reason ?? '');
    // The re-run's proposal: same bytes, its own sidecar, approved later.
    await fs.copyFile(path.join(patches.applied, 'again.patch.json'), path.join(patches.approved, 'again.patch.json'));
    await fs.copyFile(path.join(patches.applied, 'again.patch'), path.join(patches.approved, 'again.patch'));
    const second = await processApprovedPatch(ws.settings, path.join(patches.approved, 'again.patch'), log);
    assert.is(second.decision, 'applied', second.reason ?? '');
    assert.is(second.already_applied, true);
    assert.is(second.commit, first.commit);
    const record = await readJson<AppliedRecord>(path.join(patches.applied, 'again-2.result.json'));
    assert.is(record.tests?.passed, true, 'the record shows the tests its commit passed');
    assert.is(record.dry_run?.passed, true);
    assert.is((await trailerCommits(ws.repo)).length, 1);
  } finally {
    await ws.cleanup();
  }
});

test('kill -9 after the patch was filed, before its sidecar followed and its state was removed: the next recovery scan finishes both; the state of a patch still waiting is kept', async () => {
  const { ws, patch } = await approved('filed');
  try {
    const { patches, state } = ws.settings.layout;
    const bytes = await fs.readFile(patch);
    const sha = createHash('sha256').update(bytes).digest('hex');
    const first = await processApprovedPatch(ws.settings, patch, log);
    assert.is(first.decision, 'applied', first.reason ?? '');
    // What the kill leaves: the sidecar still in approved/, the run's state still in gate-snapshots/.
    await fs.rename(path.join(patches.applied, 'filed.patch.json'), path.join(patches.approved, 'filed.patch.json'));
    await fs.writeFile(path.join(state, 'gate-snapshots', `${sha}.patch`), bytes);
    await fs.writeFile(path.join(state, 'gate-snapshots', `${sha}.checks.json`), '{}');
    // And the state of another patch whose gate run failed: it waits in approved/ under its private name.
    const waitingBytes = Buffer.from('diff --git a/x b/x\n');
    const waitingSha = createHash('sha256').update(waitingBytes).digest('hex');
    await fs.writeFile(path.join(patches.approved, '.taken-0badf00d-waiting.patch'), waitingBytes);
    await fs.writeFile(path.join(state, 'gate-snapshots', `${waitingSha}.patch`), waitingBytes);

    await recoverInterruptedGateRuns(ws.settings, log);
    assert.equal(await list(patches.applied), ['filed.patch', 'filed.patch.json', 'filed.result.json'], 'the sidecar followed its patch');
    assert.equal(await snapshots(ws), [`${waitingSha}.patch`], 'only the waiting patch keeps its state');
    assert.equal(await list(patches.approved, { dot: true }), ['waiting.patch'], 'the waiting patch got its name back');
  } finally {
    await ws.cleanup();
  }
});

test.run();
