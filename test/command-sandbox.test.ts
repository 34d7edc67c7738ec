/**
 * The `command` engine's sandbox, with a plain shell script as the external agent: it tries
 * to read the user's SSH key (by ~ and by absolute path), the real repository's git-ignored
 * .env, the workspace's reports, another worktree and the service's environment, and to
 * write outside its worktree; it writes what it saw into a file of its worktree, so the
 * patch (raw, never redacted) shows it. Under bubblewrap all of it is absent; the positive
 * control runs the same script with `command.sandbox: none` and `env_allow`, where the
 * same reads and writes succeed. Also: the idle timeout kills the whole process tree, the
 * JSON report block and its fallback, an exit 0 without a change, and the refusal without
 * a sandbox.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runTask, type RunTaskResult } from '../src/run/runTask.ts';
import { ReportSchema, type Report } from '../src/contract/report.ts';
import { agentSandboxMode } from '../src/engines/agentSandbox.ts';
import { readAgentReport } from '../src/engines/agentReport.ts';
import { externalPrompt } from '../src/engines/externalPrompt.ts';
import { parseTask } from '../src/contract/task.ts';
import { makeRedactor } from '../src/safety/redact.ts';
import { sandboxStatus } from '../src/safety/sandbox.ts';
import { diagnose, type DoctorProbes } from '../src/service/doctor.ts';
import { makeWorkspace, readJson, repoFingerprint, worktreeCount, writeTask, type TestWorkspace } from './helpers/workspace.ts';
import { sandboxTest } from './helpers/sandbox.ts';

const TASK = `---
project: bot
type: custom
objective: Probe the sandbox and add a note
scope: ["notes/**", "bot/sizing.py", "bot/execution/**"]
---
`;

interface Setup {
  ws: TestWorkspace;
  base: string;
  home: string;
  canary: { ssh: string; dotenv: string; env: string; report: string; other: string; rc: string };
  paths: { otherWorktree: string; report: string; repo: string; root: string };
  before: string;
}

/** A workspace whose engine is `script` (a #!/bin/sh file), a fake HOME for the service, canaries everywhere. */
async function setup(script: (s: Omit<Setup, 'ws' | 'before'>) => string, command: string[] = [], args: string[] = []): Promise<Setup> {
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-cmdsbx-'));
  const tag = randomBytes(6).toString('hex');
  const canary = {
    ssh: `canary-ssh-${tag}`,
    dotenv: `canary-dotenv-${tag}`,
    env: `canary-env-${tag}`,
    report: `canary-report-${tag}`,
    other: `canary-worktree-${tag}`,
    rc: `canary-rc-${tag}`,
  };
  const home = path.join(base, 'home');
  await fs.mkdir(path.join(home, '.ssh'), { recursive: true });
  await fs.writeFile(path.join(home, '.ssh', 'id_rsa'), `-----BEGIN KEY----- ${canary.ssh}\n`);
  await fs.writeFile(path.join(home, '.agentrc'), `${canary.rc}\n`);
  const agentDir = path.join(base, 'agent');
  await fs.mkdir(agentDir);
  const agent = path.join(agentDir, 'agent.sh');
  const partial = { base, home, canary, paths: { otherWorktree: '', report: '', repo: '', root: '' } };
  const ws = await makeWorkspace({
    project: '    scope: ["**"]\n    risk:\n      - paths: ["bot/execution/**"]\n        level: high\n        reason: order execution',
    extra: ['engine: command', 'command:', `  run: ${JSON.stringify([agent, ...args])}`, '  timeout_s: 60', ...command].join('\n'),
    // A plain name (not secret-looking): absent because it is not passed, not because it is redacted.
    env: { PATH: process.env.PATH, HOME: home, MA_PLAIN_CANARY: canary.env, OPENAI_API_KEY: `sk-test-${tag}-0123456789abcdef` },
  });
  partial.paths.repo = ws.repo;
  partial.paths.root = ws.root;
  partial.paths.otherWorktree = path.join(ws.settings.layout.worktrees, 'another-run');
  partial.paths.report = path.join(ws.settings.layout.reports, 'earlier.json');
  await fs.mkdir(partial.paths.otherWorktree, { recursive: true });
  await fs.writeFile(path.join(partial.paths.otherWorktree, 'secret.txt'), canary.other);
  await fs.writeFile(partial.paths.report, JSON.stringify({ note: canary.report }));
  // The real repository's .env: git-ignored, never in a worktree, readable only by its absolute path.
  await fs.writeFile(path.join(ws.repo, '.env'), `BOT_NOTE=${canary.dotenv}\n`);
  await fs.writeFile(agent, script(partial), { mode: 0o755 });
  return { ...partial, ws, before: await repoFingerprint(ws.repo) };
}

