/**
 * The agent's file tools against real models' mistakes: edit_file (forgiving matching,
 * unique matches only, batches all-or-none, every file-system error a tool error),
 * read_file's numbered lines, search's Perl-style patterns, and the syntax check after an
 * edit. Real files in a real git repo; one end-to-end run through the `openai` client
 * against the scripted server on 127.0.0.1.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { editFile, readFile, search, ToolError, writeFile } from '../src/engines/tools.ts';
import { makeRedactor } from '../src/safety/redact.ts';
import { runTask } from '../src/run/runTask.ts';
import { runCheck, withCheckCopy } from '../src/repo/checks.ts';
import { sandboxStatus } from '../src/safety/sandbox.ts';
import type { Settings } from '../src/workspace/config.ts';
import { userPrompt } from '../src/engines/prompt.ts';
import { parseTask } from '../src/contract/task.ts';
import { denyMatcher, scopeMatcher } from '../src/safety/globs.ts';
import { finish, startFakeLlm, toolCall } from './helpers/fakeLlm.ts';
import { makeWorkspace, writeTask, type TestWorkspace } from './helpers/workspace.ts';

const NO_MATCH = 'not found in edits/a.py, not even ignoring line endings, trailing whitespace, indentation and quote styles';

interface EditCase {
  name: string;
  /** The file before (edits/a.py unless `path` says otherwise); undefined: not created. */
  file?: string;
  path?: string;
  args: Record<string, unknown>;
  /** The file after (the same as `file` when the edit is refused). */
  expected?: string;
  /** The tool's answer: a success text, or the ToolError's message. */
  message: string;
  error?: boolean;
}

