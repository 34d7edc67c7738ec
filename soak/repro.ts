/**
 * Deterministic, minimal reproductions of the product bugs the soak found (soak/known.ts).
 *
 *   npx tsx soak/repro.ts            # all of them
 *   npx tsx soak/repro.ts B9 B10     # some
 *
 * Each prints "BUG <id>: <what happened>" while the bug is there, or "ok <id>" once it is
 * fixed. The exit code is the number of bugs reproduced. Faults are injected in-process
 * (injectFileFault: the same hook as META_AGENT_FAULT_ENOSPC) or with real `watch`
 * processes and kill -9; crash states are rebuilt on disk exactly as a kill leaves them.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { injectFileFault } from '../src/workspace/files.ts';
import { runTask } from '../src/run/runTask.ts';
import { approvePatch } from '../src/gate/decide.ts';
import { processApprovedPatch, recoverInterruptedGateRuns } from '../src/gate/gate.ts';
import { startWatching } from '../src/queue/watch.ts';
import { applyRetention } from '../src/queue/retention.ts';
import { runSupervisorCycle } from '../src/supervisor/cycle.ts';
import { silentLogger } from '../src/log.ts';
import { finish, startFakeLlm, toolCall, type Reply } from '../test/helpers/fakeLlm.ts';
import { makeWorkspace, type TestWorkspace } from '../test/helpers/workspace.ts';
import { killAll, killHard, publish, sleep, startWatch, startWatchReady, waitFor } from '../test/helpers/procs.ts';

type Outcome = { bug: boolean; what: string };

const ENOSPC = (file: string) => Object.assign(new Error(`ENOSPC: no space left on device, write '${file}'`), { code: 'ENOSPC', path: file });
const QUEUE = 'queue:\n  settle_ms: 100\n  scan_interval_ms: 200\n  lease_stale_s: 1\n  shutdown_grace_s: 1';
/** The command engine adds a line to README.md: a patch without any model. */
const EDITING_ENGINE = `engine: command\ncommand:\n  run: ["sh", "-c", "echo '# repro note' >> README.md"]`;
const list = async (dir: string) => (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => n !== '.gitkeep').sort();
const exists = (file: string) => fs.stat(file).then(() => true, () => false);
const taskText = (objective: string, scope = '["**"]') => `---\nproject: bot\nobjective: ${objective}\nscope: ${scope}\n---\n`;

/** A workspace with one pending patch `id` (README.md gets a line; tests and dry run pass). */
async function withPendingPatch(id: string, extra = ''): Promise<TestWorkspace> {
  const ws = await makeWorkspace({ extra: [EDITING_ENGINE, QUEUE, extra].join('\n') });
  const file = path.join(ws.settings.layout.inbox, `${id}.md`);
  await fs.writeFile(file, taskText('Add a note to the README'));
  const result = await runTask(file, { settings: ws.settings });
  if (!result.patch_path) throw new Error(`no patch: ${result.report.error?.message ?? result.outcome}`);
  return ws;
}

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Runs the gate on `patch` in a child process that kill -9s itself at the first file write
 * whose name matches `at` (the writes go through files.ts): exactly the state a crash there
 * leaves on disk, whatever the code does before that point.
 */
async function gateKilledAt(ws: TestWorkspace, patch: string, at: RegExp): Promise<string | null> {
  const script = path.join(ws.root, '..', `${path.basename(ws.root)}.gate-kill.mts`);
  await fs.writeFile(
    script,
    [
      `import path from 'node:path';`,
      `import { injectFileFault } from ${JSON.stringify(path.join(REPO, 'src/workspace/files.ts'))};`,
      `import { loadSettings } from ${JSON.stringify(path.join(REPO, 'src/workspace/config.ts'))};`,
      `import { processApprovedPatch } from ${JSON.stringify(path.join(REPO, 'src/gate/gate.ts'))};`,
      `import { silentLogger } from ${JSON.stringify(path.join(REPO, 'src/log.ts'))};`,
      `const [root, patch, at] = process.argv.slice(2);`,
      `const settings = await loadSettings(root, { PATH: process.env.PATH, HOME: process.env.HOME });`,
      `injectFileFault((file) => { if (new RegExp(at).test(path.basename(file))) process.kill(process.pid, 'SIGKILL'); });`,
      `const r = await processApprovedPatch(settings, patch, silentLogger());`,
      `console.log('not killed: ' + r.decision);`,
    ].join('\n'),
  );
  try {
    const child = await execa(process.execPath, ['--import', 'tsx', script, ws.root, patch, at.source], { cwd: REPO, reject: false, all: true });
    return child.signal === 'SIGKILL' ? null : `the gate was not killed: ${child.all}`;
  } finally {
    await fs.rm(script, { force: true });
  }
}

