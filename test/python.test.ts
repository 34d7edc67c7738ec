/**
 * Finding Python (safety/python.ts) the way a Windows machine needs it: python3, else
 * python, else `py -3`, else the repository's .venv, each one run with --version (a
 * Windows Store alias is on PATH but only prints "Python was not found"). Fake PATHs of
 * real scripts; used by init (the test command it writes, the demo config) and the doctor.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { findPython, isPythonProgram } from '../src/safety/python.ts';
import { initWorkspace, inspectRepo } from '../src/workspace/init.ts';
import { loadSettings } from '../src/workspace/config.ts';
import { diagnose } from '../src/service/doctor.ts';
import { makeWorkspace } from './helpers/workspace.ts';

const STORE_ALIAS =
  '#!/bin/sh\necho "Python was not found; run without arguments to install from the Microsoft Store, or disable this shortcut from Settings > Manage App Execution Aliases." >&2\nexit 9009\n';
const works = (version: string) => `#!/bin/sh\necho "Python ${version}"\n`;
const PY_LAUNCHER = '#!/bin/sh\n[ "$1" = "-3" ] || { echo "py: expected -3 first" >&2; exit 2; }\necho "Python 3.12.1"\n';
const PYTHON2 = '#!/bin/sh\necho "Python 2.7.18" >&2\n';

/** A folder of executable scripts: the whole PATH of a test. */
async function fakePath(scripts: Record<string, string>): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-pypath-'));
  for (const [name, text] of Object.entries(scripts)) await fs.writeFile(path.join(dir, name), text, { mode: 0o755 });
  return dir;
}

const dirs: string[] = [];
async function tempDir(prefix: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}
test.after(async () => {
  for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
});

test('python3 first when it runs (the positive control); a Store alias python3 is skipped for python; Python 2 is skipped for py -3', async () => {
  const both = await fakePath({ python3: works('3.11.4'), python: works('3.10.0') });
  const alias = await fakePath({ python3: STORE_ALIAS, python: works('3.11.4') });
  const launcher = await fakePath({ python3: STORE_ALIAS, python: PYTHON2, py: PY_LAUNCHER });
  dirs.push(both, alias, launcher);
  assert.equal(await findPython({ env: { PATH: both } }), { file: path.join(both, 'python3'), pre: [], command: 'python3', version: 'Python 3.11.4' });
  assert.is((await findPython({ env: { PATH: alias } }))?.command, 'python');
  const py = await findPython({ env: { PATH: launcher } });
  assert.equal([py?.command, py?.pre, py?.version], ['py -3', ['-3'], 'Python 3.12.1']);
});

test("the repository's venv last: .venv/bin/python, and .venv/Scripts/python.exe on Windows; nothing that runs: null", async () => {
  const empty = await fakePath({ python3: STORE_ALIAS, python: STORE_ALIAS });
  dirs.push(empty);
  const repo = await tempDir('meta-agent-pyrepo-');
  assert.is(await findPython({ env: { PATH: empty }, repo }), null);
  await fs.mkdir(path.join(repo, '.venv', 'bin'), { recursive: true });
  await fs.writeFile(path.join(repo, '.venv', 'bin', 'python'), works('3.12.2'), { mode: 0o755 });
  assert.is((await findPython({ env: { PATH: empty }, repo }))?.command, '.venv/bin/python');
  // Windows' venv layout (a script named python.exe stands in for the real one).
  const winRepo = await tempDir('meta-agent-pyrepo-win-');
  await fs.mkdir(path.join(winRepo, '.venv', 'Scripts'), { recursive: true });
  await fs.writeFile(path.join(winRepo, '.venv', 'Scripts', 'python.exe'), works('3.12.2'), { mode: 0o755 });
  const win = await findPython({ env: { PATH: empty, PATHEXT: '.EXE' }, repo: winRepo, platform: 'win32' });
  assert.equal([win?.command, win?.file], ['.venv/Scripts/python.exe', path.join(winRepo, '.venv', 'Scripts', 'python.exe')]);
  assert.ok(isPythonProgram('python3') && isPythonProgram('py') && isPythonProgram('.venv\\Scripts\\python.exe') && !isPythonProgram('pytest'));
});

