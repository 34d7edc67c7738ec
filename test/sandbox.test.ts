/**
 * Checks run code an LLM wrote: they must not see the service's secrets (OPENAI_API_KEY,
 * exchange keys), and under bubblewrap they get no network and cannot write outside their
 * worktree. Probes are Python scripts committed into the target repo (checks never use a shell).
 */
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { runTask } from '../src/run/runTask.ts';
import { withCheckCopy } from '../src/repo/checks.ts';
import { openWorktree } from '../src/repo/workspaceRepo.ts';
import { ReportSchema, type Report } from '../src/contract/report.ts';
import { finish, startFakeLlm, toolCall } from './helpers/fakeLlm.ts';
import { startCounter } from './helpers/net.ts';
import { makeWorkspace, readJson, repoFingerprint, worktreeCount, writeTask, type TestWorkspace } from './helpers/workspace.ts';
import { assertBwrapInstalled, AUTO_SANDBOX, SANDBOX_SUPPORTED, sandboxTest } from './helpers/sandbox.ts';

const OPENAI_KEY = 'sk-test-openai-0123456789abcdef';
const EXCHANGE_KEY = 'exch-secret-0123456789';
const SERVICE_ENV = {
  PATH: process.env.PATH,
  HOME: process.env.HOME,
  OPENAI_API_KEY: OPENAI_KEY,
  EXCHANGE_API_KEY: EXCHANGE_KEY,
  BOT_ALLOWED: 'yes',
};

const TASK = `---
project: bot
type: audit_code
objective: Note the sizing contract
scope: ["bot/sizing.py"]
---
A one-line comment is enough.
`;

/** Prints every variable twice: plainly, and hex-encoded so the report's redaction cannot hide a leak. */
const ENVDUMP_PY = `import os
for name in sorted(os.environ):
    value = os.environ[name]
    print("ENV %s=%s" % (name, value))
    print("HEX %s=%s" % (name, value.encode().hex()))
print("ENVDUMP_END")
`;

/** Network to the host, a write into the real repo and the workspace, a write in its own cwd. */
const PROBE_PY = `import json, os, socket
cfg = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe.json")))
try:
    s = socket.create_connection(("127.0.0.1", cfg["port"]), timeout=2)
    s.sendall(b"hello from the check\\n")
    s.close()
    print("NET_OK")
except OSError as e:
    print("NET_BLOCKED %s" % type(e).__name__)
# The real repo: the probe removes what it wrote, so the repo stays clean without a sandbox.
# The workspace's reports/: the file stays, so the test can look for it on the real disk.
for label, folder, keep in (("WRITE", cfg["repo"], False), ("WS_WRITE", os.path.join(cfg["workspace"], "reports"), True)):
    target = os.path.join(folder, "escaped-by-check-%d.txt" % os.getpid())
    try:
        with open(target, "w") as f:
            f.write("escaped")
        if not keep:
            os.remove(target)
        print("%s_OK" % label)
    except OSError as e:
        print("%s_BLOCKED %s" % (label, type(e).__name__))
try:
    with open("probe-local.tmp", "w") as f:
        f.write("inside")
    os.remove("probe-local.tmp")
    print("LOCAL_OK")
except OSError as e:
    print("LOCAL_FAILED %s" % e)
`;

async function commitFiles(repo: string, files: Record<string, string>): Promise<void> {
  for (const [rel, text] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(repo, rel)), { recursive: true });
    await fs.writeFile(path.join(repo, rel), text);
  }
  await execa('git', ['add', '--', ...Object.keys(files)], { cwd: repo });
  await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-m', 'probe'], { cwd: repo });
}

/** A scripted agent that makes a small in-scope edit (so there is a diff and the checks run). */
function editThenFinish() {
  return [
    toolCall('edit_file', { path: 'bot/sizing.py', old: 'def position_size(', new: '# Sizing contract: see the docstring.\ndef position_size(' }),
    finish('Added a comment.', 'low'),
  ];
}

