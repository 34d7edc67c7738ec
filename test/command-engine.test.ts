/**
 * The `command` engine: an external program (here a small Node script) edits the worktree;
 * the run collects the diff, runs the checks and proposes a patch. Failures (non-zero exit,
 * command.timeout_s) end as documented, and no worktree is left behind.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { runTask, type RunTaskResult } from '../src/run/runTask.ts';
import { ReportSchema, type Report } from '../src/contract/report.ts';
import { PatchSidecarSchema } from '../src/contract/patch.ts';
import { makeWorkspace, readJson, repoFingerprint, worktreeCount, writeTask, type TestWorkspace } from './helpers/workspace.ts';

const OBJECTIVE = 'Document the sizing rules and add a smoke test';
const TASK = `---
project: bot
type: custom
objective: ${OBJECTIVE}
scope: ["bot/sizing.py", "tests/**"]
---
Use the command engine.
`;

const PRINTED = 'probe-agent: edited bot/sizing.py and added tests/test_new.py';

/** Reads the prompt from stdin and from argv[2], records what it saw, edits two files, prints a line. */
const EDITING_SCRIPT = `
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const stdin = Buffer.concat(chunks).toString('utf8');
const promptFile = process.argv[2];
const fromFile = readFileSync(promptFile, 'utf8');
// Reported on stdout: the agent cannot write outside its worktree.
console.log('PROBE ' + JSON.stringify({
  stdinHasObjective: stdin.includes(${JSON.stringify(OBJECTIVE)}),
  fileHasObjective: fromFile.includes(${JSON.stringify(OBJECTIVE)}),
  sameText: stdin === fromFile,
  promptOutsideCwd: !promptFile.startsWith(process.cwd()),
  cwdParent: path.basename(path.dirname(process.cwd())),
  envPromptFile: process.env.META_AGENT_PROMPT_FILE === promptFile,
  envTaskId: process.env.META_AGENT_TASK_ID ?? null,
  leakedVar: process.env.NOT_PASSED_THROUGH ?? null,
}) + '\\n');
const sizing = readFileSync('bot/sizing.py', 'utf8');
writeFileSync('bot/sizing.py', sizing.replace('def position_size(', '# Sizing rules: see the docstring below.\\ndef position_size('));
writeFileSync('tests/test_new.py', 'def test_new_smoke():\\n    assert 1 + 1 == 2\\n');
console.log(${JSON.stringify(PRINTED)});
`;

const FAILING_SCRIPT = `
import { readFileSync, writeFileSync } from 'node:fs';
writeFileSync('bot/sizing.py', readFileSync('bot/sizing.py', 'utf8') + '\\n# half-done edit\\n');
console.error('probe-agent: giving up halfway');
process.exit(3);
`;

const SLEEPING_SCRIPT = `
console.log('probe-agent: thinking...');
setTimeout(() => console.log('probe-agent: woke up'), 60_000);
`;

interface Case {
  ws: TestWorkspace;
  dir: string;
  probe: string;
  before: string;
}

async function setup(script: string, commandExtra = ''): Promise<Case> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-command-'));
  try {
    const scriptFile = path.join(dir, 'agent.mjs');
    await fs.writeFile(scriptFile, script);
    const probe = path.join(dir, 'probe.json');
    const extra = [
      'engine: command',
      'command:',
      `  run: [${JSON.stringify(process.execPath)}, ${JSON.stringify(scriptFile)}, "{prompt_file}"]`,
      commandExtra,
    ].join('\n');
    const ws = await makeWorkspace({ extra, env: { PATH: process.env.PATH, HOME: process.env.HOME, PROBE_OUT: probe } });
    return { ws, dir, probe, before: await repoFingerprint(ws.repo) };
  } catch (error) {
    await fs.rm(dir, { recursive: true, force: true });
    throw error;
  }
}

async function teardown(c: Case | undefined): Promise<void> {
  if (!c) return;
  await c.ws.cleanup();
  await fs.rm(c.dir, { recursive: true, force: true });
}

async function exists(file: string): Promise<boolean> {
  return fs.stat(file).then(
    () => true,
    () => false,
  );
}

async function checkAfterRun(c: Case, result: RunTaskResult): Promise<Report> {
  assert.is(await worktreeCount(c.ws.repo), 0, 'no worktree is left (git worktree list)');
  assert.equal(await fs.readdir(c.ws.settings.layout.worktrees).catch(() => []), [], 'the worktrees folder is empty');
  const report = ReportSchema.parse(await readJson(result.report_path));
  assert.is(report.run_id, result.run_id);
  assert.is(report.engine, 'command');
  assert.is(await repoFingerprint(c.ws.repo), c.before, 'the real repo is unchanged');
  // The prompt file lives outside the worktree and is removed after the run.
  assert.equal(await fs.readdir(path.join(c.ws.settings.layout.state, 'prompts')).catch(() => []), [], 'no prompt file is left');
  return report;
}

