/**
 * Files meta-agent wrote for itself, read back through their zod schemas: a damaged one is a
 * one-line error naming the file, or, where the code always tolerated it, treated as absent.
 * Real workspaces, real git, the real gate.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { pino, type Logger } from 'pino';
import { listPending } from '../src/gate/decide.ts';
import { processApprovedPatch } from '../src/gate/gate.ts';
import { clearGitLocksOfDeadGate } from '../src/gate/repoOps.ts';
import { readCycleReport, writeCycleReport } from '../src/supervisor/cycleReport.ts';
import { CycleReportSchema } from '../src/contract/cycle.ts';
import { MetaAgentError } from '../src/contract/errors.ts';
import { silentLogger } from '../src/log.ts';
import { deadPid } from './helpers/procs.ts';
import { makeWorkspace, placeApprovedPatch, type TestWorkspace } from './helpers/workspace.ts';

const log = silentLogger();

/** A logger whose warnings the test can read. */
function recordingLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) }), lines };
}

/** A patch adding `notes-<id>.txt`, as git writes it. */
async function newFilePatch(ws: TestWorkspace, id: string): Promise<{ patch: string; file: string }> {
  const file = `notes-${id}.txt`;
  await fs.writeFile(path.join(ws.repo, file), `a note for ${id}\n`);
  await execa('git', ['add', file], { cwd: ws.repo });
  const patch = (await execa('git', ['diff', '--cached'], { cwd: ws.repo, stripFinalNewline: false })).stdout;
  await execa('git', ['rm', '--cached', '--quiet', file], { cwd: ws.repo });
  await fs.rm(path.join(ws.repo, file));
  return { patch, file };
}

const list = async (dir: string) => (await fs.readdir(dir)).filter((n) => n !== '.gitkeep').sort();

test('a damaged sidecar: the gate rejects the patch naming the file, and files the sidecar beside it; the same patch with its sidecar intact applies', async () => {
  const ws = await makeWorkspace();
  try {
    const { approved, rejected, applied } = ws.settings.layout.patches;
    const broken = await newFilePatch(ws, 'broken');
    const file = await placeApprovedPatch(ws, 'broken', broken.patch, [broken.file]);
    await fs.writeFile(path.join(approved, 'broken.patch.json'), '{"task_id": "broken", ');
    const result = await processApprovedPatch(ws.settings, file, log);
    assert.is(result.decision, 'rejected');
    assert.match(result.reason ?? '', /broken\.patch\.json/);
    assert.match(result.reason ?? '', /not valid JSON/);
    assert.not.match(result.reason ?? '', /\n/, 'one line');
    assert.equal(
      (await list(rejected)).filter((n) => n.startsWith('broken')),
      ['broken.patch', 'broken.patch.json', 'broken.reason.md'],
    );
    assert.equal(await list(approved), [], 'nothing left under a private name');

    // Control: a sidecar of the right shape lets the same kind of patch through.
    const good = await newFilePatch(ws, 'good');
    const applies = await processApprovedPatch(ws.settings, await placeApprovedPatch(ws, 'good', good.patch, [good.file]), log);
    assert.is(applies.decision, 'applied', applies.reason ?? '');
    assert.ok((await list(applied)).includes('good.patch.json'));
  } finally {
    await ws.cleanup();
  }
});

test('a sidecar of the wrong shape (valid JSON): rejected naming the field', async () => {
  const ws = await makeWorkspace();
  try {
    const { patch, file } = await newFilePatch(ws, 'shape');
    const approvedFile = await placeApprovedPatch(ws, 'shape', patch, [file]);
    const sidecarFile = `${approvedFile}.json`;
    const sidecar = JSON.parse(await fs.readFile(sidecarFile, 'utf8')) as Record<string, unknown>;
    await fs.writeFile(sidecarFile, JSON.stringify({ ...sidecar, risk_level: 'extreme' }));
    const result = await processApprovedPatch(ws.settings, approvedFile, log);
    assert.is(result.decision, 'rejected');
    assert.match(result.reason ?? '', /shape\.patch\.json: field "risk_level"/);
  } finally {
    await ws.cleanup();
  }
});

