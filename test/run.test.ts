/** runTask end to end: scripted model on 127.0.0.1, real git repo, real checks. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { runTask } from '../src/run/runTask.ts';
import { ReportSchema } from '../src/contract/report.ts';
import { PatchSidecarSchema } from '../src/contract/patch.ts';
import { finish, startFakeLlm, toolCall } from './helpers/fakeLlm.ts';
import { makeWorkspace, readJson, repoFingerprint, worktreeCount, writeTask } from './helpers/workspace.ts';

const TASK = `---
project: bot
type: audit_code
objective: Validate the sizing inputs
scope: ["bot/sizing.py", "tests/**"]
tasks: ["reject a zero stop loss"]
---
Keep it small.
`;

test('a scripted agent run yields a patch that applies on base_commit, a valid report, tests and dry run', async () => {
  const llm = await startFakeLlm([
    toolCall('list_files', { path: 'bot' }),
    toolCall('read_file', { path: 'bot/sizing.py' }),
    (req) => {
      // The model saw the file content in the previous tool result.
      const last = req.body.messages.at(-1);
      assert.ok(String(last.content).includes('def position_size'), 'read_file result reaches the model');
      return toolCall('edit_file', { path: 'bot/sizing.py', old: 'def position_size(', new: '# Sizing is validated by the caller too.\ndef position_size(' });
    },
    toolCall('run_checks', {}),
    finish('Added a note on validation.', 'low'),
  ]);
  const ws = await makeWorkspace({ llmUrl: llm.url });
  try {
    const before = await repoFingerprint(ws.repo);
    const file = await writeTask(ws.settings.layout.inbox, 'sizing-audit.md', TASK);
    const result = await runTask(file, { settings: ws.settings });
    assert.is(result.status, 'ok', result.report.error?.message);
    assert.is(result.outcome, 'completed');
    const report = ReportSchema.parse(await readJson(result.report_path));
    assert.is(report.task_id, 'sizing-audit');
    assert.equal(report.changed_files, ['bot/sizing.py']);
    assert.is(report.usage.requests, 5);
    assert.is(report.usage.prompt_tokens, 500);
    assert.is(report.usage.cached_tokens, 200);
    assert.is(report.steps, 5);
    assert.is(report.model, 'scripted-model');
    assert.ok(report.tests?.passed, 'tests passed');
    assert.is(report.tests?.baseline_passed, true);
    assert.ok(report.dry_run?.passed, 'dry run passed');
    assert.match(report.dry_run!.output_tail, /dry-run/);
    assert.is(report.patch_files.length, 2);
    const patch = path.join(ws.root, report.patch_files[0]!);
    const sidecar = PatchSidecarSchema.parse(await readJson(path.join(ws.root, report.patch_files[1]!)));
    assert.is(sidecar.base_commit, report.base_commit);
    assert.equal(sidecar.files, ['bot/sizing.py']);
    // The patch applies on the base commit.
    await execa('git', ['apply', '--check', patch], { cwd: ws.repo });
    // The task moved inbox -> done; the real repo is untouched; no worktree is left.
    assert.ok(await fs.stat(path.join(ws.settings.layout.done, 'sizing-audit.md')));
    assert.is(await repoFingerprint(ws.repo), before);
    assert.is(await worktreeCount(ws.repo), 0);
    const md = await fs.readFile(result.report_md_path, 'utf8');
    assert.match(md, /Tests: passed/);
    const trajectory = (await fs.readFile(path.join(ws.root, report.trajectory!), 'utf8')).trim().split('\n');
    assert.ok(trajectory.length >= 10);
  } finally {
    await llm.close();
    await ws.cleanup();
  }
});

test.run();