async function gitRepo(dir: string): Promise<void> {
  await fs.writeFile(path.join(dir, 'pyproject.toml'), '[project]\nname = "x"\n');
  await fs.mkdir(path.join(dir, 'tests'), { recursive: true });
  await fs.writeFile(path.join(dir, 'tests', 'test_x.py'), 'def test_x():\n    assert True\n');
  await fs.writeFile(path.join(dir, '.gitignore'), '.venv/\n');
  for (const args of [
    ['init', '-q', '-b', 'main'],
    ['add', '-A'],
    ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-m', 'init'],
  ])
    await execa('git', args, { cwd: dir });
}

test('init writes the Python that runs here: python (python3 is a Store alias), the venv (and links it), and the demo config names py -3', async () => {
  const alias = await fakePath({ python3: STORE_ALIAS, python: works('3.11.4') });
  const launcherOnly = await fakePath({ python3: STORE_ALIAS, py: PY_LAUNCHER });
  const nothing = await fakePath({ python3: STORE_ALIAS });
  dirs.push(alias, launcherOnly, nothing);
  const repo = await tempDir('meta-agent-pyinit-');
  await gitRepo(repo);
  const facts = await inspectRepo(repo, 'linux', { PATH: alias });
  assert.is(facts.test, 'python -m pytest -q');
  assert.match(facts.testReason ?? '', /Python 3\.11\.4 as "python"/);

  await fs.mkdir(path.join(repo, '.venv', 'bin'), { recursive: true });
  await fs.writeFile(path.join(repo, '.venv', 'bin', 'python'), works('3.12.2'), { mode: 0o755 });
  const root = await tempDir('meta-agent-pyinit-ws-');
  await initWorkspace(root, { repo, project: 'bot', env: { PATH: nothing }, platform: 'linux' });
  const settings = await loadSettings(root, { PATH: nothing });
  assert.is(settings.projects.bot!.test?.command, '.venv/bin/python -m pytest -q');
  assert.equal(settings.projects.bot!.link, ['.venv']);

  const demoRoot = await tempDir('meta-agent-pyinit-demo-');
  await initWorkspace(demoRoot, { env: { PATH: launcherOnly }, platform: 'linux' });
  const demo = (await loadSettings(demoRoot, { PATH: launcherOnly })).projects.demo!;
  assert.equal(
    [demo.test?.argv.slice(0, 4), demo.dry_run?.argv.slice(0, 2), demo.retrain?.train.argv.slice(0, 2)],
    [
      ['py', '-3', '-m', 'pytest'],
      ['py', '-3'],
      ['py', '-3'],
    ],
  );
});

test("the doctor runs a check's Python: a Store alias python3 is an error that names the Python that works; a working one is no finding", async () => {
  const ws = await makeWorkspace();
  const alias = await fakePath({ python3: STORE_ALIAS, py: PY_LAUNCHER });
  const good = await fakePath({ python3: works('3.11.4') });
  dirs.push(alias, good);
  try {
    const probes = {
      platform: 'linux' as const,
      freeBytes: async () => 50 * 1024 ** 3,
      oneVolume: async () => undefined,
      sandbox: async () => ({ mode: 'bwrap' as const, error: null, warning: null }),
    };
    const fine = await diagnose(await loadSettings(ws.root, { PATH: good, HOME: process.env.HOME }), probes);
    assert.equal(
      fine.findings.filter((f) => f.field.startsWith('projects.')),
      [],
      'positive control: a python3 that runs',
    );
    const bad = await diagnose(await loadSettings(ws.root, { PATH: alias, HOME: process.env.HOME }), probes);
    const python = bad.findings.filter((f) => f.field.startsWith('projects.'));
    assert.equal(
      python.map((f) => `${f.level} ${f.field}`),
      ['error projects.bot.test', 'error projects.bot.dry_run'],
    );
    assert.match(
      python[0]!.message,
      /"python3" of "python3 -m pytest.*is there but .*does not answer "Python 3".*Store alias.*this machine's Python 3 is "py -3" \(Python 3\.12\.1\)/,
    );
  } finally {
    await ws.cleanup();
  }
});

test.run();
