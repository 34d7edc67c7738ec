/**
 * Issue 12, acceptance 1: the agent's run_command, through the real `openai` client against
 * the scripted server and real runs (runTask): it runs a single pytest node id, `python3 -c`
 * and `git log`; it cannot reach 127.0.0.1, read the real repository's .git, $HOME, the
 * workspace or a denied file, nor write outside the worktree; what it changes outside the
 * scope is undone and reported; past its timeout it is killed with its grandchildren; it
 * is offered only with a sandbox (or `tools.shell: unsandboxed`), and the report says which.
 */
import { existsSync, promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { runTask, type RunTaskResult } from '../src/run/runTask.ts';
import { ReportSchema } from '../src/contract/report.ts';
import { finish, startFakeLlm, toolCall, type FakeLlm, type RecordedRequest, type Reply } from './helpers/fakeLlm.ts';
import { startCounter } from './helpers/net.ts';
import { SANDBOX_SUPPORTED, sandboxTest } from './helpers/sandbox.ts';
import { waitFor } from './helpers/procs.ts';
import { makeWorkspace, readJson, writeTask, type TestWorkspace } from './helpers/workspace.ts';

const TASK = `---
project: bot
type: custom
objective: Look into the sizing code
scope: ["bot/**"]
---
`;
const HOME_CANARY = 'canary-home-3b9d1e';
const SECRET_CANARY = 'canary-tracked-secret-88c2aa';

interface Setup {
  ws: TestWorkspace;
  llm: FakeLlm;
  fakeHome: string;
  cleanup(): Promise<void>;
}

/** A workspace whose project has no checks (runs stay quick), a fake HOME with a canary, the scripted model. */
async function setup(script: Array<Reply | ((request: RecordedRequest) => Reply)>, options: { extra?: string; path?: string } = {}): Promise<Setup> {
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'run-command-'));
  const fakeHome = path.join(base, 'home');
  await fs.mkdir(path.join(fakeHome, '.ssh'), { recursive: true });
  await fs.writeFile(path.join(fakeHome, '.ssh', 'id_rsa'), `${HOME_CANARY}\n`);
  const llm = await startFakeLlm(script);
  const ws = await makeWorkspace({
    llmUrl: llm.url,
    env: { PATH: options.path ?? process.env.PATH, HOME: fakeHome },
    project: '    scope: ["**"]',
    extra: options.extra ?? '',
  });
  // A tracked secret (on the default deny list: *secret*) and the user's git-ignored .env.
  await fs.mkdir(path.join(ws.repo, 'deploy'), { recursive: true });
  await fs.writeFile(path.join(ws.repo, 'deploy', 'api_secret.txt'), `${SECRET_CANARY}\n`);
  await execa('git', ['add', 'deploy/api_secret.txt'], { cwd: ws.repo });
  await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-m', 'deploy config'], { cwd: ws.repo });
  await fs.writeFile(path.join(ws.repo, '.env'), 'BOT_TOKEN=canary-dotenv-77\n');
  return {
    ws,
    llm,
    fakeHome,
    cleanup: async () => {
      await llm.close();
      await ws.cleanup();
      await fs.rm(base, { recursive: true, force: true });
    },
  };
}

async function run(s: Setup, name = 'look.md'): Promise<RunTaskResult> {
  return runTask(await writeTask(s.ws.settings.layout.inbox, name, TASK), { settings: s.ws.settings });
}

const toolNames = (request: RecordedRequest): string[] => (request.body.tools ?? []).map((t: any) => t.function.name);

/** The tool message answering the last assistant call, as the model saw it in its next request. */
function lastToolResult(request: RecordedRequest): string {
  const message = request.body.messages.at(-1);
  assert.is(message.role, 'tool');
  return String(message.content);
}

/** Processes on this machine whose command line contains `needle`. */
async function processesWith(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const cmdline = await fs.readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(needle)) pids.push(Number(name));
  }
  return pids;
}

