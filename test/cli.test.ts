/** The CLI as a user runs it: a real process, a real workspace, the scripted model over HTTP. */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { finish, startFakeLlm, toolCall } from './helpers/fakeLlm.ts';
import { EXAMPLE_BOT, REPO_ROOT, readJson, repoFingerprint } from './helpers/workspace.ts';

const BIN = path.join(REPO_ROOT, 'bin', 'meta-agent.js');

async function cli(args: string[], env: Record<string, string> = {}) {
  return execa(process.execPath, [BIN, ...args], { reject: false, env: { ...env, OPENAI_API_KEY: '' }, extendEnv: true, timeout: 90_000 });
}

async function makeRepo(): Promise<{ dir: string; repo: string }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-cli-'));
  const repo = path.join(dir, 'bot');
  await fs.cp(EXAMPLE_BOT, repo, { recursive: true });
  for (const args of [
    ['init', '-q', '-b', 'main'],
    ['add', '-A'],
    ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'init'],
  ])
    await execa('git', args, { cwd: repo });
  return { dir, repo };
}

test('--help works and lists the commands', async () => {
  const r = await cli(['--help']);
  assert.is(r.exitCode, 0);
  for (const command of ['init', 'new', 'run', 'validate']) assert.match(r.stdout, command);
});

test('quick start: init, new, run --task-id against a local repo', async () => {
  const { dir, repo } = await makeRepo();
  const root = path.join(dir, 'ws');
  const llm = await startFakeLlm([
    toolCall('read_file', { path: 'bot/sizing.py' }),
    toolCall('edit_file', { path: 'bot/sizing.py', old: 'def position_size(', new: '# checked\ndef position_size(' }),
    finish('Documented the sizing entry point.'),
  ]);
  try {
    const before = await repoFingerprint(repo);
    let r = await cli(['init', '--root', root, '--repo', repo, '--project', 'mybot']);
    assert.is(r.exitCode, 0, r.stderr);
    for (const dir of [
      'inbox',
      'processing',
      'done',
      'failed',
      'reports',
      'patches/pending',
      'patches/approved',
      'patches/rejected',
      'patches/applied',
      'logs',
      'templates',
    ]) {
      assert.ok((await fs.stat(path.join(root, dir))).isDirectory(), dir);
    }
    r = await cli(['new', '--root', root, '--project', 'mybot', '--type', 'audit_code', '--objective', 'Audit sizing', '--scope', 'bot/**', '--name', 'first']);
    assert.is(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, 'inbox/first.md');
    r = await cli(['run', '--task-id', 'first', '--json'], { META_AGENT_ROOT: root, OPENAI_BASE_URL: llm.url });
    assert.is(r.exitCode, 0, r.stderr + r.stdout);
    const result = JSON.parse(r.stdout);
    assert.is(result.status, 'ok');
    assert.is(result.outcome, 'completed');
    assert.equal(result.report.changed_files, ['bot/sizing.py']);
    assert.is(result.report.source, 'cli');
    assert.is(result.report.type, 'audit_code');
    assert.ok(await fs.stat(path.join(root, 'patches', 'pending', 'first.patch')));
    assert.ok(await fs.stat(path.join(root, 'done', 'first.md')));
    const logs = await fs.readdir(path.join(root, 'logs'));
    assert.ok(
      logs.some((f) => /^meta-agent_\d{4}-\d{2}-\d{2}\.log$/.test(f)),
      'daily log file',
    );
    const log = await fs.readFile(path.join(root, 'logs', logs[0]!), 'utf8');
    assert.match(log, '"step":1');
    assert.is(await repoFingerprint(repo), before);
  } finally {
    await llm.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('exit codes: 2 for bad input or config, 1 for a task that ran and failed', async () => {
  const { dir, repo } = await makeRepo();
  const root = path.join(dir, 'ws');
  const llm = await startFakeLlm(() => ({ status: 401, body: { error: { message: 'bad key' } } }));
  try {
    assert.is((await cli(['init', '--root', root, '--repo', repo])).exitCode, 0);
    let r = await cli(['new', '--root', root, '--project', 'nope', '--objective', 'x']);
    assert.is(r.exitCode, 2);
    assert.match(r.stderr, 'field "project"');
    r = await cli(['run', '--root', root, '--task-id', 'missing']);
    assert.is(r.exitCode, 2);
    assert.match(r.stderr, 'no task "missing"');
    r = await cli(['run', '--root', path.join(dir, 'nowhere'), '--task-id', 'x']);
    assert.is(r.exitCode, 2);
    assert.match(r.stderr, 'meta-agent init');
    await fs.writeFile(path.join(root, 'inbox', 'broken.md'), '---\nproject: demo\n---\n');
    r = await cli(['run', '--root', root, '--task-id', 'broken']);
    assert.is(r.exitCode, 2);
    assert.match(r.stdout, 'field "objective"');
    assert.ok(await fs.stat(path.join(root, 'failed', 'broken.md.error.md')));
    assert.is((await cli(['new', '--root', root, '--project', 'demo', '--objective', 'x', '--name', 'auth'])).exitCode, 0);
    r = await cli(['run', '--root', root, '--task-id', 'auth'], { OPENAI_BASE_URL: llm.url });
    assert.is(r.exitCode, 1, r.stdout);
    assert.match(r.stdout, '401');
  } finally {
    await llm.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('--stages runs the stages in order and never writes the stages file', async () => {
  const { dir, repo } = await makeRepo();
  const root = path.join(dir, 'ws');
  const llm = await startFakeLlm([finish('Stage one reviewed.'), finish('Stage two reviewed.')]);
  try {
    assert.is((await cli(['init', '--root', root, '--repo', repo])).exitCode, 0);
    const taskFile = path.join(dir, 'S1_ai_scalper_bot.md');
    await fs.writeFile(taskFile, 'PROJECT: demo\r\nOBJECTIVE: Review the strategy\r\nSCOPE:\r\nTASKS:\r\n- read bot/strategy.py\r\nOUTPUT: report\r\n');
    const stages = path.join(dir, 'stages.yaml');
    const stagesText = `stages:\n  - S1_ai_scalper_bot.md\n  - { project: demo, objective: "Review sizing", id: S2_sizing }\n`;
    await fs.writeFile(stages, stagesText);
    const r = await cli(['run', '--root', root, '--stages', stages, '--json'], { OPENAI_BASE_URL: llm.url });
    assert.is(r.exitCode, 0, r.stderr + r.stdout);
    const results = JSON.parse(r.stdout);
    assert.equal(
      results.map((x: any) => x.task_id),
      ['S1_ai_scalper_bot', 'S2_sizing'],
    );
    assert.equal(
      results.map((x: any) => x.outcome),
      ['no_changes', 'no_changes'],
    );
    assert.is(await fs.readFile(stages, 'utf8'), stagesText);
    // A task file outside inbox/ is read and left where it is.
    assert.ok(await fs.stat(taskFile));
    assert.is((await readJson(path.join(root, 'reports', 'S1_ai_scalper_bot.json'))).summary, 'Stage one reviewed.');
  } finally {
    await llm.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test.run();
