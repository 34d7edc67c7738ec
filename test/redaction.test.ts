/**
 * Redaction protects secret values without corrupting code. First a table of real
 * exchange-client code: for each case the exact text the model sees, and that every
 * identifier of the input is still there. Then end to end through the real `openai` client
 * and the scripted server: a repo file with exchange-client code is read, an edit copied
 * from what the model saw applies, edits and writes carrying the marker are refused, and
 * the secret values reach no request, report, trajectory or log.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import { numberLine } from '../src/engines/editMatch.ts';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { runTask } from '../src/run/runTask.ts';
import { createLogger } from '../src/log.ts';
import { makeRedactor, REDACTED } from '../src/safety/redact.ts';
import { finish, startFakeLlm, toolCall, type RecordedRequest } from './helpers/fakeLlm.ts';
import { makeWorkspace, writeTask } from './helpers/workspace.ts';

// Fake secrets shaped like the real ones (Binance keys are 64 random base62 characters).
const BINANCE_KEY = 'vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A';
const BINANCE_SECRET = 'NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j';
/** A key in a comment with no name around it: found by its shape alone. */
const OLD_KEY = 'Gq4XbT0sW8pLz2KvN6yRj1HcM9dFa3UeZ7iQo5Bt2Ym8Pw0Vx4Ln6Sk1Jr9Dh3Cf';
const OPENAI_KEY = 'sk-proj-Ab3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5zA7bC9dE1fG3';
/** 32 random bytes in base64: an HMAC secret. */
const HMAC_SECRET = 'kT9vQ2+8mZxR4wL1pN6sB3yF7hJ0cV5dG2aE9uK4iO8=';
/** A 1x1 PNG in base64: a test fixture, not a secret. */
const PIXEL_PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==';
const PEM = [
  '-----BEGIN RSA PRIVATE KEY-----',
  'MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun',
  'VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK',
  '-----END RSA PRIVATE KEY-----',
].join('\n');
const GIT_SHA = '2b18fea0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4';
const UUID = '550e8400-e29b-41d4-a716-446655440000';
const INTEGRITY = 'sha512-NZGeBCo2yJ9QjJdzB6ZPcfPpgYcEQo3vY7lV5R8ZGVfVq9YJ3XLlXNnKvYpTq9ZlQ7WUoJ8s1xVNdE8ZXj+5YA==';

interface Case {
  what: string;
  input: string;
  /** The secret values in the input: what must go, and all that may. */
  secrets: string[];
  /** Exactly what the model sees. */
  seen: string;
}