async function teardown(s: Setup | undefined): Promise<void> {
  if (!s) return;
  await s.ws.cleanup();
  await fs.rm(s.base, { recursive: true, force: true });
}

async function run(s: Setup, name: string, task = TASK): Promise<{ result: RunTaskResult; report: Report; patch: string }> {
  const result = await runTask(await writeTask(s.ws.settings.layout.inbox, name, task), { settings: s.ws.settings });
  const report = ReportSchema.parse(await readJson(result.report_path));
  assert.is(await worktreeCount(s.ws.repo), 0, 'no worktree is left');
  const patch = result.patch_path ? await fs.readFile(result.patch_path, 'utf8') : '';
  return { result, report, patch };
}

const exists = (file: string) =>
  fs.stat(file).then(
    () => true,
    () => false,
  );
const q = (p: string) => `'${p.replace(/'/g, `'\\''`)}'`;

/** The probe: each attempt's result on its own line of notes/probe.txt; one positive edit; a report block. */
function probeScript(s: Omit<Setup, 'ws' | 'before'>): string {
  const { repo, root: ws } = s.paths;
  return `#!/bin/sh
mkdir -p notes
{
  echo "ssh-by-home: $(cat "$HOME/.ssh/id_rsa" 2>&1)"
  echo "ssh-by-path: $(cat ${q(path.join(s.home, '.ssh', 'id_rsa'))} 2>&1)"
  echo "dotenv: $(cat ${q(path.join(repo, '.env'))} 2>&1)"
  echo "report: $(cat ${q(s.paths.report)} 2>&1)"
  echo "other-worktree: $(cat ${q(path.join(s.paths.otherWorktree, 'secret.txt'))} 2>&1)"
  echo "env: $(env | grep MA_PLAIN_CANARY)"
  echo "exchange-like: $(env | grep -c -i -e secret -e token)"
  echo "home-rc: $(cat "$HOME/.agentrc" 2>&1)"
  echo "key: \${OPENAI_API_KEY:+set}"
  echo "home-is-private: $(test "$HOME" != ${q(s.home)} && echo yes)"
  echo "git-diff-works: $(git diff --stat HEAD >/dev/null 2>&1 && echo yes)"
  echo x > ${q(path.join(repo, 'pwned-by-agent'))} 2>/dev/null && echo "wrote-repo: yes"
  echo x > ${q(path.join(ws, 'inbox', 'evil.md'))} 2>/dev/null && echo "wrote-inbox: yes"
  echo x > ${q(path.join(s.home, 'pwned'))} 2>/dev/null && echo "wrote-home: yes"
} > notes/probe.txt 2>&1
printf '\\n# The agent was here.\\n' >> bot/sizing.py
echo "working..."
cat <<'EOF'
Done. Report:
\`\`\`json
{"summary": "Added a note to sizing.py\\n\\nProbed the sandbox.", "risks": ["none known"], "risk_level": "low", "next_actions": ["Read notes/probe.txt"], "findings": [{"file": "bot/sizing.py", "line": 1, "severity": "info", "title": "a first line"}, {"file": "bot/nowhere.py", "line": 3, "title": "a wrong place"}]}
\`\`\`
EOF
echo "tokens used 360"
`;
}

