/**
 * `meta-agent doctor`: each bad configuration is named in one line (project and field, with
 * a fix); a good one has no finding. `watch` refuses to start on errors (exit 2) and starts
 * with warnings printed. Machine facts (bubblewrap, free space, volumes) are injected.
 */
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeWorkspace, type TestWorkspace } from './helpers/workspace.ts';
import { BIN, killAll, signal, startWatch, waitFor } from './helpers/procs.ts';
import { startFakeLlm, type FakeLlm } from './helpers/fakeLlm.ts';
import { diagnose, runDoctor, type DoctorProbes, type DoctorReport } from '../src/service/doctor.ts';
import { loadSettings } from '../src/workspace/config.ts';
import { findProgram, sandboxStatus } from '../src/safety/sandbox.ts';

const env = { PATH: process.env.PATH, HOME: process.env.HOME };
/** A healthy machine: bubblewrap runs, plenty of space, one volume. */
const healthy: Partial<DoctorProbes> = { platform: 'linux', freeBytes: async () => 50 * 1024 ** 3, oneVolume: async () => undefined };

let llm: FakeLlm;
test.before(async () => {
  llm = await startFakeLlm(() => ({ body: { object: 'list', data: [{ id: 'scripted-model', object: 'model' }] } }));
});
test.after(async () => {
  await killAll();
  await llm.close();
});

async function workspace(project?: string, extra?: string): Promise<TestWorkspace> {
  return makeWorkspace({ llmUrl: llm.url, ...(project ? { project } : {}), ...(extra ? { extra } : {}) });
}

async function setProject(ws: TestWorkspace, yamlLines: string): Promise<void> {
  const yaml = await fs.readFile(ws.settings.layout.config, 'utf8');
  await fs.writeFile(ws.settings.layout.config, yaml.replace(/ {4}repo: .*\n( {4}branch: .*\n)?/, `${yamlLines}\n`));
}

/** Asserts exactly one finding, at `level`, on `field`, one line, matching `text`. */
function theOneFinding(report: DoctorReport, level: 'error' | 'warning', field: string, text: RegExp): void {
  assert.is(report.findings.length, 1, JSON.stringify(report.findings, null, 2));
  const [f] = report.findings;
  assert.is(f!.level, level);
  assert.is(f!.field, field);
  assert.match(f!.message, text);
  assert.not.match(f!.message, /\n/, 'one line');
  assert.is(report.ok, level !== 'error');
}

async function doctorOn(ws: TestWorkspace, probes: Partial<DoctorProbes> = {}, environment: Record<string, string | undefined> = env): Promise<DoctorReport> {
  return diagnose(await loadSettings(ws.root, environment), { ...healthy, ...probes });
}

test('a good workspace: no finding, ok (the positive control for everything below)', async () => {
  const ws = await workspace();
  try {
    const report = await doctorOn(ws);
    assert.equal(report.findings, []);
    assert.ok(report.ok);
    assert.ok(
      llm.requests.some((r) => r.path === '/v1/models'),
      'the endpoint was asked',
    );
  } finally {
    await ws.cleanup();
  }
});

test('no model configured (no key, no base_url): an error on llm naming what to set', async () => {
  const ws = await makeWorkspace();
  try {
    theOneFinding(await doctorOn(ws), 'error', 'llm', /OPENAI_API_KEY.*base_url/);
  } finally {
    await ws.cleanup();
  }
});

test("a missing repo, a repo that is not git, a missing branch, an empty repo: each one error on the project's field", async () => {
  const ws = await workspace();
  try {
    const nowhere = path.join(ws.root, 'no-such-repo');
    await setProject(ws, `    repo: ${JSON.stringify(nowhere)}`);
    theOneFinding(await doctorOn(ws), 'error', 'projects.bot.repo', /no-such-repo does not exist/);

    const plain = path.join(ws.root, 'plain-folder');
    await fs.mkdir(plain);
    await setProject(ws, `    repo: ${JSON.stringify(plain)}`);
    theOneFinding(await doctorOn(ws), 'error', 'projects.bot.repo', /not a git repository/);

    await setProject(ws, `    repo: ${JSON.stringify(ws.repo)}\n    branch: nope`);
    theOneFinding(await doctorOn(ws), 'error', 'projects.bot.branch', /branch "nope" does not exist.*fix "branch"/);

    const empty = path.join(ws.root, 'empty-repo');
    await fs.mkdir(empty);
    await execa('git', ['init', '--quiet', '--initial-branch', 'main'], { cwd: empty });
    await setProject(ws, `    repo: ${JSON.stringify(empty)}`);
    theOneFinding(await doctorOn(ws), 'error', 'projects.bot.branch', /empty-repo has no commit yet; commit something first/);
  } finally {
    await ws.cleanup();
  }
});

