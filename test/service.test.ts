/**
 * `meta-agent service install|uninstall|status` and `schedule --print windows`: the Task
 * Scheduler XML is well-formed (a real XML parser reads it, with a path holding `&`),
 * UTF-16 LE with a BOM, and has no time limit, no battery conditions and a restart on
 * failure; the systemd unit restarts on failure. schtasks and systemctl are never run: an
 * injected runner records their argv. And a real `watch` stops cleanly on SIGHUP (what
 * Windows sends when its console closes), with SIGBREAK in the same handler list.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BIN, installService, printService, serviceStatus, uninstallService, unitPath, type ServiceRunner } from '../src/service/osService.ts';
import { SERVICE_NODE_FLAGS } from '../src/workspace/launch.ts';
import { execa } from 'execa';
import { printSchedule, scheduleTasks, writeScheduleTasks } from '../src/supervisor/osSchedule.ts';
import { STOP_SIGNALS } from '../src/cli.ts';
import { loadSettings } from '../src/workspace/config.ts';
import { makeWorkspace, type TestWorkspace } from './helpers/workspace.ts';
import { killAll, signal, sleep, startWatchReady } from './helpers/procs.ts';

const WIN_ENV = { USERNAME: 'anna', USERDOMAIN: 'DESKTOP-1', PATH: process.env.PATH };

/** A workspace whose root holds `&` and a space (a folder "R&D bots"), as on a real disk. */
async function ampersandWorkspace(extra = ''): Promise<{ ws: TestWorkspace; root: string }> {
  const ws = await makeWorkspace({ project: '    scope: ["**"]', extra: ['engine: command', 'command:\n  run: ["true"]', extra].join('\n') });
  const parent = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-svc-'));
  const root = path.join(parent, 'R&D bots <1>');
  await fs.rename(ws.root, root);
  const yaml = await fs.readFile(path.join(root, 'meta-agent.yaml'), 'utf8');
  await fs.writeFile(path.join(root, 'meta-agent.yaml'), yaml.split(ws.root).join(root));
  return { ws: { ...ws, root, cleanup: () => fs.rm(parent, { recursive: true, force: true }) }, root };
}

function recorder(answers: Record<string, { exitCode: number; stdout?: string; stderr?: string }> = {}): { runner: ServiceRunner; calls: string[][] } {
  const calls: string[][] = [];
  const runner: ServiceRunner = async (file, args) => {
    calls.push([file, ...args]);
    const answer = answers[[file, ...args].join(' ')] ?? { exitCode: 0 };
    return { exitCode: answer.exitCode, stdout: answer.stdout ?? '', stderr: answer.stderr ?? '' };
  };
  return { runner, calls };
}

const parser = new XMLParser({ ignoreAttributes: false, parseTagValue: false, trimValues: true });

/** Parses UTF-16 LE bytes with a BOM as the task file schtasks would read; throws on malformed XML. */
function parseTaskFile(bytes: Buffer): { Task: Record<string, any> } {
  assert.equal([...bytes.subarray(0, 2)], [0xff, 0xfe], 'starts with the UTF-16 LE byte order mark');
  const text = bytes.subarray(2).toString('utf16le');
  assert.match(text, /^<\?xml version="1\.0" encoding="UTF-16"\?>/);
  assert.not.match(text, /^REM /m);
  return parser.parse(text, true) as { Task: Record<string, any> };
}