function probeLines(patch: string): Record<string, string> {
  const lines: Record<string, string> = {};
  for (const line of patch.split('\n')) {
    const m = /^\+([a-z-]+): ?(.*)$/.exec(line);
    if (m) lines[m[1]!] = m[2]!;
  }
  return lines;
}

sandboxTest(
  'a script agent in the sandbox: no SSH key, no .env of the real repo, no workspace, no other worktree, no service env, no write outside; its edit becomes the patch',
  async () => {
    let s: Setup | undefined;
    try {
      s = await setup(probeScript, ['  home_files: [".agentrc"]']);
      const { report, patch } = await run(s, 'probe.md');
      assert.is(report.status, 'ok', report.error?.message);
      assert.is(report.outcome, 'completed');
      // Positive control: the script ran, edited a file in its worktree, and the diff is the patch.
      assert.equal([...report.changed_files].sort(), ['bot/sizing.py', 'notes/probe.txt']);
      assert.match(patch, '+# The agent was here.');
      const seen = probeLines(patch);
      assert.ok(seen['ssh-by-home'] !== undefined, patch);
      for (const [name, value] of Object.entries(s.canary)) {
        if (name === 'rc') continue;
        assert.not.match(patch, value, `the ${name} canary reached the agent`);
        assert.not.match(JSON.stringify(report), value, `the ${name} canary is in the report`);
      }
      assert.match(seen['ssh-by-home']!, /No such file/);
      assert.match(seen['ssh-by-path']!, /No such file/);
      assert.match(seen.dotenv!, /No such file/);
      assert.match(seen.report!, /No such file/);
      assert.match(seen['other-worktree']!, /No such file/);
      assert.is(seen.env, '');
      assert.is(seen['exchange-like'], '0', 'no secret-looking variable but the one key');
      // What the engine declares it needs is there: the declared home file and the one API key.
      assert.is(seen['home-rc'], s.canary.rc);
      assert.is(seen.key, 'set');
      assert.is(seen['home-is-private'], 'yes');
      assert.is(seen['git-diff-works'], 'yes', 'git works on the history snapshot');
      assert.not.ok('wrote-repo' in seen || 'wrote-inbox' in seen || 'wrote-home' in seen, patch);
      assert.not.ok(await exists(path.join(s.ws.repo, 'pwned-by-agent')));
      assert.not.ok(await exists(path.join(s.ws.settings.layout.inbox, 'evil.md')));
      assert.not.ok(await exists(path.join(s.home, 'pwned')));
      assert.is(await repoFingerprint(s.ws.repo), s.before, 'the real repo is unchanged');

      // The report comes from the JSON block, not the output tail; the rule floor still applies.
      assert.is(report.summary, 'Added a note to sizing.py\n\nProbed the sandbox.');
      assert.equal(report.risks, ['none known']);
      assert.is(report.risk_level, 'low');
      assert.ok(report.next_actions.includes('Read notes/probe.txt'));
      assert.is(report.findings.length, 2);
      assert.is(report.findings[0]!.location_valid, true);
      assert.is(report.findings[1]!.location_valid, false);
      assert.match(report.engine_output_tail ?? '', 'tokens used 360');
      const sidecar = await readJson(path.join(s.ws.root, report.patch_files[1]!));
      assert.is(sidecar.summary.split('\n')[0], 'Added a note to sizing.py', "the commit subject is the summary's first line");
      assert.equal(
        report.notes.filter((n) => /sandbox/.test(n)),
        [],
        'no unsandboxed warning',
      );
    } finally {
      await teardown(s);
    }
  },
);