/** A reply with several tool calls at once (some servers ignore parallel_tool_calls: false). */
function toolCalls(calls: Array<[string, unknown]>): Reply {
  return {
    body: {
      id: `chatcmpl-multi-${randomBytes(3).toString('hex')}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: 'scripted-model',
      choices: [
        {
          index: 0,
          finish_reason: 'tool_calls',
          logprobs: null,
          message: {
            role: 'assistant',
            content: null,
            tool_calls: calls.map(([name, args], i) => ({
              id: `multi_${i}_${randomBytes(3).toString('hex')}`,
              type: 'function',
              function: { name, arguments: JSON.stringify(args) },
            })),
          },
        },
      ],
      usage: { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120 },
    },
  };
}

/** The hostile probe: one line per try, `<NAME> OK ...` when it got through, `<NAME> BLOCKED ...` when not. */
function probe(t: { repo: string; workspace: string; fakeHome: string; port: number; marker: string }): string {
  const py = `import json, os, socket
T = json.loads(${JSON.stringify(JSON.stringify(t))})
def attempt(name, fn):
    try:
        print("%s OK %s" % (name, str(fn())[:60]))
    except Exception as e:
        print("%s BLOCKED %s" % (name, type(e).__name__))
def read(p):
    with open(p) as f:
        data = f.read()
    if not data:
        raise ValueError("empty")
    return data
def write(p):
    with open(p, "w") as f:
        f.write("pwned")
    return p
attempt("WORKTREE_FILE", lambda: read("README.md"))
attempt("NET", lambda: socket.create_connection(("127.0.0.1", T["port"]), timeout=3).sendall(b"hi"))
attempt("REPO_GIT_CONFIG", lambda: read(os.path.join(T["repo"], ".git", "config")))
attempt("REPO_GIT_HEAD", lambda: read(os.path.join(T["repo"], ".git", "HEAD")))
attempt("REPO_FILE", lambda: read(os.path.join(T["repo"], "README.md")))
attempt("REPO_ENV", lambda: read(os.path.join(T["repo"], ".env")))
attempt("GITDIR_OF_WORKTREE", lambda: read(os.path.join(T["repo"], ".git", "worktrees")))
attempt("HOME_ABS", lambda: read(os.path.join(T["fakeHome"], ".ssh", "id_rsa")))
attempt("HOME_TILDE", lambda: read(os.path.expanduser("~/.ssh/id_rsa")))
attempt("WORKSPACE", lambda: read(os.path.join(T["workspace"], "meta-agent.yaml")))
attempt("SECRET_TRACKED", lambda: read("deploy/api_secret.txt"))
attempt("SECRET_MOVE", lambda: os.rename("deploy", "deploy2"))
attempt("SECRET_MOVE_FILE", lambda: os.rename("deploy/api_secret.txt", "bot/moved.txt"))
attempt("WRITE_HOST_TMP", lambda: write("/tmp/" + T["marker"] + "-tmp.txt"))
attempt("WRITE_REPO", lambda: write(os.path.join(T["repo"], T["marker"] + "-repo.txt")))
attempt("WRITE_WORKSPACE", lambda: write(os.path.join(T["workspace"], T["marker"] + "-ws.txt")))
attempt("WRITE_HOME", lambda: write(os.path.join(T["fakeHome"], T["marker"] + "-home.txt")))
print("PROBE_END")
`;
  return `python3 - <<'EOF'\n${py}EOF`;
}

const BLOCKED = [
  'NET',
  'REPO_GIT_CONFIG',
  'REPO_GIT_HEAD',
  'REPO_FILE',
  'REPO_ENV',
  'GITDIR_OF_WORKTREE',
  'HOME_ABS',
  'HOME_TILDE',
  'WORKSPACE',
  'SECRET_TRACKED',
  'SECRET_MOVE',
  'SECRET_MOVE_FILE',
  'WRITE_REPO',
  'WRITE_WORKSPACE',
  'WRITE_HOME',
];

sandboxTest(
  'run_command in the sandbox: a pytest node id, python3 -c and git log run; the network, the real repo, $HOME, the workspace and secrets are out of reach',
  async () => {
    const server = await startCounter();
    const marker = `run-command-${randomBytes(5).toString('hex')}`;
    const script: Array<Reply | ((request: RecordedRequest) => Reply)> = [];
    const s = await setup(script);
    try {
      const targets = { repo: s.ws.repo, workspace: s.ws.root, fakeHome: s.fakeHome, port: server.port, marker };
      const seen: string[] = [];
      const record = (next: Reply) => (request: RecordedRequest) => {
        seen.push(lastToolResult(request));
        return next;
      };
      script.push(
        toolCall('run_command', { command: 'python3 -m pytest -q -p no:cacheprovider tests/test_sizing.py::test_risk_based_size' }),
        record(toolCall('run_command', { command: 'python3 -c "print(6 * 7)"' })),
        // The tracked secret is in the history too: git log -p, git show and the object store must not have it.
        record(
          toolCall('run_command', {
            command:
              'git log --format=%s && git blame -s bot/sizing.py | head -n 1 && git status --short && echo STATUS_END; git log -p --all | grep -c canary-tracked-secret; git show HEAD:deploy/api_secret.txt; git cat-file --batch-all-objects --batch | grep -c canary-tracked-secret',
          }),
        ),
        record(toolCall('run_command', { command: probe(targets) })),
        // What one command writes in the worktree, the next one sees (and it lands in the patch).
        record(toolCall('run_command', { command: 'echo "# note from a command" >> bot/sizing.py && echo fresh > bot/made_by_command.txt' })),
        record(
          toolCall('run_command', {
            command:
              'tail -n 1 bot/sizing.py && cat bot/made_by_command.txt && echo "HOME=$HOME" && ls -A "$HOME" | wc -l && python3 -c "import resource; print(\'NPROC\', resource.getrlimit(resource.RLIMIT_NPROC)[0])"',
          }),
        ),
        record(finish('Looked around.', 'low')),
      );
      const result = await run(s);
      assert.is(result.status, 'ok', result.report.error?.message);
      assert.is(seen.length, 6);
      const [pytest, python, history, probed, , after] = seen as [string, string, string, string, string, string];
      assert.match(pytest, /exit code 0/);
      assert.match(pytest, /1 passed/);
      assert.match(python, /^42$/m);
      assert.match(history, /^initial$/m);
      // The commit that only added the denied file is left out of the history, with a note.
      assert.not.match(history, /^deploy config$/m);
      assert.not.ok(history.includes(SECRET_CANARY), `the denied file's content is nowhere in the history:\n${history}`);
      assert.match(history, /^STATUS_END\n0\n[\s\S]*^0$/m, `git log -p and the object store hold no copy of it:\n${history}`);
      // Positive control: the real repository's history has it, and the same grep finds it there.
      assert.ok((await execa('git', ['log', '-p', '--all'], { cwd: s.ws.repo })).stdout.includes(SECRET_CANARY));
      assert.match(history, /leaves out the 1 file\(s\) on the deny list/);
      assert.match(history, /git status --short && echo STATUS_END[\s\S]*?\nSTATUS_END$/m);
      const statusOutput = history.slice(history.indexOf('\n', history.indexOf('\nexit code')), history.indexOf('\nSTATUS_END\n'));
      assert.not.match(statusOutput, /deploy\/api_secret/, `git status does not call the (empty) denied file new or changed:\n${history}`);
      assert.match(history, /^\^?[0-9a-f]+ +1\) /m, `git blame works:\n${history}`);
      assert.match(probed, /^PROBE_END$/m, probed);
      for (const name of BLOCKED) assert.match(probed, new RegExp(`^${name} BLOCKED`, 'm'), `${name} got through:\n${probed}`);
      // /tmp is the sandbox's own: the write succeeds there, and nothing appears in the host's /tmp.
      assert.match(probed, /^WRITE_HOST_TMP OK/m);
      // Positive control of the reads: the worktree's own files are readable the same way.
      assert.match(probed, /^WORKTREE_FILE OK/m);
      assert.match(after, /^# note from a command$/m);
      assert.match(after, /^fresh$/m);
      assert.match(after, /^0$/m, 'the private $HOME is empty');
      assert.match(after, /^NPROC 512$/m, "the checks' process limit (limits.check_processes)");
      assert.not.match(after, new RegExp(`HOME=${s.fakeHome}`));

      assert.is(server.connections(), 0, 'a command reached 127.0.0.1');
      for (const file of [
        path.join(os.tmpdir(), `${marker}-tmp.txt`),
        path.join(s.ws.repo, `${marker}-repo.txt`),
        path.join(s.ws.root, `${marker}-ws.txt`),
        path.join(s.fakeHome, `${marker}-home.txt`),
      ]) {
        assert.not.ok(existsSync(file), `${file} was written`);
      }
      const report = ReportSchema.parse(await readJson(result.report_path));
      assert.is(report.shell, 'sandboxed');
      assert.equal(report.changed_files.sort(), ['bot/made_by_command.txt', 'bot/sizing.py']);
      const everything = JSON.stringify(report) + (await fs.readFile(path.join(s.ws.root, report.trajectory!), 'utf8'));
      for (const canary of [HOME_CANARY, SECRET_CANARY, 'canary-dotenv-77'])
        assert.not.ok(everything.includes(canary), `${canary} reached the model or the report`);
      // The tool was offered, the same list in every request.
      assert.ok(toolNames(s.llm.requests[0]!).includes('run_command'));
      for (const request of s.llm.requests) assert.equal(request.body.tools, s.llm.requests[0]!.body.tools);

      // Positive control: the same connection from the test process counts.
      await new Promise<void>((resolve, reject) => {
        const socket = net.createConnection({ host: '127.0.0.1', port: server.port }, () => socket.end(resolve));
        socket.on('error', reject);
      });
      await waitFor('the control connection', () => server.connections() === 1, 5000);
    } finally {
      await server.close();
      await s.cleanup();
    }
  },
);