test("a damaged note of a gate run's write into the repository is read as none (as before): removed, no git lock touched; a sound note of a dead run clears its lock", async () => {
  const ws = await makeWorkspace();
  try {
    const note = path.join(ws.settings.layout.state, 'gate-repo-op.json');
    const lock = path.join(ws.repo, '.git', 'index.lock');
    await fs.mkdir(path.dirname(note), { recursive: true });
    await fs.writeFile(note, '{"host": "h", "pid": 1');
    await fs.writeFile(lock, '');
    const recorded = recordingLogger();
    assert.equal(await clearGitLocksOfDeadGate(ws.settings, recorded.log), []);
    assert.not.ok(await fs.stat(note).catch(() => null), 'the damaged note is gone');
    assert.ok(await fs.stat(lock), 'the lock stays: nothing says whose it is');
    assert.ok(
      recorded.lines.some((l) => l.includes('gate-repo-op.json')),
      'the damaged note is logged by name',
    );

    // Control: the note of a dead gate run names its repository, and the lock it left goes.
    await fs.writeFile(
      note,
      JSON.stringify({ host: (await import('node:os')).hostname(), pid: await deadPid(), repo: ws.repo, branch: 'main', started_ms: Date.now() - 500 }),
    );
    assert.equal(await clearGitLocksOfDeadGate(ws.settings, log), [lock]);
  } finally {
    await ws.cleanup();
  }
});

test('listing pending patches: a damaged sidecar is one error naming the file; a sound one is listed', async () => {
  const ws = await makeWorkspace();
  try {
    const { pending } = ws.settings.layout.patches;
    const { patch, file } = await newFilePatch(ws, 'listed');
    // placeApprovedPatch writes a sound sidecar; moved by hand into pending/ as runTask would have filed it.
    const approvedFile = await placeApprovedPatch(ws, 'listed', patch, [file]);
    await fs.rename(approvedFile, path.join(pending, 'listed.patch'));
    await fs.rename(`${approvedFile}.json`, path.join(pending, 'listed.patch.json'));
    const listed = await listPending(ws.settings);
    assert.equal(
      listed.map((p) => [p.id, p.summary, p.files]),
      [['listed', 'hand-made listed', [file]]],
    );

    await fs.writeFile(path.join(pending, 'other.patch'), patch);
    await fs.writeFile(path.join(pending, 'other.patch.json'), 'not json');
    try {
      await listPending(ws.settings);
      assert.unreachable('a damaged sidecar is an error');
    } catch (error) {
      assert.instance(error, MetaAgentError);
      assert.match((error as Error).message, /other\.patch\.json: not valid JSON/);
      assert.not.match((error as Error).message, /\n/);
    }
  } finally {
    await ws.cleanup();
  }
});

test('a damaged cycle report is read as none (the cycle is finished again, as before); a sound one is read back', async () => {
  const ws = await makeWorkspace();
  try {
    const report = CycleReportSchema.parse({
      cycle_id: 'c1',
      goal: 'g',
      mode: 'daily',
      project: 'bot',
      status: 'ok',
      summary: 's',
      started_at: new Date(0).toISOString(),
      finished_at: new Date(1000).toISOString(),
      planner: {
        source: 'routine',
        model: null,
        attempts: 0,
        usage: { requests: 0, prompt_tokens: 0, cached_tokens: 0, completion_tokens: 0, cost_usd: null },
      },
      context: { commits: 0, log_lines: 0, pending_patches: 0, rejected_reasons: 0, open_next_actions: 0, pnl: null },
      tasks: [],
      candidates: [],
      next_actions: [],
      budget: { tokens: 1, usd: null, spent_tokens: 0, spent_usd: null, exhausted: false },
      stopped: null,
      error: null,
    });
    await writeCycleReport(ws.settings, report);
    assert.equal(await readCycleReport(ws.settings, 'c1', log), report);
    assert.is(await readCycleReport(ws.settings, 'c2', log), null, 'not written');
    await fs.writeFile(path.join(ws.settings.layout.reports, 'cycles', 'c1.json'), '{"cycle_id": "c1"');
    const recorded = recordingLogger();
    assert.is(await readCycleReport(ws.settings, 'c1', recorded.log), null);
    assert.ok(
      recorded.lines.some((l) => l.includes('c1.json')),
      'the damaged report is logged by name',
    );
  } finally {
    await ws.cleanup();
  }
});

test.run();