test('positive control: the same script with command.sandbox: none and env_allow reads and writes all of it, and the report says it ran unsandboxed', async () => {
  let s: Setup | undefined;
  try {
    s = await setup(probeScript, ['  sandbox: none', '  env_allow: [MA_PLAIN_CANARY]']);
    const { report, patch } = await run(s, 'probe-open.md');
    assert.is(report.status, 'ok', report.error?.message);
    const seen = probeLines(patch);
    assert.match(seen['ssh-by-path']!, s.canary.ssh);
    assert.match(seen.dotenv!, s.canary.dotenv);
    assert.match(seen.report!, s.canary.report);
    assert.match(seen['other-worktree']!, s.canary.other);
    assert.match(seen.env!, s.canary.env);
    // Even unsandboxed: a private HOME (the SSH key by ~ is not there), only the declared environment.
    assert.match(seen['ssh-by-home']!, /No such file/);
    assert.is(seen['exchange-like'], '0');
    assert.is(seen['git-diff-works'], 'yes');
    assert.ok(await exists(path.join(s.ws.settings.layout.inbox, 'evil.md')), 'the write outside happened');
    assert.ok(await exists(path.join(s.home, 'pwned')));
    assert.ok(
      report.notes.some((n) => /command\.sandbox: none: the external agent runs WITHOUT a sandbox/.test(n)),
      report.notes.join('\n'),
    );
    // The rule floor: a change under bot/execution/** is high risk whatever the agent says.
  } finally {
    await teardown(s);
  }
});