sandboxTest('run_command: a change outside the task scope (or to a denied file) is undone and the model is told; the patch does not have it', async () => {
  const script: Array<Reply | ((request: RecordedRequest) => Reply)> = [];
  const s = await setup(script);
  try {
    let told = '';
    let after = '';
    script.push(
      toolCall('run_command', {
        command:
          'echo "changed" >> README.md && rm tests/test_sizing.py && echo new > notes.txt && mkdir -p docs/deep && echo x > docs/deep/page.md && echo key > bot/app.pem && echo ok > bot/in_scope.txt && git init -q bot/vendored && git -C bot/vendored config core.fsmonitor "touch $PWD/bot/fsmonitor-ran"',
      }),
      (request) => {
        told = lastToolResult(request);
        return toolCall('run_command', { command: 'git status --short; ls docs notes.txt 2>&1; tail -n 1 README.md' });
      },
      (request) => {
        after = lastToolResult(request);
        return finish('Changed things.', 'low');
      },
    );
    const result = await run(s);
    assert.is(result.status, 'ok', result.report.error?.message);
    assert.is(result.outcome, 'completed');
    for (const name of [
      'README.md (restored)',
      'tests/test_sizing.py (restored)',
      'notes.txt (deleted)',
      'docs/deep/page.md (deleted)',
      'bot/app.pem (deleted)',
      'bot/vendored (deleted: a git repository inside the worktree)',
    ]) {
      assert.ok(told.includes(name), `the model is told about ${name}:\n${told}`);
    }
    assert.not.ok(/meta-agent undid[^\n]*bot\/in_scope.txt/.test(told), 'an in-scope change is kept and not reported');
    assert.match(after, /No such file/);
    assert.not.match(after, /^changed$/m);
    assert.match(after, /\?\? bot\/in_scope.txt/);
    assert.equal(result.report.changed_files, ['bot/in_scope.txt'], 'no nested repository, and its fsmonitor never ran on the host');
    const patch = await fs.readFile(path.join(s.ws.root, result.report.patch_files[0]!), 'utf8');
    for (const file of ['README.md', 'test_sizing.py', 'notes.txt', 'page.md', 'app.pem']) assert.not.ok(patch.includes(file), `the patch has ${file}`);
    assert.match(patch, /bot\/in_scope.txt/);
  } finally {
    await s.cleanup();
  }
});

