/**
 * Re-runs, retries and counts, as an operator meets them: a pending patch never leaves
 * patches/pending/ because its task ran again (failed or not, by `run`, `run --force` or a
 * re-drop into a running `watch`); a failed task is retried by id; `status`, the health line
 * and the dashboard count tasks, not files; a task whose body is its objective runs through
 * `watch`. Real CLI processes, real git, the scripted model on 127.0.0.1.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { runTask, type RunTaskResult } from '../src/run/runTask.ts';
import { startWatching } from '../src/service/watch.ts';
import { workspaceStatus } from '../src/ui/terminal.ts';
import { dashboardState } from '../src/ui/state.ts';
import { processApprovedPatch } from '../src/gate/gate.ts';
import { approvePatch } from '../src/gate/decide.ts';
import { startUi } from '../src/ui/server.ts';
import { parseTask } from '../src/contract/task.ts';
import { silentLogger } from '../src/log.ts';
import { errorReply, finish, startFakeLlm, toolCall, type RecordedRequest, type Reply } from './helpers/fakeLlm.ts';
import { makeWorkspace, readJson, REPO_ROOT, writeTask, type TestWorkspace } from './helpers/workspace.ts';

const BIN = path.join(REPO_ROOT, 'bin', 'meta-agent.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function cli(ws: TestWorkspace, args: string[]) {
  return execa(process.execPath, [BIN, ...args, '--root', ws.root], {
    reject: false,
    env: { OPENAI_API_KEY: '', OPENAI_BASE_URL: '' },
    extendEnv: true,
    timeout: 90_000,
  });
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Names in a folder, without .gitkeep. */
async function list(dir: string): Promise<string[]> {
  return (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => n !== '.gitkeep').sort();
}

/** The scripted agent: adds a comment (`note`) to bot/sizing.py, then finishes; or every request fails (401) while `failing`. */
function agent(state: { failing: boolean; note?: string }) {
  return (req: RecordedRequest): Reply => {
    if (state.failing) return errorReply(401, 'bad key');
    const acted = (req.body?.messages ?? []).some((m: { role?: string }) => m.role === 'tool');
    return acted
      ? finish('Documented sizing.')
      : toolCall('edit_file', { path: 'bot/sizing.py', old: 'def position_size(', new: `# ${state.note ?? 'reviewed'}\ndef position_size(` });
  };
}