const REPROS: Record<string, { title: string; run: () => Promise<Outcome> }> = {
  B1: {
    title: 'a full disk for a moment during a cycle: the cycle ends without its task, or without any report',
    run: async () => {
      const ws = await makeWorkspace({ extra: ['engine: command', 'command:\n  run: ["true"]', QUEUE, 'supervisor:\n  routines: {daily_maintenance: [{type: custom, objective: "Look around", scope: [], tasks: []}]}'].join('\n') });
      // The disk is full for one second, from the moment the task's report is written.
      let until = 0;
      injectFileFault((file) => {
        if (!until && file.startsWith(ws.settings.layout.reports)) until = Date.now() + 1000;
        if (Date.now() < until) throw ENOSPC(file);
      });
      const watcher = startWatching({ settings: ws.settings, log: silentLogger(), supervisorLog: silentLogger() });
      try {
        await watcher.ready;
        const outcome = await runSupervisorCycle(ws.settings, 'daily_maintenance', 'daily', { waitTimeoutMs: 20_000, pollMs: 100 }).then(
          (r) => `status ${r.status}, tasks [${r.tasks.map((t) => `${t.task_id}: ${t.status}`).join(', ')}]${r.error ? `, error: ${r.error.message.slice(0, 70)}` : ''}`,
          (e: Error) => `rejected (${e.message.slice(0, 70)})`,
        );
        injectFileFault(null);
        await sleep(3000); // the watcher recovers the task and runs it again
        const cycles = (await list(path.join(ws.settings.layout.reports, 'cycles'))).filter((n) => n.endsWith('.json'));
        const report = cycles[0] ? (JSON.parse(await fs.readFile(path.join(ws.settings.layout.reports, 'cycles', cycles[0]), 'utf8')) as { tasks: unknown[]; status: string }) : null;
        const done = (await list(ws.settings.layout.done)).filter((n) => n.startsWith('S1_'));
        return { bug: !report || report.tasks.length !== 1 || report.status !== 'ok', what: `runSupervisorCycle: ${outcome}; reports/cycles/ has ${cycles.length} report(s); the task it created: ${done.length ? 'done/ (re-run by the watcher)' : 'not done'}` };
      } finally {
        injectFileFault(null);
        await watcher.stop();
        await ws.cleanup();
      }
    },
  },
  B2: {
    title: 'kill -9 during a scheduled cycle: no cycle report, ever',
    run: async () => {
      const ws = await makeWorkspace({
        extra: [
          'engine: command',
          'command:\n  run: ["sleep", "2"]',
          QUEUE,
          'supervisor:\n  timezone: Europe/Kyiv\n  tick_s: 0.2\n  schedule: [{cron: "30 2 * * *", goal: daily_maintenance}]\n  routines: {daily_maintenance: [{type: custom, objective: "Look around", scope: [], tasks: []}]}',
        ].join('\n'),
      });
      const clock = path.join(ws.root, '..', `${path.basename(ws.root)}.clock.json`);
      // Atomically (temp + rename), as META_AGENT_CLOCK_FILE requires.
      const setClock = async (iso: string) => {
        await fs.writeFile(`${clock}.tmp`, JSON.stringify({ now: iso }));
        await fs.rename(`${clock}.tmp`, clock);
      };
      try {
        await setClock('2026-12-01T00:29:00Z'); // 02:29 in Kyiv
        const env = { META_AGENT_CLOCK_FILE: clock };
        const first = await startWatchReady(ws.root, env);
        await sleep(1000); // a few ticks at 02:29
        await setClock('2026-12-01T00:31:00Z');
        await waitFor('the cycle task in processing/', async () => (await list(ws.settings.layout.processing)).some((n) => n.startsWith('S1_')), 20_000);
        await killHard(first);
        const second = await startWatchReady(ws.root, env);
        await waitFor('the task done after recovery', async () => (await list(ws.settings.layout.done)).some((n) => n.startsWith('S1_')), 30_000);
        await sleep(3000);
        const cycles = (await list(path.join(ws.settings.layout.reports, 'cycles'))).filter((n) => n.endsWith('.json'));
        const lock = await exists(path.join(ws.settings.layout.state, 'supervisor', '.scheduler.lock'));
        await killHard(second);
        return { bug: cycles.length === 0 || lock, what: `after the restart the task was recovered and done, but reports/cycles/ has ${cycles.length} report(s)${lock ? '; .meta-agent/supervisor/.scheduler.lock of the dead process is still there' : ''}` };
      } finally {
        await fs.rm(clock, { force: true });
        await ws.cleanup();
      }
    },
  },
  B3: {
    title: "kill -9 during a gate run and a prompt restart: the gate's worktree is never removed",
    run: async () => {
      const ws = await withPendingPatch('gated', '');
      // A slow test in the gate (3 s), so the kill lands while it runs.
      await fs.appendFile(ws.settings.layout.config, '');
      const yaml = await fs.readFile(ws.settings.layout.config, 'utf8');
      await fs.writeFile(ws.settings.layout.config, yaml.replace('test: "python3 -m pytest -q -p no:cacheprovider"', 'test: "sleep 3"'));
      try {
        const first = await startWatchReady(ws.root);
        await approvePatch(ws.settings, 'gated');
        await waitFor('a gate-* worktree', async () => (await list(ws.settings.layout.worktrees)).some((n) => n.startsWith('gate-')), 20_000);
        const leftover = (await list(ws.settings.layout.worktrees)).filter((n) => /^gate-[0-9a-f]+$/.test(n));
        await killHard(first);
        const second = await startWatchReady(ws.root);
        await waitFor('the patch filed', async () => (await list(ws.settings.layout.patches.applied)).includes('gated.patch'), 30_000);
        await sleep(1000);
        const still = (await list(ws.settings.layout.worktrees)).filter((n) => leftover.includes(n));
        const git = (await execa('git', ['worktree', 'list'], { cwd: ws.repo })).stdout.split('\n').length - 1;
        await killHard(second);
        return { bug: still.length > 0, what: `the killed run's ${leftover.join(', ')} ${still.length ? `is still in .meta-agent/worktrees/ and in \`git worktree list\` (${git} extra worktree(s)) after the restart and the gate's next run` : 'was removed'}` };
      } finally {
        await ws.cleanup();
      }
    },
  },
  'B4+B5': {
    title: 'kill -9 after the gate moved the branch: the record loses the test results and the snapshot is never removed',
    run: async () => {
      const ws = await withPendingPatch('crashy');
      try {
        const { layout } = ws.settings;
        const approved = await approvePatch(ws.settings, 'crashy');
        const bytes = await fs.readFile(approved);
        const sha = createHash('sha256').update(bytes).digest('hex');
        // Killed at its first file write after `git update-ref` (the report's approval section).
        const missed = await gateKilledAt(ws, approved, /^\.crashy\.json\./);
        if (missed) throw new Error(missed);
        const head = (await execa('git', ['log', '-1', '--format=%B', 'main'], { cwd: ws.repo })).stdout;
        if (!head.includes('Meta-Agent-Task: crashy')) throw new Error('the kill came before the commit');
        // The restart: the interrupted run gets its name back and the gate runs again.
        await recoverInterruptedGateRuns(ws.settings, silentLogger());
        const again = await processApprovedPatch(ws.settings, path.join(layout.patches.approved, 'crashy.patch'), silentLogger());
        const result = JSON.parse(await fs.readFile(path.join(layout.patches.applied, 'crashy.result.json'), 'utf8')) as { tests: { passed: boolean } | null; reason: string | null };
        const leaked = (await list(path.join(layout.state, 'gate-snapshots'))).filter((n) => n.startsWith(sha.slice(0, 16)));
        return { bug: result.tests === null || leaked.length > 0, what: `after the restart the gate says: ${again.decision} (${again.reason}); applied/crashy.result.json has tests ${result.tests === null ? 'null' : `passed=${result.tests.passed}`}${leaked.length ? `; .meta-agent/gate-snapshots/ still holds ${leaked.join(', ')}` : ''}` };
      } finally {
        await ws.cleanup();
      }
    },
  },
  B6: {
    title: "a dead process's temp files are never removed",
    run: async () => {
      const ws = await makeWorkspace({ extra: ['engine: command', 'command:\n  run: ["true"]', QUEUE].join('\n') });
      const temp = path.join(ws.settings.layout.patches.pending, '.x.patch.999999.deadbeef.tmp'); // pid 999999: not running
      await fs.writeFile(temp, 'half a patch');
      const old = new Date(Date.now() - 3600_000);
      await fs.utimes(temp, old, old);
      const watcher = startWatching({ settings: ws.settings, log: silentLogger(), supervisorLog: silentLogger() });
      try {
        await watcher.ready;
        await sleep(1500);
        return { bug: await exists(temp), what: `patches/pending/.x.patch.999999.deadbeef.tmp (an hour old, its pid dead) ${(await exists(temp)) ? 'is still there after start-up and scans' : 'was removed'}` };
      } finally {
        await watcher.stop();
        await ws.cleanup();
      }
    },
  },
  B7: {
    title: 'retention never expires cycle reports',
    run: async () => {
      const ws = await makeWorkspace({ extra: 'retention:\n  reports_days: 3' });
      try {
        const dir = path.join(ws.settings.layout.reports, 'cycles');
        await fs.mkdir(dir, { recursive: true });
        await fs.writeFile(path.join(dir, 'old-cycle.json'), JSON.stringify({ cycle_id: 'old-cycle', finished_at: '2020-01-01T00:00:00Z' }));
        await fs.writeFile(path.join(dir, 'old-cycle.md'), '# old');
        await fs.writeFile(path.join(ws.settings.layout.reports, 'old-task.json'), JSON.stringify({ finished_at: '2020-01-01T00:00:00Z' }));
        await applyRetention(ws.settings, silentLogger());
        const task = await exists(path.join(ws.settings.layout.reports, 'old-task.json'));
        const cycle = await exists(path.join(dir, 'old-cycle.json'));
        return { bug: cycle, what: `a task report finished in 2020 was ${task ? 'kept' : 'archived'}; a cycle report finished in 2020 was ${cycle ? 'kept in reports/cycles/' : 'archived'}` };
      } finally {
        await ws.cleanup();
      }
    },
  },
  B8: {
    title: "a cycle spends more than supervisor.budget_tokens",
    run: async () => {
      // Two planned tasks; every answer costs 1600 tokens. The first task takes 2 answers (3200),
      // the second gets the remaining 2800 and needs 2 answers (a malformed tool call, then finish).
      const usage = { usage: { prompt_tokens: 1500, completion_tokens: 100 } };
      const script = (req: { body: { messages: Array<{ role: string; content: unknown }> } }): Reply => {
        const prompt = String(req.body.messages[1]?.content ?? '');
        const step = req.body.messages.filter((m) => m.role === 'assistant').length;
        if (prompt.includes('FIRST')) return step === 0 ? toolCall('list_files', { path: '.' }, usage) : toolCall('finish', { summary: 'first', risks: [], risk_level: 'low', next_actions: [] }, usage);
        return step === 0 ? toolCall('finish', null, { rawArguments: '{"summary": ', ...usage }) : toolCall('finish', { summary: 'second', risks: [], risk_level: 'low', next_actions: [] }, usage);
      };
      const llm = await startFakeLlm(script as never);
      const ws = await makeWorkspace({ llmUrl: llm.url, extra: 'supervisor:\n  budget_tokens: 6000\n  routines: {daily_maintenance: [{type: custom, objective: FIRST, scope: [], tasks: []}, {type: custom, objective: SECOND, scope: [], tasks: []}]}' });
      try {
        const report = await runSupervisorCycle(ws.settings, 'daily_maintenance');
        return { bug: report.budget.spent_tokens > report.budget.tokens, what: `budget ${report.budget.tokens}, spent ${report.budget.spent_tokens} (${report.tasks.map((t) => `${t.objective} ${t.tokens}`).join(', ')})` };
      } finally {
        await llm.close();
        await ws.cleanup();
      }
    },
  },
  B9: {
    title: 'an error while the gate files an applied patch is an unhandled rejection (the service exits with code 1)',
    run: async () => {
      const ws = await withPendingPatch('filing');
      const unhandled: unknown[] = [];
      const onUnhandled = (reason: unknown) => unhandled.push(reason);
      process.on('unhandledRejection', onUnhandled);
      try {
        const approved = await approvePatch(ws.settings, 'filing');
        // The disk is full when the gate adds its decision to reports/filing.json (after the commit).
        injectFileFault((file) => {
          if (path.basename(file).startsWith('.filing.json.')) throw ENOSPC(file);
        });
        const outcome = await processApprovedPatch(ws.settings, approved, silentLogger()).then((r) => r.decision, (e: Error) => `threw ${e.message.slice(0, 60)}`);
        injectFileFault(null);
        await sleep(300);
        return { bug: unhandled.length > 0, what: `processApprovedPatch: ${outcome}; unhandled rejections: ${unhandled.length}${unhandled.length ? ` (${String((unhandled[0] as Error).message).slice(0, 90)}): in \`meta-agent watch\` Node exits with code 1` : ''}` };
      } finally {
        injectFileFault(null);
        process.off('unhandledRejection', onUnhandled);
        await ws.cleanup();
      }
    },
  },
  B10: {
    title: 'a full disk at the moment of a claim leaves the task stuck in processing/',
    run: async () => {
      const ws = await makeWorkspace({ extra: ['engine: command', 'command:\n  run: ["true"]', QUEUE].join('\n') });
      let failed = 0;
      injectFileFault((file) => {
        if (file.includes(`${path.sep}ledger${path.sep}`) && failed++ === 0) throw ENOSPC(file); // once: the disk is fine again at once
      });
      const watcher = startWatching({ settings: ws.settings, log: silentLogger(), supervisorLog: silentLogger() });
      try {
        await watcher.ready;
        await publish(ws.settings.layout.inbox, 'stuck.md', taskText('Report only', '[]'));
        await sleep(6000); // six times lease_stale_s
        const processing = await list(ws.settings.layout.processing);
        const done = await list(ws.settings.layout.done);
        return { bug: processing.includes('stuck.md'), what: `6 s after the claim: processing/ ${processing.join(' ') || '-'}; done/ ${done.join(' ') || '-'}` };
      } finally {
        injectFileFault(null);
        await watcher.stop();
        await ws.cleanup();
      }
    },
  },
  B11: {
    title: 'kill -9 while the gate files an applied patch (before its result.json): never finished',
    run: async () => {
      const ws = await withPendingPatch('half');
      try {
        const { layout } = ws.settings;
        const approved = await approvePatch(ws.settings, 'half');
        // Killed at the moment it writes patches/applied/half.result.json.
        const missed = await gateKilledAt(ws, approved, /^\.half\.result\.json\./);
        if (missed) throw new Error(missed);
        const commit = (await execa('git', ['rev-parse', 'main'], { cwd: ws.repo })).stdout.trim();
        // The restart: a watcher starts (recovery, scans, the gate).
        const watcher = startWatching({ settings: ws.settings, log: silentLogger(), supervisorLog: silentLogger() });
        await watcher.ready;
        await sleep(2500);
        await watcher.stop();
        const results = (await list(layout.patches.applied)).filter((n) => n.endsWith('.result.json'));
        const recorded = (await Promise.all(results.map((n) => fs.readFile(path.join(layout.patches.applied, n), 'utf8')))).some((t) => t.includes(commit));
        return { bug: !recorded, what: `commit ${commit.slice(0, 10)} is on main; after a restart ${recorded ? 'patches/applied/ records it' : `no result.json records it (applied/: ${(await list(layout.patches.applied)).join(' ') || '-'}; approved/: ${(await list(layout.patches.approved)).join(' ') || '-'})`}` };
      } finally {
        await ws.cleanup();
      }
    },
  },
  B12: {
    title: 'kill -9 between dropping the redo task of a conflicting patch and filing the rejection: the redo task is dropped twice',
    run: async () => {
      const ws = await withPendingPatch('clash');
      try {
        const { layout } = ws.settings;
        // The person's own commit at the same spot (the end of README.md): the patch conflicts.
        await fs.appendFile(path.join(ws.repo, 'README.md'), 'A line of the person.\n');
        await execa('git', ['-c', 'user.name=p', '-c', 'user.email=p@p', 'commit', '--quiet', '-am', 'person'], { cwd: ws.repo });
        const approved = await approvePatch(ws.settings, 'clash');
        // Killed at its first file write after dropping clash-redo.md (the report's approval section).
        const missed = await gateKilledAt(ws, approved, /^\.clash\.json\./);
        if (missed) throw new Error(missed);
        await recoverInterruptedGateRuns(ws.settings, silentLogger());
        const again = await processApprovedPatch(ws.settings, path.join(layout.patches.approved, 'clash.patch'), silentLogger());
        const redo = (await list(layout.inbox)).filter((n) => n.startsWith('clash-redo'));
        return { bug: redo.length > 1, what: `after the restart the gate says: ${again.decision}; inbox/ holds ${redo.join(', ') || 'no redo task'}` };
      } finally {
        await ws.cleanup();
      }
    },
  },
  B13: {
    title: 'a full disk at the moment a scheduled cycle starts crashes the service (unhandled rejection in the schedule tick)',
    run: async () => {
      const ws = await makeWorkspace({
        extra: ['engine: command', 'command:\n  run: ["true"]', QUEUE, 'supervisor:\n  timezone: Europe/Kyiv\n  tick_s: 0.2\n  schedule: [{cron: "30 2 * * *", goal: daily_maintenance}]\n  routines: {daily_maintenance: [{type: custom, objective: "Look around", scope: [], tasks: []}]}'].join('\n'),
      });
      const clock = path.join(ws.root, '..', `${path.basename(ws.root)}.clock.json`);
      const flag = path.join(ws.root, '..', `${path.basename(ws.root)}.enospc`);
      const setClock = async (iso: string) => {
        await fs.writeFile(`${clock}.tmp`, JSON.stringify({ now: iso }));
        await fs.rename(`${clock}.tmp`, clock);
      };
      try {
        await setClock('2026-12-01T00:29:00Z');
        const proc = await startWatchReady(ws.root, { META_AGENT_CLOCK_FILE: clock, META_AGENT_FAULT_ENOSPC: flag });
        await sleep(1000);
        await fs.writeFile(flag, 'full'); // the disk is full for two seconds, as the clock passes 02:30
        await setClock('2026-12-01T00:31:00Z');
        await sleep(2000);
        await fs.rm(flag, { force: true });
        await sleep(1000);
        const alive = proc.alive();
        const exit = alive ? null : await proc.exited;
        await killHard(proc);
        return { bug: !alive, what: alive ? 'the service is still running' : `the service exited with code ${exit?.code}: ${proc.output().split('\n').find((l) => l.startsWith('Error: ENOSPC')) ?? ''}` };
      } finally {
        await fs.rm(clock, { force: true });
        await fs.rm(flag, { force: true });
        await ws.cleanup();
      }
    },
  },
  'B13-start': {
    title: "the same full disk during the catch-up at start: `watch` never finishes starting, and does not exit either",
    run: async () => {
      const ws = await makeWorkspace({
        extra: ['engine: command', 'command:\n  run: ["true"]', QUEUE, 'supervisor:\n  timezone: Europe/Kyiv\n  tick_s: 0.2\n  schedule: [{cron: "30 2 * * *", goal: daily_maintenance}]\n  routines: {daily_maintenance: [{type: custom, objective: "Look around", scope: [], tasks: []}]}'].join('\n'),
      });
      const clock = path.join(ws.root, '..', `${path.basename(ws.root)}.clock.json`);
      const flag = path.join(ws.root, '..', `${path.basename(ws.root)}.enospc`);
      try {
        // 02:31: the 02:30 run is missed and due for catch-up; the disk is full while the service starts.
        await fs.writeFile(clock, JSON.stringify({ now: '2026-12-01T00:31:00Z' }));
        await fs.writeFile(flag, 'full');
        const proc = startWatch(ws.root, { META_AGENT_CLOCK_FILE: clock, META_AGENT_FAULT_ENOSPC: flag });
        await waitFor('the start to end', () => proc.output().includes('watching ') || /^meta-agent: /m.test(proc.output()) || !proc.alive(), 30_000);
        await fs.rm(flag, { force: true });
        await sleep(3000);
        const started = proc.output().includes('watching ');
        const zombie = !started && proc.alive();
        const line = proc.output().split('\n').find((l) => l.startsWith('meta-agent: ')) ?? '';
        await killHard(proc);
        return { bug: zombie, what: started ? 'the service started (catch-up failure handled)' : `${line.slice(0, 140)}; 3 s later the process ${zombie ? 'is still running (no schedule, no SIGTERM handler)' : 'has exited'}` };
      } finally {
        await fs.rm(clock, { force: true });
        await fs.rm(flag, { force: true });
        await ws.cleanup();
      }
    },
  },
};

const wanted = process.argv.slice(2);
let bugs = 0;
for (const [id, r] of Object.entries(REPROS)) {
  if (wanted.length && !wanted.some((w) => id === w || id.split('+').includes(w) || id.startsWith(`${w}-`))) continue;
  const t0 = Date.now();
  try {
    const o = await Promise.race([r.run(), sleep(180_000).then(() => ({ bug: true, what: 'no outcome within 180 s (hung)' }))]);
    if (o.bug) bugs++;
    console.log(`${o.bug ? 'BUG' : 'ok '} ${id}: ${r.title}\n    ${o.what} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (error) {
    console.log(`??? ${id}: ${r.title}\n    the repro itself failed: ${(error as Error).stack}`);
  }
}
await killAll();
process.exitCode = bugs;
