import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MetaAgentError, exitCodeFor, type ErrorKind } from '../src/contract/errors.ts';
import { MAX_TASK_BYTES, TASK_SOURCES, TASK_TYPES, parseTask, type Task } from '../src/contract/task.ts';
import { loadSettings, settingsFromYaml } from '../src/workspace/config.ts';
import { layoutFor } from '../src/workspace/layout.ts';

// ---------------------------------------------------------------------------------------------
// helpers

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-contract-'));
  try {
    return await fn(dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** Writes `data` to `dir/name`, reads it back as bytes (as the queue does) and parses it. */
async function parseFromDisk(dir: string, name: string, data: string | Buffer): Promise<Task> {
  const file = path.join(dir, name);
  await fs.writeFile(file, data);
  return parseTask(await fs.readFile(file), file);
}

function thrown(fn: () => unknown): unknown {
  let error: unknown;
  let threw = false;
  try {
    fn();
  } catch (e) {
    threw = true;
    error = e;
  }
  if (!threw) assert.unreachable('expected a throw, got a result');
  return error;
}

async function rejected(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  assert.unreachable('expected a rejection, got a result');
  return undefined;
}

function assertMetaError(error: unknown, kind: ErrorKind): asserts error is MetaAgentError {
  assert.instance(error, MetaAgentError, `expected a MetaAgentError, got ${String(error)}`);
  assert.is((error as MetaAgentError).kind, kind);
  assert.not.ok((error as MetaAgentError).message.includes('\n'), `message is not one line: ${JSON.stringify((error as MetaAgentError).message)}`);
  assert.not.ok((error as MetaAgentError).message.includes('\r'), 'message contains a CR');
}

const BOM = '\uFEFF';
const crlf = (s: string) => s.replace(/\n/g, '\r\n');

// ---------------------------------------------------------------------------------------------
// the two task forms

const FRONT_MATTER = `---
project: demo
type: audit_code
objective: Audit the sizing code
scope:
  - bot/sizing.py
  - tests/**
tasks:
  - Check input validation
  - Add a test for zero price
output: patch + report
source: human
---
`;

const HEADER_FORM = `PROJECT: demo
TYPE: audit_code
OBJECTIVE: Audit the sizing code
SCOPE: bot/sizing.py, tests/**
TASKS:
- Check input validation
- Add a test for zero price
OUTPUT: patch + report
SOURCE: human
`;

const EXPECTED: Task = {
  id: 'audit-sizing',
  project: 'demo',
  type: 'audit_code',
  objective: 'Audit the sizing code',
  scope: ['bot/sizing.py', 'tests/**'],
  tasks: ['Check input validation', 'Add a test for zero price'],
  output: 'patch + report',
  source: 'human',
  body: '',
};

test('front matter form and header form parse to the same Task', async () => {
  await withTempDir(async (dir) => {
    const fm = await parseFromDisk(dir, 'audit-sizing.md', FRONT_MATTER);
    await fs.rm(path.join(dir, 'audit-sizing.md'));
    const header = await parseFromDisk(dir, 'audit-sizing.md', HEADER_FORM);
    assert.equal(fm, EXPECTED);
    assert.equal(header, EXPECTED);
    assert.equal(fm, header);
  });
});

test('CRLF line endings and a UTF-8 BOM (string and Buffer) give the same Task', async () => {
  await withTempDir(async (dir) => {
    for (const [formName, form] of [
      ['front matter', FRONT_MATTER],
      ['header', HEADER_FORM],
    ] as const) {
      const variants: Array<[string, string | Buffer]> = [
        ['string', form],
        ['CRLF string', crlf(form)],
        ['BOM string', BOM + form],
        ['BOM + CRLF string', BOM + crlf(form)],
        ['Buffer', Buffer.from(form, 'utf8')],
        ['CRLF Buffer', Buffer.from(crlf(form), 'utf8')],
        ['BOM Buffer', Buffer.from(BOM + form, 'utf8')],
        ['BOM + CRLF Buffer', Buffer.from(BOM + crlf(form), 'utf8')],
      ];
      for (const [variant, input] of variants) {
        // In memory ...
        assert.equal(parseTask(input, 'audit-sizing.md'), EXPECTED, `${formName} form, ${variant}`);
      }
      // ... and through a real file (BOM + CRLF bytes on disk).
      const onDisk = await parseFromDisk(dir, 'audit-sizing.md', Buffer.from(BOM + crlf(form), 'utf8'));
      assert.equal(onDisk, EXPECTED, `${formName} form, BOM + CRLF file on disk`);
      await fs.rm(path.join(dir, 'audit-sizing.md'));
    }
  });
});

test('the BOM Buffer really starts with EF BB BF (the variant above is meaningful)', () => {
  const bytes = Buffer.from(BOM + HEADER_FORM, 'utf8');
  assert.equal([...bytes.subarray(0, 3)], [0xef, 0xbb, 0xbf]);
});

test('header form: SCOPE given as a "- item" list on the following lines', () => {
  const text = `PROJECT: demo
TYPE: audit_code
OBJECTIVE: Audit the sizing code
SCOPE:
- bot/sizing.py
- tests/**

TASKS:
- Check input validation
- Add a test for zero price
OUTPUT: patch + report
SOURCE: human
`;
  assert.equal(parseTask(text, 'audit-sizing.md'), EXPECTED);
  assert.equal(parseTask(crlf(text), 'audit-sizing.md'), EXPECTED);
});

test('header form: OBJECTIVE continuation lines are joined into the objective', () => {
  const text = `PROJECT: demo
OBJECTIVE: Audit the sizing code
  and the fee model,
  then report.
SCOPE: bot/sizing.py
`;
  const task = parseTask(text, 'multi.md');
  assert.is(task.objective.replace(/\s+/g, ' '), 'Audit the sizing code and the fee model, then report.');
  assert.ok(task.objective.startsWith('Audit the sizing code'));
  assert.not.ok(task.objective.includes('SCOPE'), 'the next header must end the objective');
  assert.equal(task.scope, ['bot/sizing.py']);
  assert.is(task.type, 'custom', 'type defaults to custom');
  assert.is(task.source, 'human', 'source defaults to human');
  assert.equal(task.tasks, []);
});

test('front matter body is kept (trimmed) as the body', () => {
  const task = parseTask('---\nproject: demo\nobjective: x\n---\n\n# Notes\n\nSome context.\n\n', 'b.md');
  assert.is(task.body, '# Notes\n\nSome context.');
});

// ---------------------------------------------------------------------------------------------
// bad task files

const fm = (lines: string) => `---\n${lines}\n---\n`;

interface BadCase {
  what: string;
  file: string;
  input: string | Buffer;
  /** The field the message must name as `field "<name>"`. */
  field?: string;
  /** For whole-file errors: what the message must say. */
  reason?: RegExp;
  /** Extra checks on the message. */
  also?: (message: string) => void;
}

const BAD: BadCase[] = [
  { what: 'bad YAML in front matter', file: 'bad-yaml.md', input: fm('project: [demo\nobjective: x'), field: 'front matter' },
  { what: 'front matter that is not a mapping', file: 'fm-list.md', input: fm('- project\n- demo'), field: 'front matter' },
  { what: 'missing project (front matter)', file: 'no-project.md', input: fm('objective: do it'), field: 'project' },
  { what: 'missing project (header form)', file: 'no-project-hdr.md', input: 'OBJECTIVE: do it\n', field: 'project' },
  { what: 'missing objective (front matter)', file: 'no-objective.md', input: fm('project: demo'), field: 'objective' },
  { what: 'missing objective (header form)', file: 'no-objective-hdr.md', input: 'PROJECT: demo\nSCOPE: a.py\n', field: 'objective' },
  { what: 'empty objective', file: 'empty-objective.md', input: fm('project: demo\nobjective: "   "'), field: 'objective' },
  {
    what: 'unknown type',
    file: 'bad-type.md',
    input: fm('project: demo\nobjective: x\ntype: refactor'),
    field: 'type',
    also: (m) => {
      for (const t of TASK_TYPES) assert.ok(m.includes(t), `allowed type ${t} not listed in: ${m}`);
    },
  },
  { what: 'unknown type (header form)', file: 'bad-type-hdr.md', input: 'PROJECT: demo\nTYPE: refactor\nOBJECTIVE: x\n', field: 'type' },
  {
    what: 'unknown source',
    file: 'bad-source.md',
    input: fm('project: demo\nobjective: x\nsource: robot'),
    field: 'source',
    also: (m) => {
      for (const s of TASK_SOURCES) assert.ok(m.includes(s), `allowed source ${s} not listed in: ${m}`);
    },
  },
  { what: 'unknown front matter key', file: 'unknown-key.md', input: fm('project: demo\nobjective: x\nscopes: [a.py]'), field: 'scopes' },
  { what: '"body" in front matter', file: 'body-key.md', input: fm('project: demo\nobjective: x\nbody: hi'), field: 'body' },
  { what: 'id with ".." and a separator', file: 'evil-id.md', input: fm('project: demo\nobjective: x\nid: ../evil'), field: 'id' },
  { what: 'id with a "/"', file: 'slash-id.md', input: fm('project: demo\nobjective: x\nid: a/b'), field: 'id' },
  { what: 'id with a "\\"', file: 'backslash-id.md', input: fm('project: demo\nobjective: x\nid: "a\\\\b"'), field: 'id' },
  { what: 'id with ".." (header form)', file: 'evil-id-hdr.md', input: 'ID: a..b\nPROJECT: demo\nOBJECTIVE: x\n', field: 'id' },
  { what: 'scope is a mapping', file: 'scope-map.md', input: fm('project: demo\nobjective: x\nscope: {a: 1}'), field: 'scope' },
  { what: 'scope is a number', file: 'scope-num.md', input: fm('project: demo\nobjective: x\nscope: 7'), field: 'scope' },
  { what: 'scope entries are not strings', file: 'scope-nums.md', input: fm('project: demo\nobjective: x\nscope: [1, 2]'), field: 'scope.0' },
  { what: 'empty file (string)', file: 'empty.md', input: '', reason: /empty/ },
  { what: 'empty file (0-byte Buffer)', file: 'empty-buf.md', input: Buffer.alloc(0), reason: /empty/ },
  { what: 'whitespace-only file', file: 'blank.md', input: ' \n\t\r\n  \n', reason: /empty/ },
  { what: 'BOM-only file', file: 'bom-only.md', input: Buffer.from(`${BOM}\r\n`, 'utf8'), reason: /empty/ },
  { what: 'binary file (NUL bytes)', file: 'binary.md', input: Buffer.from([0x50, 0x52, 0x00, 0x4f, 0x00, 0xff]), reason: /binary/ },
  {
    what: 'too-large file',
    file: 'huge.md',
    input: Buffer.alloc(MAX_TASK_BYTES + 1, 'PROJECT: demo\n'),
    reason: /at most/,
    also: (m) => assert.ok(m.includes(String(MAX_TASK_BYTES)), `limit not in message: ${m}`),
  },
  {
    what: 'duplicate OBJECTIVE header',
    file: 'dup-objective.md',
    input: 'PROJECT: demo\nOBJECTIVE: one\nOBJECTIVE: two\n',
    field: 'objective',
    also: (m) => assert.match(m, /twice/),
  },
  { what: 'duplicate PROJECT header', file: 'dup-project.md', input: 'PROJECT: a\nOBJECTIVE: x\nPROJECT: b\n', field: 'project' },
  { what: 'plain text without headers', file: 'plain.md', input: 'Please fix the bot.\nIt is broken.\n', field: 'project', reason: /no task found/ },
];

test('bad task files: MetaAgentError kind "input", one line, names the file and the field', () => {
  for (const c of BAD) {
    const error = thrown(() => parseTask(c.input, path.join('/queue/inbox', c.file)));
    assertMetaError(error, 'input');
    const m = error.message;
    assert.ok(m.includes(c.file), `${c.what}: file name missing in: ${m}`);
    assert.not.ok(m.includes('/queue/inbox'), `${c.what}: only the file name, not the folder: ${m}`);
    assert.is(error.file, c.file, `${c.what}: error.file`);
    if (c.field !== undefined) {
      assert.ok(m.includes(`field "${c.field}"`), `${c.what}: field "${c.field}" missing in: ${m}`);
      assert.is(error.field, c.field, `${c.what}: error.field`);
    }
    if (c.reason) assert.match(m, c.reason, `${c.what}: reason`);
    c.also?.(m);
    assert.equal(error.toInfo(), { kind: 'input', message: m, file: c.file, ...(error.field ? { field: error.field } : {}) });
  }
});

test('a file just at MAX_TASK_BYTES is accepted', () => {
  const head = 'PROJECT: demo\nOBJECTIVE: x\nNOTES:\n';
  const text = head + 'a'.repeat(MAX_TASK_BYTES - head.length);
  const buf = Buffer.from(text, 'utf8');
  assert.is(buf.length, MAX_TASK_BYTES);
  const task = parseTask(buf, 'limit.md');
  assert.is(task.body.length, MAX_TASK_BYTES - head.length);
});

// Zod v4 does not put `input` into issues unless asked (reportInput), so zodToTaskError's
// `issue.input === undefined` is always true and every wrong type reads "is required".
test('a present field of the wrong type is not reported as missing', () => {
  for (const [file, text, field] of [
    ['scope-map2.md', fm('project: demo\nobjective: x\nscope: {a: 1}'), 'scope'],
    ['project-num.md', fm('project: 123\nobjective: x'), 'project'],
  ] as const) {
    const error = thrown(() => parseTask(text, file));
    assertMetaError(error, 'input');
    assert.ok(error.message.includes(`field "${field}"`), error.message);
    assert.not.match(error.message, /is required/, `misleading message: ${error.message}`);
  }
});

// The front matter detection trims leading whitespace, gray-matter does not.
test('front matter after leading blank lines is still parsed as front matter', () => {
  const task = parseTask(`\n\n${fm('project: demo\nobjective: x')}`, 'lead.md');
  assert.is(task.project, 'demo');
  assert.is(task.objective, 'x');
});

// ---------------------------------------------------------------------------------------------
// ids

test('id defaults to the file name without .md', () => {
  assert.is(parseTask(fm('project: demo\nobjective: x'), '/some/inbox/fix-rounding.md').id, 'fix-rounding');
  assert.is(parseTask('PROJECT: demo\nOBJECTIVE: x\n', 'nightly_2024.10.01.md').id, 'nightly_2024.10.01');
  assert.is(parseTask('PROJECT: demo\nOBJECTIVE: x\n', 'UPPER.MD').id, 'UPPER');
});

test('an explicit valid id wins over the file name', () => {
  assert.is(parseTask(fm('id: custom-1\nproject: demo\nobjective: x'), 'file-name.md').id, 'custom-1');
  assert.is(parseTask('ID: hdr_7\nPROJECT: demo\nOBJECTIVE: x\n', 'file-name.md').id, 'hdr_7');
});

test('a file name that is not a valid id gives its slug (Windows names); an id: that is not valid is still refused', () => {
  assert.is(parseTask(fm('project: demo\nobjective: x'), 'has space.md').id, 'has-space');
  const error = thrown(() => parseTask(fm('project: demo\nobjective: x\nid: has space'), 'x.md'));
  assertMetaError(error, 'input');
  assert.ok(error.message.includes('x.md'));
  assert.ok(error.message.includes('field "id"'));
});

// ---------------------------------------------------------------------------------------------
// config

const MINIMAL = 'projects: {demo: {repo: repo, test: "python3 -m pytest -q"}}\n';

test('config: a minimal config gets the defaults, argv and an absolute repoPath', async () => {
  await withTempDir(async (root) => {
    const settings = settingsFromYaml(MINIMAL, layoutFor(root), {});
    assert.is(settings.config.engine, 'openai');
    assert.is(settings.config.limits.concurrency, 2);
    assert.is(settings.config.sandbox, 'auto');
    assert.is(settings.llm.model, 'gpt-4.1-mini');
    assert.is(settings.llm.apiKeyEnv, 'OPENAI_API_KEY');
    assert.is(settings.llm.apiKey, undefined);
    assert.is(settings.llm.baseURL, undefined);
    const demo = settings.projects.demo;
    assert.ok(demo, 'project demo');
    assert.is(demo.name, 'demo');
    assert.ok(path.isAbsolute(demo.repoPath));
    assert.is(demo.repoPath, path.join(root, 'repo'));
    assert.ok(demo.repoPath.startsWith(root + path.sep));
    assert.equal(demo.scope, ['**']);
    assert.ok(demo.test, 'test check');
    assert.equal(demo.test.argv, ['python3', '-m', 'pytest', '-q']);
    assert.is(demo.test.command, 'python3 -m pytest -q');
    assert.is(demo.test.label, 'test');
    assert.is(demo.test.cwd, '.');
    assert.is(demo.test.timeoutMs, 600_000);
    assert.is(demo.dry_run, null);
  });
});

test('config: a BOM and CRLF line endings are accepted', async () => {
  await withTempDir(async (root) => {
    const settings = settingsFromYaml(BOM + crlf('projects:\n  demo:\n    repo: repo\n    test: "python3 -m pytest -q"\n'), layoutFor(root), {});
    assert.equal(settings.projects.demo?.test?.argv, ['python3', '-m', 'pytest', '-q']);
  });
});

test('config: the long check form keeps quoting, cwd, env and timeout', async () => {
  await withTempDir(async (root) => {
    const yaml = `projects:
  demo:
    repo: ./repos/demo
    dry_run:
      command: python3 -c "print('a b')"
      cwd: bot/./sub
      env: {MODE: dry}
      timeout_s: 5
`;
    const demo = settingsFromYaml(yaml, layoutFor(root), {}).projects.demo;
    assert.ok(demo?.dry_run);
    assert.equal(demo.dry_run.argv, ['python3', '-c', "print('a b')"]);
    assert.is(demo.dry_run.cwd, path.normalize('bot/sub'));
    assert.equal(demo.dry_run.env, { MODE: 'dry' });
    assert.is(demo.dry_run.timeoutMs, 5000);
    assert.is(demo.repoPath, path.join(root, 'repos', 'demo'));
  });
});

test('config: OPENAI_API_KEY, OPENAI_BASE_URL and META_AGENT_MODEL override', async () => {
  await withTempDir(async (root) => {
    const yaml = `${MINIMAL}llm: {model: from-config, base_url: "https://config.example/v1"}\n`;
    const env = { OPENAI_API_KEY: 'sk-test-0123456789', OPENAI_BASE_URL: 'http://127.0.0.1:11434/v1', META_AGENT_MODEL: 'qwen2.5-coder' };
    const settings = settingsFromYaml(yaml, layoutFor(root), env);
    assert.is(settings.llm.apiKey, 'sk-test-0123456789');
    assert.is(settings.llm.baseURL, 'http://127.0.0.1:11434/v1');
    assert.is(settings.llm.model, 'qwen2.5-coder');

    const fromConfig = settingsFromYaml(yaml, layoutFor(root), {});
    assert.is(fromConfig.llm.model, 'from-config');
    assert.is(fromConfig.llm.baseURL, 'https://config.example/v1');
  });
});

test('config: llm.api_key_env names the variable the key is read from', async () => {
  await withTempDir(async (root) => {
    const settings = settingsFromYaml(`${MINIMAL}llm: {api_key_env: MY_LLM_KEY}\n`, layoutFor(root), { MY_LLM_KEY: 'local-key-123' });
    assert.is(settings.llm.apiKey, 'local-key-123');
    assert.is(settings.llm.apiKeyEnv, 'MY_LLM_KEY');
  });
});

const BAD_CONFIGS: Array<{ what: string; yaml: string; field: string }> = [
  { what: 'unknown top-level key', yaml: `${MINIMAL}foo: 1\n`, field: 'foo' },
  { what: 'no projects', yaml: 'projects: {}\n', field: 'projects' },
  { what: 'projects missing', yaml: 'engine: openai\n', field: 'projects' },
  { what: 'check cwd with ..', yaml: 'projects: {demo: {repo: repo, test: {command: pytest, cwd: ../x}}}\n', field: 'projects.demo.test.cwd' },
  { what: 'check cwd absolute', yaml: 'projects: {demo: {repo: repo, dry_run: {command: pytest, cwd: /tmp}}}\n', field: 'projects.demo.dry_run.cwd' },
  {
    what: 'check cwd escaping after normalization',
    yaml: 'projects: {demo: {repo: repo, test: {command: pytest, cwd: a/../../x}}}\n',
    field: 'projects.demo.test.cwd',
  },
  { what: 'blank command', yaml: 'projects: {demo: {repo: repo, test: "   "}}\n', field: 'projects.demo.test' },
  { what: 'negative max_steps', yaml: `${MINIMAL}limits: {max_steps: -1}\n`, field: 'limits.max_steps' },
  { what: 'unknown engine', yaml: `${MINIMAL}engine: claude\n`, field: 'engine' },
  { what: 'unknown project key', yaml: 'projects: {demo: {repo: repo, tests: pytest}}\n', field: 'projects.demo' },
];

test('config: bad configs give kind "config", name meta-agent.yaml and the field', async () => {
  await withTempDir(async (root) => {
    for (const c of BAD_CONFIGS) {
      const error = thrown(() => settingsFromYaml(c.yaml, layoutFor(root), {}));
      assertMetaError(error, 'config');
      assert.ok(error.message.includes('meta-agent.yaml'), `${c.what}: ${error.message}`);
      assert.ok(error.message.includes(`field "${c.field}"`), `${c.what}: expected field "${c.field}" in: ${error.message}`);
    }
  });
});

test('config: invalid YAML is a config error that mentions the line', async () => {
  await withTempDir(async (root) => {
    const error = thrown(() => settingsFromYaml('engine: openai\nprojects: [\n  demo: x\n', layoutFor(root), {}));
    assertMetaError(error, 'config');
    assert.ok(error.message.includes('meta-agent.yaml'), error.message);
    assert.match(error.message, /YAML/);
    assert.match(error.message, /line \d+/, `no line number in: ${error.message}`);
  });
});

test('config: loadSettings reads meta-agent.yaml from the root', async () => {
  await withTempDir(async (root) => {
    await fs.writeFile(path.join(root, 'meta-agent.yaml'), MINIMAL);
    const settings = await loadSettings(root, { META_AGENT_MODEL: 'm-1' });
    assert.is(settings.layout.root, path.resolve(root));
    assert.is(settings.llm.model, 'm-1');
    assert.equal(Object.keys(settings.projects), ['demo']);
  });
});

test('config: loadSettings without meta-agent.yaml points to "meta-agent init"', async () => {
  await withTempDir(async (root) => {
    const error = await rejected(loadSettings(root, {}));
    assertMetaError(error, 'config');
    assert.ok(error.message.includes('meta-agent.yaml'), error.message);
    assert.ok(error.message.includes('meta-agent init'), error.message);
    assert.ok(error.message.includes(root), error.message);
  });
});

// ---------------------------------------------------------------------------------------------
// errors

test('exitCodeFor: 2 for input and config, 1 for the rest', () => {
  assert.is(exitCodeFor('input'), 2);
  assert.is(exitCodeFor('config'), 2);
  assert.is(exitCodeFor('llm'), 1);
  for (const kind of ['budget', 'timeout', 'interrupted', 'scope', 'git', 'engine', 'internal'] as const) {
    assert.is(exitCodeFor(kind), 1, kind);
  }
});

test('MetaAgentError: message is "<file>: field "<field>": <one line>"', () => {
  const error = new MetaAgentError('input', 'first line\n  second line\r\nthird', { file: 't.md', field: 'scope' });
  assert.is(error.message, 't.md: field "scope": first line second line third');
  assert.is(error.name, 'MetaAgentError');
  assert.equal(error.toInfo(), { kind: 'input', message: error.message, file: 't.md', field: 'scope' });
});

test.run();