test('a pending patch is never moved by a re-run: refused without --force, a failed forced re-run moves nothing, a forced or watch re-run files beside it', async () => {
  const state: { failing: boolean; note?: string } = { failing: false };
  const llm = await startFakeLlm(agent(state));
  const ws = await makeWorkspace({ llmUrl: llm.url });
  const { layout } = ws.settings;
  try {
    const first = await runTask(await writeTask(layout.inbox, 'sizing.md', '---\nproject: bot\nobjective: Document sizing\nscope: ["bot/**"]\n---\n'), {
      settings: ws.settings,
    });
    assert.is(first.patch_path, path.join(layout.patches.pending, 'sizing.patch'), first.report.error?.message);
    const patch = await fs.readFile(first.patch_path!);
    const sidecar = await fs.readFile(`${first.patch_path}.json`);
    const pendingIsIntact = async (what: string) => {
      assert.ok((await fs.readFile(path.join(layout.patches.pending, 'sizing.patch'))).equals(patch), `${what}: the pending patch is there, unchanged`);
      assert.ok((await fs.readFile(path.join(layout.patches.pending, 'sizing.patch.json'))).equals(sidecar), `${what}: its sidecar too`);
    };

    // 1. run --task-id without --force: refused, nothing written or moved.
    const reportBefore = await fs.readFile(path.join(layout.reports, 'sizing.json'));
    let r = await cli(ws, ['run', '--task-id', 'sizing']);
    assert.is(r.exitCode, 2, r.stdout + r.stderr);
    assert.match(r.stderr, 'patches/pending/sizing.patch is waiting for review; approve or reject it first, or re-run with --force');
    assert.ok((await fs.readFile(path.join(layout.reports, 'sizing.json'))).equals(reportBefore), 'no report written');
    assert.equal(await list(layout.done), ['sizing.md']);
    await pendingIsIntact('refused');

    // 2. A forced re-run that fails (the model refuses every request): the patch stays.
    state.failing = true;
    r = await cli(ws, ['run', '--task-id', 'sizing', '--force']);
    assert.is(r.exitCode, 1, r.stdout + r.stderr);
    assert.match(r.stdout, 'taking sizing.md from done/');
    assert.is((await readJson(path.join(layout.reports, 'sizing.json'))).status, 'error');
    await pendingIsIntact('failed forced re-run');
    assert.equal(await list(layout.patches.pending), ['sizing.patch', 'sizing.patch.json']);

    // 3. A failed re-run through the library (no model configured at all): the same.
    const noModel = { ...ws.settings, llm: { ...ws.settings.llm, baseURL: undefined, apiKey: undefined } };
    const failed = await runTask(path.join(layout.done, 'sizing.md'), { settings: noModel });
    assert.is(failed.report.error?.kind, 'config');
    await pendingIsIntact('failed library re-run');
    assert.equal(await list(layout.patches.pending), ['sizing.patch', 'sizing.patch.json']);

    // 4. A forced re-run that succeeds files its patch beside the pending one, under its run id.
    state.failing = false;
    state.note = 'reviewed again';
    r = await cli(ws, ['run', '--task-id', 'sizing', '--force', '--json']);
    assert.is(r.exitCode, 0, r.stdout + r.stderr);
    const forced = JSON.parse(r.stdout) as RunTaskResult;
    assert.is(path.basename(forced.patch_path!), `sizing.${forced.run_id}.patch`);
    assert.match(forced.report.notes.join('\n'), 'patches/pending/sizing.patch, which is still waiting for review');
    await pendingIsIntact('forced re-run');

    // 5. A re-drop into inbox/ while watch runs (it cannot ask): runs, files beside both.
    const results: RunTaskResult[] = [];
    state.note = 'reviewed once more';
    const watcher = startWatching({ settings: ws.settings, log: silentLogger(), settleMs: 0, scanMs: 300, onResult: (x) => results.push(x) });
    try {
      await watcher.ready;
      await writeTask(layout.inbox, 'sizing.md', '---\nproject: bot\nobjective: Document sizing\nscope: ["bot/**"]\n---\n');
      await waitFor('the re-dropped task to run', () => results.length === 1);
    } finally {
      await watcher.stop();
    }
    const dropped = results[0]!;
    assert.is(dropped.status, 'ok', dropped.report.error?.message);
    assert.is(path.basename(dropped.patch_path!), `sizing.${dropped.run_id}.patch`);
    await pendingIsIntact('watch re-drop');
    const patches = (await list(layout.patches.pending)).filter((n) => n.endsWith('.patch'));
    assert.equal(patches, ['sizing.patch', `sizing.${forced.run_id}.patch`, `sizing.${dropped.run_id}.patch`].sort());

    // A patch filed beside another belongs to its task: `review` and the dashboard show its run's report.
    r = await execa(process.execPath, [BIN, 'review', '--root', ws.root], {
      reject: false,
      input: 's\ns\ns\n',
      env: { OPENAI_API_KEY: '', OPENAI_BASE_URL: '' },
      timeout: 90_000,
    });
    assert.is(r.exitCode, 0, r.stdout + r.stderr);
    const shown = r.stdout.split(/\n(?=\[\d\/3\] )/).find((block) => block.includes(`/3] sizing.${forced.run_id} `)) ?? '';
    assert.match(shown, 'Documented sizing.', r.stdout);
    assert.match(shown, 'tests: passed; dry run: passed');
    const ui = await startUi({ settings: ws.settings, log: silentLogger(), port: 0 });
    try {
      const res = await fetch(`http://127.0.0.1:${ui.port}/api/patches/sizing.${forced.run_id}`, { headers: { 'x-meta-agent-token': ui.token } });
      assert.is(res.status, 200);
      const view = (await res.json()) as { report: { task_id: string; run_id: string; patch_files: string[] } | null };
      assert.is(view.report?.run_id, forced.run_id, 'the report of the run that filed this patch (archived by the later run)');
      assert.is(
        view.report?.patch_files[0],
        `patches/pending/sizing.${forced.run_id}.patch`,
        'the patch the report names, which the dashboard\'s "Open the patch" opens',
      );
    } finally {
      await ui.close();
    }

    // Each is decided on its own: the gate applies the first, and records it in that run's (archived) report.
    const result = await processApprovedPatch(ws.settings, await approvePatch(ws.settings, 'sizing'), silentLogger());
    assert.is(result.decision, 'applied', result.reason ?? '');
    const archived = await readJson(path.join(layout.reportArchive, 'sizing', first.run_id, 'sizing.json'));
    assert.is(archived.approval?.commit, result.commit);
    assert.is((await readJson(path.join(layout.reports, 'sizing.json'))).approval, null, "the newest report is not the applied run's");
    assert.equal(
      (await list(layout.patches.pending)).filter((n) => n.endsWith('.patch')),
      [`sizing.${forced.run_id}.patch`, `sizing.${dropped.run_id}.patch`].sort(),
    );

    // The patch filed beside it, applied: the commit's trailer names the task, not the file.
    const commitAll = (message: string) => execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-am', message], { cwd: ws.repo });
    const sizingPy = path.join(ws.repo, 'bot', 'sizing.py');
    await fs.writeFile(sizingPy, (await fs.readFile(sizingPy, 'utf8')).replace('# reviewed\n', ''));
    await commitAll('undo the first change by hand');
    const second = await processApprovedPatch(ws.settings, await approvePatch(ws.settings, `sizing.${forced.run_id}`), silentLogger());
    assert.is(second.decision, 'applied', second.reason ?? '');
    assert.is(second.already_applied, false);
    assert.match(await fs.readFile(sizingPy, 'utf8'), '# reviewed again\n');
    const message = (await execa('git', ['log', '-1', '--format=%B', second.commit!], { cwd: ws.repo })).stdout;
    assert.match(message, /^Meta-Agent-Task: sizing$/m, message);

    // The third conflicts with the second: the redo task keeps the task's objective.
    const third = await processApprovedPatch(ws.settings, await approvePatch(ws.settings, `sizing.${dropped.run_id}`), silentLogger());
    assert.is(third.decision, 'rejected');
    assert.match(third.reason ?? '', 'conflicts in bot/sizing.py');
    const redo = parseTask(await fs.readFile(path.join(layout.inbox, 'sizing-redo.md')), 'sizing-redo.md');
    assert.match(redo.objective, 'Redo the change of task sizing on the current HEAD');
    assert.match(redo.objective, /Original objective: Document sizing$/);
  } finally {
    await llm.close();
    await ws.cleanup();
  }
});