const CASES: Case[] = [
  {
    what: 'python-binance client from settings',
    input: 'client = Client(api_key=settings.api_key, api_secret=settings.api_secret, testnet=settings.testnet)',
    secrets: [],
    seen: 'client = Client(api_key=settings.api_key, api_secret=settings.api_secret, testnet=settings.testnet)',
  },
  {
    what: 'ccxt client from the environment',
    input: "exchange = ccxt.binance({'apiKey': os.environ['BINANCE_API_KEY'], 'secret': os.environ['BINANCE_SECRET'], 'enableRateLimit': True})",
    secrets: [],
    seen: "exchange = ccxt.binance({'apiKey': os.environ['BINANCE_API_KEY'], 'secret': os.environ['BINANCE_SECRET'], 'enableRateLimit': True})",
  },
  {
    what: 'env lookups',
    input: 'api_key = os.getenv("BINANCE_API_KEY")\napi_secret = os.environ.get("BINANCE_SECRET", "")\nAPI_KEY_ENV = "BINANCE_API_KEY"',
    secrets: [],
    seen: 'api_key = os.getenv("BINANCE_API_KEY")\napi_secret = os.environ.get("BINANCE_SECRET", "")\nAPI_KEY_ENV = "BINANCE_API_KEY"',
  },
  {
    what: 'signing code: parameters, attributes, type hints, f-strings',
    input: [
      'class Signer:',
      '    def __init__(self, api_key: str, api_secret: str) -> None:',
      '        self.api_key = api_key',
      '        self.api_secret = api_secret',
      '',
      '    def sign(self, secret: str, query: str) -> str:',
      '        return hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()',
      '',
      '    def headers(self, params: str) -> dict:',
      '        return {"X-MBX-APIKEY": self.api_key, "q": f"{params}&signature={self.sign(self.api_secret, params)}"}',
    ].join('\n'),
    secrets: [],
    seen: [
      'class Signer:',
      '    def __init__(self, api_key: str, api_secret: str) -> None:',
      '        self.api_key = api_key',
      '        self.api_secret = api_secret',
      '',
      '    def sign(self, secret: str, query: str) -> str:',
      '        return hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()',
      '',
      '    def headers(self, params: str) -> dict:',
      '        return {"X-MBX-APIKEY": self.api_key, "q": f"{params}&signature={self.sign(self.api_secret, params)}"}',
    ].join('\n'),
  },
  {
    what: 'config dataclass with empty defaults',
    input:
      '@dataclass\nclass ExchangeConfig:\n    api_key: str = ""\n    api_secret: str = field(default="", repr=False)\n    password: Optional[str] = None\n    testnet: bool = True',
    secrets: [],
    seen: '@dataclass\nclass ExchangeConfig:\n    api_key: str = ""\n    api_secret: str = field(default="", repr=False)\n    password: Optional[str] = None\n    testnet: bool = True',
  },
  {
    what: 'config dataclass with a real-looking default',
    input: `@dataclass\nclass ExchangeConfig:\n    api_key: str = "${BINANCE_KEY}"\n    api_secret: Optional[str] = '${BINANCE_SECRET}'`,
    secrets: [BINANCE_KEY, BINANCE_SECRET],
    seen: `@dataclass\nclass ExchangeConfig:\n    api_key: str = "${REDACTED}"\n    api_secret: Optional[str] = '${REDACTED}'`,
  },
  {
    what: 'keyword argument literal next to a reference',
    input: `client = Client(api_key="${BINANCE_KEY}", api_secret=settings.api_secret)`,
    secrets: [BINANCE_KEY],
    seen: `client = Client(api_key="${REDACTED}", api_secret=settings.api_secret)`,
  },
  {
    what: 'an sk-proj key literal',
    input: `llm = OpenAI(api_key="${OPENAI_KEY}", base_url=LLM_URL)\nFALLBACK = "${OPENAI_KEY}"`,
    secrets: [OPENAI_KEY],
    seen: `llm = OpenAI(api_key="${REDACTED}", base_url=LLM_URL)\nFALLBACK = "${REDACTED}"`,
  },
  {
    what: 'a key in a comment, no name',
    input: `# testnet key for manual runs: ${BINANCE_KEY}\nclient = Client(api_key=settings.api_key)`,
    secrets: [BINANCE_KEY],
    seen: `# testnet key for manual runs: ${REDACTED}\nclient = Client(api_key=settings.api_key)`,
  },
  {
    what: 'a base64 fixture (a PNG) is not a secret',
    input: `PIXEL_PNG = base64.b64decode("${PIXEL_PNG}")`,
    secrets: [],
    seen: `PIXEL_PNG = base64.b64decode("${PIXEL_PNG}")`,
  },
  {
    what: 'a base64 blob assigned to secret, and bare',
    input: `secret = "${HMAC_SECRET}"\nassert sign(b"x") == sign_with(b"x", "${HMAC_SECRET}")`,
    secrets: [HMAC_SECRET],
    seen: `secret = "${REDACTED}"\nassert sign(b"x") == sign_with(b"x", "${REDACTED}")`,
  },
  {
    what: 'a PEM private key',
    input: `SIGNING_KEY_PEM = """${PEM}"""\nkey = serialization.load_pem_private_key(SIGNING_KEY_PEM.encode(), password=None)`,
    secrets: [PEM],
    seen: `SIGNING_KEY_PEM = """${REDACTED}"""\nkey = serialization.load_pem_private_key(SIGNING_KEY_PEM.encode(), password=None)`,
  },
  {
    what: 'YAML config: a reference and a literal',
    input: 'exchange:\n  name: binance\n  api_key: ${BINANCE_API_KEY}\n  api_secret: abcD3fGh1jKlMn0pQrStUvWx\n  testnet: true',
    secrets: ['abcD3fGh1jKlMn0pQrStUvWx'],
    seen: `exchange:\n  name: binance\n  api_key: \${BINANCE_API_KEY}\n  api_secret: ${REDACTED}\n  testnet: true`,
  },
  {
    what: 'TOML / INI section',
    input: `[binance]\napi_key = "${BINANCE_KEY}"\napi_secret = '${BINANCE_SECRET}'\nsymbol = "ETHUSDT"`,
    secrets: [BINANCE_KEY, BINANCE_SECRET],
    seen: `[binance]\napi_key = "${REDACTED}"\napi_secret = '${REDACTED}'\nsymbol = "ETHUSDT"`,
  },
  {
    what: 'JSON keys file',
    input: `{\n  "apiKey": "${BINANCE_KEY}",\n  "secret": "${BINANCE_SECRET}",\n  "sandbox": true\n}`,
    secrets: [BINANCE_KEY, BINANCE_SECRET],
    seen: `{\n  "apiKey": "${REDACTED}",\n  "secret": "${REDACTED}",\n  "sandbox": true\n}`,
  },
  {
    what: '.env lines',
    input: `BINANCE_API_KEY=${BINANCE_KEY}\nexport DB_PASSWORD=hunter2hunter2\nBOT_SYMBOL=ETHUSDT`,
    secrets: [BINANCE_KEY, 'hunter2hunter2'],
    seen: `BINANCE_API_KEY=${REDACTED}\nexport DB_PASSWORD=${REDACTED}\nBOT_SYMBOL=ETHUSDT`,
  },
  {
    what: 'URLs with a password, and with a reference in its place',
    input: 'FEED = "https://user:pass@host"\nDB = f"postgresql://{user}:{password}@{host}/trades"\nCACHE = "redis://:s3cretRedis@cache:6379/0"',
    secrets: ['pass', 's3cretRedis'],
    seen: `FEED = "https://user:${REDACTED}@host"\nDB = f"postgresql://{user}:{password}@{host}/trades"\nCACHE = "redis://:${REDACTED}@cache:6379/0"`,
  },
  {
    what: 'a git SHA, a UUID and a lockfile hash are not secrets',
    input: `BASE_COMMIT = "${GIT_SHA}"\nORDER_ID = "${UUID}"\n"integrity": "${INTEGRITY}"`,
    secrets: [],
    seen: `BASE_COMMIT = "${GIT_SHA}"\nORDER_ID = "${UUID}"\n"integrity": "${INTEGRITY}"`,
  },
];