test('service install on Windows: a UTF-16 task XML a parser reads back (path with &), no time limit, no battery conditions, restart on failure; schtasks /Create /XML then /Run', async () => {
  const { ws, root } = await ampersandWorkspace();
  try {
    const settings = await loadSettings(root, WIN_ENV);
    const { runner, calls } = recorder();
    const lines = await installService(settings, {
      kind: 'windows',
      env: WIN_ENV,
      runner,
      node: 'C:\\Program Files\\nodejs\\node.exe',
      bin: 'C:\\R&D\\meta-agent\\bin\\meta-agent.js',
    });
    const file = path.join(root, '.meta-agent', 'service', 'meta-agent.xml');
    assert.equal(calls, [
      ['schtasks', '/Create', '/F', '/XML', file, '/TN', 'meta-agent'],
      ['schtasks', '/Run', '/TN', 'meta-agent'],
    ]);
    assert.match(lines.join('\n'), /at your logon; restarts on failure; no time limit/);
    const task = parseTaskFile(await fs.readFile(file)).Task;
    const s = task.Settings;
    assert.is(s.ExecutionTimeLimit, 'PT0S');
    assert.is(s.DisallowStartIfOnBatteries, 'false');
    assert.is(s.StopIfGoingOnBatteries, 'false');
    assert.equal(s.RestartOnFailure, { Interval: 'PT1M', Count: '999' });
    assert.is(task.Principals.Principal.LogonType, 'InteractiveToken');
    assert.is(task.Principals.Principal.UserId, 'DESKTOP-1\\anna');
    assert.is(task.Triggers.LogonTrigger.UserId, 'DESKTOP-1\\anna');
    // The parser gives back the very paths: & and < survived, quoted where they hold a space.
    assert.is(task.Actions.Exec.Command, 'C:\\Program Files\\nodejs\\node.exe');
    assert.is(task.Actions.Exec.Arguments, `--max-semi-space-size=2 --max-old-space-size=128 C:\\R&D\\meta-agent\\bin\\meta-agent.js watch --root "${root}"`);
    assert.is(task.Actions.Exec.WorkingDirectory, root);

    // Run whether or not logged on: S4U at boot.
    const { runner: r2 } = recorder();
    await installService(settings, { kind: 'windows', env: WIN_ENV, runner: r2, whenLoggedOff: true });
    const offline = parseTaskFile(await fs.readFile(file)).Task;
    assert.is(offline.Principals.Principal.LogonType, 'S4U');
    assert.ok('BootTrigger' in offline.Triggers && !('LogonTrigger' in offline.Triggers));

    // --print installs nothing and shows the same XML.
    const shown = printService(settings, { kind: 'windows', env: WIN_ENV });
    assert.match(shown, '<ExecutionTimeLimit>PT0S</ExecutionTimeLimit>');
    assert.match(shown, 'R&amp;D bots &lt;1&gt;');
    assert.match(shown, /schtasks \/Create \/F \/XML ".*meta-agent\.xml" \/TN meta-agent/);

    const { runner: r3, calls: c3 } = recorder({
      'schtasks /Query /TN meta-agent /V /FO LIST': { exitCode: 1, stderr: 'ERROR: The system cannot find the file specified.' },
    });
    const status = await serviceStatus(settings, { kind: 'windows', runner: r3 });
    assert.not.ok(status.installed);
    assert.match(status.text, /^not installed/);
    assert.equal(c3, [['schtasks', '/Query', '/TN', 'meta-agent', '/V', '/FO', 'LIST']]);
    const { runner: r4, calls: c4 } = recorder();
    await uninstallService(settings, { kind: 'windows', runner: r4 });
    assert.equal(c4, [
      ['schtasks', '/End', '/TN', 'meta-agent'],
      ['schtasks', '/Delete', '/TN', 'meta-agent', '/F'],
    ]);
    assert.not.ok(await fs.stat(file).catch(() => null), 'the task file is removed');
  } finally {
    await ws.cleanup();
  }
});

test('a failing schtasks is a one-line error naming the command', async () => {
  const { ws, root } = await ampersandWorkspace();
  try {
    const settings = await loadSettings(root, WIN_ENV);
    const { runner } = recorder({
      [`schtasks /Create /F /XML ${path.join(root, '.meta-agent', 'service', 'meta-agent.xml')} /TN meta-agent`]: {
        exitCode: 1,
        stderr: 'ERROR: Access is denied.\r\n',
      },
    });
    const error = await installService(settings, { kind: 'windows', env: WIN_ENV, runner }).catch((e: Error) => e);
    assert.instance(error, Error);
    assert.match((error as Error).message, /schtasks \/Create .* failed \(exit 1\): ERROR: Access is denied\.$/);
    assert.not.match((error as Error).message, /[\r\n]/, 'one line');
  } finally {
    await ws.cleanup();
  }
});