sandboxTest('run_command past its timeout is killed with its grandchildren', async () => {
  const marker = `grandchild-${randomBytes(5).toString('hex')}`;
  let told = '';
  const s = await setup([
    // The grandchild is up before the timeout starts to matter: the command waits for its sign.
    toolCall('run_command', {
      command: `python3 -c "import sys, time; open(sys.argv[1], 'w').close(); time.sleep(300)" "$TMPDIR/up" ${marker} & while [ ! -e "$TMPDIR/up" ]; do sleep 0.1; done; echo grandchild up; sleep 300`,
      timeout_s: 8,
    }),
    (request) => {
      told = lastToolResult(request);
      return finish('Waited.', 'low');
    },
  ]);
  try {
    const running = run(s);
    // Positive control: the grandchild did run (seen on this machine while the command ran).
    let seen = false;
    await waitFor('the grandchild to start', async () => (seen = (await processesWith(marker)).length > 0) || s.llm.requests.length > 1, 30_000);
    const result = await running;
    assert.ok(seen, `the grandchild was seen running: ${told}`);
    assert.is(result.status, 'ok', result.report.error?.message);
    assert.match(told, /killed after 8 s \(timeout\)/, told);
    assert.equal(await processesWith(marker), [], 'the grandchild is gone');
  } finally {
    for (const pid of await processesWith(marker)) process.kill(pid, 'SIGKILL');
    await s.cleanup();
  }
});

