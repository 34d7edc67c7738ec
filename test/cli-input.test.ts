/**
 * The CLI meets an operator's mistakes: `validate` on several files (missing, .txt, unknown
 * project, empty), `--version`, `--root` in every help, `init --repo` on a folder that is not
 * there or on a real repository, `run --task` on a file that is not there. Real processes.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { loadSettings } from '../src/workspace/config.ts';
import { EXAMPLE_BOT, makeWorkspace, readJson, REPO_ROOT } from './helpers/workspace.ts';

const BIN = path.join(REPO_ROOT, 'bin', 'meta-agent.js');

function cli(args: string[]) {
  return execa(process.execPath, [BIN, ...args], { reject: false, env: { OPENAI_API_KEY: '', META_AGENT_ROOT: '' }, extendEnv: true, timeout: 90_000 });
}

async function gitRepo(dir: string, branch: string): Promise<void> {
  for (const args of [
    ['init', '-q', '-b', branch],
    ['add', '-A'],
    ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'init'],
  ])
    await execa('git', args, { cwd: dir });
}

test('validate checks every file against the workspace: one line each, exit 2 when any fails', async () => {
  const ws = await makeWorkspace();
  try {
    const dir = path.join(ws.root, 'drafts');
    await fs.mkdir(dir);
    const file = (n: string) => path.join(dir, n);
    await fs.writeFile(file('good.md'), '---\nproject: bot\nobjective: Review sizing\nscope: ["bot/**"]\n---\n');
    await fs.writeFile(file('body.md'), '---\nproject: bot\n---\n# Review sizing\n\nLook at bot/sizing.py.\n');
    await fs.writeFile(file('unknown.md'), '---\nproject: nope\nobjective: Review\n---\n');
    await fs.writeFile(file('notes.txt'), '---\nproject: bot\nobjective: Review\n---\n');
    await fs.writeFile(file('empty.md'), '');
    const files = ['good.md', 'missing.md', 'unknown.md', 'notes.txt', 'empty.md', 'body.md'].map(file);
    const r = await cli(['validate', '--root', ws.root, ...files]);
    assert.is(r.exitCode, 2, r.stdout + r.stderr);
    const lines = [...r.stdout.split('\n'), ...r.stderr.split('\n')].filter(Boolean);
    assert.is(lines.length, files.length, lines.join('\n'));
    const line = (n: string) => lines.find((l) => l.startsWith(`${file(n)}: `)) ?? '';
    assert.match(line('good.md'), /: ok \(id good, project bot/);
    assert.match(line('body.md'), /: ok \(id body, project bot/);
    assert.match(line('missing.md'), /: no such file$/);
    assert.match(line('unknown.md'), /field "project": unknown project "nope"; configured projects: bot/);
    assert.match(line('notes.txt'), /not a \.md file: "watch" leaves it in inbox\/ and never runs it/);
    assert.match(line('empty.md'), /the file is empty/);

    // Control: only good files, exit 0.
    const ok = await cli(['validate', '--root', ws.root, file('good.md'), file('body.md')]);
    assert.is(ok.exitCode, 0, ok.stderr);
  } finally {
    await ws.cleanup();
  }
});

test("--version prints the package version; --root is in every subcommand's help", async () => {
  const pkg = await readJson(path.join(REPO_ROOT, 'package.json'));
  const v = await cli(['--version']);
  assert.is(v.exitCode, 0);
  assert.is(v.stdout.trim(), pkg.version);
  for (const command of ['init', 'new', 'run', 'validate', 'status', 'retry', 'watch', 'approve']) {
    const h = await cli([command, '--help']);
    assert.is(h.exitCode, 0, `${command}: ${h.stderr}`);
    assert.match(h.stdout, '--root <dir>', command);
  }
});

test("init --repo: a missing folder is an error; a Python repo gets its branch and pytest; another gets placeholders; never the example bot's values", async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-init-'));
  try {
    const missing = await cli(['init', '--root', path.join(dir, 'ws0'), '--repo', path.join(dir, 'does', 'not', 'exist')]);
    assert.is(missing.exitCode, 2);
    assert.match(missing.stderr, 'no such folder');
    assert.not.match(missing.stdout, 'workspace ready');
    assert.not.ok(await fs.stat(path.join(dir, 'ws0')).catch(() => null), 'nothing was created');

    const plain = path.join(dir, 'plain');
    await fs.mkdir(plain);
    const notGit = await cli(['init', '--root', path.join(dir, 'ws0'), '--repo', plain]);
    assert.is(notGit.exitCode, 2);
    assert.match(notGit.stderr, 'is not a git repository');

    // A Python project on branch "trunk".
    const py = path.join(dir, 'pybot');
    await fs.cp(EXAMPLE_BOT, py, { recursive: true });
    await gitRepo(py, 'trunk');
    const wsPy = path.join(dir, 'ws-py');
    let r = await cli(['init', '--root', wsPy, '--repo', py, '--project', 'pybot']);
    assert.is(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, 'branch trunk');
    const yaml = await fs.readFile(path.join(wsPy, 'meta-agent.yaml'), 'utf8');
    const settings = await loadSettings(wsPy, { PATH: process.env.PATH });
    const project = settings.projects.pybot!;
    assert.is(project.repoPath, py);
    assert.is(project.branch, 'trunk');
    assert.is(project.test?.command, `${process.platform === 'win32' ? 'python' : 'python3'} -m pytest -q`);
    assert.is(project.dry_run, null);
    assert.equal(project.risk, []);
    assert.is(project.trades, undefined);
    assert.is(project.retrain, null);
    assert.is(settings.config.supervisor.timezone, Intl.DateTimeFormat().resolvedOptions().timeZone);
    for (const demo of ['bot.main --dry-run', 'bot/execution', 'trades.csv', 'scripts/train.py', 'Europe/Kyiv']) {
      if (demo === 'Europe/Kyiv' && settings.config.supervisor.timezone === demo) continue;
      assert.not.match(yaml, demo, `no "${demo}" in a config for another repo`);
    }

    // Not a Python project: placeholders that load, and say what to fill in.
    const other = path.join(dir, 'webapp');
    await fs.mkdir(other);
    await fs.writeFile(path.join(other, 'index.js'), 'console.log(1);\n');
    await gitRepo(other, 'main');
    const wsOther = path.join(dir, 'ws-other');
    r = await cli(['init', '--root', wsOther, '--repo', other]);
    assert.is(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, 'test: none detected');
    const otherSettings = await loadSettings(wsOther, { PATH: process.env.PATH });
    assert.is(otherSettings.projects.demo!.test, null);
    assert.is(otherSettings.projects.demo!.branch, 'main');
    assert.match(await fs.readFile(path.join(wsOther, 'meta-agent.yaml'), 'utf8'), /test: null +# TODO/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('run --task with a file that is not there: a clear input error, no report', async () => {
  const ws = await makeWorkspace();
  try {
    const r = await cli(['run', '--root', ws.root, '--task', path.join(ws.root, 'nonexistent', 'x.md')]);
    assert.is(r.exitCode, 2);
    assert.match(r.stderr, 'no such file');
    assert.equal(
      (await fs.readdir(ws.settings.layout.reports)).filter((n) => n.endsWith('.json') || n.endsWith('.md')),
      [],
    );
  } finally {
    await ws.cleanup();
  }
});

test('init on Windows writes sandbox: none with what it means (auto could never start there); on Linux auto', async () => {
  const { initWorkspace } = await import('../src/workspace/init.ts');
  const { sandboxStatus } = await import('../src/safety/sandbox.ts');
  const dirs: string[] = [];
  const real = Object.getOwnPropertyDescriptor(process, 'platform')!;
  try {
    for (const platform of ['win32', 'linux'] as const) {
      const root = await fs.mkdtemp(path.join(os.tmpdir(), `meta-agent-init-${platform}-`));
      dirs.push(root);
      Object.defineProperty(process, 'platform', { ...real, value: platform });
      try {
        await initWorkspace(root);
      } finally {
        Object.defineProperty(process, 'platform', real);
      }
      const text = await fs.readFile(path.join(root, 'meta-agent.yaml'), 'utf8');
      const settings = await loadSettings(root, {});
      const status = await sandboxStatus(settings, { platform });
      if (platform === 'win32') {
        assert.is(settings.config.sandbox, 'none');
        assert.match(text, /There is no sandbox on Windows: checks .* run as your\n# user, with the network and your files/);
        assert.is(status.error, null, 'a Windows workspace can start');
        assert.match(status.warning ?? '', /unsandboxed/);
      } else {
        assert.is(settings.config.sandbox, 'auto');
        assert.is(status.warning, null);
      }
    }
  } finally {
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
  }
});

test.run();
