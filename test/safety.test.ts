import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { scrubbedEnv } from '../src/safety/env.ts';
import { denyMatcher, globMatcher, scopeMatcher } from '../src/safety/globs.ts';
import { PathRefused, resolveInside } from '../src/safety/paths.ts';
import { REDACTED, makeRedactor, redactDeep } from '../src/safety/redact.ts';

async function withTempDirs<T>(fn: (root: string, outside: string) => Promise<T>): Promise<T> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-root-'));
  const outside = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-outside-'));
  try {
    return await fn(root, outside);
  } finally {
    await fs.rm(root, { recursive: true, force: true });
    await fs.rm(outside, { recursive: true, force: true });
  }
}

async function refusal(promise: Promise<unknown>, what: string): Promise<PathRefused> {
  let result: unknown;
  try {
    result = await promise;
  } catch (error) {
    assert.instance(error, PathRefused, `${what}: expected PathRefused, got ${String(error)}`);
    return error as PathRefused;
  }
  assert.unreachable(`${what}: expected PathRefused, got ${JSON.stringify(result)}`);
  throw new Error('unreachable');
}

// ---------------------------------------------------------------------------------------------
// deny list

test('denyMatcher([]): secrets and .git are denied at any depth', () => {
  const deny = denyMatcher([]);
  for (const p of [
    '.env',
    'bot/.env',
    '.env.local',
    'bot/deep/.env.production',
    'certs/x.pem',
    'x.pem',
    'keys/server.key',
    'secrets/a/b.txt',
    'secrets',
    'bot/secrets/token.txt',
    '.git/config',
    '.git',
    'sub/.git/HEAD',
    'home/.ssh/id_rsa',
    'id_rsa.pub',
    'store.p12',
    'store.pfx',
    'bot\\.env',
    './.env',
    // the stronger default list
    'config/secrets.yaml',
    'bot/secrets.py',
    'bot/secret_sauce_strategy.py',
    'client_secret.json',
    'config/Secrets.YAML',
    'vault/my-secret-dir/notes.txt',
    'credentials.json',
    '.aws/credentials',
    'deploy/gcp-service-account.json',
    'prod.env',
    '.envrc',
    'release.keystore',
    'android/app/upload.jks',
    'putty.ppk',
    'passwords.kdbx',
    'home/.ssh/id_ed25519',
    'id_ecdsa.pub',
    'id_dsa',
    'home/.ssh/config',
    '.netrc',
    '_netrc',
    '.npmrc',
    'web/.npmrc',
    '.pypirc',
    '.pgpass',
    '.htpasswd',
    '.git-credentials',
    '.docker/config.json',
    'infra/terraform.tfstate',
    'infra/terraform.tfstate.backup',
    '.ENV',
    '.GIT/config',
  ]) {
    assert.ok(deny(p), `should deny ${p}`);
  }
});

test('denyMatcher([]): ordinary files are allowed', () => {
  const deny = denyMatcher([]);
  for (const p of [
    'bot/main.py',
    'environment.py',
    'docs/env.md',
    'bot/envs.py',
    '.github/workflows/ci.yml',
    '.gitignore',
    'keyboard.py',
    'README.md',
    'id_map.py',
    'bot/identity.py',
    'tokenizer.py',
    'config/keys.json',
    'docker/config.json',
    'bot/environment.yaml',
  ]) {
    assert.not.ok(deny(p), `should allow ${p}`);
  }
});

test('denyMatcher(extra): extra patterns are added to the defaults', () => {
  const deny = denyMatcher(['data/**', '*.sqlite', 'config/prod.yaml']);
  assert.ok(deny('data/prices.csv'));
  assert.ok(deny('data'));
  assert.ok(deny('cache/db.sqlite'));
  assert.ok(deny('config/prod.yaml'));
  assert.not.ok(deny('other/config/prod.yaml'), 'a pattern with "/" is anchored at the root');
  assert.not.ok(deny('config/dev.yaml'));
  assert.not.ok(deny('bot/data.py'));
  assert.ok(deny('.env'), 'the defaults still apply');
});