const CASES: EditCase[] = [
  {
    name: 'trailing whitespace in the file that the model dropped',
    file: 'def f():\n    x = 1   \n    return x  \n',
    args: { old: '    x = 1\n    return x\n', new: '    x = 2\n    return x\n' },
    expected: 'def f():\n    x = 2\n    return x  \n',
    message: 'edited edits/a.py at line 2 ("old" matched after ignoring trailing whitespace)',
  },
  {
    name: 'indentation slip: the model quoted a nested block flush left',
    file: 'class A:\n    def f(self, x):\n        if x:\n            return 1\n        return 2\n',
    args: { old: 'if x:\n    return 1\n', new: 'if x:\n    log(x)\n    return 3\n' },
    expected: 'class A:\n    def f(self, x):\n        if x:\n            log(x)\n            return 3\n        return 2\n',
    message: 'edited edits/a.py at line 3 ("old" matched after ignoring indentation; "new" was re-indented the same way)',
  },
  {
    name: 'indentation slip the other way: the model indented one level too deep',
    file: 'def g():\n    y = 1\n    return y\n',
    args: { old: '        y = 1\n        return y', new: '        y = 2\n        return y' },
    expected: 'def g():\n    y = 2\n    return y\n',
    message: 'edited edits/a.py at line 2 ("old" matched after ignoring indentation; "new" was re-indented the same way)',
  },
  {
    name: 'tabs in the file, spaces from the model',
    file: 'def f():\n\tif x:\n\t\treturn 1\n',
    args: { old: '    if x:\n        return 1', new: '    if x:\n        # two\n        return 2' },
    expected: 'def f():\n\tif x:\n\t\t# two\n\t\treturn 2\n',
    message: 'edited edits/a.py at line 2 ("old" matched after ignoring indentation; "new" was re-indented the same way)',
  },
  {
    name: 'CRLF file, LF old: the file keeps CRLF, also on added lines',
    file: 'a = 1\r\nb = 2\r\nc = 3\r\n',
    args: { old: 'b = 2\n', new: 'b = 20\nb2 = 0\n' },
    expected: 'a = 1\r\nb = 20\r\nb2 = 0\r\nc = 3\r\n',
    message: 'edited edits/a.py at line 2',
  },
  {
    name: 'mixed line endings: each line keeps its own',
    file: 'x = 1\r\ny = 2\nz = 3\r\nw = 4\n',
    args: { old: 'x = 1\ny = 2\nz = 3\n', new: 'x = 1\ny = 5\nz = 3\n' },
    expected: 'x = 1\r\ny = 5\nz = 3\r\nw = 4\n',
    message: 'edited edits/a.py at line 1',
  },
  {
    name: 'read_file line numbers pasted into old and new',
    file: 'import os\n\ndef f():\n    return 1\n\nprint(f())\n',
    args: { old: '3| def f():\n4|     return 1', new: '3| def f():\n4|     return 2' },
    expected: 'import os\n\ndef f():\n    return 2\n\nprint(f())\n',
    message: 'edited edits/a.py at line 3',
  },
  {
    name: 'padded line numbers across 9 -> 10, only in old',
    file: 'a = 0\nb = 0\nc = 0\nd = 0\ne = 0\nf = 0\ng = 0\nh = 0\ni = 9\nj = 10\nk = 11\n',
    args: { old: ' 9| i = 9\n10| j = 10\n', new: 'i = 9\nj = 100\n' },
    expected: 'a = 0\nb = 0\nc = 0\nd = 0\ne = 0\nf = 0\ng = 0\nh = 0\ni = 9\nj = 100\nk = 11\n',
    message: 'edited edits/a.py at line 9',
  },
  {
    name: "smart quotes from the model become the file's straight quotes",
    file: 'def hello():\n    print("hello")\n    return \'x\'\n',
    args: { old: '    print(\u201chello\u201d)\n    return \u2018x\u2019', new: '    print(\u201chello, world\u201d)\n    return \u2018x\u2019' },
    expected: 'def hello():\n    print("hello, world")\n    return \'x\'\n',
    message: 'edited edits/a.py at line 2 ("old" matched after ignoring indentation and quote/dash styles; "new" was adjusted the same way)',
  },
  {
    name: 'a blank line above and below the quoted block that the file does not have there',
    file: 'def f():\n    a = 1\n    return a\ndef g():\n    pass\n',
    args: { old: '\n    a = 1\n    return a\n\n', new: '\n    a = 2\n    return a\n\n' },
    expected: 'def f():\n    a = 2\n    return a\ndef g():\n    pass\n',
    message: 'edited edits/a.py at line 2',
  },
  {
    name: 'several exact matches: each line number, nothing changed',
    file: 'x = 1\ny = 2\nx = 1\n',
    args: { old: 'x = 1', new: 'x = 3' },
    message: '"old" matches 2 places in edits/a.py (lines 1 and 3); add neighbouring lines to "old" so it matches only one',
    error: true,
  },
  {
    name: 'several matches once indentation is ignored',
    file: 'if a:\n    go()\n    stop()\nif b:\n        go()\n        stop()\n',
    args: { old: 'go()\nstop()', new: 'go()\nhalt()' },
    message:
      '"old" is not in edits/a.py exactly, and ignoring indentation it matches 2 places in edits/a.py (lines 2 and 5); add neighbouring lines to "old" so it matches only one',
    error: true,
  },
  {
    name: 'no match: the closest region, with line numbers',
    file: 'import math\n\ndef size(balance, risk):\n    return balance * risk\n\ndef other():\n    pass\n',
    args: { old: 'def size(balance, risk_pct):\n    return balance * risk_pct\n', new: 'def size(balance, risk_pct):\n    return balance * risk_pct / 100\n' },
    message: `"old" was ${NO_MATCH}. The most similar part is lines 3-4:\n3| def size(balance, risk):\n4|     return balance * risk\nCopy "old" from the file as it is now (the line-number prefixes may be left in or out)`,
    error: true,
  },
  {
    name: 'no match and nothing similar',
    file: 'x = 1\n',
    args: { old: 'completely different\n', new: 'y\n' },
    message: `"old" was ${NO_MATCH}, and no lines of it are similar to "old"; read_file edits/a.py to see its current content`,
    error: true,
  },
  {
    name: 'no-op: new is old',
    file: 'x = 1\n',
    args: { old: 'x = 1', new: 'x = 1' },
    message: 'the edit changes nothing in edits/a.py: "new" is the same as the text it replaces',
    error: true,
  },
  {
    name: 'no-op after matching: the model only dropped trailing whitespace',
    file: 'x = 1   \ny = 2\n',
    args: { old: 'x = 1\ny = 2\n', new: 'x = 1\ny = 2\n' },
    message: 'the edit changes nothing in edits/a.py: "new" is the same as the text it replaces',
    error: true,
  },
  {
    name: 'a folder as path',
    path: 'edits',
    args: { old: 'a', new: 'b' },
    message: '"edits" is a folder, not a file',
    error: true,
  },
  {
    name: 'a missing file',
    path: 'edits/missing.py',
    args: { old: 'a', new: 'b' },
    message: '"edits/missing.py" does not exist; use write_file to create a file',
    error: true,
  },
  {
    name: 'batch with one bad edit: the file is unchanged',
    file: 'x = 1\ny = 2\nz = 3\n',
    args: {
      edits: [
        { old: 'x = 1', new: 'x = 10' },
        { old: 'print("w")', new: 'print("w", 4)' },
        { old: 'z = 3', new: 'z = 30' },
      ],
    },
    message: `edit 2 of 3 failed, so none of the 3 edits was applied (edits/a.py is unchanged): "old" was ${NO_MATCH}, and no lines of it are similar to "old"; read_file edits/a.py to see its current content`,
    error: true,
  },
  {
    name: 'batch: applied in order, line numbers of each',
    file: 'def f():\n    x = 1\n    y = 2\n    return x + y\n',
    args: {
      edits: [
        { old: '    x = 1', new: '    x = 10' },
        { old: 'return x + y', new: 'return x * y' },
      ],
    },
    expected: 'def f():\n    x = 10\n    y = 2\n    return x * y\n',
    message: 'edited edits/a.py: 2 edits, at lines 2, 4',
  },
  {
    name: 'deleting whole lines removes their line breaks',
    file: 'a = 1\n  b = 2 \nc = 3\n',
    args: { old: 'b = 2\n', new: '' },
    expected: 'a = 1\nc = 3\n',
    message: 'edited edits/a.py at line 2 ("old" matched after ignoring indentation; "new" was re-indented the same way)',
  },
  {
    name: 'the redaction marker in new is refused',
    file: 'API = load()\nx = 1\n',
    args: { old: 'API = load()', new: 'API = "[REDACTED]"' },
    message:
      'refused: the text for edits/a.py contains [REDACTED], the marker meta-agent shows in place of a secret; you never saw the real value, and writing the marker would break the file. Edit around that line with edit_file instead of rewriting it',
    error: true,
  },
  {
    name: 'the redaction marker in old: a hint where the secret is',
    file: 'TOKEN = "abc"\nx = 1\n',
    args: { old: 'TOKEN = "[REDACTED]"\n', new: 'TOKEN = env()\n' },
    message:
      '"old" was not found in edits/a.py: it contains [REDACTED], where meta-agent hid a secret from you; the file has the real value there. Choose "old" from text around it, without [REDACTED]',
    error: true,
  },
  {
    name: 'a binary file',
    file: 'PK\u0000\u0003 x = 1',
    path: 'edits/blob.bin',
    args: { old: 'x = 1', new: 'x = 2' },
    message: '"edits/blob.bin" is a binary file; edit_file changes text files only',
    error: true,
  },
  {
    name: 'old and edits together are refused',
    file: 'x = 1\n',
    args: { old: 'x', new: 'y', edits: [{ old: 'x', new: 'y' }] },
    message: 'give either "old" and "new", or "edits", not both',
    error: true,
  },
];