test('a test or dry-run program that does not exist: an error naming the program and the field', async () => {
  const ws = await workspace('    scope: ["**"]\n    test: "no-such-pytest-xyz -q"\n    dry_run: "python3 -m bot.main --dry-run"');
  try {
    theOneFinding(await doctorOn(ws), 'error', 'projects.bot.test', /"no-such-pytest-xyz"/);
  } finally {
    await ws.cleanup();
  }
  const dry = await workspace('    scope: ["**"]\n    test: "python3 -m pytest -q"\n    dry_run: "./run-bot.sh --dry-run"');
  try {
    theOneFinding(await doctorOn(dry), 'error', 'projects.bot.dry_run', /"\.\/run-bot\.sh".*run-bot\.sh/);
  } finally {
    await dry.cleanup();
  }
});

test('findProgram: PATH without a shell, paths relative to cwd, PATHEXT on Windows', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-which-'));
  try {
    await fs.writeFile(path.join(dir, 'tool'), '#!/bin/sh\n', { mode: 0o755 });
    await fs.writeFile(path.join(dir, 'notexec'), '', { mode: 0o644 });
    await fs.writeFile(path.join(dir, 'pytest.EXE'), '');
    const linuxPath = `/nonexistent:${dir}`;
    assert.is(await findProgram('tool', dir, linuxPath, '', 'linux'), path.join(dir, 'tool'));
    assert.is(await findProgram('./tool', dir, '', '', 'linux'), path.join(dir, 'tool'));
    assert.is(await findProgram('notexec', dir, linuxPath, '', 'linux'), null, 'not executable');
    assert.is(await findProgram('missing', dir, linuxPath, '', 'linux'), null);
    const windowsPath = `C:\\nowhere;"${dir}"`;
    assert.ok(await findProgram('pytest', dir, windowsPath, '.COM;.EXE', 'win32'), 'pytest found as pytest.EXE through PATHEXT');
    assert.is(await findProgram('pytest', dir, windowsPath, '.BAT', 'win32'), null);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test("a check's program is looked up on the PATH the check gets: its env.PATH override counts", async () => {
  const tools = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-checkpath-'));
  await fs.writeFile(path.join(tools, 'own-pytest-xyz'), '#!/bin/sh\n', { mode: 0o755 });
  const withOverride = await workspace(
    `    scope: ["**"]\n    test: {command: "own-pytest-xyz -q", env: {PATH: ${JSON.stringify(tools)}}}\n    dry_run: "python3 -m bot.main --dry-run"`,
  );
  const without = await workspace('    scope: ["**"]\n    test: "own-pytest-xyz -q"\n    dry_run: "python3 -m bot.main --dry-run"');
  try {
    assert.equal((await doctorOn(withOverride)).findings, [], "found on the check's own PATH");
    theOneFinding(await doctorOn(without), 'error', 'projects.bot.test', /"own-pytest-xyz"/);
  } finally {
    await withOverride.cleanup();
    await without.cleanup();
    await fs.rm(tools, { recursive: true, force: true });
  }
});

test('no sandbox available with sandbox: auto (or bwrap, or not Linux): an error with the install command; sandbox: none: a loud warning', async () => {
  const ws = await workspace();
  try {
    // The real probe, searching a PATH without bwrap (a fresh machine).
    const noBwrap: DoctorProbes['sandbox'] = (s, platform) => sandboxStatus({ ...s, env: { ...s.env, PATH: '/nonexistent' } }, { platform });
    theOneFinding(await doctorOn(ws, { sandbox: noBwrap }), 'error', 'sandbox', /apt-get install bubblewrap.*sandbox: none/);
    theOneFinding(await doctorOn(ws, { platform: 'win32' }), 'error', 'sandbox', /sandbox: none/);
    await fs.appendFile(ws.settings.layout.config, 'sandbox: none\n');
    theOneFinding(await doctorOn(ws, { sandbox: noBwrap }), 'warning', 'sandbox', /run unsandboxed, with the network and every file this user can read/);
  } finally {
    await ws.cleanup();
  }
});

test("tools.shell: unsandboxed (the agent's run_command without a sandbox): a warning at start, like sandbox: none; sandboxed and off: none", async () => {
  const ws = await workspace();
  try {
    assert.equal((await doctorOn(ws)).findings, [], 'positive control: the default (sandboxed) is no finding');
    await fs.appendFile(ws.settings.layout.config, 'tools: {shell: unsandboxed}\n');
    theOneFinding(await doctorOn(ws), 'warning', 'tools.shell', /run_command runs without a sandbox.*every report says so/);
    // On Windows: the checks' sandbox refuses (fail closed), and run_command's warning stands beside it.
    const win = await doctorOn(ws, { platform: 'win32' });
    assert.equal(
      win.findings.map((f) => `${f.level} ${f.field}`),
      ['error sandbox', 'warning tools.shell'],
    );
  } finally {
    await ws.cleanup();
  }
});

test('the real bubblewrap probe without bwrap on PATH: an error', async () => {
  const ws = await workspace();
  try {
    // A fresh process, so the probe is not the cached one of this test process.
    const script = `import { runDoctor } from ${JSON.stringify(path.resolve('src/service/doctor.ts'))};
const r = await runDoctor(process.argv[2], { PATH: process.env.PATH, HOME: process.env.HOME });
console.log(JSON.stringify(r.findings.filter((f) => f.field === 'sandbox')));`;
    const file = path.join(ws.root, 'probe.mts');
    await fs.writeFile(file, script);
    // A PATH with node and nothing else (no bwrap), like a fresh machine.
    const bin = path.join(ws.root, 'bin');
    await fs.mkdir(bin);
    await fs.symlink(process.execPath, path.join(bin, 'node'));
    const result = await execa(process.execPath, ['--import', 'tsx', file, ws.root], { env: { PATH: bin, HOME: process.env.HOME }, extendEnv: false });
    const findings = JSON.parse(result.stdout) as Array<{ level: string; message: string }>;
    assert.is(findings.length, 1, result.stdout);
    assert.match(findings[0]!.message, /apt-get install bubblewrap/);
  } finally {
    await ws.cleanup();
  }
});

test('the model endpoint does not answer: a warning, not an error', async () => {
  // A port that was free a moment ago: connection refused, on loopback only.
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  const ws = await makeWorkspace({ llmUrl: `http://127.0.0.1:${port}/v1` });
  try {
    theOneFinding(await doctorOn(ws), 'warning', 'llm.base_url', new RegExp(`127\\.0\\.0\\.1:${port}/v1 does not answer`));
  } finally {
    await ws.cleanup();
  }
});

test('low disk (injected): a warning under 1 GB, an error under 100 MB', async () => {
  const ws = await workspace();
  try {
    theOneFinding(await doctorOn(ws, { freeBytes: async () => 500 * 1024 ** 2 }), 'warning', 'disk', /only 500 MB free/);
    theOneFinding(await doctorOn(ws, { freeBytes: async () => 50 * 1024 ** 2 }), 'error', 'disk', /only 50 MB free/);
  } finally {
    await ws.cleanup();
  }
});

test('queue folders on two volumes (injected): an error naming the folders', async () => {
  const ws = await workspace();
  try {
    let asked: string[] = [];
    const report = await doctorOn(ws, {
      oneVolume: async (dirs) => {
        asked = dirs;
        throw new Error(`${dirs[1]} is on a different volume than ${dirs[0]}`);
      },
    });
    theOneFinding(report, 'error', 'root', /different volume.*one drive/);
    assert.ok(asked.includes(ws.settings.layout.inbox) && asked.includes(ws.settings.layout.processing), asked.join(', '));
  } finally {
    await ws.cleanup();
  }
});

test('an invalid config: one line naming the file and the field', async () => {
  const ws = await workspace();
  try {
    await fs.appendFile(ws.settings.layout.config, 'limits:\n  max_steps: many\n');
    const report = await runDoctor(ws.root, env, healthy);
    theOneFinding(report, 'error', 'config', /meta-agent\.yaml.*limits\.max_steps/);
  } finally {
    await ws.cleanup();
  }
});

test('`meta-agent doctor --json` and the exit code', async () => {
  const ws = await workspace('    scope: ["**"]\n    test: "no-such-pytest-xyz -q"');
  try {
    const bad = await execa(process.execPath, [BIN, 'doctor', '--json', '--root', ws.root], { reject: false });
    assert.is(bad.exitCode, 2, bad.stderr);
    const report = JSON.parse(bad.stdout) as DoctorReport;
    assert.ok(report.findings.some((f) => f.field === 'projects.bot.test' && f.level === 'error'));
    const text = await execa(process.execPath, [BIN, 'doctor', '--root', ws.root], { reject: false });
    assert.match(text.stdout, /^error: projects\.bot\.test: the program "no-such-pytest-xyz"/m);
  } finally {
    await ws.cleanup();
  }
});

test('`watch` refuses to start on an error (exit 2, the finding printed), and starts with a warning printed', async () => {
  const ws = await workspace('    scope: ["**"]\n    test: "no-such-pytest-xyz -q"');
  try {
    const refused = await execa(process.execPath, [BIN, 'watch', '--root', ws.root], { reject: false, all: true, timeout: 60_000 });
    assert.is(refused.exitCode, 2, refused.all);
    assert.match(refused.all!, /error: projects\.bot\.test: the program "no-such-pytest-xyz"/);
    assert.match(refused.all!, /not starting/);
    assert.not.match(refused.all!, /watching /);

    // Fixed, but unsandboxed: a warning, and the service runs.
    const yaml = await fs.readFile(ws.settings.layout.config, 'utf8');
    await fs.writeFile(ws.settings.layout.config, `${yaml.replace('no-such-pytest-xyz -q', 'python3 -m pytest -q')}sandbox: none\n`);
    const proc = startWatch(ws.root);
    await waitFor(
      'watching',
      () => proc.output().includes('watching ') || !proc.alive(),
      30_000,
      () => proc.output(),
    );
    assert.ok(proc.alive(), proc.output());
    assert.match(proc.output(), /warning: sandbox: .*unsandboxed/);
    assert.match(proc.output(), /doctor: ok with 1 warning/);
    signal(proc, 'SIGTERM');
    assert.equal(await proc.exited, { code: 0, signal: null });
  } finally {
    await killAll();
    await ws.cleanup();
  }
});

test.run();