test('service install on Linux: a systemd user unit (Restart=on-failure) in ~/.config/systemd/user, then daemon-reload and enable --now; uninstall and status', async () => {
  const { ws, root } = await ampersandWorkspace();
  const home = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-home-'));
  try {
    const env = { HOME: home, PATH: process.env.PATH };
    const settings = await loadSettings(root, env);
    const { runner, calls } = recorder();
    await installService(settings, { kind: 'linux', env, runner, node: '/usr/bin/node', bin: '/opt/meta agent/bin/meta-agent.js' });
    const unit = path.join(home, '.config', 'systemd', 'user', 'meta-agent.service');
    assert.is(unitPath(env), unit);
    assert.equal(calls, [
      ['systemctl', '--user', 'daemon-reload'],
      ['systemctl', '--user', 'enable', '--now', 'meta-agent.service'],
    ]);
    const text = await fs.readFile(unit, 'utf8');
    assert.match(text, /^Restart=on-failure$/m);
    assert.match(text, /^WantedBy=default\.target$/m);
    assert.match(text, `ExecStart=/usr/bin/node --max-semi-space-size=2 --max-old-space-size=128 "/opt/meta agent/bin/meta-agent.js" watch --root "${root}"`);
    assert.match(text, `WorkingDirectory="${root}"`);
    assert.match(printService(settings, { kind: 'linux', env }), /systemctl --user enable --now meta-agent\.service/);

    const { runner: r2, calls: c2 } = recorder({
      'systemctl --user status --no-pager meta-agent.service': {
        exitCode: 3,
        stdout: '○ meta-agent.service - meta-agent folder queue\n     Active: inactive (dead)',
      },
    });
    const status = await serviceStatus(settings, { kind: 'linux', runner: r2 });
    assert.ok(status.installed, 'stopped is installed');
    assert.match(status.text, 'inactive (dead)');
    assert.equal(c2, [['systemctl', '--user', 'status', '--no-pager', 'meta-agent.service']]);
    const { runner: r3, calls: c3 } = recorder();
    await uninstallService(settings, { kind: 'linux', env, runner: r3 });
    assert.equal(c3, [
      ['systemctl', '--user', 'disable', '--now', 'meta-agent.service'],
      ['systemctl', '--user', 'daemon-reload'],
    ]);
    assert.not.ok(await fs.stat(unit).catch(() => null));
  } finally {
    await ws.cleanup();
    await fs.rm(home, { recursive: true, force: true });
  }
});

test('schedule --print windows: commands only (no REM inside XML), and each job a well-formed UTF-16 task file with its trigger', async () => {
  const { ws, root } = await ampersandWorkspace(
    'supervisor:\n  timezone: Europe/Kyiv\n  schedule:\n    - { cron: "30 2 * * *", goal: daily_maintenance }\n    - { cron: "0 4 * * 6", goal: weekly_retrain, mode: weekly }',
  );
  try {
    const settings = await loadSettings(root, { PATH: process.env.PATH });
    const text = printSchedule(settings, 'windows');
    assert.not.match(text, /REM|<\?xml/);
    assert.match(text, /^schtasks \/Create \/F \/XML ".*meta-agent-daily_maintenance-1\.xml" \/TN "meta-agent daily_maintenance 1"$/m);
    await writeScheduleTasks(settings);
    const [daily, weekly] = scheduleTasks(settings);
    const d = parseTaskFile(await fs.readFile(daily!.file)).Task;
    assert.is(d.Triggers.CalendarTrigger.StartBoundary, '2026-01-01T02:30:00');
    assert.equal(d.Triggers.CalendarTrigger.ScheduleByDay, { DaysInterval: '1' });
    assert.is(d.Settings.ExecutionTimeLimit, 'PT0S');
    assert.is(d.Settings.DisallowStartIfOnBatteries, 'false');
    assert.match(d.Actions.Exec.Arguments, `--root "${root}"`);
    const w = parseTaskFile(await fs.readFile(weekly!.file)).Task;
    assert.ok('Saturday' in w.Triggers.CalendarTrigger.ScheduleByWeek.DaysOfWeek);
  } finally {
    await ws.cleanup();
  }
});