let ws: TestWorkspace;
const ctx = () => ({
  worktree: ws.repo,
  inScope: () => true,
  denied: denyMatcher([]),
  redact: makeRedactor({}),
  settings: ws.settings,
  project: ws.settings.projects.bot!,
});

async function toolError(call: Promise<unknown>): Promise<string> {
  try {
    await call;
  } catch (error) {
    if (error instanceof ToolError) return error.message;
    throw error;
  }
  throw new Error('expected a ToolError');
}

test.before(async () => {
  ws = await makeWorkspace();
  await fs.mkdir(path.join(ws.repo, 'edits'));
});
test.after(async () => ws.cleanup());

for (const c of CASES) {
  test(`edit_file: ${c.name}`, async () => {
    const rel = c.path ?? 'edits/a.py';
    const abs = path.join(ws.repo, rel);
    if (c.file !== undefined) await fs.writeFile(abs, c.file);
    let answer: string;
    let failed = false;
    try {
      answer = await editFile(ctx(), { path: rel, ...c.args });
    } catch (error) {
      if (!(error instanceof ToolError)) throw error;
      answer = error.message;
      failed = true;
    }
    assert.is(answer, c.message);
    assert.is(failed, c.error ?? false, 'refused or applied as expected');
    if (c.file !== undefined) assert.is(await fs.readFile(abs, 'utf8'), c.expected ?? c.file);
  });
}