/** One run of TASK with the scripted agent; checks that the run completed and the repo is unchanged. */
async function runEdit(ws: TestWorkspace, before: string): Promise<Report> {
  const file = await writeTask(ws.settings.layout.inbox, 'sandbox-probe.md', TASK);
  const result = await runTask(file, { settings: ws.settings });
  assert.is(result.status, 'ok', result.report.error?.message);
  assert.is(result.outcome, 'completed');
  const report = ReportSchema.parse(await readJson(result.report_path));
  assert.equal(report.changed_files, ['bot/sizing.py']);
  assert.ok(report.tests, 'the test check ran');
  assert.is(await repoFingerprint(ws.repo), before);
  assert.is(await worktreeCount(ws.repo), 0);
  return report;
}

for (const sandbox of ['auto', 'none'] as const) {
  test(`checks do not see OPENAI_API_KEY or the exchange key of the service (sandbox: ${sandbox})`, async () => {
    if (sandbox === 'auto') assertBwrapInstalled();
    const llm = await startFakeLlm(editThenFinish());
    const ws = await makeWorkspace({
      llmUrl: llm.url,
      env: SERVICE_ENV,
      project: ['    scope: ["**"]', '    test: "python3 tools/envdump.py"', '    env_allow: ["BOT_ALLOWED"]'].join('\n'),
      extra: `sandbox: ${sandbox}`,
    });
    try {
      await commitFiles(ws.repo, { 'tools/envdump.py': ENVDUMP_PY });
      const before = await repoFingerprint(ws.repo);
      const report = await runEdit(ws, before);
      const tests = report.tests!;
      assert.ok(tests.passed, tests.output_tail);
      assert.is(tests.sandbox, sandbox === 'none' ? 'none' : AUTO_SANDBOX);
      const out = tests.output_tail;
      assert.match(out, /ENVDUMP_END/, 'the whole dump is in the tail');
      // Allowed and basic variables are there (and the hex form works)...
      assert.match(out, /^ENV BOT_ALLOWED=yes$/m);
      assert.match(out, /^HEX BOT_ALLOWED=796573$/m);
      assert.match(out, /^ENV PATH=\S+/m);
      // ...the secrets are not, by name or by value, and nothing had to be redacted.
      for (const name of ['OPENAI_API_KEY', 'EXCHANGE_API_KEY']) assert.not.ok(out.includes(name), `${name} reached the check`);
      for (const value of [OPENAI_KEY, EXCHANGE_KEY]) {
        assert.not.ok(out.includes(value), 'a secret value reached the check');
        assert.not.ok(out.includes(Buffer.from(value).toString('hex')), 'a secret value reached the check (hex)');
      }
      assert.not.ok(out.includes('[REDACTED]'), 'the output needed redaction: something secret was visible');
      // The model was still reached with the key (the service itself keeps it).
      assert.is(llm.requests[0]?.headers.authorization, `Bearer ${OPENAI_KEY}`);
      const everything = JSON.stringify(report) + (await fs.readFile(path.join(ws.root, report.report_md!), 'utf8'));
      for (const value of [OPENAI_KEY, EXCHANGE_KEY]) assert.not.ok(everything.includes(value), 'a secret is in the report');
    } finally {
      await llm.close();
      await ws.cleanup();
    }
  });
}

sandboxTest('bubblewrap: a check has no network, cannot write the real repo or the workspace, can write its worktree', async () => {
  const server = await startCounter();
  const llm = await startFakeLlm(editThenFinish());
  const ws = await makeWorkspace({
    llmUrl: llm.url,
    env: SERVICE_ENV,
    project: ['    scope: ["**"]', '    test: "python3 tools/probe.py"'].join('\n'),
  });
  try {
    await commitFiles(ws.repo, {
      'tools/probe.py': PROBE_PY,
      'tools/probe.json': `${JSON.stringify({ port: server.port, repo: ws.repo, workspace: ws.root })}\n`,
    });
    const before = await repoFingerprint(ws.repo);
    const report = await runEdit(ws, before);
    const tests = report.tests!;
    assert.ok(tests.passed, tests.output_tail);
    assert.is(tests.sandbox, 'bwrap');
    assert.match(tests.output_tail, /^NET_BLOCKED/m);
    assert.not.match(tests.output_tail, /NET_OK/);
    assert.is(server.connections(), 0, 'the check reached the host network');
    assert.match(tests.output_tail, /^WRITE_BLOCKED/m);
    // In the sandbox reports/ does not exist (private /tmp); on the real disk nothing appeared.
    assert.match(tests.output_tail, /^WS_WRITE_BLOCKED/m);
    assert.match(tests.output_tail, /^LOCAL_OK$/m);
    assert.is(report.tests?.baseline_passed, true, 'the baseline ran in the sandbox too');
    assert.equal(
      (await fs.readdir(ws.settings.layout.reports)).filter((n) => n.startsWith('escaped-by-check-')),
      [],
    );
  } finally {
    await llm.close();
    await server.close();
    await ws.cleanup();
  }
});

