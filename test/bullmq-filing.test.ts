/**
 * The BullMQ engine's two ends without Redis: a worker's result packaging (bundleOf) and the
 * folder host's filing of it (ResultFiler), on real workspaces with real git repos. A real
 * runTask in a "worker" workspace makes the report, patch and sidecar; a real claim in a
 * "host" workspace is filed. What meta-agent wrote and reads back goes through its schema: a
 * damaged sidecar is a one-line error naming it; a damaged report already in the host's
 * reports/ is archived aside as before, while this run's own report (filed before a crash) stands.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeWorkspace, type TestWorkspace } from './helpers/workspace.ts';
import { MetaAgentError } from '../src/contract/errors.ts';
import { ReportSchema } from '../src/contract/report.ts';
import type { Engine, EngineContext, EngineResult } from '../src/engines/types.ts';
import { silentLogger } from '../src/log.ts';
import { claimTask } from '../src/queue/folders.ts';
import { runTask } from '../src/run/runTask.ts';
import { bundleOf } from '../src/service/bullmq/bundle.ts';
import { ResultFiler } from '../src/service/bullmq/fileResult.ts';

const TASK = `---\nproject: bot\nobjective: leave a note\nscope: ["**"]\n---\n`;
const RUN_ID = '20261130T230000Z-abc123';

/** An agent that writes one new file, so the run files a patch. */
class NoteEngine implements Engine {
  readonly name = 'command' as const;
  async run(ctx: EngineContext): Promise<EngineResult> {
    await fs.writeFile(path.join(ctx.worktree, 'NOTE.md'), 'a note\n');
    return { finished: true, summary: 'wrote a note', risks: [], risk_level: 'low', next_actions: [], steps: 0, model: null, output_tail: null };
  }
}

const workspaces: TestWorkspace[] = [];
test.after.each(async () => {
  for (const ws of workspaces.splice(0)) await ws.cleanup();
});

/** A worker's run of `note.md` under RUN_ID, in a workspace of its own, as jobHandler.ts runs it. */
async function workerRun() {
  const ws = await makeWorkspace({ project: '    scope: ["**"]' });
  workspaces.push(ws);
  const taskFile = path.join(ws.root, 'task', 'note.md');
  await fs.mkdir(path.dirname(taskFile), { recursive: true });
  await fs.writeFile(taskFile, TASK);
  const result = await runTask(taskFile, { settings: ws.settings, log: silentLogger(), engine: new NoteEngine(), runId: RUN_ID });
  assert.is(result.outcome, 'completed', 'the worker run files a patch');
  return { layout: ws.settings.layout, report: result.report };
}

/** The folder host's claim of `note.md` for RUN_ID. */
async function hostClaim() {
  const ws = await makeWorkspace({ project: '    scope: ["**"]' });
  workspaces.push(ws);
  const layout = ws.settings.layout;
  await fs.writeFile(path.join(layout.inbox, 'note.md'), TASK);
  const claim = await claimTask(layout, path.join(layout.inbox, 'note.md'), RUN_ID, 30_000);
  return { layout, claim };
}

test('bundleOf: the sidecar travels byte for byte; a damaged one is a one-line error naming the file', async () => {
  const worker = await workerRun();
  const [patchRel, sidecarRel] = worker.report.patch_files;
  assert.ok(patchRel && sidecarRel, 'the run filed a patch and its sidecar');
  const sidecarFile = path.join(worker.layout.root, sidecarRel);
  const bundle = await bundleOf(worker.layout, worker.report);
  assert.is(bundle.patch?.sidecar, await fs.readFile(sidecarFile, 'utf8'));
  assert.ok(Buffer.from(bundle.patch!.patch, 'base64').toString('utf8').includes('NOTE.md'));

  for (const [damage, field] of [
    ['{"task_id": ', null],
    [JSON.stringify({ ...JSON.parse(bundle.patch!.sidecar), sha256: 'not a hash' }), 'sha256'],
  ] as const) {
    await fs.writeFile(sidecarFile, damage);
    const error = await bundleOf(worker.layout, worker.report).then(
      () => null,
      (e: unknown) => e,
    );
    assert.instance(error, MetaAgentError, `${damage.slice(0, 20)}: refused`);
    const message = (error as MetaAgentError).message;
    assert.ok(message.includes(sidecarFile), message);
    assert.not.match(message, /\n/);
    if (field) assert.is((error as MetaAgentError).field, field);
  }
});

test("the host files a worker's bundle under its own names; a damaged report already in reports/ is archived aside", async () => {
  const worker = await workerRun();
  const bundle = await bundleOf(worker.layout, worker.report);
  const host = await hostClaim();
  const id = worker.report.task_id;
  const reportFile = path.join(host.layout.reports, `${id}.json`);
  await fs.writeFile(reportFile, '{"run_id": "20261129T');

  const result = (await new ResultFiler(host.layout, silentLogger()).fileBundle(host.claim, bundle))!;

  assert.is(result.outcome, 'completed');
  const filed = ReportSchema.parse(JSON.parse(await fs.readFile(reportFile, 'utf8')));
  assert.is(filed.run_id, RUN_ID);
  assert.equal(filed.patch_files, [`patches/pending/${id}.patch`, `patches/pending/${id}.patch.json`]);
  assert.is(filed.task_file, 'done/note.md');
  assert.ok(await fs.readFile(path.join(host.layout.patches.pending, `${id}.patch`), 'utf8').then((t) => t.includes('NOTE.md')));
  assert.is(await fs.readFile(path.join(host.layout.patches.pending, `${id}.patch.json`), 'utf8'), bundle.patch!.sidecar);
  const archived = await fs.readdir(path.join(host.layout.reportArchive, id));
  assert.is(archived.length, 1, 'the damaged report was archived, not overwritten');
  assert.is(await fs.readFile(path.join(host.layout.reportArchive, id, archived[0]!, `${id}.json`), 'utf8'), '{"run_id": "20261129T');
});

test('the host keeps the report of this run it filed before a crash (positive control of the read)', async () => {
  const worker = await workerRun();
  const bundle = await bundleOf(worker.layout, worker.report);
  const host = await hostClaim();
  const id = worker.report.task_id;
  const reportFile = path.join(host.layout.reports, `${id}.json`);
  const before = {
    ...worker.report,
    summary: 'filed before the crash',
    patch_files: [`patches/pending/${id}.patch`, `patches/pending/${id}.patch.json`],
    task_file: 'done/note.md',
  };
  await fs.writeFile(reportFile, `${JSON.stringify(before, null, 2)}\n`);

  const result = (await new ResultFiler(host.layout, silentLogger()).fileBundle(host.claim, bundle))!;

  assert.is(result.report.summary, 'filed before the crash');
  assert.is(ReportSchema.parse(JSON.parse(await fs.readFile(reportFile, 'utf8'))).summary, 'filed before the crash');
  assert.ok(await fs.stat(path.join(host.layout.patches.pending, `${id}.patch`)).then(() => true), 'the patch is filed at the name that report gives');
  assert.is(
    await fs.readdir(host.layout.reportArchive).then(
      (d) => d.length,
      () => 0,
    ),
    0,
    'nothing archived',
  );
  assert.is(path.basename(result.task_file), 'note.md');
  assert.is(path.basename(path.dirname(result.task_file)), 'done');
});

test.run();