test('read_file: numbered lines, the total, ranges and what was not shown', async () => {
  const lines = Array.from({ length: 12 }, (_, i) => `line ${i + 1}`);
  await fs.writeFile(path.join(ws.repo, 'edits/r.txt'), `${lines.join('\r\n')}\r\n`);
  assert.is(
    await readFile(ctx(), { path: 'edits/r.txt', start_line: 9, end_line: 10 }),
    'edits/r.txt (lines 9-10 of 12)\n 9| line 9\n10| line 10\n[the file goes on to line 12]',
  );
  const whole = await readFile(ctx(), { path: 'edits/r.txt' });
  assert.ok(whole.startsWith('edits/r.txt (12 lines)\n 1| line 1\n 2| line 2\n'), whole);
  assert.ok(whole.endsWith('12| line 12'), whole);
  assert.is(await toolError(readFile(ctx(), { path: 'edits/r.txt', start_line: 13 })), 'start_line 13 is past the end of edits/r.txt, which has 12 lines');
  // A long file stops at a line and says where to go on.
  const many = Array.from({ length: 3000 }, (_, i) => `value_${i + 1} = ${'x'.repeat(40)}`);
  await fs.writeFile(path.join(ws.repo, 'edits/long.py'), `${many.join('\n')}\n`);
  const first = await readFile(ctx(), { path: 'edits/long.py' });
  const m = /\n\[(\d+) more lines not shown \((\d+)-3000\); read them with start_line=(\d+)\]$/.exec(first);
  assert.ok(m, first.slice(-200));
  assert.is(Number(m![2]), Number(m![3]));
  assert.ok(first.length <= ws.settings.config.limits.tool_output_chars, 'fits the tool output limit');
  const next = await readFile(ctx(), { path: 'edits/long.py', start_line: Number(m![3]) });
  assert.ok(next.includes(`${m![3]}| value_${m![3]} = `), 'the next read starts where the first stopped');
  // The numbered lines read back into an edit: the prefixes are stripped.
  const shown = (await readFile(ctx(), { path: 'edits/long.py', start_line: 100, end_line: 101 })).split('\n').slice(1, -1).join('\n');
  assert.is(await editFile(ctx(), { path: 'edits/long.py', old: shown, new: 'value_100 = 0\nvalue_101 = 0' }), 'edited edits/long.py at line 100');
  assert.is((await fs.readFile(path.join(ws.repo, 'edits/long.py'), 'utf8')).split('\n')[99], 'value_100 = 0');
});

test('search: Perl-style \\d \\b \\s, a glob, file:line: text, denied files never shown, the cut note', async () => {
  await fs.mkdir(path.join(ws.repo, 'edits/s'), { recursive: true });
  await fs.writeFile(path.join(ws.repo, 'edits/s/one.py'), 'stop_loss = 0.02\nstop_loss_pct = 2\nmax  leverage = 3\n');
  await fs.writeFile(path.join(ws.repo, 'edits/s/two.txt'), 'stop_loss 7\n');
  await fs.writeFile(path.join(ws.repo, 'edits/s/.env'), 'stop_loss = 99\n');
  const c = ctx();
  assert.is(await search(c, { pattern: '\\bstop_loss\\b\\s*=\\s*\\d', path: 'edits/s' }), 'edits/s/one.py:1: stop_loss = 0.02');
  assert.is(await search(c, { pattern: 'max\\s+leverage', path: 'edits' }), 'edits/s/one.py:3: max  leverage = 3');
  assert.is(await search(c, { pattern: 'stop_loss\\W+\\d', path: 'edits/s', glob: '*.txt' }), 'edits/s/two.txt:1: stop_loss 7');
  assert.is(await search(c, { pattern: '\\d{5}', path: 'edits/s' }), 'no matches for /\\d{5}/ in edits/s');
  // Many matches: the first 200 and a note.
  await fs.writeFile(path.join(ws.repo, 'edits/s/many.txt'), `${Array.from({ length: 250 }, (_, i) => `row ${i}`).join('\n')}\n`);
  const cut = await search(c, { pattern: '^row \\d+$', path: 'edits/s' });
  assert.is(cut.split('\n').length, 201);
  assert.ok(cut.endsWith('\n[50 more matches not shown (250 in all); narrow the pattern, path or glob]'), cut.slice(-120));
  assert.match(await toolError(search(c, { pattern: '(unclosed', path: 'edits/s' })), /^search failed: /);
});