/** Identifier tokens (names, attributes, keywords) of code, each with its count. */
function identifiers(code: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const [name] of code.matchAll(/[A-Za-z_][A-Za-z0-9_]*/g)) counts.set(name, (counts.get(name) ?? 0) + 1);
  return counts;
}

/** The value where it stands alone, not inside a longer word ("pass" in "password"). */
function standalone(value: string): RegExp {
  return new RegExp(`(?<![A-Za-z0-9_])${value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![A-Za-z0-9_])`, 'g');
}

test(`redaction table (${CASES.length} cases): what the model sees; no identifier changes; no secret value left`, () => {
  assert.ok(CASES.length >= 12);
  const rows: string[] = [];
  for (const { what, input, secrets, seen } of CASES) {
    const out = makeRedactor({})(input);
    rows.push(`## ${what}\n${out}`);
    assert.is(out, seen, what);
    // Every identifier of the input outside the secret values is in the output as often.
    let withoutSecrets = input;
    for (const secret of secrets) withoutSecrets = withoutSecrets.replace(standalone(secret), ' ');
    const after = identifiers(out);
    for (const [name, count] of identifiers(withoutSecrets)) {
      assert.ok((after.get(name) ?? 0) >= count, `${what}: the identifier ${name} is gone (${after.get(name) ?? 0} of ${count})`);
    }
    for (const secret of secrets) {
      assert.ok(input.includes(secret), `${what}: the case names a secret its input has`);
      assert.not.ok(standalone(secret).test(out), `${what}: ${secret.slice(0, 12)}... is still visible`);
    }
    if (secrets.length === 0) assert.is(out, input, `${what}: untouched`);
    else assert.ok(out.includes(REDACTED), `${what}: positive control, something was redacted`);
  }
  if (process.env.SHOW_REDACTION_TABLE) console.log(rows.join('\n\n'));
});