test('denyMatcher(["!..."]): a negated entry exempts files from the default list only', () => {
  const deny = denyMatcher(['!bot/secret_sauce_strategy.py', 'config/prod.yaml', '!config/prod.yaml', '!.git/**', '!.git']);
  assert.not.ok(deny('bot/secret_sauce_strategy.py'), 'exempted from *secret*');
  assert.ok(deny('bot/secret_other.py'), 'other *secret* files stay denied');
  assert.ok(deny('other/bot/secret_sauce_strategy.py'), 'a pattern with "/" is anchored at the root');
  assert.ok(deny('config/prod.yaml'), "the project's own entries are not exempted");
  assert.ok(deny('.git/config') && deny('.git'), '.git/ is never exempted');
  assert.ok(deny('.env'), 'the rest of the default list still applies');
  assert.not.ok(denyMatcher([])('bot/strategy.py'), 'positive control: an ordinary file');
  assert.ok(denyMatcher([])('bot/secret_sauce_strategy.py'), 'positive control: denied without the exemption');
});

test('globMatcher: no patterns match nothing', () => {
  assert.not.ok(globMatcher([])('anything'));
});

// ---------------------------------------------------------------------------------------------
// scope

test('scopeMatcher: task scope within a project scope of "**"', () => {
  const inScope = scopeMatcher(['bot/**', 'tests/*.py'], ['**']);
  for (const p of ['bot/main.py', 'bot/sub/deep/x.py', 'bot/.hidden', 'tests/test_sizing.py', 'tests\\test_win.py', './bot/main.py']) {
    assert.ok(inScope(p), `should match ${p}`);
  }
  for (const p of ['README.md', 'tests/sub/test_x.py', 'tests/data.json', 'robot/main.py', 'tests.py']) {
    assert.not.ok(inScope(p), `should not match ${p}`);
  }
});

test('scopeMatcher: an empty task scope matches nothing', () => {
  const inScope = scopeMatcher([], ['**']);
  for (const p of ['README.md', 'bot/main.py', 'a']) assert.not.ok(inScope(p), p);
});

test('scopeMatcher: the project scope bounds the task scope', () => {
  const inScope = scopeMatcher(['**'], ['bot/**']);
  assert.not.ok(inScope('README.md'));
  assert.not.ok(inScope('tests/test_x.py'));
  assert.ok(inScope('bot/main.py'));

  const narrow = scopeMatcher(['bot/**', 'docs/**'], ['bot/**', 'tests/**']);
  assert.ok(narrow('bot/x.py'));
  assert.not.ok(narrow('docs/a.md'), 'in task scope, outside project scope');
  assert.not.ok(narrow('tests/t.py'), 'in project scope, outside task scope');
});

// The comment on anchor() in globs.ts says scope globs are anchored at the repo root, and the
// config documents scope as "relative to the repo root"; but anchor() returns the pattern
// unchanged, so globMatcher applies its any-depth rule to "README.md", "*.py" and "bot/**".
test('scopeMatcher: scope globs are anchored at the repo root', () => {
  const inScope = scopeMatcher(['README.md', '*.py', 'bot/**'], ['**']);
  assert.ok(inScope('README.md'));
  assert.ok(inScope('setup.py'));
  assert.ok(inScope('bot/main.py'));
  assert.not.ok(inScope('docs/README.md'), 'README.md must not reach docs/README.md');
  assert.not.ok(inScope('vendor/lib/setup.py'), '*.py must not reach vendor/lib/setup.py');
  assert.not.ok(inScope('other/bot/main.py'), 'bot/** must not reach other/bot/main.py');
  const bounded = scopeMatcher(['**'], ['bot/**']);
  assert.not.ok(bounded('vendor/bot/x.py'), 'project scope bot/** must not admit vendor/bot/x.py');
});

// ---------------------------------------------------------------------------------------------
// resolveInside

