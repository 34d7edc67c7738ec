/**
 * Secrets never leave: canaries in files the deny list names and in files it does not, read,
 * searched and printed by a test through a full runTask with the scripted model on
 * 127.0.0.1; none reaches a request body, the reports, the trajectory or the logs. Code that
 * only names keys reaches the model byte for byte, and an edit copied from it applies.
 * Then a table of what the detector does with ordinary code and with secrets.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { ReportSchema } from '../src/contract/report.ts';
import { runTask } from '../src/run/runTask.ts';
import { processApprovedPatch } from '../src/gate/gate.ts';
import { createLogger, silentLogger } from '../src/log.ts';
import { makeRedactor, REDACTED } from '../src/safety/redact.ts';
import { numberLine } from '../src/engines/editMatch.ts';
import { finish, startFakeLlm, toolCall, type RecordedRequest, type Reply } from './helpers/fakeLlm.ts';
import { makeWorkspace, readJson, writeTask } from './helpers/workspace.ts';

/** A random base62 string that looks like a real API secret (digits, upper and lower case guaranteed). */
function canary(length = 40): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = randomBytes(length);
  const body = [...bytes].map((b) => alphabet[b % alphabet.length]).join('');
  return `Q${body.slice(3)}7z`;
}

/** The text of the last tool result the model received. */
function lastToolResult(req: RecordedRequest): string {
  const last = req.body?.messages?.at(-1);
  if (last?.role !== 'tool') throw new Error(`the last message is not a tool result: ${JSON.stringify(last)?.slice(0, 300)}`);
  return String(last.content);
}

const TASK = `---
project: bot
type: audit_code
objective: Make the exchange client creation configurable
scope: ["bot/config.py"]
---
Add a timeout to the client.
`;

