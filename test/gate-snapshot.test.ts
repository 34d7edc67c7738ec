/**
 * The filed applied/ patch is the snapshot that was tested and committed (issue 14, point 7):
 * a person edits the approved patch (its private `.taken-*` name in approved/) while the
 * gate's tests run. The commit uses the snapshot; so must applied/<id>.patch.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { makeWorkspace, readJson } from './helpers/workspace.ts';
import { runTask } from '../src/run/runTask.ts';
import { approvePatch } from '../src/gate/decide.ts';
import { processApprovedPatch } from '../src/gate/gate.ts';
import { silentLogger } from '../src/log.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test("a patch edited during the gate's tests: applied/<id>.patch is the tested, committed snapshot; the edit is kept beside it", async () => {
  const change = `require('fs').appendFileSync('NOTES.md', 'a line\\n')`;
  const edit = path.join(os.tmpdir(), `meta-agent-edit-taken-${process.pid}.js`);
  const ws = await makeWorkspace({
    project: `    scope: ["**"]\n    test: ${JSON.stringify(`${process.execPath} ${edit}`)}`,
    extra: ['sandbox: none', 'engine: command', 'command:', `  run: ${JSON.stringify([process.execPath, '-e', change])}`].join('\n'),
  });
  try {
    await fs.writeFile(
      edit,
      `const fs = require('fs'), p = require('path'); const d = ${JSON.stringify(ws.settings.layout.patches.approved)}; for (const n of fs.readdirSync(d)) if (n.startsWith('.taken-')) fs.appendFileSync(p.join(d, n), '# edited while the tests ran\\n');`,
    );
    const task = path.join(ws.root, 'snap.md');
    await fs.writeFile(task, '---\nproject: bot\nobjective: Add a line\nscope: ["NOTES.md"]\n---\n');
    const run = await runTask(task, { settings: ws.settings, log: silentLogger() });
    assert.ok(run.patch_path, run.report.error?.message ?? run.outcome);
    const proposed = await fs.readFile(run.patch_path!);
    const moved = await approvePatch(ws.settings, 'snap');
    const result = await processApprovedPatch(ws.settings, moved, silentLogger());
    assert.is(result.decision, 'applied', result.reason ?? '');
    const { applied } = ws.settings.layout.patches;
    const filed = await fs.readFile(path.join(applied, 'snap.patch'));
    assert.is(sha(filed), sha(proposed), 'the filed patch is the snapshot');
    const record = await readJson<{ patch_sha256: string; commit: string }>(path.join(applied, 'snap.result.json'));
    assert.is(record.patch_sha256, sha(filed));
    const message = (await execa('git', ['log', '-1', '--format=%B', record.commit], { cwd: ws.repo })).stdout;
    assert.match(message, `Meta-Agent-Patch: ${sha(filed)}`);
    const edited = await fs.readFile(path.join(applied, 'snap.edited-during-gate.txt'), 'utf8');
    assert.match(edited, '# edited while the tests ran', 'positive control: the test did edit the file, and the edit is kept');
  } finally {
    await fs.rm(edit, { force: true });
    await ws.cleanup();
  }
});

test.run();