test('resolveInside: refuses absolute paths and ".." escapes', async () => {
  await withTempDirs(async (root) => {
    for (const p of ['/etc/passwd', 'C:\\x', 'C:/x', '\\\\server\\share', '~/x', '../x', '..', 'a/../../x', '..\\x', 'a\\..\\..\\x', './../x', 'a/\0b']) {
      const error = await refusal(resolveInside(root, p), JSON.stringify(p));
      assert.is(error.name, 'PathRefused');
      assert.ok(error.message.length > 0);
    }
  });
});

test('resolveInside: .git in every form Windows reads as .git is refused; names that only look alike are not', async () => {
  await withTempDirs(async (root) => {
    for (const p of [
      '.git/config',
      '.GIT/config',
      '.git./config',
      '.git /config',
      '.git. . /hooks/pre-commit',
      'sub/.git.',
      'GIT~1/config',
      'git~2\\HEAD',
      '.git::$INDEX_ALLOCATION/config',
    ]) {
      const error = await refusal(resolveInside(root, p), JSON.stringify(p));
      assert.match(error.message, 'inside .git', JSON.stringify(p));
    }
    // Control: ordinary names around it still resolve.
    for (const p of ['.github/workflows/ci.yml', '.gitignore', 'git/notes.md', 'my.git/x', 'git~x/y', '.git-blame-ignore-revs']) {
      assert.is((await resolveInside(root, p)).rel, p);
    }
  });
});

test('resolveInside: accepts paths inside, existing or not; rel is "/"-separated', async () => {
  await withTempDirs(async (root) => {
    await fs.mkdir(path.join(root, 'a'));
    await fs.writeFile(path.join(root, 'a', 'b.txt'), 'b');
    const realRoot = await fs.realpath(root);

    const ab = await resolveInside(root, 'a/b.txt');
    assert.equal(ab, { abs: path.join(realRoot, 'a', 'b.txt'), rel: 'a/b.txt' });
    assert.is(await fs.readFile(ab.abs, 'utf8'), 'b');

    assert.equal(await resolveInside(root, './a'), { abs: path.join(realRoot, 'a'), rel: 'a' });
    assert.equal(await resolveInside(root, 'a\\b.txt'), { abs: path.join(realRoot, 'a', 'b.txt'), rel: 'a/b.txt' });
    assert.equal(await resolveInside(root, 'a/x/../b.txt'), { abs: path.join(realRoot, 'a', 'b.txt'), rel: 'a/b.txt' });
    assert.equal(await resolveInside(root, 'new/deeper/file.txt'), { abs: path.join(realRoot, 'new', 'deeper', 'file.txt'), rel: 'new/deeper/file.txt' });
    assert.equal(await resolveInside(root, '.'), { abs: realRoot, rel: '' });
    assert.equal(await resolveInside(root, ''), { abs: realRoot, rel: '' });
  });
});

test('resolveInside: a symlink leading outside (and anything under it) is refused', async () => {
  await withTempDirs(async (root, outside) => {
    await fs.writeFile(path.join(outside, 'secret.txt'), 'secret');
    await fs.symlink(outside, path.join(root, 'out'));
    await fs.symlink(path.join(outside, 'secret.txt'), path.join(root, 'secret-link'));
    await fs.mkdir(path.join(root, 'a'));
    await fs.symlink(`../../${path.basename(outside)}`, path.join(root, 'a', 'rel-out'));
    assert.is(await fs.readFile(path.join(root, 'a', 'rel-out', 'secret.txt'), 'utf8'), 'secret', 'fixture: relative link resolves outside');

    for (const p of ['out', 'out/secret.txt', 'out/not-yet/new.txt', 'secret-link', 'a/rel-out', 'a/rel-out/secret.txt', './out/../out/secret.txt']) {
      const error = await refusal(resolveInside(root, p), p);
      assert.match(error.message, /outside/);
    }
  });
});