test('sandbox: none is visibly different: the same probe reaches 127.0.0.1 and the real repo path', async () => {
  const server = await startCounter();
  const llm = await startFakeLlm(editThenFinish());
  const ws = await makeWorkspace({
    llmUrl: llm.url,
    env: SERVICE_ENV,
    project: ['    scope: ["**"]', '    test: "python3 tools/probe.py"'].join('\n'),
    extra: 'sandbox: none',
  });
  try {
    await commitFiles(ws.repo, {
      'tools/probe.py': PROBE_PY,
      'tools/probe.json': `${JSON.stringify({ port: server.port, repo: ws.repo, workspace: ws.root })}\n`,
    });
    const before = await repoFingerprint(ws.repo);
    const report = await runEdit(ws, before);
    const tests = report.tests!;
    assert.ok(tests.passed, tests.output_tail);
    assert.is(tests.sandbox, 'none');
    assert.match(tests.output_tail, /^NET_OK$/m);
    assert.ok(server.connections() >= 1, 'the probe connected to the test server');
    // The probe removes what it wrote, so the repo is unchanged (checked in runEdit).
    assert.match(tests.output_tail, /^WRITE_OK$/m);
    assert.match(tests.output_tail, /^WS_WRITE_OK$/m);
    const escaped = (await fs.readdir(ws.settings.layout.reports)).filter((n) => n.startsWith('escaped-by-check-'));
    assert.ok(escaped.length >= 1, 'without a sandbox the probe writes into the real workspace');
    assert.match(tests.output_tail, /^LOCAL_OK$/m);
  } finally {
    await llm.close();
    await server.close();
    await ws.cleanup();
  }
});

for (const sandbox of SANDBOX_SUPPORTED ? (['auto', 'none'] as const) : (['none'] as const)) {
  test(`a check whose program does not exist fails the run with a config error naming the command, before the model is asked (sandbox: ${sandbox})`, async () => {
    for (const [field, project] of [
      ['projects.bot.test', '    test: "no-such-test-runner-4711 -q"'],
      ['projects.bot.dry_run', '    test: "python3 -c pass"\n    dry_run: "./scripts/missing-dry-run.sh"'],
    ] as const) {
      const llm = await startFakeLlm(editThenFinish());
      const ws = await makeWorkspace({ llmUrl: llm.url, env: SERVICE_ENV, project: `    scope: ["**"]\n${project}`, extra: `sandbox: ${sandbox}` });
      try {
        const result = await runTask(await writeTask(ws.settings.layout.inbox, 'missing.md', TASK), { settings: ws.settings });
        assert.is(result.status, 'error');
        assert.is(result.outcome, 'failed');
        assert.is(result.report.error?.kind, 'config');
        assert.is(result.report.error?.field, field);
        assert.match(
          result.report.error?.message ?? '',
          field.endsWith('test')
            ? /"no-such-test-runner-4711" was not found on the checks' PATH/
            : /"\.\/scripts\/missing-dry-run\.sh" was not found in the repo/,
        );
        assert.is(llm.requests.length, 0, 'no tokens spent on a run whose checks cannot start');
        assert.equal(result.report.patch_files, []);
        assert.equal(
          (await fs.readdir(ws.settings.layout.patches.pending)).filter((n) => n.endsWith('.patch')),
          [],
        );
      } finally {
        await llm.close();
        await ws.cleanup();
      }
    }
  });
}