test('search: where git has no PCRE, the same pattern runs as a JavaScript RegExp, and the answer says so', async () => {
  if (process.platform === 'win32') return; // the stand-in git below is a shell script
  const bin = path.join(ws.root, 'git-without-pcre');
  await fs.mkdir(bin, { recursive: true });
  const realGit = (await execa('sh', ['-c', 'command -v git'])).stdout.trim();
  await fs.writeFile(
    path.join(bin, 'git'),
    `#!/bin/sh\nfor a in "$@"; do [ "$a" = "-P" ] && { echo "fatal: cannot use Perl-compatible regexes when not compiled with USE_LIBPCRE" >&2; exit 128; }; done\nexec ${realGit} "$@"\n`,
    { mode: 0o755 },
  );
  await fs.mkdir(path.join(ws.repo, 'edits/nopcre'), { recursive: true });
  await fs.writeFile(path.join(ws.repo, 'edits/nopcre/one.py'), 'stop_loss = 0.02\nstop_loss_pct = 2\n');
  const saved = process.env.PATH;
  process.env.PATH = `${bin}${path.delimiter}${saved}`;
  try {
    assert.is(
      await search(ctx(), { pattern: '\\bstop_loss\\b\\s*=\\s*\\d', path: 'edits/nopcre' }),
      'edits/nopcre/one.py:1: stop_loss = 0.02\n[git here has no PCRE support; searched with JavaScript regular expressions]',
    );
  } finally {
    process.env.PATH = saved;
  }
});

test('syntax check: a Python error comes back with file and line, the edit is kept, no __pycache__ is left', async () => {
  const file = path.join(ws.repo, 'edits/ok.py');
  await fs.writeFile(file, 'def f(x):\n    return x\n');
  const answer = await editFile(ctx(), { path: 'edits/ok.py', old: '    return x\n', new: '    return (x\n' });
  assert.match(answer, /^edited edits\/ok\.py at line 2\n\nSYNTAX ERROR after this change \(the change was saved; fix it\):\nedits\/ok\.py:2: SyntaxError: /);
  assert.is(await fs.readFile(file, 'utf8'), 'def f(x):\n    return (x\n', 'the edit is kept');
  // Control: a valid edit says nothing more.
  assert.is(await editFile(ctx(), { path: 'edits/ok.py', old: '    return (x\n', new: '    return (x)\n' }), 'edited edits/ok.py at line 2');
  const leftovers = (await fs.readdir(path.join(ws.repo, 'edits'), { recursive: true })).filter((f) => /__pycache__|\.pyc$/.test(String(f)));
  assert.equal(leftovers, [], 'no byte-code written into the repository');
  // A file that was broken before the edit: its old error is not repeated on every edit.
  await fs.writeFile(file, 'def f(:\n    pass\nx = 1\n');
  assert.is(await editFile(ctx(), { path: 'edits/ok.py', old: 'x = 1', new: 'x = 2' }), 'edited edits/ok.py at line 3');
});

test('syntax check: JSON and YAML errors with their line; JSON with comments (tsconfig) is not flagged', async () => {
  const answer = await writeFile(ctx(), { path: 'edits/c.json', content: '{\n  "a": 1,\n  "b": 2,\n}\n' });
  assert.match(answer, /^wrote edits\/c\.json \(\d+ bytes\)\n\nSYNTAX ERROR after this change \(the change was saved; fix it\):\nedits\/c\.json:4: /);
  assert.is(await writeFile(ctx(), { path: 'edits/c.json', content: '{"a": 1}\n' }), 'wrote edits/c.json (9 bytes)');
  assert.is(await writeFile(ctx(), { path: 'edits/tsconfig.json', content: '{ // comments are fine here\n}\n' }), 'wrote edits/tsconfig.json (30 bytes)');
  await fs.writeFile(path.join(ws.repo, 'edits/c.yaml'), 'a: 1\nb:\n  - x\n');
  const yamlAnswer = await editFile(ctx(), { path: 'edits/c.yaml', old: '  - x\n', new: '  - x\n   bad: [\n' });
  assert.match(yamlAnswer, /^edited edits\/c\.yaml at line 3\n\nSYNTAX ERROR after this change \(the change was saved; fix it\):\nedits\/c\.yaml:\d+: /);
});