test('resolveInside: a symlink pointing inside the root is accepted', async () => {
  await withTempDirs(async (root) => {
    await fs.mkdir(path.join(root, 'real'));
    await fs.writeFile(path.join(root, 'real', 'f.txt'), 'f');
    await fs.symlink(path.join(root, 'real'), path.join(root, 'alias'));
    await fs.symlink('real/f.txt', path.join(root, 'f-link'));
    const realRoot = await fs.realpath(root);

    const alias = await resolveInside(root, 'alias/f.txt');
    assert.equal(alias, { abs: path.join(realRoot, 'alias', 'f.txt'), rel: 'alias/f.txt' });
    assert.is(await fs.readFile(alias.abs, 'utf8'), 'f');
    assert.equal(await resolveInside(root, 'f-link'), { abs: path.join(realRoot, 'f-link'), rel: 'f-link' });
    assert.equal(await resolveInside(root, 'alias/new.txt'), { abs: path.join(realRoot, 'alias', 'new.txt'), rel: 'alias/new.txt' });
  });
});

test('resolveInside: a root that is itself reached through a symlink works', async () => {
  await withTempDirs(async (root, outside) => {
    await fs.writeFile(path.join(root, 'x.txt'), 'x');
    const linkedRoot = path.join(outside, 'root-link');
    await fs.symlink(root, linkedRoot);
    const r = await resolveInside(linkedRoot, 'x.txt');
    assert.is(r.rel, 'x.txt');
    assert.is(await fs.readFile(r.abs, 'utf8'), 'x');
  });
});

// realpathOfExistingPrefix treats a dangling symlink as "not existing yet" and walks up to its
// folder, so a link to a not-yet-existing file outside is accepted; writing to `abs` then
// creates the file outside the root.
test('resolveInside: a dangling symlink leading outside is refused', async () => {
  await withTempDirs(async (root, outside) => {
    await fs.symlink(path.join(outside, 'created-by-agent.txt'), path.join(root, 'dangling'));
    await fs.symlink(path.join(outside, 'no-such-dir'), path.join(root, 'dangling-dir'));
    await refusal(resolveInside(root, 'dangling'), 'dangling');
    await refusal(resolveInside(root, 'dangling-dir/new.txt'), 'dangling-dir/new.txt');
    assert.equal(await fs.readdir(outside), []);
  });
});

// ---------------------------------------------------------------------------------------------
// redaction

test('makeRedactor: exact values of secret-named variables (length >= 8)', () => {
  const env = {
    OPENAI_API_KEY: 'zz-openai-0123456789abcdef',
    EXCHANGE_SECRET: 'hunter2hunter2',
    GITHUB_TOKEN: 'tok.1234+5678(x)',
    DB_PASSWORD: 'p@ss.word*99',
    SHORT_KEY: 'abc1234',
    HOME: '/home/someone/long/path',
    UNSET_TOKEN: undefined,
  };
  const redact = makeRedactor(env);
  const text = `key=${env.OPENAI_API_KEY} secret ${env.EXCHANGE_SECRET}, token "${env.GITHUB_TOKEN}" pw:${env.DB_PASSWORD} and again ${env.EXCHANGE_SECRET}`;
  const out = redact(text);
  for (const v of [env.OPENAI_API_KEY, env.EXCHANGE_SECRET, env.GITHUB_TOKEN, env.DB_PASSWORD]) {
    assert.not.ok(out.includes(v), `${v} leaked: ${out}`);
  }
  assert.is(out, `key=${REDACTED} secret ${REDACTED}, token "${REDACTED}" pw:${REDACTED} and again ${REDACTED}`);
  assert.is(redact('short abc1234 stays'), 'short abc1234 stays', 'values shorter than 8 are not redacted');
  assert.is(redact('cd /home/someone/long/path'), 'cd /home/someone/long/path', 'HOME is not a secret name');
});

test('makeRedactor: extra secrets are redacted too', () => {
  const redact = makeRedactor({}, ['extra-secret-value', 'short']);
  assert.is(redact('a extra-secret-value b short'), `a ${REDACTED} b short`);
});