test('the command engine runs a script that edits files and yields a patch that applies', async () => {
  let c: Case | undefined;
  try {
    // A timeout well above the script's run time, so a broken stdin fails the test instead of hanging it.
    c = await setup(EDITING_SCRIPT, '  timeout_s: 20');
    const { layout } = c.ws.settings;
    const file = await writeTask(layout.inbox, 'command-edit.md', TASK);
    const result = await runTask(file, { settings: c.ws.settings });
    const report = await checkAfterRun(c, result);
    assert.is(report.status, 'ok', report.error?.message);
    assert.is(report.outcome, 'completed');
    assert.equal([...report.changed_files].sort(), ['bot/sizing.py', 'tests/test_new.py']);
    assert.equal(report.scope_violations, []);
    assert.is(report.model, null);
    assert.is(report.usage.requests, 0);

    // What the script saw: the prompt on stdin and in the file, the worktree as cwd.
    const probeLine = report.engine_output_tail?.split('\n').find((l) => l.startsWith('PROBE '));
    assert.ok(probeLine, report.engine_output_tail ?? '(null)');
    const seen = JSON.parse(probeLine.slice('PROBE '.length));
    assert.ok(seen.stdinHasObjective, 'the objective arrived on stdin');
    assert.ok(seen.fileHasObjective, 'the objective is in {prompt_file}');
    assert.ok(seen.sameText, 'stdin and {prompt_file} hold the same prompt');
    assert.ok(seen.envPromptFile, 'META_AGENT_PROMPT_FILE names {prompt_file}');
    assert.is(seen.envTaskId, 'command-edit');
    assert.is(seen.leakedVar, null);
    // A fresh worktree (.meta-agent/worktrees/<run>), or a reused slot of the worktree pool (<project>-<hash>/slot-<n>).
    assert.ok(seen.cwdParent === 'worktrees' || /-[0-9a-f]{8}$/.test(seen.cwdParent), `ran in a worktree: ${seen.cwdParent}`);
    assert.ok(seen.promptOutsideCwd, 'the prompt file is outside the worktree');
    // The prompt file lives in the run's private temp folder, removed after the run.
    const left = (await fs.readdir(os.tmpdir())).filter((n) => n.startsWith(`meta-agent-check-${process.pid}-`));
    assert.equal(left, [], 'no private temp folder is left');

    // The printed line is in the output tail and the report.
    assert.ok(report.engine_output_tail?.includes(PRINTED), report.engine_output_tail ?? '(null)');
    // No JSON block: the summary is the agent's last message, not the output tail.
    assert.is(report.summary, PRINTED);
    assert.match(await fs.readFile(result.report_md_path, 'utf8'), PRINTED);

    // Checks ran on the change, the new test included.
    assert.ok(report.tests?.passed, report.tests?.output_tail);
    assert.is(report.tests?.baseline_passed, true);
    assert.ok(report.dry_run?.passed, report.dry_run?.output_tail);

    // The patch: both files, the new one as a new file, applies on the base commit (= HEAD).
    assert.is(report.patch_files.length, 2);
    const patch = path.join(c.ws.root, report.patch_files[0]!);
    assert.is(result.patch_path, patch);
    const text = await fs.readFile(patch, 'utf8');
    assert.match(text, 'diff --git a/tests/test_new.py b/tests/test_new.py');
    assert.match(text, 'new file mode');
    assert.match(text, '+def test_new_smoke():');
    assert.match(text, '+# Sizing rules: see the docstring below.');
    const head = (await execa('git', ['rev-parse', 'HEAD'], { cwd: c.ws.repo })).stdout.trim();
    assert.is(report.base_commit, head);
    const sidecar = PatchSidecarSchema.parse(await readJson(path.join(c.ws.root, report.patch_files[1]!)));
    assert.is(sidecar.base_commit, head);
    assert.equal([...sidecar.files].sort(), ['bot/sizing.py', 'tests/test_new.py']);
    await execa('git', ['apply', '--check', patch], { cwd: c.ws.repo });

    assert.ok(await exists(path.join(layout.done, 'command-edit.md')), 'task in done/');
    assert.ok(report.trajectory, 'the command and its result are recorded');
  } finally {
    await teardown(c);
  }
});