test('canaries in secret files, config files, .env.local and a Python constant reach no request, report, trajectory or log; code naming keys is untouched', async () => {
  const yamlToken = canary();
  const jsonKey = canary();
  const jsonSecret = canary();
  const envSecret = canary();
  const pyConstant = canary();
  const humanPassword = 'hunter2hunter2';
  const canaries = { yamlToken, jsonKey, jsonSecret, envSecret, pyConstant, humanPassword };

  const problems: string[] = [];
  const seen: Record<string, string> = {};
  /** A scripted step that keeps the previous tool result, then makes the next call. */
  const after = (label: string, next: (result: string) => Reply) => (req: RecordedRequest) => {
    let result = '';
    try {
      result = lastToolResult(req);
    } catch (error) {
      problems.push(`${label}: ${(error as Error).message}`);
    }
    seen[label] = result;
    return next(result);
  };

  const llm = await startFakeLlm([
    toolCall('read_file', { path: 'config/secrets.yaml' }),
    after('read secrets.yaml', () => toolCall('read_file', { path: 'config/keys.json' })),
    after('read keys.json', () => toolCall('read_file', { path: '.env.local' })),
    after('read .env.local', () => toolCall('read_file', { path: 'bot/config.py' })),
    after('read config.py', () => toolCall('search', { pattern: '[A-Za-z0-9]{30,}' })),
    after('search random-looking', () => toolCall('search', { pattern: 'hunter2|token:|apiSecret|SECRET' })),
    after('search names', () => toolCall('run_checks', {})),
    // An edit copied from what the model saw: the line that names the keys.
    after('run_checks', () => {
      const line = seen['read config.py']!.split('\n').find((l) => l.includes('client_class(api_key='));
      if (!line) problems.push('the Client line did not reach the model');
      return toolCall('edit_file', { path: 'bot/config.py', old: line ?? 'missing', new: `${line ?? ''}  # timeout set by the client` });
    }),
    // An edit copied from the redacted line is refused with an explanation, not a silent mismatch.
    after('edit Client line', () => {
      const line = seen['read config.py']!.split('\n').find((l) => /^ *\d+\| BINANCE_SECRET/.test(l));
      return toolCall('edit_file', { path: 'bot/config.py', old: line ?? 'missing', new: 'BINANCE_SECRET = os.environ["BINANCE_SECRET"]' });
    }),
    after('edit redacted line', () =>
      toolCall('write_file', {
        path: 'bot/config.py',
        content: seen['read config.py']!.split('\n')
          .slice(1)
          .map((l) => l.replace(/^ *\d+\|(?: |$)/, ''))
          .join('\n'),
      }),
    ),
    after('write with marker', () => finish('Added a note on the client.', 'low')),
  ]);
  const ws = await makeWorkspace({
    llmUrl: llm.url,
    project: `    scope: ["**"]
    test: "python3 scripts/print_config.py"
    dry_run: "python3 -m bot.main --dry-run"`,
  });
  try {
    const file = (rel: string) => path.join(ws.repo, rel);
    await fs.mkdir(file('config'), { recursive: true });
    await fs.writeFile(file('config/secrets.yaml'), `exchange: binance\ntoken: ${yamlToken}\npassword: "${humanPassword}"\n`);
    await fs.writeFile(file('config/keys.json'), `${JSON.stringify({ apiKey: jsonKey, apiSecret: jsonSecret, testnet: false }, null, 2)}\n`);
    await fs.writeFile(file('.env.local'), `BINANCE_API_SECRET=${envSecret}\nBOT_SYMBOL=ETHUSDT\n`);
    const ordinary = [
      '',
      `BINANCE_SECRET = "${pyConstant}"`,
      'API_KEY_ENV = "BINANCE_API_KEY"',
      '',
      '',
      'def exchange_key() -> str:',
      '    return os.environ["BINANCE_API_KEY"]',
      '',
      '',
      'def make_client(settings, client_class):',
      '    return client_class(api_key=settings.api_key, api_secret=settings.api_secret)',
      '',
    ].join('\n');
    await fs.appendFile(file('bot/config.py'), ordinary);
    const configPy = await fs.readFile(file('bot/config.py'), 'utf8');
    await fs.writeFile(
      file('scripts/print_config.py'),
      [
        'import pathlib',
        'for name in ["bot/config.py", ".env.local", "config/keys.json", "config/secrets.yaml"]:',
        '    p = pathlib.Path(name)',
        '    print(p.read_text() if p.exists() else f"{name}: not in the check copy")',
        '',
      ].join('\n'),
    );
    await execa('git', ['add', '--force', '--all'], { cwd: ws.repo });
    await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-m', 'config and canaries'], { cwd: ws.repo });

    const log = createLogger({ logsDir: ws.settings.layout.logs, console: 'none', redact: makeRedactor(ws.settings.env) });
    const task = await writeTask(ws.settings.layout.inbox, 'client-timeout.md', TASK);
    const result = await runTask(task, { settings: ws.settings, log });
    // The logger redacts what a caller hands it, too.
    log.info({ output: `token: ${yamlToken}` }, `check printed BINANCE_SECRET = "${pyConstant}"`);
    await new Promise((resolve) => log.flush(() => resolve(undefined)));
    await new Promise((resolve) => setTimeout(resolve, 200));

    // No canary anywhere it must not be.
    const places: Record<string, string> = {
      'request bodies': llm.requests.map((r) => JSON.stringify(r.body)).join('\n'),
      'report json': await fs.readFile(result.report_path, 'utf8'),
      'report md': await fs.readFile(result.report_md_path, 'utf8'),
      trajectory: await fs.readFile(path.join(ws.settings.layout.reports, 'client-timeout.trajectory.jsonl'), 'utf8'),
      logs: (await Promise.all((await fs.readdir(ws.settings.layout.logs)).map((f) => fs.readFile(path.join(ws.settings.layout.logs, f), 'utf8')))).join('\n'),
    };
    for (const [where, text] of Object.entries(places)) {
      for (const [name, value] of Object.entries(canaries)) {
        assert.not.ok(text.includes(value), `${name} leaked into the ${where}`);
      }
    }
    assert.is(llm.requests.length, 11, 'every scripted step was a request');
    assert.match(places.logs!, /run finished/, 'the run wrote its log');
    assert.match(places.logs!, /BINANCE_SECRET = \\"\[REDACTED\]\\"/, 'the caller-supplied line is in the log, redacted');
    assert.equal(problems, []);
    assert.is(result.status, 'ok', result.report.error?.message);
    assert.is(result.outcome, 'completed');

    // What the model saw: refusals for denied files, values hidden in the others...
    assert.match(seen['read secrets.yaml']!, /^ERROR: refused: "config\/secrets.yaml" is on the deny list/);
    assert.match(seen['read .env.local']!, /^ERROR: refused: ".env.local" is on the deny list/);
    assert.match(seen['read keys.json']!, /2\| {3}"apiKey": "\[REDACTED\]",\n3\| {3}"apiSecret": "\[REDACTED\]",\n4\| {3}"testnet": false/);
    // ...and config.py byte for byte, but for the one secret value (positive control).
    const shownLines = configPy.replace(pyConstant, REDACTED).replace(/\n$/, '').split('\n');
    const width = String(shownLines.length).length;
    assert.is(seen['read config.py'], `bot/config.py (${shownLines.length} lines)\n${shownLines.map((l, i) => numberLine(i + 1, l, width)).join('\n')}`);
    // Files on the deny list are not in the check copy, tracked or not; the others are printed redacted.
    assert.match(seen.run_checks!, 'config/secrets.yaml: not in the check copy');
    assert.match(seen.run_checks!, '.env.local: not in the check copy');
    assert.match(seen.run_checks!, /"apiSecret": "\[REDACTED\]"/);
    assert.match(seen.run_checks!, /return os\.environ\["BINANCE_API_KEY"\]/);
    assert.match(seen['edit Client line']!, /^edited bot\/config\.py at line \d+$/);
    assert.match(seen['edit redacted line']!, /^ERROR: "old" was not found in bot\/config.py: it contains \[REDACTED\]/);
    assert.match(seen['write with marker']!, /^ERROR: refused: the text for bot\/config.py contains \[REDACTED\]/);

    // The edit reached the patch; the real value is still in the file the patch changes.
    const patch = await fs.readFile(path.join(ws.root, result.report.patch_files[0]!), 'utf8');
    assert.match(patch, /\+ {4}return client_class\(api_key=settings\.api_key, api_secret=settings\.api_secret\) {2}# timeout set by the client/);

    const report = ReportSchema.parse(await readJson(result.report_path));
    assert.ok(report.secrets_redacted > 0, `secrets_redacted is ${report.secrets_redacted}`);
    assert.match(places['report md']!, new RegExp(`Secrets redacted \\| ${report.secrets_redacted} `));
    assert.match(report.tests!.output_tail, /"apiSecret": "\[REDACTED\]"/);
  } finally {
    await llm.close();
    await ws.cleanup();
  }
});

test("an error that quotes a secret: failed/<task>.error.md and the gate's .reason.md say [REDACTED]", async () => {
  const secret = canary();
  // A secret the run knows (from the environment), quoted back by an error: a task naming it as its project.
  const ws = await makeWorkspace({ env: { PATH: process.env.PATH, HOME: process.env.HOME, EXCHANGE_API_SECRET: secret } });
  const { layout } = ws.settings;
  try {
    const result = await runTask(await writeTask(layout.inbox, 'leaky.md', `---\nproject: ${secret}\nobjective: Review\n---\n`), { settings: ws.settings });
    assert.is(result.status, 'error');
    assert.match(result.report.error?.message ?? '', `unknown project "${REDACTED}"; configured projects: bot`);
    const note = await fs.readFile(path.join(layout.failed, 'leaky.md.error.md'), 'utf8');
    assert.match(note, `unknown project "${REDACTED}"`, 'the note is there and says what went wrong');
    assert.not.ok(note.includes(secret), "no secret in the failed task's note");

    // The gate: a sidecar naming the secret as its project is rejected; the reason is redacted.
    const bytes = Buffer.from('diff --git a/x b/x\n');
    await fs.writeFile(path.join(layout.patches.approved, 'leaky.patch'), bytes);
    const sidecar = {
      task_id: 'leaky',
      run_id: 'r',
      project: secret,
      branch: 'main',
      base_commit: 'HEAD',
      files: ['x'],
      scope: ['**'],
      sha256: createHash('sha256').update(bytes).digest('hex'),
      bytes: bytes.length,
      risk_level: 'low',
      summary: 's',
      created_at: new Date().toISOString(),
    };
    await fs.writeFile(path.join(layout.patches.approved, 'leaky.patch.json'), JSON.stringify(sidecar));
    const gated = await processApprovedPatch(ws.settings, path.join(layout.patches.approved, 'leaky.patch'), silentLogger());
    assert.is(gated.decision, 'rejected');
    assert.is(gated.reason, `unknown project "${REDACTED}" (not in meta-agent.yaml)`);
    const reason = await fs.readFile(path.join(layout.patches.rejected, 'leaky.reason.md'), 'utf8');
    assert.match(reason, `unknown project "${REDACTED}"`);
    assert.not.ok(reason.includes(secret), "no secret in the gate's reason");
  } finally {
    await ws.cleanup();
  }
});

// ---------------------------------------------------------------------------------------------
// the detector, case by case

const KEY = 'q7Vb2XkP9mZr4TsW8nYc3LdF6hJa1GeU';

/** [what it is, the text, what the model sees]. Identical text means untouched. */
const CASES: Array<[string, string, string]> = [
  // ordinary code that names keys: never touched
  ['exchange client from settings', 'client = Client(api_key=settings.api_key, api_secret=settings.api_secret)', 'same'],
  ['env lookup by subscript', 'key = os.environ["BINANCE_API_KEY"]', 'same'],
  ['env lookup with default', 'secret = os.getenv("BINANCE_SECRET", "")', 'same'],
  ['name of the env var', 'API_KEY_ENV = "BINANCE_API_KEY"', 'same'],
  ['secret manager call', 'token = get_secret("binance/token")', 'same'],
  ['None default', 'password=None', 'same'],
  ['YAML reference', 'token: ${TOKEN}', 'same'],
  ['dataclass field', '    api_key: str = ""', 'same'],
  ['pydantic type', '    api_secret: SecretStr', 'same'],
  ['attribute from parameter', '        self.api_key = api_key', 'same'],
  ['JS object from a variable', '  apiKey: apiKeyFromEnv', 'same'],
  ['template literal', 'const token = `${prefix}-${suffix}`', 'same'],
  ['tokenizer name', 'tokenizer = "bert-base-uncased"', 'same'],
  ['path to a key file', 'private_key = "~/.ssh/id_ed25519"', 'same'],
  ['placeholder', 'api_key = "your-api-key-here"', 'same'],
  ['base64 blob in a test', 'PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="', 'same'],
  ['git sha', 'base_commit: 2b18fea0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4', 'same'],
  // secrets: the value goes, the code around it stays
  ['key literal in code', `BINANCE_SECRET = "${KEY}"`, `BINANCE_SECRET = "${REDACTED}"`],
  ['kwarg literal', `Client(api_key="${KEY}", testnet=True)`, `Client(api_key="${REDACTED}", testnet=True)`],
  ['JSON keys', `{"apiKey": "${KEY}", "apiSecret": "${KEY}9"}`, `{"apiKey": "${REDACTED}", "apiSecret": "${REDACTED}"}`],
  ['YAML token', `token: ${KEY}`, `token: ${REDACTED}`],
  ['.env line', `BINANCE_API_SECRET=${KEY}`, `BINANCE_API_SECRET=${REDACTED}`],
  ['human password, quoted', 'password: "hunter2hunter2"', `password: "${REDACTED}"`],
  ['human password, .env style', 'DB_PASSWORD=hunter2hunter2', `DB_PASSWORD=${REDACTED}`],
  ['Bearer header', `headers = {"Authorization": "Bearer ${KEY}"}`, `headers = {"Authorization": "Bearer ${REDACTED}"}`],
  ['GitHub token (secretlint)', 'GH = ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8', `GH = ${REDACTED}`],
  ['AWS secret key (secretlint), name kept', 'aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzzzzzzzzz', `aws_secret_access_key = ${REDACTED}`],
  ['password in a URL (secretlint), host kept', 'DB = "postgres://bot:Sup3rS3cret@db:5432/trades"', `DB = "postgres://bot:${REDACTED}@db:5432/trades"`],
  ['OpenAI-compatible key in a comment', '# old key: sk-9f8e7d6c5b4a39281706f5e4d3c2b1a0', `# old key: ${REDACTED}`],
  ['a bare random key with no name (entropy)', `print("${KEY}")`, `print("${REDACTED}")`],
  // known misses (documented): a short bare value, or a value that reads as code
  ['MISS: a bare password with no name', 'print("hunter2hunter2")', 'same'],
  ['MISS: INI password without digits, spaces around "="', 'password = correcthorsebatterystaple', 'same'],
  ['MISS: a password under a name that does not say so', 'BINANCE_PW_2 = "hunter2hunter2"', 'same'],
];

test('the detector: code naming keys untouched, secret values redacted, known misses', () => {
  const rows: string[] = [];
  for (const [what, text, expected] of CASES) {
    const out = makeRedactor({})(text);
    rows.push(`${what.padEnd(48)} | ${out}`);
    assert.is(out, expected === 'same' ? text : expected, what);
  }
  if (process.env.SHOW_REDACTION_TABLE) console.log(rows.join('\n'));
});

test('makeRedactor: a value found once is redacted bare later in the run; hits are counted', () => {
  const redact = makeRedactor({ EXCHANGE_SECRET: 'env-value-123456' });
  assert.is(redact.hits, 0);
  // A password is found by its name only; bare, it is found because it was seen once.
  assert.is(redact('BINANCE_SECRET = "hunter2hunter2"'), `BINANCE_SECRET = "${REDACTED}"`);
  assert.is(redact('test output: hunter2hunter2'), `test output: ${REDACTED}`);
  assert.is(redact('env env-value-123456'), `env ${REDACTED}`);
  assert.is(redact.hits, 3);
  assert.is(makeRedactor({})('test output: hunter2hunter2'), 'test output: hunter2hunter2', 'positive control: a fresh redactor does not know it');
});

test('makeRedactor: a remembered value inside a longer secret does not leave the rest visible', () => {
  const redact = makeRedactor({});
  redact(`token: ${KEY}`);
  assert.is(redact(`{"apiSecret": "${KEY}XYZ"}`), `{"apiSecret": "${REDACTED}"}`);
});

test('makeRedactor: a secretlint-disable comment in the repository does not switch the detector off', () => {
  const text = `// secretlint-disable\nconst GH = "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8";`;
  assert.not.ok(makeRedactor({})(text).includes('ghp_A1b2'));
});

test.run();