/** A small seeded generator (mulberry32), so the calibration below is the same on every run. */
function seeded(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('key-shaped tokens with no name: random keys are found; hashes, ids, identifiers, paths and encoded files are not', () => {
  const random = seeded(13);
  const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const key = (alphabet: string, length: number) => Array.from({ length }, () => alphabet[Math.floor(random() * alphabet.length)]).join('');
  const base64 = (bytes: number) => Buffer.from(Array.from({ length: bytes }, () => Math.floor(random() * 256))).toString('base64');
  const redact = makeRedactor({});
  for (const [kind, make, atLeast] of [
    ['base62, 20 chars', () => key(BASE62, 20), 0.85],
    ['base62, 32 chars', () => key(BASE62, 32), 0.9],
    ['base62, 64 chars (Binance)', () => key(BASE62, 64), 0.95],
    ['base64 of 32 bytes', () => base64(32), 0.95],
    ['lowercase and digits, 32 chars', () => key('abcdefghijklmnopqrstuvwxyz0123456789', 32), 0.75],
  ] as const) {
    let found = 0;
    for (let i = 0; i < 200; i++) if (redact(`# spare: ${make()} (rotate)`) === `# spare: ${REDACTED} (rotate)`) found++;
    if (process.env.SHOW_REDACTION_TABLE) console.log(`${kind}: ${found} of 200 found`);
    assert.ok(found / 200 >= atLeast, `${kind}: ${found} of 200 found`);
  }
  const ordinary = [
    'getUserAccountBalanceForSymbol2(symbol)',
    'export function base64urlToUint8Array(base64url) {',
    'def test_binance_client_v2_handles_429_retry():',
    'model = "gpt-4o-mini-2024-07-18"',
    'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2',
    `base_commit: ${GIT_SHA}`,
    'sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"',
    `client_order_id = "${UUID}"`,
    `    "integrity": "${INTEGRITY}",`,
    'golang.org/x/text v0.14.0 h1:ScX5w1eTa3QqT8oi6+ziP7dTV1S2+ALU0bI+0zXKWiQ=',
    'run 20261130T172638Z-a1b2c3 finished',
    'gate: taken-b3f6d5c4-S1_bot_20261129T0031-daily-maintenance-df4f',
    'see https://github.com/TehShrike/deepmerge/commit/5906c765d691d48e83d76efbb0d4b9ca150dc12c',
    'import { AgentLoop } from "../src/engines/agentLoopWithRetries2"',
    `PIXEL = "${PIXEL_PNG}"`,
    `//# sourceMappingURL=data:application/json;base64,${Buffer.from('{"version":3,"sources":["index.ts"],"mappings":"AAAA"}').toString('base64')}`,
    'const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";',
  ];
  for (const line of ordinary) assert.is(redact(line), line);
  // Positive control: base64 of text that holds a secret is one.
  const wrapped = Buffer.from(JSON.stringify({ type: 'service_account', private_key: PEM })).toString('base64');
  assert.is(redact(`CREDS_B64 = ${wrapped}`), `CREDS_B64 = ${REDACTED}`);
});

test('environment values: secret-named variables are redacted wherever they appear; short values and locations are not', () => {
  const redact = makeRedactor({
    EXCHANGE_PASSPHRASE: 'correct-horse-battery-42',
    DEBUG_TOKEN: '1',
    HF_TOKEN_PATH: '/home/bot/.cache/hf/token',
    BOT_SYMBOL: 'ETHUSDTPERP',
  });
  // Not key-shaped (kebab words): only the environment net knows it.
  assert.is(makeRedactor({})('print("correct-horse-battery-42")'), 'print("correct-horse-battery-42")', 'positive control: the detector alone leaves it');
  assert.is(redact('print("correct-horse-battery-42")'), `print("${REDACTED}")`);
  assert.is(redact('for i in range(1, 10): open("/home/bot/.cache/hf/token")'), 'for i in range(1, 10): open("/home/bot/.cache/hf/token")');
  assert.is(redact('symbol = "ETHUSDTPERP"'), 'symbol = "ETHUSDTPERP"', 'not a secret name');
});

// ---------------------------------------------------------------------------------------------
// end to end

const EXCHANGE_PY = [
  '"""The exchange client: keys come from the settings, which read the environment."""',
  'import os',
  'from dataclasses import dataclass',
  '',
  'import ccxt',
  'from binance.client import Client',
  '',
  '',
  '@dataclass',
  'class ExchangeSettings:',
  '    api_key: str = ""',
  '    api_secret: str = ""',
  '    testnet: bool = True',
  '',
  '',
  'def settings_from_env() -> ExchangeSettings:',
  '    return ExchangeSettings(api_key=os.environ["BINANCE_API_KEY"], api_secret=os.getenv("BINANCE_SECRET", ""))',
  '',
  '',
  'def make_client(settings: ExchangeSettings) -> Client:',
  '    return Client(api_key=settings.api_key, api_secret=settings.api_secret, testnet=settings.testnet)',
  '',
  '',
  'def make_ccxt() -> ccxt.binance:',
  "    return ccxt.binance({'apiKey': os.environ['BINANCE_API_KEY'], 'secret': os.environ['BINANCE_SECRET']})",
  '',
  '',
  '@dataclass',
  'class TestnetSettings:',
  '    """Keys for manual runs on the testnet (rotate them)."""',
  '',
  `    api_key: str = "${BINANCE_KEY}"`,
  `    api_secret: str = "${BINANCE_SECRET}"`,
  '',
  '',
  `# the key before the last rotation: ${OLD_KEY}`,
  `llm = OpenAI(api_key="${OPENAI_KEY}")`,
  '',
  '',
  'def passphrase_hint() -> str:',
  '    return "correct-horse-battery-42"',
  '',
].join('\n');

const TASK = `---
project: bot
type: audit_code
objective: Let the exchange client time out
scope: ["bot/exchange.py"]
---
Pass a timeout to the client.
`;

/** The text of the last tool result the model received. */
function lastToolResult(req: RecordedRequest): string {
  const last = req.body?.messages?.at(-1);
  if (last?.role !== 'tool') throw new Error(`the last message is not a tool result: ${JSON.stringify(last)?.slice(0, 300)}`);
  return String(last.content);
}

test('end to end: the model reads exchange code with the literals hidden and names intact; its copied edit applies; the marker is refused; no secret leaves', async () => {
  const passphrase = 'correct-horse-battery-42';
  const secrets = { BINANCE_KEY, BINANCE_SECRET, OLD_KEY, OPENAI_KEY, passphrase };
  const seen: string[] = [];
  /** A step that keeps the previous tool result, then makes the next call. */
  const after = (next: (seenSoFar: string[]) => ReturnType<typeof toolCall>) => (req: RecordedRequest) => {
    seen.push(lastToolResult(req));
    return next(seen);
  };
  const shown = () => seen[0]!.split('\n');
  const clientLine = () => shown().find((l) => l.includes('Client(api_key=settings.api_key')) ?? 'the Client line was not shown';
  const llm = await startFakeLlm([
    toolCall('read_file', { path: 'bot/exchange.py' }),
    // 1. An edit copied byte for byte from what the model saw, on the line naming the keys.
    after(() =>
      toolCall('edit_file', {
        path: 'bot/exchange.py',
        old: clientLine(),
        new: clientLine().replace('testnet=settings.testnet)', 'testnet=settings.testnet, requests_params={"timeout": 10})'),
      }),
    ),
    // 2. An edit whose new text carries the marker (the model "restoring" a key it never saw).
    after(() =>
      toolCall('edit_file', { path: 'bot/exchange.py', old: '    testnet: bool = True', new: `    testnet: bool = True\n    backup_key: str = "${REDACTED}"` }),
    ),
    // 3. A whole-file write of what it saw, marker and all.
    after(() => toolCall('write_file', { path: 'bot/exchange.py', content: seen[0]!.split('\n').slice(1).join('\n') })),
    // 4. An edit whose old text is a redacted line: not found, and told why.
    after(() =>
      toolCall('edit_file', {
        path: 'bot/exchange.py',
        old: shown().find((l) => l.includes(`api_key: str = "${REDACTED}"`)) ?? 'missing',
        new: '    api_key: str = os.environ["BINANCE_TESTNET_KEY"]',
      }),
    ),
    after(() => toolCall('run_checks', {})),
    after(() => finish('The client now times out after 10 s.', 'low')),
  ]);
  const ws = await makeWorkspace({
    llmUrl: llm.url,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, EXCHANGE_PASSPHRASE: passphrase },
    project: `    scope: ["**"]
    test: "python3 scripts/show_exchange.py"`,
  });
  try {
    await fs.writeFile(path.join(ws.repo, 'bot/exchange.py'), EXCHANGE_PY);
    await fs.writeFile(path.join(ws.repo, 'scripts/show_exchange.py'), 'print(open("bot/exchange.py").read())\n');
    await execa('git', ['add', '--all'], { cwd: ws.repo });
    await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-m', 'exchange client'], { cwd: ws.repo });

    const log = createLogger({ logsDir: ws.settings.layout.logs, console: 'none', redact: makeRedactor(ws.settings.env) });
    const result = await runTask(await writeTask(ws.settings.layout.inbox, 'client-timeout.md', TASK), { settings: ws.settings, log });
    await new Promise((resolve) => log.flush(() => resolve(undefined)));

    assert.is(llm.requests.length, 7, 'every scripted step was a request');
    assert.is(result.status, 'ok', result.report.error?.message);
    assert.is(result.outcome, 'completed');

    // What the model saw: the file byte for byte, but for the secret values (the passphrase through the environment net).
    let expected = EXCHANGE_PY;
    for (const value of Object.values(secrets)) expected = expected.replace(value, REDACTED);
    // read_file's numbered lines (a final newline ends the last line; it is not a line of its own).
    const lines = expected.replace(/\n$/, '').split('\n');
    const numbered = lines.map((line, i) => numberLine(i + 1, line, String(lines.length).length)).join('\n');
    assert.is(seen[0], `bot/exchange.py (${lines.length} lines)\n${numbered}`);
    assert.ok(seen[0]!.includes('return Client(api_key=settings.api_key, api_secret=settings.api_secret, testnet=settings.testnet)'));
    assert.ok(seen[0]!.includes(`return ccxt.binance({'apiKey': os.environ['BINANCE_API_KEY'], 'secret': os.environ['BINANCE_SECRET']})`));
    // The edits: the copied one applies; the marker is refused with an explanation; a redacted "old" is explained.
    assert.is(seen[1], 'edited bot/exchange.py at line 21');
    assert.match(seen[2]!, /^ERROR: refused: the text for bot\/exchange.py contains \[REDACTED\], the marker meta-agent shows in place of a secret/);
    assert.match(seen[3]!, /^ERROR: refused: the text for bot\/exchange.py contains \[REDACTED\]/);
    assert.match(seen[4]!, /^ERROR: "old" was not found in bot\/exchange.py: it contains \[REDACTED\], where meta-agent hid a secret from you/);
    // The check printed the edited file: what reached the model is redacted there too.
    assert.match(seen[5]!, /testnet=settings\.testnet, requests_params=\{"timeout": 10\}\)/);
    assert.match(seen[5]!, /api_secret: str = "\[REDACTED\]"/);
    assert.match(seen[5]!, /# the key before the last rotation: \[REDACTED\]/);

    // The patch holds the one edit and nothing of the refused ones: the file was not changed by them.
    const patch = await fs.readFile(path.join(ws.root, result.report.patch_files[0]!), 'utf8');
    const added = patch.split('\n').filter((l) => l.startsWith('+') && !l.startsWith('+++'));
    assert.equal(added, [
      '+    return Client(api_key=settings.api_key, api_secret=settings.api_secret, testnet=settings.testnet, requests_params={"timeout": 10})',
    ]);
    assert.not.ok(patch.includes(REDACTED), 'no marker in the patch');

    // No secret value anywhere it must not be.
    const places: Record<string, string> = {
      'request bodies': llm.requests.map((r) => JSON.stringify(r.body)).join('\n'),
      'report json': await fs.readFile(result.report_path, 'utf8'),
      'report md': await fs.readFile(result.report_md_path, 'utf8'),
      trajectory: await fs.readFile(path.join(ws.settings.layout.reports, 'client-timeout.trajectory.jsonl'), 'utf8'),
      logs: (await Promise.all((await fs.readdir(ws.settings.layout.logs)).map((f) => fs.readFile(path.join(ws.settings.layout.logs, f), 'utf8')))).join('\n'),
    };
    assert.match(places.logs!, /run finished/, 'positive control: the run wrote its log');
    assert.match(places.trajectory!, /api_key=settings\.api_key/, 'positive control: the trajectory has the file as the model saw it');
    for (const [where, text] of Object.entries(places)) {
      for (const [name, value] of Object.entries(secrets)) assert.not.ok(text.includes(value), `${name} leaked into the ${where}`);
    }
  } finally {
    await llm.close();
    await ws.cleanup();
  }
});

test.run();