test("the check copy: the worktree's files without .git, ignored or denied files, link paths as links; 5,000 files timed", async () => {
  const ws = await makeWorkspace({ project: ['    scope: ["**"]', '    link: [".venv"]', '    deny: ["private/**"]'].join('\n'), extra: 'sandbox: none' });
  try {
    await fs.writeFile(path.join(ws.repo, '.env'), 'SECRET=1\n');
    // Tracked, and on the deny list (the default's *secret*, the project's private/**): never copied.
    await fs.mkdir(path.join(ws.repo, 'config'), { recursive: true });
    await fs.writeFile(path.join(ws.repo, 'config', 'secrets.yaml'), 'token: not-for-checks\n');
    await fs.mkdir(path.join(ws.repo, 'private'), { recursive: true });
    await fs.writeFile(path.join(ws.repo, 'private', 'notes.txt'), 'mine\n');
    await execa('git', ['add', '--force', 'config/secrets.yaml', 'private/notes.txt'], { cwd: ws.repo });
    await fs.mkdir(path.join(ws.repo, '.venv', 'bin'), { recursive: true });
    await fs.writeFile(path.join(ws.repo, '.venv', 'pyvenv.cfg'), 'home = /usr/bin\n');
    const many: Record<string, string> = {};
    for (let i = 0; i < 5000; i++) many[`many/d${i % 50}/f${i}.py`] = `x = ${i}\n`;
    for (const [rel, text] of Object.entries(many)) {
      await fs.mkdir(path.dirname(path.join(ws.repo, rel)), { recursive: true });
      await fs.writeFile(path.join(ws.repo, rel), text);
    }
    await execa('git', ['add', 'many'], { cwd: ws.repo });
    await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-m', 'many'], { cwd: ws.repo });
    const project = ws.settings.projects.bot!;
    const worktree = await openWorktree(project, ws.settings.layout.worktrees, 'copy-test');
    try {
      await fs.writeFile(path.join(worktree.dir, 'new_untracked.py'), 'print(1)\n');
      // As the run and the gate make it (withCheckCopy), so the deny list is theirs.
      const root = await withCheckCopy({ worktree: worktree.dir }, ws.settings, project, async (copy) => {
        console.log(`  check copy of ${copy.files} files: ${copy.ms} ms`);
        assert.ok(copy.files > 5000);
        assert.ok(!path.relative(ws.root, copy.dir).match(/^[^.]/), 'the copy is outside the workspace');
        assert.not.ok(existsSync(path.join(copy.dir, '.git')), 'no .git in the copy');
        assert.not.ok(existsSync(path.join(copy.dir, '.env')), 'no ignored .env in the copy');
        assert.not.ok(existsSync(path.join(copy.dir, 'config', 'secrets.yaml')), 'no tracked config/secrets.yaml in the copy');
        assert.not.ok(existsSync(path.join(copy.dir, 'private', 'notes.txt')), 'no file the project denies in the copy');
        assert.ok(existsSync(path.join(worktree.dir, 'config', 'secrets.yaml')), 'control: it is in the worktree');
        assert.ok(existsSync(path.join(copy.dir, 'new_untracked.py')));
        assert.is(await fs.readFile(path.join(copy.dir, 'many', 'd7', 'f4007.py'), 'utf8'), 'x = 4007\n');
        assert.is(await fs.readlink(path.join(copy.dir, '.venv')), await fs.realpath(path.join(ws.repo, '.venv')));
        // Writing the copy never writes the worktree (no hard links).
        await fs.writeFile(path.join(copy.dir, 'bot', 'sizing.py'), 'changed\n');
        assert.is.not(await fs.readFile(path.join(worktree.dir, 'bot', 'sizing.py'), 'utf8'), 'changed\n');
        return copy.root;
      });
      assert.not.ok(existsSync(root), 'the copy is removed');
    } finally {
      await worktree.remove();
    }
  } finally {
    await ws.cleanup();
  }
});

test.run();