test('a command that exits 3: engine error, outcome failed, the partial change is saved as an incomplete patch', async () => {
  let c: Case | undefined;
  try {
    c = await setup(FAILING_SCRIPT, '  timeout_s: 20');
    const { layout } = c.ws.settings;
    const file = await writeTask(layout.inbox, 'command-fails.md', TASK);
    const result = await runTask(file, { settings: c.ws.settings });
    const report = await checkAfterRun(c, result);
    assert.is(report.status, 'error');
    assert.is(report.outcome, 'failed');
    assert.is(report.error?.kind, 'engine');
    assert.match(report.error!.message, /exited with code 3/);
    assert.match(report.error!.message, /giving up halfway/);
    assert.equal(report.changed_files, ['bot/sizing.py']);
    // A run never loses work (issue 13): what the command changed before it failed waits for review, marked incomplete.
    assert.is(report.incomplete, true);
    assert.equal(report.patch_files, ['patches/pending/command-fails.patch', 'patches/pending/command-fails.patch.json']);
    assert.ok(await exists(path.join(layout.failed, 'command-fails.md')));
    assert.match(await fs.readFile(path.join(layout.failed, 'command-fails.md.error.md'), 'utf8'), /exited with code 3/);
  } finally {
    await teardown(c);
  }
});

test('a command that runs past command.timeout_s: timeout, outcome limit_reached', async () => {
  let c: Case | undefined;
  try {
    c = await setup(SLEEPING_SCRIPT, '  timeout_s: 1');
    assert.is(c.ws.settings.config.command?.timeout_s, 1);
    const { layout } = c.ws.settings;
    const file = await writeTask(layout.inbox, 'command-slow.md', TASK);
    const started = Date.now();
    const result = await runTask(file, { settings: c.ws.settings });
    const elapsed = Date.now() - started;
    // Far below the script's 60 s (the sandbox's setup takes a few seconds on a loaded machine).
    assert.ok(elapsed < 40_000, `returned in ${elapsed} ms`);
    const report = await checkAfterRun(c, result);
    assert.is(report.status, 'error');
    assert.is(report.outcome, 'limit_reached');
    assert.is(report.error?.kind, 'timeout');
    assert.match(report.error!.message, /command\.timeout_s/);
    assert.equal(report.changed_files, []);
    assert.ok(await exists(path.join(layout.failed, 'command-slow.md')));
  } finally {
    await teardown(c);
  }
});

test('a change that writes the redaction marker is not proposed (the agent copied a secret it saw hidden); a file that already had it may keep it', async () => {
  let c: Case | undefined;
  try {
    const script = `
import { readFileSync, writeFileSync } from 'node:fs';
const sizing = readFileSync('bot/sizing.py', 'utf8');
writeFileSync('bot/sizing.py', sizing.replace('def position_size(', 'API_KEY = "[REDACTED]"\\ndef position_size('));
`;
    c = await setup(script, '  timeout_s: 20');
    const result = await runTask(await writeTask(c.ws.settings.layout.inbox, 'marker.md', TASK), { settings: c.ws.settings });
    const report = await checkAfterRun(c, result);
    assert.is(report.status, 'error');
    assert.is(report.error?.kind, 'scope');
    assert.match(report.error!.message, /writes \[REDACTED\] .* into bot\/sizing\.py/);
    assert.equal(report.patch_files, [], 'no patch');
    assert.equal(await fs.readdir(c.ws.settings.layout.patches.pending).then((f) => f.filter((n) => !n.startsWith('.'))), []);
  } finally {
    await teardown(c);
  }
  // Positive control: moving a line that already holds the marker (a test fixture, say) is a change like any other.
  try {
    const script = `
import { readFileSync, writeFileSync } from 'node:fs';
writeFileSync('tests/test_new.py', 'def test_marker():\\n    assert "[REDACTED]" != "x"\\n');
`;
    c = await setup(script, '  timeout_s: 20');
    await fs.writeFile(path.join(c.ws.repo, 'tests', 'test_new.py'), 'def test_marker():\n    assert "[REDACTED]" == "[REDACTED]"\n');
    await execa('git', ['add', '.'], { cwd: c.ws.repo });
    await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'fixture'], { cwd: c.ws.repo });
    c.before = await repoFingerprint(c.ws.repo);
    const result = await runTask(await writeTask(c.ws.settings.layout.inbox, 'fixture.md', TASK), { settings: c.ws.settings });
    const report = await checkAfterRun(c, result);
    assert.is(report.error?.kind === 'scope', false, report.error?.message);
    assert.is(report.patch_files.length, 2, 'the patch is proposed');
  } finally {
    await teardown(c);
  }
});

test.run();