test('makeRedactor: common key formats by pattern', () => {
  const redact = makeRedactor({});
  const sk = 'sk-abcdefghijklmnop1234';
  const proj = 'sk-proj-ABCDEFGHijklmnop_1234-xyz';
  const akia = 'AKIAQ3ZP7L2M9X4R8T6W';
  const ghp = `ghp_${'a1B2c3D4e5'.repeat(4)}`;
  assert.is(redact(`key ${sk} end`), `key ${REDACTED} end`);
  assert.is(redact(`OPENAI_API_KEY=${proj}`), `OPENAI_API_KEY=${REDACTED}`);
  assert.is(redact(`aws ${akia}.`), `aws ${REDACTED}.`);
  assert.is(redact(`token: ${ghp}`), `token: ${REDACTED}`);
  const pem = '-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY-----';
  assert.is(redact(`before\n${pem}\nafter`), `before\n${REDACTED}\nafter`);
});

test('makeRedactor: api_key = "..." keeps the "api_key = " prefix', () => {
  const redact = makeRedactor({});
  const out = redact('api_key = "xyz12345678"');
  assert.ok(out.startsWith('api_key = '), out);
  assert.ok(out.includes(REDACTED), out);
  assert.not.ok(out.includes('xyz12345678'), out);
  assert.is(redact('password: correcthorse99'), `password: ${REDACTED}`);
  const quoted = redact("SECRET_KEY='abcdefgh12'");
  assert.ok(quoted.startsWith(`SECRET_KEY=`) && quoted.includes(REDACTED) && !quoted.includes('abcdefgh12'), quoted);
  assert.is(redact('api_key = "short"'), 'api_key = "short"', 'values under 8 chars are left alone');
});

test('makeRedactor: ordinary text is left alone', () => {
  const redact = makeRedactor({ OPENAI_API_KEY: 'zz-openai-0123456789abcdef' });
  for (const text of [
    'The sizing code rounds prices; see bot/sizing.py line 42.',
    'def risk-based task-skipping(): return ask-for-help',
    'api_key is read from the environment',
    'AKIA is an AWS prefix',
    'monkey = 12345678',
    '',
  ]) {
    assert.is(redact(text), text);
  }
});

test('redactDeep: nested objects and arrays; non-strings untouched; input not mutated', () => {
  const redact = makeRedactor({ EXCHANGE_SECRET: 'hunter2hunter2' });
  const input = {
    a: 'x hunter2hunter2 y',
    n: 5,
    ok: true,
    nothing: null,
    list: ['sk-abcdefghijklmnop1234', { deep: ['hunter2hunter2', 7] }],
    nested: { more: { text: 'plain' } },
  };
  const snapshot = JSON.parse(JSON.stringify(input)) as unknown;
  const out = redactDeep(input, redact);
  assert.equal(out, {
    a: `x ${REDACTED} y`,
    n: 5,
    ok: true,
    nothing: null,
    list: [REDACTED, { deep: [REDACTED, 7] }],
    nested: { more: { text: 'plain' } },
  });
  assert.equal(input, snapshot);
  assert.is(redactDeep('hunter2hunter2', redact), REDACTED);
  assert.is(redactDeep(42, redact), 42);
});

// ---------------------------------------------------------------------------------------------
// environment

test('scrubbedEnv keeps PATH and allow-listed names, drops keys', () => {
  const env = scrubbedEnv({ PATH: '/bin', OPENAI_API_KEY: 'sk-x', EXCHANGE_API_KEY: 'k', FOO: '1' }, ['FOO']);
  assert.is(env.PATH, '/bin');
  assert.is(env.FOO, '1');
  assert.not.ok('OPENAI_API_KEY' in env);
  assert.not.ok('EXCHANGE_API_KEY' in env);
  assert.equal(env, { PYTHONDONTWRITEBYTECODE: '1', PYTHONUNBUFFERED: '1', PYTHONUTF8: '1', PATH: '/bin', FOO: '1' });
});

