/**
 * The wall clock set back an hour (NTP, a person) while the gate runs a patch's tests, then
 * an error after the branch moved (a full disk while it files the decision). The next run
 * finds the commit ("already applied") and must still record the tests that gated it: it
 * reads them back from the run's state, through their schema. A duration measured with the
 * wall clock came out negative there, failed the schema, and the record said tests: null.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import pino from 'pino';
import { execa } from 'execa';
import { injectFileFault } from '../src/workspace/files.ts';
import { installClockSkew } from '../src/workspace/faults.ts';
import { runTask } from '../src/run/runTask.ts';
import { approvePatch } from '../src/gate/decide.ts';
import { processApprovedPatch, recoverInterruptedGateRuns } from '../src/gate/gate.ts';
import { CheckResultSchema } from '../src/contract/report.ts';
import { silentLogger } from '../src/log.ts';
import { makeWorkspace, readJson } from './helpers/workspace.ts';

const EDITING_ENGINE = `engine: command\ncommand:\n  run: ["sh", "-c", "echo '# a note' >> README.md"]`;

test("the clock set back an hour during the gate's tests, then an error after the branch moved: the next run records the tests, with a valid duration", async () => {
  const ws = await makeWorkspace({ extra: EDITING_ENGINE });
  const RealDate = Date;
  const skewFile = path.join(ws.root, 'clock-skew-ms.txt');
  try {
    const { layout } = ws.settings;
    const file = path.join(layout.inbox, 'clockback.md');
    await fs.writeFile(file, `---\nproject: bot\nobjective: Add a note to the README\nscope: ["**"]\n---\n`);
    const proposed = await runTask(file, { settings: ws.settings });
    assert.ok(proposed.patch_path, `a patch is proposed (${proposed.report.error?.message ?? proposed.outcome})`);
    const patch = await approvePatch(ws.settings, 'clockback');

    await fs.writeFile(skewFile, '0\n');
    installClockSkew(skewFile);
    // The moment the tests start, the clock goes back an hour (pytest runs for longer than the skew's 100 ms cache).
    const log = pino(
      { level: 'info' },
      {
        write(line: string) {
          if (line.includes('"check started: test"')) void fs.writeFile(skewFile, `${-3_600_000}\n`);
        },
      },
    );
    // The disk is full when the gate adds its decision to reports/clockback.json (after the branch moved).
    injectFileFault((f) => {
      if (path.basename(f).startsWith('.clockback.json.')) throw Object.assign(new Error(`ENOSPC: no space left on device, write '${f}'`), { code: 'ENOSPC' });
    });
    const failed = await processApprovedPatch(ws.settings, patch, log).then(
      (r) => `${r.decision}: ${r.reason}`,
      (e: Error) => e.message,
    );
    injectFileFault(null);
    assert.match(failed, /^ENOSPC/, 'the error after the branch moved reaches the caller');
    const commits = (await execa('git', ['log', 'main', '--format=%H', '--grep=Meta-Agent-Patch', '-F'], { cwd: ws.repo })).stdout.split('\n').filter(Boolean);
    assert.is(commits.length, 1, 'the branch moved before the error');

    // The restart, the clock still an hour back.
    await recoverInterruptedGateRuns(ws.settings, silentLogger());
    const again = await processApprovedPatch(ws.settings, path.join(layout.patches.approved, 'clockback.patch'), silentLogger());
    assert.is(again.decision, 'applied', again.reason ?? '');
    assert.is(again.already_applied, true, 'the second run found the commit');
    const record = await readJson<{ commit: string; tests: unknown; dry_run: unknown }>(path.join(layout.patches.applied, 'clockback.result.json'));
    assert.is(record.commit, commits[0]);
    const tests = CheckResultSchema.parse(record.tests);
    assert.is(tests.passed, true, 'the tests the first run passed are on record');
    assert.ok(tests.duration_ms >= 0, `a duration, not a clock step: ${tests.duration_ms}`);
    assert.is(CheckResultSchema.parse(record.dry_run).passed, true);
  } finally {
    injectFileFault(null);
    globalThis.Date = RealDate;
    await ws.cleanup();
  }
});

test.run();