test('retry <id> and run --task-id on failed/; status, the health line and the dashboard count tasks, not error notes', async () => {
  const llm = await startFakeLlm(() => finish('Looked, nothing to change.'));
  const ws = await makeWorkspace({ llmUrl: llm.url });
  const { layout } = ws.settings;
  try {
    // Two tasks fail for an unknown project: failed/ holds two tasks and two error notes.
    for (const id of ['alpha', 'beta']) {
      const res = await runTask(await writeTask(layout.inbox, `${id}.md`, '---\nproject: nope\nobjective: Review\n---\n'), { settings: ws.settings });
      assert.is(res.status, 'error');
    }
    assert.equal(await list(layout.failed), ['alpha.md', 'alpha.md.error.md', 'beta.md', 'beta.md.error.md']);
    assert.is((await workspaceStatus(ws.settings)).counts.failed, 2);
    assert.is((await dashboardState(ws.settings)).counts.failed, 2);
    const watcher = startWatching({ settings: ws.settings, log: silentLogger(), scanMs: 60_000 });
    try {
      await watcher.ready;
      assert.is((await watcher.health()).failed, 2);
    } finally {
      await watcher.stop();
    }
    let r = await cli(ws, ['status', '--json']);
    assert.is(JSON.parse(r.stdout).counts.failed, 2, r.stderr);

    // retry: back into inbox/, note gone.
    r = await cli(ws, ['retry', 'alpha']);
    assert.is(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, 'moved failed/alpha.md back into inbox/');
    assert.equal(await list(layout.failed), ['beta.md', 'beta.md.error.md']);
    assert.equal(await list(layout.inbox), ['alpha.md']);
    r = await cli(ws, ['retry', 'alpha']);
    assert.is(r.exitCode, 2, 'nothing left to retry');
    assert.match(r.stderr, 'no failed task "alpha"');

    // run --task-id finds a (fixed) task in failed/, says so, and ends in done/ without the stale note.
    await fs.writeFile(path.join(layout.failed, 'beta.md'), '---\nproject: bot\nobjective: Review\n---\n');
    r = await cli(ws, ['run', '--task-id', 'beta']);
    assert.is(r.exitCode, 0, r.stdout + r.stderr);
    assert.match(r.stdout, 'taking beta.md from failed/');
    assert.equal(await list(layout.failed), []);
    assert.equal(await list(layout.done), ['beta.md']);
    const counts = (await workspaceStatus(ws.settings)).counts;
    assert.equal([counts.inbox, counts.done, counts.failed], [1, 1, 0]);
  } finally {
    await llm.close();
    await ws.cleanup();
  }
});

