/**
 * `meta-agent status / approve / reject / review` as a person runs them: real processes
 * on a real workspace; the pending patches come from runTask with the scripted model.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { runTask } from '../src/run/runTask.ts';
import { ReportSchema } from '../src/contract/report.ts';
import { finish, startFakeLlm, toolCall, type FakeLlm, type Reply } from './helpers/fakeLlm.ts';
import { makeWorkspace, readJson, REPO_ROOT, worktreeCount, writeTask, type TestWorkspace } from './helpers/workspace.ts';

const BIN = path.join(REPO_ROOT, 'bin', 'meta-agent.js');

function cli(ws: TestWorkspace, args: string[], input?: string) {
  return execa(process.execPath, [BIN, ...args, '--root', ws.root], {
    reject: false,
    env: { OPENAI_API_KEY: '' },
    extendEnv: true,
    timeout: 60_000,
    ...(input !== undefined ? { input } : {}),
  });
}

function edit(file: string, old: string, replacement: string, summary: string): Reply[] {
  return [toolCall('edit_file', { path: file, old, new: replacement }), finish(summary, 'low')];
}

const SIZING_EDIT = edit('bot/sizing.py', 'def position_size(', '# Reviewed.\ndef position_size(', 'Note on sizing.');
const EXECUTOR_EDIT = edit(
  'bot/execution/executor.py',
  '"""Order executor. Dry-run simulates fills; live trading is disabled."""',
  '"""Order executor: dry-run simulates fills; live trading is disabled."""',
  'Reword the executor docstring.',
);
const CONFIG_EDIT = edit(
  'bot/config.py',
  'Exchange credentials are intentionally NOT handled here.',
  'Exchange credentials are never handled here.',
  'Reword the config docstring.',
);

async function setup(script: Reply[]): Promise<{ llm: FakeLlm; ws: TestWorkspace; close(): Promise<void> }> {
  const llm = await startFakeLlm(script);
  const ws = await makeWorkspace({ llmUrl: llm.url });
  return {
    llm,
    ws,
    close: async () => {
      await llm.close();
      await ws.cleanup();
    },
  };
}

async function propose(ws: TestWorkspace, id: string): Promise<void> {
  const file = await writeTask(ws.settings.layout.inbox, `${id}.md`, `---\nproject: bot\nobjective: Change for ${id}\nscope: ["bot/**"]\n---\n`);
  const result = await runTask(file, { settings: ws.settings });
  assert.ok(result.patch_path, `${id}: a patch is proposed (${result.report.error?.message ?? result.outcome})`);
}

async function trailerCommits(repo: string): Promise<string[]> {
  return (await execa('git', ['log', 'main', '--format=%H', '--grep=Meta-Agent-Patch', '-F'], { cwd: repo })).stdout.split('\n').filter(Boolean);
}

async function list(dir: string): Promise<string[]> {
  return (await fs.readdir(dir)).filter((n) => n !== '.gitkeep').sort();
}

async function approvalOf(ws: TestWorkspace, id: string) {
  return ReportSchema.parse(await readJson(path.join(ws.settings.layout.reports, `${id}.json`))).approval;
}

test('status (--json and text), approve, approve --now, reject --reason, and their input errors', async () => {
  const f = await setup([...SIZING_EDIT, ...EXECUTOR_EDIT, ...CONFIG_EDIT]);
  const { ws } = f;
  const { pending, approved, rejected, applied } = ws.settings.layout.patches;
  try {
    await propose(ws, 's1');
    await propose(ws, 's2');
    await propose(ws, 's3');
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    await fs.utimes(path.join(pending, 's1.patch'), twoHoursAgo, twoHoursAgo);

    let r = await cli(ws, ['status', '--json']);
    assert.is(r.exitCode, 0, r.stderr);
    const status = JSON.parse(r.stdout);
    assert.is(status.counts['patches/pending'], 3);
    assert.is(status.counts['patches/approved'], 0);
    assert.is(status.counts.done, 3);
    assert.is(status.counts.inbox, 0);
    assert.equal(
      status.pending.map((p: any) => p.id),
      ['s1', 's2', 's3'],
    );
    const [s1, s2, s3] = status.pending;
    assert.ok(s1.age_s >= 7190 && s1.age_s < 7300, `age of s1: ${s1.age_s}`);
    assert.ok(s3.age_s >= 0 && s3.age_s < 300, `age of s3: ${s3.age_s}`);
    assert.is(s1.risk_level, 'low');
    assert.is(s2.risk_level, 'high', 'bot/execution/** is high risk by the project rule');
    assert.equal(s1.files, ['bot/sizing.py']);
    assert.equal(s2.files, ['bot/execution/executor.py']);
    assert.equal(s3.files, ['bot/config.py']);
    assert.is(s2.summary, 'Reword the executor docstring.');
    assert.is(s1.project, 'bot');

    r = await cli(ws, ['status']);
    assert.is(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, 'patches/pending: 3');
    assert.match(r.stdout, /s1 {2}risk low {2}2h old {2}bot\/sizing\.py/);
    assert.match(r.stdout, /s2 {2}risk high .*bot\/execution\/executor\.py/);

    // approve without --now: only the move (patch and sidecar), no commit.
    r = await cli(ws, ['approve', 's3']);
    assert.is(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, 'approved: patches/approved/s3.patch');
    assert.equal(await list(approved), ['s3.patch', 's3.patch.json']);
    assert.equal(await trailerCommits(ws.repo), []);

    // approve --now: the gate runs in the process; exit 0 and a commit.
    r = await cli(ws, ['approve', 's1', '--now']);
    assert.is(r.exitCode, 0, r.stdout + r.stderr);
    const commits = await trailerCommits(ws.repo);
    assert.is(commits.length, 1);
    assert.match(r.stdout, `s1: applied as ${commits[0]!.slice(0, 10)}`);
    assert.match((await execa('git', ['log', '-1', '--format=%B', commits[0]!], { cwd: ws.repo })).stdout, 'Meta-Agent-Task: s1');
    assert.equal(await list(applied), ['s1.patch', 's1.patch.json', 's1.result.json']);
    assert.is((await approvalOf(ws, 's1'))?.commit, commits[0]);

    // reject with a reason: rejected/ + reason.md, and the report says a person did it.
    const s2Sha = createHash('sha256')
      .update(await fs.readFile(path.join(pending, 's2.patch')))
      .digest('hex');
    r = await cli(ws, ['reject', 's2', '--reason', 'touches order execution']);
    assert.is(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, 'rejected: patches/rejected/s2.patch');
    assert.equal(await list(rejected), ['s2.patch', 's2.patch.json', 's2.reason.md']);
    assert.match(await fs.readFile(path.join(rejected, 's2.reason.md'), 'utf8'), 'touches order execution');
    const s2Approval = await approvalOf(ws, 's2');
    assert.is(s2Approval?.decision, 'rejected');
    assert.is(s2Approval?.by, 'human');
    assert.is(s2Approval?.reason, 'touches order execution');
    assert.is(s2Approval?.commit, null);
    assert.is(s2Approval?.patch_sha256, s2Sha);
    assert.is(s2Approval?.branch, 'main');

    // Input errors: exit 2, nothing moves.
    r = await cli(ws, ['approve', 'nope']);
    assert.is(r.exitCode, 2);
    assert.match(r.stderr, 'no pending patch "nope"');
    r = await cli(ws, ['approve', '../s3']);
    assert.is(r.exitCode, 2);
    assert.match(r.stderr, 'not a task id');
    r = await cli(ws, ['reject', 's1', '--reason', 'too late']);
    assert.is(r.exitCode, 2, 'an applied patch is no longer pending');
    r = await cli(ws, ['reject', 's3']);
    assert.is(r.exitCode, 2, 'a rejection needs --reason');
    r = await cli(ws, ['reject', 's3', '--reason', '   ']);
    assert.is(r.exitCode, 2, 'a blank reason is refused');

    r = await cli(ws, ['status', '--json']);
    const after = JSON.parse(r.stdout);
    assert.equal(
      {
        pending: after.counts['patches/pending'],
        approved: after.counts['patches/approved'],
        applied: after.counts['patches/applied'],
        rejected: after.counts['patches/rejected'],
      },
      { pending: 0, approved: 1, applied: 1, rejected: 1 },
    );
    assert.equal(after.pending, []);
    assert.is(await approvalOf(ws, 's3'), null, 'approved but not gated yet');
    assert.equal(await trailerCommits(ws.repo), commits);
  } finally {
    await f.close();
  }
});

test('review driven through stdin: approve the first (gated with --now), reject the second with a reason, skip the third', async () => {
  const f = await setup([...SIZING_EDIT, ...CONFIG_EDIT, ...EXECUTOR_EDIT]);
  const { ws } = f;
  const { pending, approved, rejected, applied } = ws.settings.layout.patches;
  try {
    await propose(ws, 'r1');
    await propose(ws, 'r2');
    await propose(ws, 'r3');
    const r = await cli(ws, ['review', '--now'], 'a\nr\ntoo risky\ns\n');
    assert.is(r.exitCode, 0, r.stdout + r.stderr);
    assert.match(r.stdout, '[1/3] r1');
    assert.match(r.stdout, '[2/3] r2');
    assert.match(r.stdout, '[3/3] r3');
    assert.match(r.stdout, '+# Reviewed.', 'the diff is shown');
    assert.match(r.stdout, 'tests: passed; dry run: passed');
    assert.not.match(r.stdout, '\x1b[', 'no colours when stdout is not a terminal');

    const commits = await trailerCommits(ws.repo);
    assert.is(commits.length, 1);
    assert.match((await execa('git', ['log', '-1', '--format=%B', commits[0]!], { cwd: ws.repo })).stdout, 'Meta-Agent-Task: r1');
    assert.match(r.stdout, `r1: applied as ${commits[0]!.slice(0, 10)}`);
    assert.equal(await list(applied), ['r1.patch', 'r1.patch.json', 'r1.result.json']);
    assert.equal(await list(approved), []);

    assert.equal(await list(rejected), ['r2.patch', 'r2.patch.json', 'r2.reason.md']);
    assert.match(await fs.readFile(path.join(rejected, 'r2.reason.md'), 'utf8'), 'too risky');
    const r2 = await approvalOf(ws, 'r2');
    assert.is(r2?.decision, 'rejected');
    assert.is(r2?.by, 'human');
    assert.is(r2?.reason, 'too risky');
    assert.match(await fs.readFile(path.join(ws.repo, 'bot/config.py'), 'utf8'), 'intentionally NOT handled', 'the rejected change is not in the repo');

    assert.equal(await list(pending), ['r3.patch', 'r3.patch.json'], 'skipped: still pending');
    assert.is(await approvalOf(ws, 'r3'), null);
    assert.is(await worktreeCount(ws.repo), 0);

    // Nothing pending after a second pass that approves r3 without --now (the move only).
    const again = await cli(ws, ['review'], 'a\n');
    assert.is(again.exitCode, 0, again.stderr);
    assert.equal(await list(approved), ['r3.patch', 'r3.patch.json']);
    assert.equal(await trailerCommits(ws.repo), commits);
    const empty = await cli(ws, ['review'], '');
    assert.is(empty.exitCode, 0);
    assert.match(empty.stdout, 'no pending patches');
  } finally {
    await f.close();
  }
});

test.run();
