/** The first cut of `watch`: drops are run once, complete, and a stop returns running tasks to inbox/. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startWatching } from '../src/service/watch.ts';
import { createTask } from '../src/queue/createTask.ts';
import { silentLogger } from '../src/log.ts';
import type { RunTaskResult } from '../src/run/runTask.ts';
import { finish, startFakeLlm } from './helpers/fakeLlm.ts';
import { makeWorkspace, worktreeCount } from './helpers/workspace.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(check: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await sleep(50);
  }
  throw new Error('timed out waiting');
}

test('createTask drops are run once; a file copied in slowly is taken complete; other files stay', async () => {
  const llm = await startFakeLlm(() => finish('Reviewed.'));
  const ws = await makeWorkspace({ llmUrl: llm.url });
  const results: RunTaskResult[] = [];
  const watcher = startWatching({ settings: ws.settings, log: silentLogger(), settleMs: 1200, scanMs: 300, onResult: (r) => results.push(r) });
  try {
    await watcher.ready;
    const { path: created } = await createTask(ws.settings, 'from-gui', { project: 'bot', objective: 'Review the strategy' }, 'gui');
    assert.is(path.basename(created), 'from-gui.md');
    // A slow copy: three chunks over two seconds.
    const slow = path.join(ws.settings.layout.inbox, 'slow-copy.md');
    await fs.writeFile(slow, '---\nproject: bot\n');
    await sleep(1000);
    await fs.appendFile(slow, 'objective: Review sizing\n---\n');
    await sleep(1000);
    await fs.appendFile(slow, 'END-OF-BODY-MARKER\n');
    await fs.writeFile(path.join(ws.settings.layout.inbox, 'notes.txt'), 'not a task');
    await fs.writeFile(path.join(ws.settings.layout.inbox, '~$draft.md'), 'office lock file');
    await waitFor(() => results.length >= 2);
    await sleep(1500);
    assert.is(results.length, 2, 'each task ran once');
    const slowResult = results.find((r) => r.task_id === 'slow-copy')!;
    assert.is(slowResult.status, 'ok', slowResult.report.error?.message);
    const trajectory = await fs.readFile(path.join(ws.root, slowResult.report.trajectory!), 'utf8');
    assert.match(trajectory, 'END-OF-BODY-MARKER', 'the whole file was read');
    assert.is(results.find((r) => r.task_id === 'from-gui')!.report.source, 'gui');
    assert.equal((await fs.readdir(ws.settings.layout.done)).filter((f) => f.endsWith('.md')).sort(), ['from-gui.md', 'slow-copy.md']);
    assert.equal((await fs.readdir(ws.settings.layout.inbox)).filter((f) => f !== '.gitkeep').sort(), ['notes.txt', '~$draft.md']);
  } finally {
    await watcher.stop();
    await llm.close();
    await ws.cleanup();
  }
});

test('stop() aborts a running task and returns it to inbox/ unharmed', async () => {
  const llm = await startFakeLlm(() => ({ hang: true }));
  const ws = await makeWorkspace({ llmUrl: llm.url });
  const watcher = startWatching({ settings: ws.settings, log: silentLogger(), scanMs: 200, graceMs: 300 });
  try {
    await watcher.ready;
    const text = '---\nproject: bot\nobjective: Long task\n---\n';
    await createTask(ws.settings, 'long', text, 'human');
    await waitFor(async () => (await fs.readdir(ws.settings.layout.processing)).includes('long.md'));
    await waitFor(() => llm.requests.length > 0);
    await watcher.stop();
    assert.equal(
      (await fs.readdir(ws.settings.layout.inbox)).filter((f) => f.endsWith('.md')),
      ['long.md'],
    );
    assert.match(await fs.readFile(path.join(ws.settings.layout.inbox, 'long.md'), 'utf8'), 'objective: Long task');
    assert.equal(
      (await fs.readdir(ws.settings.layout.processing)).filter((f) => f !== '.gitkeep'),
      [],
    );
    assert.is(await worktreeCount(ws.repo), 0);
  } finally {
    await watcher.stop();
    await llm.close();
    await ws.cleanup();
  }
});

test.run();
