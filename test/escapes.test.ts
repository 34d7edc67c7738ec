/**
 * Escapes are refused and visible to the model: writing outside the scope, "../", absolute
 * paths, symlinks to outside, reading .env. The real repo (status + every file, untracked
 * ones included) is unchanged afterwards. Scripted model on 127.0.0.1, real git repo.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { runTask } from '../src/run/runTask.ts';
import { ReportSchema } from '../src/contract/report.ts';
import { finish, startFakeLlm, toolCall, type RecordedRequest, type Reply } from './helpers/fakeLlm.ts';
import { makeWorkspace, readJson, repoFingerprint, worktreeCount, writeTask } from './helpers/workspace.ts';
import { poolRoot } from '../src/repo/worktreePool.ts';

const FAKE_KEY = 'sk-live-FAKE-EXCHANGE-KEY-0000000000';
const FAKE_SECRET = 'fake-secret';
const OUTSIDE_MARKER = 'outside-secret-marker-7f3a9c';
/** A plain line in the committed secret files: no redaction pattern hides it, so a leak shows. */
const COMMITTED_MARKER = 'committed-secret-marker-51c2e8';

const taskWithScope = (scope: string[]) => `---
project: bot
type: audit_code
objective: Tighten the sizing checks
scope: ${JSON.stringify(scope)}
---
Only the files in scope may change.
`;
const TASK = taskWithScope(['bot/sizing.py']);

const exists = (p: string) =>
  fs.lstat(p).then(
    () => true,
    () => false,
  );

async function commitAll(repo: string, message: string, paths: string[]): Promise<void> {
  await execa('git', ['add', '--force', '--', ...paths], { cwd: repo });
  await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-m', message], { cwd: repo });
}

/** The text of the last tool result the model received. */
function lastToolResult(req: RecordedRequest): string {
  const last = req.body?.messages?.at(-1);
  if (last?.role !== 'tool') throw new Error(`the last message is not a tool result: ${JSON.stringify(last)?.slice(0, 300)}`);
  return String(last.content);
}