/** Finds processes whose command line has `needle` (the test's unique sleep). */
async function pidsWith(needle: string): Promise<number[]> {
  const pids = (await fs.readdir('/proc')).filter((name) => /^\d+$/.test(name));
  const cmdlines = await Promise.all(pids.map((pid) => fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')));
  return pids.filter((_, i) => cmdlines[i]!.split('\0').includes(needle)).map(Number);
}

for (const sandbox of ['auto', 'none'] as const) {
  const define = sandbox === 'auto' ? sandboxTest : test;
  define(
    `idle (command.sandbox: ${sandbox}): a silent agent is stopped after idle_timeout_s as limit_reached, its output tail in the report, and a grandchild that ignores SIGTERM is gone`,
    async () => {
      if (process.platform !== 'linux') return; // the /proc scan below is Linux's
      let s: Setup | undefined;
      const needle = `4${randomBytes(2).readUInt16BE()}.${randomBytes(2).readUInt16BE()}`;
      try {
        s = await setup(
          () => `#!/bin/sh
setsid sh -c "trap '' TERM; exec sleep ${needle}" </dev/null >/dev/null 2>&1 &
# Busy for a few seconds (output keeps it alive), then silent.
i=0; while [ $i -lt 15 ]; do echo "agent: tick $i"; sleep 0.2; i=$((i+1)); done
echo "agent: waiting for the model"
exec sleep 600
`,
          ['  idle_timeout_s: 1', `  sandbox: ${sandbox}`],
        );
        let seenAlive = false;
        let done = false;
        const watcher = (async () => {
          while (!done && !seenAlive) {
            seenAlive = (await pidsWith(needle)).length > 0;
            await new Promise((r) => setTimeout(r, 100));
          }
        })();
        const { report } = await run(s, 'silent.md').finally(() => {
          done = true;
        });
        await watcher;
        assert.ok(seenAlive, 'the grandchild ran (the scan finds it)');
        assert.is(report.outcome, 'limit_reached');
        assert.is(report.error?.kind, 'timeout');
        assert.match(report.error!.message, /command\.idle_timeout_s \(1 s\)/);
        assert.match(report.engine_output_tail ?? '', 'agent: waiting for the model');
        assert.equal(await pidsWith(needle), [], 'no process of the agent is left');
      } finally {
        await teardown(s);
      }
    },
  );
}

sandboxTest("an exit 0 without a change is no_changes, with the agent's last message as the summary and its output in the report", async () => {
  let s: Setup | undefined;
  try {
    s = await setup(
      () => `#!/bin/sh
echo "Reading bot/sizing.py"
echo ""
echo "apply_patch failed: the context did not match; I could not make the change."
`,
    );
    const { report } = await run(s, 'noop.md');
    assert.is(report.status, 'ok');
    assert.is(report.outcome, 'no_changes');
    assert.is(report.summary, 'apply_patch failed: the context did not match; I could not make the change.');
    assert.match(report.engine_output_tail ?? '', 'Reading bot/sizing.py');
    assert.is(report.risk_level, 'medium', 'no claim from the agent: medium');
  } finally {
    await teardown(s);
  }
});

sandboxTest('{last_message_file}: what the agent leaves there is its last message, the summary (not the output)', async () => {
  let s: Setup | undefined;
  try {
    s = await setup(
      () => `#!/bin/sh
printf 'Nothing to change: the stop loss is already checked.\\n' > "$1"
echo "Last message written."
echo ""
echo "tokens used 99"
`,
      [],
      ['{last_message_file}'],
    );
    const { report } = await run(s, 'last-message.md');
    assert.is(report.outcome, 'no_changes', report.error?.message);
    assert.is(report.summary, 'Nothing to change: the stop loss is already checked.');
    assert.match(report.engine_output_tail ?? '', 'tokens used 99');
  } finally {
    await teardown(s);
  }
});

sandboxTest('the rule floor applies: a change under bot/execution/** is high risk though the agent says low', async () => {
  let s: Setup | undefined;
  try {
    s = await setup(
      () => `#!/bin/sh
echo "# reviewed" >> bot/execution/__init__.py
echo '{"summary": "Touched execution", "risk_level": "low"}'
`,
    );
    const { report } = await run(s, 'floor.md');
    assert.is(report.outcome, 'completed', report.error?.message);
    assert.is(report.summary, 'Touched execution');
    assert.is(report.risk_level, 'high');
    assert.ok(
      report.risk_reasons.some((r) => r.includes('order execution')),
      report.risk_reasons.join('; '),
    );
  } finally {
    await teardown(s);
  }
});

test('without a sandbox the command engine refuses (a config error naming command.sandbox) and the agent never runs', async () => {
  let s: Setup | undefined;
  try {
    s = await setup(
      () => `#!/bin/sh
echo ran > notes-ran.txt
`,
    );
    // No bwrap on the service's PATH: the sandbox cannot run.
    const settings = { ...s.ws.settings, env: { ...s.ws.settings.env, PATH: path.join(s.base, 'empty-bin') } };
    const result = await runTask(await writeTask(settings.layout.inbox, 'refused.md', TASK), { settings });
    const report = ReportSchema.parse(await readJson(result.report_path));
    assert.is(report.status, 'error');
    assert.is(report.error?.kind, 'config');
    assert.is(report.error?.field, 'command.sandbox');
    assert.match(report.error!.message, /command\.sandbox: none/);
    assert.equal(report.changed_files, []);
    assert.is(report.trajectory, null, 'the agent was never started');
    // Elsewhere than Linux the same refusal, by the platform.
    for (const platform of ['win32', 'darwin'] as const) {
      const error = await agentSandboxMode(s.ws.settings, { sandbox: 'auto' }, platform).then(
        () => null,
        (e: Error) => e,
      );
      assert.match(error?.message ?? '(no error)', /command\.sandbox: none/);
    }
    assert.is(await agentSandboxMode(s.ws.settings, { sandbox: 'none' }, 'win32'), 'none');
  } finally {
    await teardown(s);
  }
});

test('doctor at start: a command engine whose sandbox cannot run is an error naming command.sandbox; command.sandbox: none is a loud warning', async () => {
  let s: Setup | undefined;
  try {
    s = await setup(() => '#!/bin/sh\n');
    const machine: Partial<DoctorProbes> = { platform: 'linux', freeBytes: async () => 50 * 1024 ** 3, oneVolume: async () => undefined };
    // The real probe, searching a PATH without bwrap (a fresh machine).
    const noBwrap: DoctorProbes['sandbox'] = (settings, platform) =>
      sandboxStatus({ ...settings, env: { ...settings.env, PATH: '/nonexistent' } }, { platform });
    const about = async (settings: TestWorkspace['settings'], sandbox: DoctorProbes['sandbox']) =>
      (await diagnose(settings, { ...machine, sandbox })).findings.filter((f) => f.field === 'command.sandbox');
    const refused = await about(s.ws.settings, noBwrap);
    assert.is(refused.length, 1, JSON.stringify(refused));
    assert.is(refused[0]!.level, 'error');
    assert.match(refused[0]!.message, /bubblewrap.*command\.sandbox: none/);
    // Positive control: where the sandbox runs, nothing to say.
    assert.equal(await about(s.ws.settings, async () => ({ mode: 'bwrap', error: null, warning: null })), []);
    const open = { ...s.ws.settings, config: { ...s.ws.settings.config, command: { ...s.ws.settings.config.command!, sandbox: 'none' as const } } };
    const warned = await about(open, noBwrap);
    assert.is(warned.length, 1);
    assert.is(warned[0]!.level, 'warning');
    assert.match(warned[0]!.message, /runs WITHOUT a sandbox/);
  } finally {
    await teardown(s);
  }
});

test('the report block: fenced or bare, the last one that fits wins; without one the last message, never the output tail', () => {
  const block = (summary: string, extra = '') => `{"summary": ${JSON.stringify(summary)}${extra}}`;
  const fenced = readAgentReport(
    `working\n\`\`\`json\n${block('first')}\n\`\`\`\nmore\n\`\`\`json\n${block('Fix the stop loss', ', "risk_level": "high", "risks": ["r", 3]')}\n\`\`\`\ntokens used 360\n`,
    null,
    'codex',
  );
  assert.is(fenced.summary, 'Fix the stop loss');
  assert.is(fenced.risk_level, 'high');
  assert.equal(fenced.risks, ['r']);
  assert.ok(fenced.fromBlock);
  const bare = readAgentReport(`{"type": "event", "n": 1}\nDone: ${block('Bare block', ', "risk_level": "extreme"')} trailing text\r\nexit\r\n`, null, 'sh');
  assert.is(bare.summary, 'Bare block');
  assert.is(bare.risk_level, 'medium', 'an unknown risk_level is no claim');
  // A block that does not fit (no summary) is not a report: the last message is.
  const fallback = readAgentReport(`{"type": "event"}\n\nfirst paragraph\n\nI changed two files.\nBoth are tested.\n`, null, 'aider');
  assert.is(fallback.summary, 'I changed two files.\nBoth are tested.');
  assert.not.ok(fallback.fromBlock);
  assert.is(fallback.risk_level, 'medium');
  // A preset's last message goes first.
  assert.is(readAgentReport('tokens used 360', 'The last message', 'codex').summary, 'The last message');
  assert.is(readAgentReport('', null, 'codex').summary, 'codex ended without a message.');
});

test('the external prompt: the scope as a rule, no built-in tool names, AGENTS.md only when the agent does not read it', async () => {
  const worktree = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-extprompt-'));
  try {
    await fs.writeFile(path.join(worktree, 'AGENTS.md'), 'Use tabs. AGENTS-MARKER');
    const task = parseTask(Buffer.from(TASK), 'p.md');
    const input = { task, worktree, denied: () => false, redact: makeRedactor({}) };
    const text = await externalPrompt({ ...input, readsAgentsMd: false });
    assert.match(text, 'Probe the sandbox and add a note');
    assert.match(text, /Change, create or delete only files that match[\s\S]*- notes\/\*\*/);
    assert.match(text, 'AGENTS-MARKER');
    assert.match(text, '"summary"');
    for (const word of ['edit_file', 'run_checks', 'finish', 'write_file', 'refused']) assert.not.match(text, word);
    assert.not.match(await externalPrompt({ ...input, readsAgentsMd: true }), 'AGENTS-MARKER');
    const reportOnly = parseTask(Buffer.from(TASK.replace(/scope: .*/, 'scope: []')), 'r.md');
    assert.match(await externalPrompt({ ...input, task: reportOnly, readsAgentsMd: true }), 'report-only task');
  } finally {
    await fs.rm(worktree, { recursive: true, force: true });
  }
});

test.run();
