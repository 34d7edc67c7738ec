/**
 * The files meta-agent keeps for itself, read through contract/readJson.ts with their zod
 * schemas (contract/stateFiles.ts): each schema accepts what the real code writes, and a
 * damaged file is either one line naming the file and field or handled as the reader
 * documents (skipped, started afresh, a cache miss, the last clock reading).
 */
import { promises as fs, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import pino from 'pino';
import { z } from 'zod';
import { MetaAgentError } from '../src/contract/errors.ts';
import { parseJsonText, readJsonFile, readJsonFileOrNull, readJsonFileSync } from '../src/contract/readJson.ts';
import {
  BaselineCacheEntrySchema,
  CycleJournalSchema,
  EvalMetricsSchema,
  LedgerEntrySchema,
  OwnerNoteSchema,
  PoolSlotStateSchema,
  ScheduleStateSchema,
  SupervisorStateSchema,
} from '../src/contract/stateFiles.ts';
import { Ledger } from '../src/queue/ledger.ts';
import { leaseAlive, readOwner, takeLease } from '../src/workspace/lease.ts';
import { recoverOrphans } from '../src/queue/recover.ts';
import { BaselineCache } from '../src/repo/checks.ts';
import { openPooledWorktree, poolRoot } from '../src/repo/worktreePool.ts';
import { gatherContext, readState, stateFile, writeState } from '../src/supervisor/context.ts';
import { orphanedCycles, saveJournal, type CycleJournal } from '../src/supervisor/journal.ts';
import { routineFor } from '../src/supervisor/plan.ts';
import { Scheduler } from '../src/supervisor/schedule.ts';
import { clockFromEnv } from '../src/workspace/clock.ts';
import { silentLogger } from '../src/log.ts';
import type { CycleReport } from '../src/contract/cycle.ts';
import { makeWorkspace } from './helpers/workspace.ts';
import { deadPid } from './helpers/procs.ts';

const tempDir = () => fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-state-'));

/** The MetaAgentError `action` throws (fails the test when it throws nothing or something else). */
async function metaAgentError(action: () => unknown): Promise<MetaAgentError> {
  try {
    await action();
  } catch (error) {
    if (error instanceof MetaAgentError) return error;
    throw error;
  }
  throw new Error('expected a MetaAgentError, nothing was thrown');
}

const Sample = z.object({ name: z.string(), limits: z.object({ steps: z.number() }) });

// --- readJson.ts -------------------------------------------------------------------------

test('readJson: a good file is parsed; a BOM (Notepad) and CRLF are tolerated', async () => {
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'a.json');
    await fs.writeFile(file, '\uFEFF{\r\n  "name": "x",\r\n  "limits": { "steps": 3 }\r\n}\r\n');
    assert.equal(await readJsonFile(file, Sample), { name: 'x', limits: { steps: 3 } });
    assert.equal(await readJsonFileOrNull(file, Sample), { name: 'x', limits: { steps: 3 } });
    assert.equal(readJsonFileSync(file, Sample), { name: 'x', limits: { steps: 3 } });
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('readJson: bad JSON and a wrong field are one-line MetaAgentErrors naming the file (and the field)', async () => {
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'bad.json');
    await fs.writeFile(file, '{"name": "x",\n');
    const notJson = await metaAgentError(() => readJsonFile(file, Sample));
    assert.is(notJson.file, file);
    assert.ok(notJson.message.startsWith(`${file}: not valid JSON`), notJson.message);
    assert.not.match(notJson.message, /\n/);

    await fs.writeFile(file, JSON.stringify({ name: 'x', limits: { steps: 'many' } }));
    for (const read of [() => readJsonFile(file, Sample), () => readJsonFileOrNull(file, Sample), () => readJsonFileSync(file, Sample)]) {
      const wrong = await metaAgentError(read);
      assert.is(wrong.file, file);
      assert.is(wrong.field, 'limits.steps');
      assert.ok(wrong.message.startsWith(`${file}: field "limits.steps": `), wrong.message);
      assert.not.match(wrong.message, /\n/);
    }
    const text = await metaAgentError(() => parseJsonText('[]', Sample, 'inline.json'));
    assert.ok(text.message.startsWith('inline.json: '), text.message);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('readJson: a missing file is ENOENT from readJsonFile(Sync), null from readJsonFileOrNull', async () => {
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'none.json');
    const error = await readJsonFile(file, Sample).then(
      () => null,
      (e: NodeJS.ErrnoException) => e,
    );
    assert.is(error?.code, 'ENOENT');
    assert.not.instance(error, MetaAgentError);
    assert.throws(
      () => readJsonFileSync(file, Sample),
      (e: NodeJS.ErrnoException) => e.code === 'ENOENT',
    );
    assert.is(await readJsonFileOrNull(file, Sample), null);
    // Other read errors are not "missing": a folder where the file should be.
    await fs.mkdir(file);
    const isDir = await readJsonFileOrNull(file, Sample).then(
      () => null,
      (e: NodeJS.ErrnoException) => e,
    );
    assert.is(isDir?.code, 'EISDIR');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

// --- the ledger -------------------------------------------------------------------------

test('ledger: an entry the ledger wrote reads back through its schema; a damaged one counts as none; an unreadable one throws', async () => {
  const dir = await tempDir();
  try {
    const ledger = new Ledger(dir);
    const written = await ledger.update('t-1', { key: 't-1', name: 't.md', sha256: 'ab' }, (e) => {
      e.runs.push({
        run_id: 'r1',
        started_at: '2026-11-30T00:00:00.000Z',
        host: 'h',
        pid: 12,
        reported: { status: 'error', at: '2026-11-30T00:01:00.000Z', explanation: 'why' },
        recovered: 'finalized_from_ledger',
      });
    });
    const file = path.join(dir, 't-1.json');
    assert.equal(await readJsonFile(file, LedgerEntrySchema), written);
    assert.equal(await ledger.get('t-1'), written);
    assert.is(await ledger.get('t-2'), undefined, 'no entry yet');

    await fs.writeFile(file, JSON.stringify({ key: 't-1', name: 't.md', sha256: 'ab', runs: [{ run_id: 'r1' }] }));
    const wrong = await metaAgentError(() => readJsonFile(file, LedgerEntrySchema));
    assert.is(wrong.field, 'runs.0.started_at');
    assert.is(await ledger.get('t-1'), undefined, 'a damaged entry counts as none');
    await fs.writeFile(file, '{"key": "t-1", "na');
    assert.is(await ledger.get('t-1'), undefined, 'a half-written one too');
    const fresh = await ledger.update('t-1', { key: 't-1', name: 't.md', sha256: 'ab' }, (e) =>
      e.runs.push({ run_id: 'r2', started_at: 'x', host: 'h', pid: 1 }),
    );
    assert.equal(
      fresh.runs.map((r) => r.run_id),
      ['r2'],
      'the next update starts it afresh',
    );

    await fs.mkdir(path.join(dir, 't-3.json'));
    const unreadable = await ledger.get('t-3').then(
      () => null,
      (e: NodeJS.ErrnoException) => e,
    );
    assert.is(unreadable?.code, 'EISDIR', 'there but unreadable: not taken for "none" (an update would overwrite it)');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

// --- owner notes --------------------------------------------------------------------------

test('owner note: what takeLease writes reads back through its schema; a damaged or half-written note is no note', async () => {
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'task.md');
    await fs.writeFile(file, 'x');
    const lease = await takeLease(file, 'run-1', 5000);
    const noteFile = path.join(dir, '.task.md.owner.json');
    try {
      const note = await readJsonFile(noteFile, OwnerNoteSchema);
      assert.is(note.run_id, 'run-1');
      assert.is(note.pid, process.pid);
      assert.equal(await readOwner(file), note);
      assert.ok(await leaseAlive(file, 5000), 'alive by its note (this pid)');
    } finally {
      await lease.release();
    }
    for (const damaged of ['{"host": "h", "pid": ', JSON.stringify({ host: 'h', pid: 'twelve', run_id: 'r' }), '']) {
      await fs.writeFile(noteFile, damaged);
      assert.is(await readOwner(file), null, `damaged: ${damaged}`);
    }
    // An old note without the later fields is still a note.
    await fs.writeFile(noteFile, JSON.stringify({ host: 'h', pid: 5, run_id: 'r' }));
    assert.equal(await readOwner(file), { host: 'h', pid: 5, run_id: 'r' });
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test("recovery: the dead run's report is read through its schema; a damaged report is not taken for a finished run", async () => {
  const ws = await makeWorkspace();
  const { layout } = ws.settings;
  try {
    const dead = await deadPid();
    const claim = async (name: string) => {
      await fs.writeFile(path.join(layout.processing, `${name}.md`), '---\nproject: bot\nobjective: x\n---\n');
      await fs.writeFile(
        path.join(layout.processing, `.${name}.md.owner.json`),
        JSON.stringify({ host: os.hostname(), pid: dead, run_id: `run-${name}`, since: new Date().toISOString() }),
      );
    };
    await claim('finished');
    await fs.writeFile(path.join(layout.reports, 'finished.json'), JSON.stringify({ run_id: 'run-finished', status: 'ok', error: null }));
    await claim('torn');
    await fs.writeFile(path.join(layout.reports, 'torn.json'), '{"run_id": "run-torn", "status": "o');
    const result = await recoverOrphans(layout, 1000, silentLogger());
    assert.equal(
      result.finalized.map((f) => path.basename(f)),
      ['finished.md'],
    );
    assert.equal(
      result.returned.map((f) => path.basename(f)),
      ['torn.md'],
    );
    assert.ok(await fs.stat(path.join(layout.done, 'finished.md')), 'its report says ok: finished, not run again');
    assert.ok(await fs.stat(path.join(layout.inbox, 'torn.md')), 'a damaged report: back to inbox/ as a run that wrote none');
    // The ledger entries recovery wrote read back through their schema.
    for (const name of await fs.readdir(path.join(layout.state, 'ledger'))) {
      const entry = await readJsonFile(path.join(layout.state, 'ledger', name), LedgerEntrySchema);
      assert.ok(entry.runs[0]?.recovered, name);
    }
  } finally {
    await ws.cleanup();
  }
});

// --- the supervisor ---------------------------------------------------------------------

test('supervisor state: writeState reads back; an old file gets its defaults; a damaged one starts afresh', async () => {
  const ws = await makeWorkspace();
  try {
    const state = { last_cycle_id: 'c1', last_head: 'abc', log_offsets: { 'logs/bot.log': 120 } };
    await writeState(ws.settings, 'bot', state);
    const file = stateFile(ws.settings, 'bot');
    assert.equal(await readJsonFile(file, SupervisorStateSchema), state);
    assert.equal(await readState(ws.settings, 'bot'), state);
    const fresh = { last_cycle_id: null, last_head: null, log_offsets: {} };
    assert.equal(await readState(ws.settings, 'other'), fresh, 'no file: a first cycle');

    await fs.writeFile(file, JSON.stringify({ last_cycle_id: 'c0' }));
    assert.equal(await readState(ws.settings, 'bot'), { last_cycle_id: 'c0', last_head: null, log_offsets: {} }, 'written before log_offsets existed');

    await fs.writeFile(file, JSON.stringify({ last_cycle_id: 'c0', log_offsets: { 'logs/bot.log': 'ten' } }));
    const wrong = await metaAgentError(() => readJsonFile(file, SupervisorStateSchema));
    assert.is(wrong.field, 'log_offsets.logs/bot.log');
    assert.equal(await readState(ws.settings, 'bot'), fresh, 'damaged: logs are read anew');
  } finally {
    await ws.cleanup();
  }
});

test("the previous cycle's next actions come through its schema; a damaged report gives none", async () => {
  const ws = await makeWorkspace();
  try {
    const project = ws.settings.projects.bot!;
    const cycles = path.join(ws.settings.layout.reports, 'cycles');
    await fs.mkdir(cycles, { recursive: true });
    await fs.writeFile(path.join(cycles, 'c1.json'), JSON.stringify({ cycle_id: 'c1', next_actions: ['look at the fills'] }));
    const state = { last_cycle_id: 'c1', last_head: null, log_offsets: {} };
    assert.equal((await gatherContext(ws.settings, project, state)).openNextActions, ['look at the fills']);
    await fs.writeFile(path.join(cycles, 'c1.json'), '{"cycle_id": "c1", "next_act');
    assert.equal((await gatherContext(ws.settings, project, state)).openNextActions, [], 'damaged JSON: planned without them');
    await fs.writeFile(path.join(cycles, 'c1.json'), JSON.stringify({ next_actions: 'all of them' }));
    assert.equal((await gatherContext(ws.settings, project, state)).openNextActions, [], 'wrong shape: the same');
  } finally {
    await ws.cleanup();
  }
});

test('cycle journal: a planned journal saveJournal wrote reads back whole (orphanedCycles); a damaged one is passed over', async () => {
  const ws = await makeWorkspace();
  try {
    const project = ws.settings.projects.bot!;
    const context = await gatherContext(ws.settings, project, { last_cycle_id: null, last_head: null, log_offsets: {} });
    const tasks = routineFor(ws.settings, 'daily_maintenance');
    assert.ok(tasks, 'a built-in routine');
    const journal: CycleJournal = {
      cycle_id: 'c-dead',
      goal: 'daily_maintenance',
      mode: 'daily',
      project: 'bot',
      started_at: '2026-11-30T01:00:00.000Z',
      owner: { host: os.hostname(), pid: await deadPid() },
      planned: {
        plan: { tasks },
        planner: {
          source: 'routine',
          model: null,
          attempts: 0,
          usage: { requests: 0, prompt_tokens: 0, cached_tokens: 0, completion_tokens: 0, cost_usd: null },
        },
        context,
        task_ids: tasks.map((_, i) => `S${i + 1}_bot_c-dead`),
      },
    };
    await saveJournal(ws.settings, journal);
    await saveJournal(ws.settings, { ...journal, cycle_id: 'c-live', owner: { host: os.hostname(), pid: process.pid }, planned: null });
    const running = path.join(ws.settings.layout.state, 'supervisor', 'running');
    assert.equal(await readJsonFile(path.join(running, 'c-dead.json'), CycleJournalSchema), journal);
    assert.equal(await orphanedCycles(ws.settings), [journal], "only the dead process's cycle, whole");

    await fs.writeFile(path.join(running, 'c-torn.json'), '{"cycle_id": "c-torn", "owner": {"host"');
    await fs.writeFile(path.join(running, 'c-wrong.json'), JSON.stringify({ ...journal, cycle_id: 'c-wrong', mode: 'hourly' }));
    const wrong = await metaAgentError(() => readJsonFile(path.join(running, 'c-wrong.json'), CycleJournalSchema));
    assert.is(wrong.field, 'mode');
    assert.equal(
      (await orphanedCycles(ws.settings)).map((j) => j.cycle_id),
      ['c-dead'],
      'damaged journals are passed over',
    );
  } finally {
    await ws.cleanup();
  }
});

test('schedule state: what a tick writes reads back; a damaged one is logged with its file and the job still runs', async () => {
  const ws = await makeWorkspace({ extra: 'supervisor:\n  timezone: Europe/Kyiv\n  schedule:\n    - { cron: "* * * * *", goal: daily_maintenance }' });
  try {
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
    let now = new Date('2026-11-24T01:00:05+02:00');
    const started: string[] = [];
    const scheduler = new Scheduler({
      settings: ws.settings,
      log,
      clock: () => now,
      runCycle: (job) => {
        started.push(job.goal);
        return Promise.resolve({ cycle_id: 'c', status: 'ok' } as CycleReport);
      },
    });
    const file = path.join(ws.settings.layout.state, 'supervisor', 'schedule.json');
    assert.ok(await scheduler.tick());
    await scheduler.idle();
    const state = await readJsonFile(file, ScheduleStateSchema);
    assert.equal(Object.values(state.last), ['2026-11-24T01:00']);
    assert.equal(lines, [], 'nothing to warn about');

    await fs.writeFile(file, '{"last": {"0:daily');
    now = new Date('2026-11-24T01:01:05+02:00');
    assert.ok(await scheduler.tick(), 'the job runs');
    await scheduler.idle();
    assert.equal(started, ['daily_maintenance', 'daily_maintenance']);
    assert.is(lines.length, 1);
    const warning = JSON.parse(lines[0]!) as { msg: string; err: { file?: string; message: string } };
    assert.match(warning.msg, /state could not be read/);
    assert.is(warning.err.file, file);
    assert.equal(Object.values((await readJsonFile(file, ScheduleStateSchema)).last), ['2026-11-24T01:01'], 'written whole again');
  } finally {
    await ws.cleanup();
  }
});

// --- run: the worktree pool and the baseline cache ---------------------------------------

test('pool slot state: what a slot was made with reads back; a damaged state makes the slot again', async () => {
  const ws = await makeWorkspace();
  try {
    const project = ws.settings.projects.bot!;
    const first = await openPooledWorktree(ws.settings, project, 'run-1');
    await first.remove();
    const [poolDir] = await fs.readdir(poolRoot(ws.settings.layout));
    const stateFile = path.join(poolRoot(ws.settings.layout), poolDir!, 'slot-0.json');
    const made = await readJsonFile(stateFile, PoolSlotStateSchema);
    assert.is(made.git_file, await fs.readFile(path.join(first.dir, '.git'), 'utf8'));
    assert.equal(made.links, []);

    await fs.writeFile(stateFile, JSON.stringify({ fingerprint: 7, git_file: made.git_file, links: [] }));
    const wrong = await metaAgentError(() => readJsonFile(stateFile, PoolSlotStateSchema));
    assert.is(wrong.field, 'fingerprint');
    const second = await openPooledWorktree(ws.settings, project, 'run-2');
    try {
      assert.is(second.dir, first.dir, 'the same slot');
      // Only a slot made again writes its state (a reused one keeps it): readable again means made again.
      const remade = await readJsonFile(stateFile, PoolSlotStateSchema);
      assert.is(remade.fingerprint, made.fingerprint);
      assert.is(remade.git_file, await fs.readFile(path.join(second.dir, '.git'), 'utf8'));
    } finally {
      await second.remove();
    }
    // Link entries that are not strings are dropped, not fatal.
    assert.equal(PoolSlotStateSchema.parse({ fingerprint: 'f', git_file: 'g', links: ['a/b', 3, null] }).links, ['a/b']);
  } finally {
    await ws.cleanup();
  }
});

test('baseline cache: entries set() wrote read back; damaged ones are misses; an old failing entry runs again', async () => {
  const ws = await makeWorkspace();
  try {
    const project = ws.settings.projects.bot!;
    const check = project.test!;
    const dir = path.join(ws.settings.layout.cache, 'baseline');
    const cache = new BaselineCache(dir);
    await cache.set(project, 'c0ffee', check, false, ['tests/test_a.py::test_b']);
    assert.equal(await cache.detail(project, 'c0ffee', check), { passed: false, failed_tests: ['tests/test_a.py::test_b'] });
    const [name] = await fs.readdir(dir);
    const file = path.join(dir, name!);
    assert.is((await readJsonFile(file, BaselineCacheEntrySchema)).command, check.command);
    await cache.set(project, 'c0ffee', check, true);
    assert.equal(await cache.detail(project, 'c0ffee', check), { passed: true, failed_tests: null });
    assert.is(await cache.get(project, 'other', check), undefined, 'not cached');

    const entryFrom = async (text: string) => {
      await fs.writeFile(file, text);
      return cache.detail(project, 'c0ffee', check);
    };
    assert.is(await entryFrom('{"passed": tr'), undefined, 'damaged JSON: a miss');
    assert.is(await entryFrom(JSON.stringify({ passed: 'yes' })), undefined, 'a wrong field: a miss');
    assert.is(await entryFrom(JSON.stringify({ passed: false })), undefined, 'failing, from before failed tests were kept: run again');
    assert.equal(await entryFrom(JSON.stringify({ passed: true })), { passed: true, failed_tests: null });
    assert.equal(await entryFrom(JSON.stringify({ passed: false, failed_tests: [1, 2] })), { passed: false, failed_tests: null }, 'a damaged list: not known');
  } finally {
    await ws.cleanup();
  }
});

test("retrain metrics (the bot's own file) must be a JSON object; keys cannot reach the prototype", () => {
  assert.not.ok(EvalMetricsSchema.safeParse([0.9]).success);
  assert.not.ok(EvalMetricsSchema.safeParse(null).success);
  const metrics = parseJsonText('{"__proto__": {"accuracy": 1}, "f1": 0.8}', EvalMetricsSchema, 'metrics.json');
  assert.is(metrics.f1, 0.8);
  assert.is(metrics.accuracy, undefined);
  assert.is(Object.getPrototypeOf(metrics), Object.prototype);
});

// --- the clock file ---------------------------------------------------------------------

test('clock file: its time is read through its schema; missing, damaged or wrong, the last reading stands', async () => {
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'clock.json');
    const clock = clockFromEnv({ META_AGENT_CLOCK_FILE: file });
    const before = Date.now();
    assert.ok(clock().getTime() >= before, 'no file and no reading yet: the system time');
    writeFileSync(file, JSON.stringify({ now: '2030-01-02T03:04:05.000Z' }));
    assert.is(clock().toISOString(), '2030-01-02T03:04:05.000Z');
    for (const damaged of ['{"now": "2031-', JSON.stringify({ now: 5 }), JSON.stringify({ now: 'not a time' })]) {
      writeFileSync(file, damaged);
      assert.is(clock().toISOString(), '2030-01-02T03:04:05.000Z', damaged);
    }
    rmSync(file);
    assert.is(clock().toISOString(), '2030-01-02T03:04:05.000Z', 'the file is being replaced');
    writeFileSync(file, `\uFEFF${JSON.stringify({ now: '2030-01-03T00:00:00.000Z' })}`);
    assert.is(clock().toISOString(), '2030-01-03T00:00:00.000Z');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test.run();