test('syntax_check from the project runs like a check (a copy, the sandbox); without a sandbox it is not run, and the agent is told why', async () => {
  // The checker fails on the word "bad", and reports whether it can see the real repository.
  const checker = `import os, sys; t = open(sys.argv[1]).read(); print("sees repo:", os.path.exists(sys.argv[2])); sys.exit(sys.argv[1] + ":1: bad word" if "bad" in t else 0)`;
  const own = await makeWorkspace({
    project: `    scope: ["**"]\n    syntax_check: {"*.txt": ["python3", "-c", ${JSON.stringify(checker)}, "{file}", "REPO"]}`,
  });
  try {
    const project = own.settings.projects.bot!;
    project.syntax_check['*.txt'] = project.syntax_check['*.txt']!.map((a) => (a === 'REPO' ? path.join(own.repo, 'README.md') : a));
    const redact = makeRedactor({});
    const ctxWith = (settings: Settings) => ({
      worktree: own.repo,
      inScope: () => true,
      denied: denyMatcher([]),
      redact,
      settings,
      project,
      runSyntaxCheck: (check: Parameters<typeof runCheck>[0]) =>
        withCheckCopy({ worktree: own.repo }, settings, project, (copy) => runCheck(check, copy, settings, project, redact)),
    });
    await fs.writeFile(path.join(own.repo, 'notes.txt'), 'good\n');
    const status = await sandboxStatus(own.settings);
    const answer = await editFile(ctxWith(own.settings), { path: 'notes.txt', old: 'good', new: 'bad' });
    if (status.error) {
      // A machine without bubblewrap (CI, Windows): the check is refused, the edit stands.
      assert.match(answer, /^edited notes\.txt at line 1\n\n\(projects\.bot\.syntax_check\["\*\.txt"\] not run: .*sandbox/);
    } else {
      assert.match(
        answer,
        /^edited notes\.txt at line 1\n\nSYNTAX CHECK FAILED after this change \(the change was saved; fix it\): \$ python3 -c .* notes\.txt \S+README\.md\nsees repo: False\nnotes\.txt:1: bad word$/,
      );
      // Control: a good file passes quietly.
      assert.is(await editFile(ctxWith(own.settings), { path: 'notes.txt', old: 'bad', new: 'fine' }), 'edited notes.txt at line 1');
    }
    assert.ok((await fs.readFile(path.join(own.repo, 'notes.txt'), 'utf8')).length > 0);
    // No bubblewrap on PATH (sandbox: auto fails closed): not run, and why.
    const bin = path.join(own.root, 'bin-without-bwrap');
    await fs.mkdir(bin);
    const noSandbox: Settings = { ...own.settings, env: { ...own.settings.env, PATH: bin } };
    await fs.writeFile(path.join(own.repo, 'notes.txt'), 'good\n');
    assert.is(
      await editFile(ctxWith(noSandbox), { path: 'notes.txt', old: 'good', new: 'bad' }),
      `edited notes.txt at line 1\n\n(projects.bot.syntax_check["*.txt"] not run: ${await toolErrorOrMessage(() => withCheckCopy({ worktree: own.repo }, noSandbox, project, async () => null))})`,
    );
    assert.is(await fs.readFile(path.join(own.repo, 'notes.txt'), 'utf8'), 'bad\n', 'the edit stands');
  } finally {
    await own.cleanup();
  }
});

async function toolErrorOrMessage(call: () => Promise<unknown>): Promise<string> {
  try {
    await call();
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('expected the sandbox to be refused');
}

test('repo map: a big repo is collapsed to folders and says so, and how to list the rest', async () => {
  const repo = path.join(ws.root, 'big-repo');
  for (let d = 0; d < 320; d++) {
    await fs.mkdir(path.join(repo, 'pkg', `m${String(d).padStart(3, '0')}`), { recursive: true });
    await fs.writeFile(path.join(repo, 'pkg', `m${String(d).padStart(3, '0')}`, 'x.py'), 'x = 1\n');
  }
  await fs.writeFile(path.join(repo, 'README.md'), '# big\n');
  await execa('git', ['init', '--quiet'], { cwd: repo });
  const task = parseTask('---\nproject: bot\nobjective: Look\nscope: ["pkg/m000/**"]\n---\n', 'map.md');
  const prompt = await userPrompt({
    task,
    worktree: repo,
    scopeGlobs: task.scope,
    denied: denyMatcher([]),
    inScope: scopeMatcher(task.scope, ['**']),
    redact: makeRedactor({}),
  });
  const map = prompt.slice(prompt.indexOf('## Repository map\n') + '## Repository map\n'.length).split('\n');
  assert.is(
    map[0],
    '321 files, too many to list: top-level files and folders with their file counts (* = in scope). list_files with a folder (e.g. {"path": "pkg/m000"}) lists the files in it.',
  );
  assert.is(map[1], 'README.md');
  assert.is(map[2], 'pkg/m000/ (1 files, 1 in scope)');
  assert.is(map[3], 'pkg/m001/ (1 files)');
  assert.is(map.at(-1), '[... 21 more entries not shown; list_files with a folder lists what is in it]');
  assert.is(map.length, 302);
});

test('end to end: a whitespace-slipped edit succeeds, a broken Python edit gets the syntax error in the next request', async () => {
  const llm = await startFakeLlm([
    toolCall('read_file', { path: 'bot/sizing.py', start_line: 20, end_line: 21 }),
    // The file indents this block by 4 spaces; the model quotes it flush left, with trailing spaces.
    toolCall('edit_file', {
      path: 'bot/sizing.py',
      old: 'if price <= 0:  \n    raise ValueError("price must be positive")\n',
      new: 'if price <= 0.0:\n    raise ValueError("price must be positive")\n',
    }),
    toolCall('edit_file', {
      path: 'bot/sizing.py',
      edits: [{ old: '    risk_amount = equity * risk_per_trade\n', new: '    risk_amount = (equity * risk_per_trade\n' }],
    }),
    toolCall('edit_file', { path: 'bot/sizing.py', old: '    risk_amount = (equity * risk_per_trade\n', new: '    risk_amount = equity * risk_per_trade\n' }),
    finish('Edited sizing.'),
  ]);
  const e2e = await makeWorkspace({ llmUrl: llm.url });
  try {
    const task = await writeTask(e2e.settings.layout.inbox, 'slips.md', '---\nproject: bot\nobjective: Edit sizing\nscope: ["bot/**"]\n---\n');
    const result = await runTask(task, { settings: e2e.settings });
    assert.is(result.status, 'ok', result.report.error?.message);
    const answerTo = (i: number) => llm.requests[i + 1]!.body.messages.at(-1);
    assert.is(
      answerTo(0).content,
      'bot/sizing.py (lines 20-21 of 33)\n20|     if price <= 0:\n21|         raise ValueError("price must be positive")\n[the file goes on to line 33]',
    );
    assert.is(answerTo(1).content, 'edited bot/sizing.py at line 20 ("old" matched after ignoring indentation; "new" was re-indented the same way)');
    assert.is(answerTo(2).role, 'tool');
    assert.match(
      answerTo(2).content,
      /^edited bot\/sizing\.py at line 29\n\nSYNTAX ERROR after this change \(the change was saved; fix it\):\nbot\/sizing\.py:\d+: SyntaxError: /,
    );
    assert.is(answerTo(3).content, 'edited bot/sizing.py at line 29');
    assert.equal(result.report.changed_files, ['bot/sizing.py']);
    const patch = await fs.readFile(path.join(e2e.root, result.report.patch_files[0]!), 'utf8');
    assert.match(patch, /\n- {4}if price <= 0:\n\+ {4}if price <= 0\.0:\n/);
    assert.not.match(patch, /risk_amount/, 'the broken line was fixed back');
  } finally {
    await llm.close();
    await e2e.cleanup();
  }
});

test.run();