test('scrubbedEnv: undefined values are skipped, extra wins', () => {
  const env = scrubbedEnv({ PATH: '/bin', HOME: undefined, BAR: 'b' }, ['BAR', 'MISSING'], { BAR: 'override', MODE: 'dry' });
  assert.equal(env, { PYTHONDONTWRITEBYTECODE: '1', PYTHONUNBUFFERED: '1', PYTHONUTF8: '1', PATH: '/bin', BAR: 'override', MODE: 'dry' });
});

test('scrubbedEnv on Windows: the system variables programs need (by any spelling), user folders only inside the private home, never the real ones', () => {
  const service = {
    Path: 'C:\\Windows\\system32;C:\\Python312',
    SystemRoot: 'C:\\Windows',
    windir: 'C:\\Windows',
    ComSpec: 'C:\\Windows\\system32\\cmd.exe',
    PATHEXT: '.COM;.EXE;.BAT;.CMD',
    ProgramFiles: 'C:\\Program Files',
    'ProgramFiles(x86)': 'C:\\Program Files (x86)',
    SystemDrive: 'C:',
    TEMP: 'C:\\Users\\anna\\AppData\\Local\\Temp',
    USERPROFILE: 'C:\\Users\\anna',
    APPDATA: 'C:\\Users\\anna\\AppData\\Roaming',
    LOCALAPPDATA: 'C:\\Users\\anna\\AppData\\Local',
    GITHUB_TOKEN: 'ghp_secret',
  };
  const home = 'C:\\ma\\check-1\\home';
  const env = scrubbedEnv(service, [], { HOME: home, TEMP: 'C:\\ma\\check-1\\tmp', TMP: 'C:\\ma\\check-1\\tmp' }, 'win32');
  assert.is(env.PATH, service.Path);
  assert.is(env.SYSTEMROOT, 'C:\\Windows');
  assert.is(env.WINDIR, 'C:\\Windows');
  assert.is(env.COMSPEC, service.ComSpec);
  assert.is(env.PATHEXT, service.PATHEXT);
  assert.is(env.PROGRAMFILES, 'C:\\Program Files');
  assert.is(env['PROGRAMFILES(X86)'], 'C:\\Program Files (x86)');
  assert.is(env.SYSTEMDRIVE, 'C:');
  assert.is(env.USERPROFILE, home);
  assert.is(env.APPDATA, `${home}\\AppData\\Roaming`);
  assert.is(env.LOCALAPPDATA, `${home}\\AppData\\Local`);
  assert.is(env.TEMP, 'C:\\ma\\check-1\\tmp');
  assert.is(env.PYTHONUTF8, '1');
  const values = Object.values(env).join('\n');
  assert.not.match(values, 'C:\\Users\\anna', 'no real user folder');
  assert.not.match(values, 'ghp_secret');
  // Without a private home (the doctor's probes): no user folders at all.
  const bare = scrubbedEnv(service, [], {}, 'win32');
  assert.equal([bare.USERPROFILE, bare.APPDATA, bare.LOCALAPPDATA], [undefined, undefined, undefined]);
  // Elsewhere the Windows names mean nothing and are not passed.
  assert.not.ok('SystemRoot' in scrubbedEnv(service, [], {}, 'linux') || 'SYSTEMROOT' in scrubbedEnv(service, [], {}, 'linux'));
});

test("scrubbedEnv: PYTHONUTF8=1 everywhere unless the project sets it (env_allow or a check's env)", () => {
  assert.is(scrubbedEnv({ PATH: '/bin' }, []).PYTHONUTF8, '1');
  assert.is(scrubbedEnv({ PATH: '/bin', PYTHONUTF8: '0' }, ['PYTHONUTF8']).PYTHONUTF8, '0');
  assert.is(scrubbedEnv({ PATH: '/bin' }, [], { PYTHONUTF8: '0' }).PYTHONUTF8, '0');
});

test.run();
