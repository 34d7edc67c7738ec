/**
 * `llm.tool_mode: text`, for models and servers without tool calling: no tools in the
 * request, a byte-stable protocol in the system prompt, one fenced action block per reply.
 * The README's quick-start task done with a script of text actions produces the same patch
 * as the same actions made as native tool calls.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ReportSchema, type Report } from '../src/contract/report.ts';
import { runTask } from '../src/run/runTask.ts';
import { parseAction } from '../src/engines/textToolCalls.ts';
import { startFakeLlm, textReply, toolCall, type Reply } from './helpers/fakeLlm.ts';
import { makeWorkspace, readJson, writeTask, type WorkspaceOptions } from './helpers/workspace.ts';

/** The README's quick start: `meta-agent new --type audit_code --objective "Audit bot/sizing.py: reject non-positive equity, with a test"`. */
const TASK = `---
project: bot
type: audit_code
objective: "Audit bot/sizing.py: reject non-positive equity, with a test"
scope: ["bot/sizing.py", "tests/**"]
---
`;

const EDIT = {
  path: 'bot/sizing.py',
  old: '    if equity <= 0:\n        raise ValueError("equity must be positive")',
  new: '    if not equity > 0:  # NaN too\n        raise ValueError("equity must be positive")',
};
const NEW_TEST = {
  path: 'tests/test_equity.py',
  content: [
    'import math',
    '',
    'import pytest',
    '',
    'from bot.sizing import position_size',
    '',
    '',
    '@pytest.mark.parametrize("equity", [0, -1, math.nan])',
    'def test_non_positive_equity_is_rejected(equity):',
    '    with pytest.raises(ValueError, match="equity"):',
    '        position_size(equity, 100.0, 0.01, 0.01, 1_000)',
    '',
  ].join('\n'),
};
const FINISH = {
  summary: 'position_size rejects NaN equity too; a test covers zero, negative and NaN equity.',
  risks: ['none known'],
  risk_level: 'low',
  next_actions: ['review the patch'],
};

/** One text action: a thought, then the fenced block named after the tool. */
const action = (tool: string, args: unknown, thought = 'Next step.') => textReply(`${thought}\n\n\`\`\`${tool}\n${JSON.stringify(args, null, 2)}\n\`\`\``);

const ACTIONS: Array<[string, unknown]> = [
  ['read_file', { path: 'bot/sizing.py' }],
  ['edit_file', EDIT],
  ['write_file', NEW_TEST],
  ['run_checks', {}],
  ['finish', FINISH],
];

async function run(
  script: Reply[],
  options: { textMode: boolean; checks: boolean; name: string },
): Promise<{ report: Report; patch: string | null; requests: any[] }> {
  const llm = await startFakeLlm(script);
  const workspace: WorkspaceOptions = { llmUrl: llm.url };
  if (!options.checks) workspace.project = '    scope: ["**"]';
  const ws = await makeWorkspace(workspace);
  try {
    if (options.textMode) ws.settings.llm.toolMode = 'text';
    const file = await writeTask(ws.settings.layout.inbox, `${options.name}.md`, TASK);
    const result = await runTask(file, { settings: ws.settings });
    const report = ReportSchema.parse(await readJson(result.report_path));
    const patch = report.patch_files[0] ? await fs.readFile(path.join(ws.root, report.patch_files[0]), 'utf8') : null;
    return { report, patch, requests: llm.requests.map((r) => r.body) };
  } finally {
    await llm.close();
    await ws.cleanup();
  }
}

test("tool_mode: text completes the quick-start task with text actions, and its patch equals a native run's", async () => {
  const text = await run(
    [
      // Two format errors on the way: two actions in one reply, then arguments that are not JSON.
      textReply('I will read and then edit.\n\n```read_file\n{"path": "bot/sizing.py"}\n```\n\n```run_checks\n{}\n```'),
      textReply('```read_file\n{path: bot/sizing.py}\n```'),
      ...ACTIONS.map(([tool, args]) => action(tool, args)),
    ],
    { textMode: true, checks: true, name: 'sizing-text' },
  );
  const { report, requests } = text;
  assert.is(report.outcome, 'completed', report.error?.message);
  assert.equal(report.changed_files, ['bot/sizing.py', 'tests/test_equity.py']);
  assert.ok(report.tests?.passed, "the project's tests pass with the new test");
  assert.is(report.summary, FINISH.summary);
  assert.is(requests.length, 7);

  // No tool-calling parameters; the protocol is in the system prompt, the same bytes every time.
  for (const body of requests) {
    assert.not.ok('tools' in body || 'tool_choice' in body || 'parallel_tool_calls' in body, 'no tool-calling parameters in text mode');
    assert.is(body.messages[0].content, requests[0].messages[0].content, 'the system prompt is byte-stable');
  }
  const system: string = requests[0].messages[0].content;
  assert.match(system, /exactly ONE action/);
  assert.match(system, /- edit_file: /);
  assert.match(system, /"old": string \(optional\) - The text to replace/);

  // The format errors were told as such, each with the expected shape.
  assert.match(requests[1].messages.at(-1).content, /expected exactly one action block, found 2/);
  assert.match(requests[2].messages.at(-1).content, /arguments of read_file are not valid JSON/);
  // Results come back as user messages.
  const afterRead = requests[3].messages.at(-1);
  assert.is(afterRead.role, 'user');
  assert.match(afterRead.content, /^Result of read_file:\n/);
  assert.match(afterRead.content, /def position_size/);
  assert.not.match(afterRead.content, /tool as text/, 'no "use real tool calls" note in text mode');
  assert.match(requests[6].messages.at(-1).content, /^Result of run_checks:\n[\s\S]*PASSED/);

  const native = await run(
    ACTIONS.map(([tool, args]) => toolCall(tool, args)),
    { textMode: false, checks: false, name: 'sizing-native' },
  );
  assert.is(native.report.outcome, 'completed', native.report.error?.message);
  assert.ok(text.patch && native.patch);
  assert.is(text.patch, native.patch, 'the same patch, byte for byte');
  assert.match(text.patch!, /\+ {4}if not equity > 0:/);
  assert.match(text.patch!, /\+def test_non_positive_equity_is_rejected/);
});

test('the action parser: one named block; its JSON may span lines; a ``` inside a JSON string does not end the block', () => {
  const content = 'x = """\n```\n"""';
  const reply = `Writing it.\n\n\`\`\`write_file\n${JSON.stringify({ path: 'a.py', content }, null, 2)}\n\`\`\``;
  const parsed = parseAction(reply);
  assert.ok('call' in parsed, JSON.stringify(parsed));
  if ('call' in parsed) {
    assert.is(parsed.call.name, 'write_file');
    assert.equal(JSON.parse(parsed.call.arguments), { path: 'a.py', content });
  }
  const none = parseAction('I am done thinking.');
  assert.ok('error' in none && /found 0/.test(none.error));
  const unknown = parseAction('```bash\nrm -rf /\n```');
  assert.ok('error' in unknown, 'a block not named after a tool is no action');
  const empty = parseAction('```run_checks\n\n```');
  assert.ok('call' in empty && empty.call.arguments === '{}', 'an empty body is no arguments');
});

test.run();