test('through watch, a task with front matter and only a Markdown body runs with the body as its objective', async () => {
  const llm = await startFakeLlm(() => finish('Reviewed the sizing.'));
  const ws = await makeWorkspace({ llmUrl: llm.url });
  const results: RunTaskResult[] = [];
  const watcher = startWatching({ settings: ws.settings, log: silentLogger(), settleMs: 0, scanMs: 300, onResult: (x) => results.push(x) });
  try {
    await watcher.ready;
    const body = '# Check the position sizing\n\nMake sure `position_size` refuses a zero or negative equity (BODY-OBJECTIVE-7c1).';
    await writeTask(ws.settings.layout.inbox, 'from-notes.md', `---\r\nproject: bot\r\nscope: []\r\n---\r\n${body.replace(/\n/g, '\r\n')}\r\n`);
    // Control: front matter with neither objective nor body is still the clear error, at once
    // when the file is published by rename (a file written in place could still be growing:
    // it gets queue.incomplete_grace_s; see test/stall.test.ts).
    const temp = await writeTask(ws.root, '.empty-body.md.tmp', '---\nproject: bot\n---\n<!-- nothing here -->\n');
    const earlier = new Date(Date.now() - 60_000); // written a minute ago, renamed in now
    await fs.utimes(temp, earlier, earlier);
    await fs.rename(temp, path.join(ws.settings.layout.inbox, 'empty-body.md'));
    await waitFor('both tasks to run', () => results.length === 2);
    const ran = results.find((x) => x.task_id === 'from-notes')!;
    assert.is(ran.status, 'ok', ran.report.error?.message);
    assert.is(ran.report.objective, body);
    const first = llm.requests[0]!.body.messages.find((m: { role: string }) => m.role === 'user');
    assert.match(String(first.content), 'BODY-OBJECTIVE-7c1');
    assert.match(String(first.content), 'Check the position sizing');
    const empty = results.find((x) => x.task_id === 'empty-body')!;
    assert.is(empty.status, 'error');
    assert.match(empty.report.error!.message, 'field "objective": is required');
    assert.equal(await list(ws.settings.layout.done), ['from-notes.md']);
  } finally {
    await watcher.stop();
    await llm.close();
    await ws.cleanup();
  }
});

test.run();