test('stop signals: SIGHUP and SIGBREAK (what Windows sends) are handled like SIGTERM; a real watch stops cleanly on SIGHUP', async () => {
  assert.equal([...STOP_SIGNALS].sort(), ['SIGBREAK', 'SIGHUP', 'SIGINT', 'SIGTERM']);
  const ws = await makeWorkspace({
    project: '    scope: ["**"]',
    extra: ['engine: command', 'command:\n  run: ["true"]', 'queue:\n  settle_ms: 100\n  scan_interval_ms: 200\n  shutdown_grace_s: 2'].join('\n'),
  });
  try {
    const proc = await startWatchReady(ws.root);
    signal(proc, 'SIGHUP');
    const outcome = await Promise.race([proc.exited, sleep(15_000).then(() => 'still running' as const)]);
    assert.equal(outcome, { code: 0, signal: null }, proc.output());
    assert.match(proc.output(), /stopping: no new claims/);
  } finally {
    await killAll();
    await ws.cleanup();
  }
});

test('the service starts node with its heap flags on every path: npm start, the systemd unit, the Task Scheduler task, the schedule unit; and they take effect only there', async () => {
  const pkg = JSON.parse(await fs.readFile(path.join(import.meta.dirname, '..', 'package.json'), 'utf8')) as { scripts: { start: string } };
  assert.ok(pkg.scripts.start.includes(`node ${SERVICE_NODE_FLAGS.join(' ')} bin/meta-agent.js watch`), pkg.scripts.start);
  const ws = await makeWorkspace();
  try {
    const linux = printService(ws.settings, { kind: 'linux', env: { HOME: ws.root } });
    assert.match(linux, `${SERVICE_NODE_FLAGS.join(' ')} ${BIN} watch`);
    assert.match(printService(ws.settings, { kind: 'windows', env: { USERNAME: 'me' } }), SERVICE_NODE_FLAGS.join(' '));
  } finally {
    await fs.rm(ws.root, { recursive: true, force: true });
  }
  // On node's command line the young generation is 2 MiB per semi-space and the heap capped;
  // set from inside the process (what bin/ did before) nothing changes.
  const measure =
    "const a = []; for (let i = 0; i < 2e6; i++) { a.push({ i }); if (a.length > 1e5) a.length = 0; } console.log(JSON.stringify({ young: v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size, limit: v8.getHeapStatistics().heap_size_limit }))";
  const run = async (flags: readonly string[], before = '') =>
    JSON.parse((await execa(process.execPath, [...flags, '--input-type=module', '-e', `import v8 from 'node:v8'; ${before} ${measure}`])).stdout) as {
      young: number;
      limit: number;
    };
  const flagged = await run(SERVICE_NODE_FLAGS);
  const inside = await run([], `v8.setFlagsFromString(${JSON.stringify(SERVICE_NODE_FLAGS.join(' '))});`);
  assert.ok(flagged.young <= 8 * 1024 * 1024, `young generation with the flags: ${flagged.young}`);
  assert.ok(flagged.limit < 400 * 1024 * 1024, `heap limit with the flags: ${flagged.limit}`);
  assert.ok(inside.young > 8 * 1024 * 1024, `control: set from inside, the young generation stays large (${inside.young})`);
});

test.run();