sandboxTest('run_command is offered with a sandbox, and not with sandbox: none or without bubblewrap; calling it anyway is an unknown tool', async () => {
  // A PATH with python3, git and sh but no bwrap: the machine without bubblewrap.
  const bin = await fs.mkdtemp(path.join(os.tmpdir(), 'no-bwrap-bin-'));
  for (const tool of ['python3', 'git', 'sh']) {
    const real = (await execa('sh', ['-c', `command -v ${tool}`])).stdout.trim();
    await fs.symlink(real, path.join(bin, tool));
  }
  try {
    const cases: Array<{ label: string; extra?: string; path?: string; offered: boolean }> = [
      { label: 'sandbox: auto with bubblewrap', offered: true },
      { label: 'sandbox: none', extra: 'sandbox: none', offered: false },
      { label: 'no bubblewrap on PATH', path: bin, offered: false },
      { label: 'tools.shell: off', extra: 'tools:\n  shell: off', offered: false },
    ];
    for (const c of cases) {
      let answer = '';
      const s = await setup(
        [
          toolCall('run_command', { command: 'echo hello' }),
          (request) => {
            answer = lastToolResult(request);
            return finish('x', 'low');
          },
        ],
        { extra: c.extra, path: c.path },
      );
      try {
        const result = await run(s);
        assert.is(result.status, 'ok', `${c.label}: ${result.report.error?.message}`);
        assert.is(toolNames(s.llm.requests[0]!).includes('run_command'), c.offered, c.label);
        assert.is(result.report.shell, c.offered ? 'sandboxed' : 'off', c.label);
        if (c.offered) assert.match(answer, /^hello$/m, c.label);
        else assert.match(answer, /^ERROR: unknown tool "run_command"/, c.label);
      } finally {
        await s.cleanup();
      }
    }
  } finally {
    await fs.rm(bin, { recursive: true, force: true });
  }
});

test('tools.shell: unsandboxed offers run_command without a sandbox, and the report says unsandboxed', async () => {
  let answer = '';
  let history = '';
  const s = await setup(
    [
      toolCall('run_command', { command: 'python3 -c "print(6 * 7)"' }),
      (request) => {
        answer = lastToolResult(request);
        return toolCall('run_command', { command: 'git log --format=%s' });
      },
      (request) => {
        history = lastToolResult(request);
        return finish('x', 'low');
      },
    ],
    { extra: 'sandbox: none\ntools:\n  shell: unsandboxed' },
  );
  try {
    const result = await run(s);
    assert.is(result.status, 'ok', result.report.error?.message);
    assert.ok(toolNames(s.llm.requests[0]!).includes('run_command'));
    assert.match(String(s.llm.requests[0]!.body.tools.find((t: any) => t.function.name === 'run_command').function.description), /NOT sandboxed/);
    assert.match(answer, /^42$/m);
    // git sees the history snapshot, not the real repository (where "deploy config" is).
    assert.match(history, /^initial$/m);
    assert.not.match(history, /^deploy config$/m);
    assert.is(result.report.shell, 'unsandboxed');
    assert.is(ReportSchema.parse(await readJson(result.report_path)).shell, 'unsandboxed');
    assert.match(await fs.readFile(result.report_md_path, 'utf8'), /run_command ran unsandboxed/);
  } finally {
    await s.cleanup();
  }
});

test('each run_command costs one step: two in one reply count twice, and past limits.max_steps one is not run', async () => {
  const s = await setup(
    [
      toolCalls([
        ['run_command', { command: 'echo one' }],
        ['run_command', { command: 'echo two' }],
        ['run_command', { command: 'echo three' }],
      ]),
      finish('x', 'low'),
    ],
    {
      extra: `sandbox: none\ntools:\n  shell: unsandboxed\nlimits:\n  max_steps: 2`,
    },
  );
  try {
    const result = await run(s);
    assert.is(result.report.outcome, 'limit_reached', 'three commands in one reply spent more than two steps');
    assert.is(s.llm.requests.length, 1, 'the model was not asked again');
    const trajectory = (await fs.readFile(path.join(s.ws.root, result.report.trajectory!), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const results = trajectory.filter((e) => e.role === 'tool').map((e) => String(e.content));
    assert.is(results.length, 3);
    assert.match(results[0]!, /^one$/m);
    assert.match(results[1]!, /^two$/m);
    assert.match(results[2]!, /ERROR: not run: each run_command costs one step/);
  } finally {
    await s.cleanup();
  }
});

if (!SANDBOX_SUPPORTED) test('(run_command sandbox tests: Linux only)', () => undefined);

test.run();