test('escapes through the file tools are refused, shown to the model, and leave the real repo untouched', async () => {
  const outside = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-outside-'));
  await fs.writeFile(path.join(outside, 'secret.txt'), `${OUTSIDE_MARKER}\n`);
  // Assertion failures inside the fake server's handler are collected here (throwing there would crash the process).
  const problems: string[] = [];
  const seen: string[] = [];
  let repoAbs = '';

  /** A scripted step that first checks the previous tool result, then makes the next call. */
  const after = (label: string, check: (result: string) => void, next: () => Reply) => (req: RecordedRequest) => {
    seen.push(label);
    let result = '';
    try {
      result = lastToolResult(req);
      check(result);
    } catch (error) {
      problems.push(`${label}: ${(error as Error).message}; the tool result was ${JSON.stringify(result.slice(0, 300))}`);
    }
    return next();
  };
  const refused = (word: RegExp) => (result: string) => {
    assert.ok(result.startsWith('ERROR:'), `expected an ERROR: result, got ${JSON.stringify(result.slice(0, 200))}`);
    assert.match(result, word);
  };

  const llm = await startFakeLlm([
    toolCall('write_file', { path: 'README.md', content: 'pwned\n' }),
    after('write README.md (out of scope)', refused(/outside this task's scope/), () => toolCall('write_file', { path: '../escape.txt', content: 'x' })),
    after('write ../escape.txt', refused(/leads outside the repository/), () => toolCall('read_file', { path: '/etc/passwd' })),
    after(
      'read /etc/passwd',
      (r) => {
        refused(/absolute paths are not allowed/)(r);
        assert.not.match(r, /root:/);
      },
      () => toolCall('write_file', { path: `${repoAbs}/bot/hacked.py`, content: 'import os\n' }),
    ),
    after('write <real repo>/bot/hacked.py', refused(/absolute paths are not allowed/), () => toolCall('read_file', { path: '.env' })),
    after('read .env', refused(/deny list/), () => toolCall('read_file', { path: 'bot/../.env' })),
    after('read bot/../.env', refused(/deny list/), () => toolCall('read_file', { path: 'deploy/.env.production' })),
    after('read deploy/.env.production (committed)', refused(/deny list/), () => toolCall('read_file', { path: 'secrets/exchange.txt' })),
    after('read secrets/exchange.txt (committed)', refused(/deny list/), () => toolCall('write_file', { path: '.env', content: 'EXCHANGE_API_KEY=mine\n' })),
    after('write .env', refused(/deny list/), () => toolCall('search', { pattern: 'EXCHANGE_API_KEY' })),
    after(
      'search EXCHANGE_API_KEY',
      (r) => {
        // The search works (finds the docs) but never shows a denied file's lines.
        assert.match(r, /^docs\/SETUP\.md:\d+:/m);
        assert.not.match(r, /^(deploy|secrets)\//m);
        assert.not.match(r, /\.env[:.]/);
      },
      () => toolCall('search', { pattern: 'EXCHANGE_SECRET', path: 'deploy' }),
    ),
    after(
      'search EXCHANGE_SECRET in deploy/',
      (r) => {
        // Only the denied file matches: nothing of it is shown, not even its name (the answer may repeat the folder asked for).
        assert.match(r, /^no matches for \/EXCHANGE_SECRET\//);
        assert.not.match(r, /deploy\/|EXCHANGE_SECRET=|\.env/);
      },
      () => toolCall('list_files', { path: '.' }),
    ),
    after(
      'list_files .',
      (r) => {
        const files = r.split('\n');
        assert.ok(files.includes('bot/sizing.py'), 'the listing works');
        assert.ok(files.includes('docs/SETUP.md'), 'the listing shows committed files');
        assert.equal(
          files.filter((f) => /(^|\/)\.env/.test(f) || f.startsWith('secrets/')),
          [],
          'no denied file is listed',
        );
      },
      () => toolCall('read_file', { path: 'link_out/secret.txt' }),
    ),
    after('read link_out/secret.txt', refused(/symlink.*outside/), () => toolCall('write_file', { path: 'link_out/pwn.txt', content: 'pwned\n' })),
    after('write link_out/pwn.txt', refused(/symlink.*outside/), () => toolCall('list_files', { path: 'link_out' })),
    after('list_files link_out', refused(/symlink.*outside/), () => toolCall('write_file', { path: 'bot/alias.py', content: 'pwned\n' })),
    // bot/alias.py is in scope but a symlink to README.md (out of scope): writes through it are refused.
    after('write bot/alias.py (in-scope symlink)', refused(/symlink/), () => toolCall('edit_file', { path: 'bot/alias.py', old: 'scalper', new: 'pwned' })),
    after('edit bot/alias.py (in-scope symlink)', refused(/symlink/), () => finish('Nothing to change; every escape was refused.', 'low')),
  ]);
  const ws = await makeWorkspace({ llmUrl: llm.url });
  repoAbs = ws.repo;
  try {
    // The target repo gets a committed symlink to a folder outside, committed secret files
    // that the deny list covers (and .gitignore does not, so git itself shows them), and a doc
    // that names the variable; the root .env stays untracked and git-ignored.
    const secretText = `EXCHANGE_API_KEY=${FAKE_KEY}\nEXCHANGE_SECRET=${FAKE_SECRET}\n${COMMITTED_MARKER}\n`;
    await fs.symlink(outside, path.join(ws.repo, 'link_out'));
    await fs.mkdir(path.join(ws.repo, 'deploy'));
    await fs.writeFile(path.join(ws.repo, 'deploy', '.env.production'), secretText);
    await fs.mkdir(path.join(ws.repo, 'secrets'));
    await fs.writeFile(path.join(ws.repo, 'secrets', 'exchange.txt'), secretText);
    await fs.mkdir(path.join(ws.repo, 'docs'));
    await fs.writeFile(path.join(ws.repo, 'docs', 'SETUP.md'), '# Setup\n\nPut EXCHANGE_API_KEY into .env (never commit it).\n');
    await fs.symlink('../README.md', path.join(ws.repo, 'bot', 'alias.py'));
    await commitAll(ws.repo, 'fixtures: symlinks, committed secrets, docs', [
      'link_out',
      'bot/alias.py',
      'deploy/.env.production',
      'secrets/exchange.txt',
      'docs/SETUP.md',
    ]);
    assert.ok(await exists(path.join(ws.repo, '.env')), 'the untracked .env is in the target repo');
    assert.match((await execa('git', ['status', '--porcelain', '--ignored'], { cwd: ws.repo })).stdout, /!! \.env/);
    const before = await repoFingerprint(ws.repo);

    const file = await writeTask(ws.settings.layout.inbox, 'escape-attempts.md', taskWithScope(['bot/sizing.py', 'bot/alias.py']));
    const result = await runTask(file, { settings: ws.settings });

    assert.equal(problems, [], 'every refusal reached the model as an ERROR tool result');
    assert.is(seen.length, 17, `all scripted steps ran: ${seen.join(' | ')}`);
    assert.is(llm.requests.length, 18);
    assert.is(result.status, 'ok', result.report.error?.message);
    assert.is(result.outcome, 'no_changes');
    const report = ReportSchema.parse(await readJson(result.report_path));
    assert.equal(report.changed_files, []);
    assert.equal(report.patch_files, []);
    assert.equal(report.scope_violations, []);
    assert.equal(await fs.readdir(ws.settings.layout.patches.pending), []);
    assert.ok(await exists(path.join(ws.settings.layout.done, 'escape-attempts.md')), 'the task is in done/');

    // No secret reached the model, the report or the trajectory.
    const sent = JSON.stringify(llm.requests);
    const md = await fs.readFile(result.report_md_path, 'utf8');
    const json = await fs.readFile(result.report_path, 'utf8');
    assert.ok(report.trajectory, 'a trajectory was written');
    const trajectory = await fs.readFile(path.join(ws.root, report.trajectory!), 'utf8');
    for (const [where, text] of [
      ['LLM requests', sent],
      ['report md', md],
      ['report json', json],
      ['trajectory', trajectory],
    ] as const) {
      for (const secret of [FAKE_KEY, FAKE_SECRET, OUTSIDE_MARKER, COMMITTED_MARKER]) {
        assert.not.ok(text.includes(secret), `${secret} appears in the ${where}`);
      }
    }
    // The trajectory records the refusals too (what the human reviewer sees).
    assert.match(trajectory, /refused: \\"README.md\\" is outside this task's scope/);

    // Nothing was written anywhere: the real repo, the outside folder, next to the worktree.
    assert.is(await repoFingerprint(ws.repo), before);
    assert.equal(await fs.readdir(outside), ['secret.txt']);
    assert.is(await fs.readFile(path.join(outside, 'secret.txt'), 'utf8'), `${OUTSIDE_MARKER}\n`);
    const pools = (await fs.readdir(poolRoot(ws.settings.layout)).catch(() => [] as string[])).map((n) => path.join(poolRoot(ws.settings.layout), n));
    for (const dir of [ws.settings.layout.worktrees, ...pools, ws.settings.layout.state, ws.root, path.dirname(ws.root)]) {
      assert.not.ok(await exists(path.join(dir, 'escape.txt')), `escape.txt in ${dir}`);
    }
    assert.not.ok(await exists(path.join(ws.repo, 'bot', 'hacked.py')));
    assert.is(await worktreeCount(ws.repo), 0);
  } finally {
    await llm.close();
    await ws.cleanup();
    await fs.rm(outside, { recursive: true, force: true });
  }
});

// The deny list applies to where a committed in-repo symlink leads, not only to the path asked for.
test('a committed symlink inside the repo to a denied file does not reveal it', async () => {
  const problems: string[] = [];
  const expectDenied = (label: string, next: Reply) => (req: RecordedRequest) => {
    const result = (() => {
      try {
        return lastToolResult(req);
      } catch (error) {
        return String(error);
      }
    })();
    if (!result.startsWith('ERROR:') || !/deny list/.test(result)) problems.push(`${label}: ${JSON.stringify(result.slice(0, 200))}`);
    return next;
  };
  const llm = await startFakeLlm([
    toolCall('read_file', { path: 'notes/exchange.txt' }),
    expectDenied('read notes/exchange.txt (symlink to secrets/exchange.txt)', toolCall('read_file', { path: 'vault/exchange.txt' })),
    expectDenied('read vault/exchange.txt (vault -> secrets)', finish('Nothing to change.', 'low')),
  ]);
  const ws = await makeWorkspace({ llmUrl: llm.url });
  try {
    await fs.mkdir(path.join(ws.repo, 'secrets'));
    await fs.writeFile(path.join(ws.repo, 'secrets', 'exchange.txt'), `EXCHANGE_SECRET=${FAKE_SECRET}\n${COMMITTED_MARKER}\n`);
    await fs.mkdir(path.join(ws.repo, 'notes'));
    await fs.symlink('../secrets/exchange.txt', path.join(ws.repo, 'notes', 'exchange.txt'));
    await fs.symlink('secrets', path.join(ws.repo, 'vault'));
    await commitAll(ws.repo, 'fixtures: in-repo symlinks to a denied file', ['secrets/exchange.txt', 'notes/exchange.txt', 'vault']);
    const file = await writeTask(ws.settings.layout.inbox, 'symlink-deny.md', TASK);
    const result = await runTask(file, { settings: ws.settings });
    assert.is(result.outcome, 'no_changes', result.report.error?.message);
    assert.is(llm.requests.length, 3);
    assert.equal(problems, []);
    assert.not.ok(JSON.stringify(llm.requests).includes(COMMITTED_MARKER), 'the denied file reached the model through a symlink');
  } finally {
    await llm.close();
    await ws.cleanup();
  }
});

test('the command engine: out-of-scope and .env changes make a scope_violation with no patch', async () => {
  const scriptDir = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-agent-'));
  const script = path.join(scriptDir, 'agent.mjs');
  await fs.writeFile(
    script,
    [
      "import { promises as fs } from 'node:fs';",
      "const sizing = await fs.readFile('bot/sizing.py', 'utf8');",
      "await fs.writeFile('bot/sizing.py', '# touched by the command engine\\n' + sizing);",
      "await fs.appendFile('README.md', '\\nChanged outside the scope.\\n');",
      `await fs.writeFile('.env.local', 'EXCHANGE_API_KEY=${FAKE_KEY}\\n');`,
      "console.log('agent done in ' + process.cwd());",
      '',
    ].join('\n'),
  );
  const ws = await makeWorkspace({
    extra: ['engine: command', 'command:', `  run: ${JSON.stringify([process.execPath, script])}`, '  timeout_s: 60'].join('\n'),
  });
  try {
    const before = await repoFingerprint(ws.repo);
    const file = await writeTask(ws.settings.layout.inbox, 'cmd-escape.md', TASK);
    const result = await runTask(file, { settings: ws.settings });

    assert.is(result.report.engine, 'command');
    assert.is(result.outcome, 'scope_violation', result.report.error?.message);
    assert.is(result.status, 'error');
    const report = ReportSchema.parse(await readJson(result.report_path));
    assert.is(report.error?.kind, 'scope');
    assert.match(report.error!.message, /README\.md/);
    assert.match(report.error!.message, /\.env\.local/);
    assert.equal([...report.scope_violations].sort(), ['.env.local', 'README.md']);
    assert.equal([...report.changed_files].sort(), ['.env.local', 'README.md', 'bot/sizing.py']);
    assert.match(report.engine_output_tail ?? '', /agent done in .*worktrees/, 'the command ran in the worktree');
    // No patch, no checks run on a violating change.
    assert.equal(report.patch_files, []);
    assert.is(result.patch_path, null);
    assert.equal(await fs.readdir(ws.settings.layout.patches.pending), []);
    assert.is(report.tests, null);
    // The task is in failed/ with an explanation.
    assert.ok(await exists(path.join(ws.settings.layout.failed, 'cmd-escape.md')), 'the task is in failed/');
    const explanation = await fs.readFile(path.join(ws.settings.layout.failed, 'cmd-escape.md.error.md'), 'utf8');
    assert.match(explanation, /scope/);
    assert.match(explanation, /\.env\.local/);
    assert.not.ok(await exists(path.join(ws.settings.layout.done, 'cmd-escape.md')));
    // The key the agent wrote into .env.local is nowhere in the outputs.
    const md = await fs.readFile(result.report_md_path, 'utf8');
    assert.not.ok(md.includes(FAKE_KEY) || JSON.stringify(report).includes(FAKE_KEY), 'the key leaked into the report');
    // The real repo is untouched and the worktree is gone.
    assert.is(await repoFingerprint(ws.repo), before);
    assert.not.ok(await exists(path.join(ws.repo, '.env.local')));
    assert.is(await worktreeCount(ws.repo), 0);
  } finally {
    await ws.cleanup();
    await fs.rm(scriptDir, { recursive: true, force: true });
  }
});

test.run();
