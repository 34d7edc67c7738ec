/**
 * Models and servers as people really run them, through the real `openai` client against the
 * scripted server: tool calls written in the reply text, replies cut by the output limit,
 * format errors in a row, parameters a server refuses (retried without them, for the run),
 * 429 with Retry-After, an outage shorter and longer than llm.retry_budget_s, and the
 * backoff schedule itself with an injected clock.
 */
import OpenAI from 'openai';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MetaAgentError } from '../src/contract/errors.ts';
import { ReportSchema } from '../src/contract/report.ts';
import { openAIChatModel } from '../src/engines/chatModel.ts';
import { backoffMs, RetriesExhausted, serverWaitMs, withRetries, type RetryClock } from '../src/engines/llmRetry.ts';
import { toolCallsInText } from '../src/engines/textToolCalls.ts';
import { runTask } from '../src/run/runTask.ts';
import { settingsFromYaml } from '../src/workspace/config.ts';
import { layoutFor } from '../src/workspace/layout.ts';
import { finish, startFakeLlm, textReply, toolCall, type FakeLlm, type Reply, type Script } from './helpers/fakeLlm.ts';
import { capturedLog, llmSettings, withServer } from './helpers/llmCalls.ts';
import { makeWorkspace, readJson, writeTask, type TestWorkspace } from './helpers/workspace.ts';

const TASK = `---
project: bot
type: audit_code
objective: Validate the sizing inputs
scope: ["bot/sizing.py", "tests/**"]
---
Keep it small.
`;

const EDIT = { path: 'bot/sizing.py', old: 'def position_size(', new: '# Inputs are validated below.\ndef position_size(' };
const MESSAGES = [{ role: 'user' as const, content: 'hello' }];

// ---------------------------------------------------------------------------------------------
// helpers

/** A workspace whose project has no checks, so a run is only the agent loop and its report. */
async function runScripted(script: Script, name: string): Promise<{ llm: FakeLlm; ws: TestWorkspace; report: ReturnType<typeof ReportSchema.parse> }> {
  const llm = await startFakeLlm(script);
  const ws = await makeWorkspace({ llmUrl: llm.url, project: '    scope: ["**"]' }).catch(async (e) => {
    await llm.close();
    throw e;
  });
  const file = await writeTask(ws.settings.layout.inbox, `${name}.md`, TASK);
  const result = await runTask(file, { settings: ws.settings });
  return { llm, ws, report: ReportSchema.parse(await readJson(result.report_path)) };
}

/** A completion whose reply the output limit cut: a tool call with half its arguments. */
function cutReply(tokens: number): Reply {
  return {
    body: {
      id: 'chatcmpl-cut',
      object: 'chat.completion',
      created: 0,
      model: 'scripted-model',
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 'call_cut', type: 'function', function: { name: 'write_file', arguments: '{"path": "bot/notes.md", "content": "A very long' } }],
          },
          finish_reason: 'length',
          logprobs: null,
        },
      ],
      usage: { prompt_tokens: 100, completion_tokens: tokens, total_tokens: 100 + tokens },
    },
  };
}

function refusal(param: string, message: string): Reply {
  return { status: 400, body: { error: { message, type: 'invalid_request_error', param, code: 'unsupported_parameter' } } };
}

const ok = (): Reply => toolCall('list_files', { path: '.' });

// ---------------------------------------------------------------------------------------------
// weak tool callers

test('tool calls written in the reply text (<tool_call>, a fenced json block) are run, with a note to use real tool calls', async () => {
  const { llm, ws, report } = await runScripted(
    [
      textReply('Let me read the file first.\n<tool_call>\n{"name": "read_file", "arguments": {"path": "bot/sizing.py"}}\n</tool_call>'),
      textReply(`Now the edit:\n\`\`\`json\n${JSON.stringify({ name: 'edit_file', arguments: EDIT })}\n\`\`\``),
      finish('Noted the validation.'),
    ],
    'text-calls',
  );
  try {
    assert.is(report.outcome, 'completed', report.error?.message);
    assert.equal(report.changed_files, ['bot/sizing.py'], 'the edit written as text was applied');
    const afterRead = llm.requests[1]!.body.messages.at(-1);
    assert.is(afterRead.role, 'user');
    assert.match(afterRead.content, /wrote your tool call as text/);
    assert.match(afterRead.content, /Result of read_file:\n/);
    assert.match(afterRead.content, /def position_size/, 'the file content reached the model');
    const afterEdit = llm.requests[2]!.body.messages.at(-1);
    assert.match(afterEdit.content, /Result of edit_file/);
    assert.not.match(afterEdit.content, /ERROR/);
  } finally {
    await llm.close();
    await ws.cleanup();
  }
});

test('the text-call parser: the shapes local models write, and prose that only looks like JSON', () => {
  const args = { path: 'bot/sizing.py' };
  const shapes = [
    `<tool_call>{"name": "read_file", "arguments": ${JSON.stringify(args)}}</tool_call>`,
    `{"name": "read_file", "parameters": ${JSON.stringify(args)}}`,
    `<|python_tag|>{"type": "function", "name": "read_file", "parameters": ${JSON.stringify(args)}}`,
    `I will call {"tool": "read_file", "args": ${JSON.stringify(args)}} now.`,
    `{"function": {"name": "read_file", "arguments": ${JSON.stringify(JSON.stringify(args))}}}`,
    `<function=read_file>${JSON.stringify(args)}</function>`,
    '```read_file\n{"path": "bot/sizing.py"}\n```',
    '```json\n[{"name": "read_file", "arguments": {"path": "bot/sizing.py"}}]\n```',
  ];
  for (const text of shapes) {
    const calls = toolCallsInText(text);
    assert.is(calls.length, 1, text);
    assert.is(calls[0]!.name, 'read_file', text);
    assert.equal(JSON.parse(calls[0]!.arguments), args, text);
  }
  // Not calls: an unknown tool, prose with braces, a JSON object that names no tool.
  for (const text of ['{"name": "rm_rf", "arguments": {}}', 'The dict {"a": 1} is fine; use {x} in f-strings.', '```python\nprint({"name": "x"})\n```']) {
    assert.equal(toolCallsInText(text), [], text);
  }
});

test('finish_reason length: the next request says the reply was cut at N tokens, not "invalid JSON"', async () => {
  const { llm, ws, report } = await runScripted([cutReply(4096), finish('Nothing to change.')], 'cut');
  try {
    assert.is(report.outcome, 'no_changes', report.error?.message);
    const answer = llm.requests[1]!.body.messages.at(-1);
    assert.is(answer.role, 'tool');
    assert.is(answer.tool_call_id, 'call_cut', 'the cut call gets its tool message');
    assert.match(answer.content, /cut at 4096 tokens/);
    assert.match(answer.content, /shorter/);
    assert.not.match(answer.content, /not valid JSON/);
    assert.equal(report.changed_files, [], 'nothing of the cut reply was run');
  } finally {
    await llm.close();
    await ws.cleanup();
  }
});

test('3 malformed replies in a row end the run: outcome failed, error kind format', async () => {
  const { llm, ws, report } = await runScripted(
    [
      textReply('I think the code is fine.'),
      toolCall('edit_file', null, { rawArguments: '{"path": "bot/sizing.py", "old": ' }),
      textReply('Let me think more.'),
      finish('never reached'),
    ],
    'three-bad',
  );
  try {
    assert.is(report.status, 'error');
    assert.is(report.outcome, 'failed');
    assert.is(report.error?.kind, 'format');
    assert.match(report.error!.message, /3 replies in a row/);
    assert.is(llm.requests.length, 3, 'no fourth request');
  } finally {
    await llm.close();
    await ws.cleanup();
  }
});

test('positive control: two format errors, a good call, two more: the count restarts and the run completes', async () => {
  const { llm, ws, report } = await runScripted(
    [
      textReply('hmm'),
      textReply('hmm again'),
      toolCall('edit_file', EDIT),
      textReply('and now?'),
      textReply('still thinking'),
      finish('Noted the validation.'),
    ],
    'reset',
  );
  try {
    assert.is(report.outcome, 'completed', report.error?.message);
    assert.is(llm.requests.length, 6);
    assert.match(llm.requests[1]!.body.messages.at(-1).content, /did not call a tool/);
  } finally {
    await llm.close();
    await ws.cleanup();
  }
});

// ---------------------------------------------------------------------------------------------
// parameters a server refuses

test('a 400 for parallel_tool_calls: retried once without it, never sent again in the run, logged', async () => {
  const script = (req: any): Reply =>
    'parallel_tool_calls' in req.body ? refusal('parallel_tool_calls', "Unsupported parameter: 'parallel_tool_calls' is not supported with this model.") : ok();
  await withServer(script, async (llm) => {
    const { log, lines } = capturedLog();
    const model = openAIChatModel(llmSettings(llm.url, { compat: { parallel_tool_calls: false } }), log);
    const first = await model.complete(MESSAGES, new AbortController().signal);
    assert.is(first.choices[0]!.message.tool_calls?.length, 1);
    await model.complete(MESSAGES, new AbortController().signal);
    assert.is(llm.requests.length, 3, 'one refused request, its retry, and the next request');
    assert.is(llm.requests[0]!.body.parallel_tool_calls, false, 'sent as configured at first');
    assert.not.ok('parallel_tool_calls' in llm.requests[1]!.body, 'the retry drops it');
    assert.not.ok('parallel_tool_calls' in llm.requests[2]!.body, 'later requests do not send it');
    assert.ok(llm.requests[1]!.body.tools?.length, 'the tools are still sent');
    const note = lines.find((l) => l.param === 'parallel_tool_calls');
    assert.ok(note, 'the choice is logged');
    assert.is(note!.level, 40);
  });
});

test('a 400 for max_completion_tokens: retried with max_tokens, kept for the run; other servers get max_tokens by default', async () => {
  const script = (req: any): Reply =>
    'max_completion_tokens' in req.body ? refusal('max_completion_tokens', "Unsupported parameter: 'max_completion_tokens'. Use 'max_tokens' instead.") : ok();
  await withServer(script, async (llm) => {
    const { log, lines } = capturedLog();
    const model = openAIChatModel(llmSettings(llm.url, { compat: { max_tokens_param: 'max_completion_tokens' } }), log);
    await model.complete(MESSAGES, new AbortController().signal, { maxCompletionTokens: 1234 });
    await model.complete(MESSAGES, new AbortController().signal, { maxCompletionTokens: 999 });
    assert.is(llm.requests.length, 3);
    assert.is(llm.requests[0]!.body.max_completion_tokens, 1234);
    assert.is(llm.requests[1]!.body.max_tokens, 1234, 'the retry sends the same cap as max_tokens');
    assert.not.ok('max_completion_tokens' in llm.requests[1]!.body);
    assert.is(llm.requests[2]!.body.max_tokens, 999, 'and so do later requests');
    assert.ok(lines.some((l) => l.param === 'max_completion_tokens' && /max_tokens instead/.test(l.instead)));
  });
  // Default for a base_url server (Ollama ignores max_completion_tokens): max_tokens; no parallel_tool_calls.
  await withServer([ok()], async (llm) => {
    await openAIChatModel(llmSettings(llm.url)).complete(MESSAGES, new AbortController().signal, { maxCompletionTokens: 77 });
    assert.is(llm.requests[0]!.body.max_tokens, 77);
    assert.not.ok('max_completion_tokens' in llm.requests[0]!.body);
    assert.not.ok('parallel_tool_calls' in llm.requests[0]!.body);
  });
});

test('a 400 for temperature drops it; a 400 about something else is not retried (positive control)', async () => {
  const script = (req: any): Reply =>
    'temperature' in req.body
      ? refusal('temperature', "Unsupported value: 'temperature' does not support 0.2 with this model. Only the default (1) value is supported.")
      : ok();
  await withServer(script, async (llm) => {
    await openAIChatModel(llmSettings(llm.url, { temperature: 0.2 })).complete(MESSAGES, new AbortController().signal);
    assert.is(llm.requests.length, 2);
    assert.is(llm.requests[0]!.body.temperature, 0.2);
    assert.not.ok('temperature' in llm.requests[1]!.body);
  });
  const invalid: Reply = {
    status: 400,
    body: { error: { message: "Invalid value for 'messages[0].role'.", type: 'invalid_request_error', param: 'messages', code: null } },
  };
  await withServer([invalid, ok()], async (llm) => {
    const error = await openAIChatModel(llmSettings(llm.url, { compat: { parallel_tool_calls: false } }))
      .complete(MESSAGES, new AbortController().signal)
      .catch((e: unknown) => e);
    assert.instance(error, MetaAgentError);
    assert.is((error as MetaAgentError).kind, 'llm');
    assert.match((error as Error).message, /400/);
    assert.is(llm.requests.length, 1, 'a 400 that names no parameter we can drop is not retried');
  });
});

test('llm.compat: an unknown key is a config error naming the field; stream, max_tokens_param parse', () => {
  const yaml = (compat: string) => `llm:\n  compat:\n${compat}\nprojects:\n  bot:\n    repo: r\n`;
  const error = (() => {
    try {
      settingsFromYaml(yaml('    num_ctx: 8192'), layoutFor('/tmp/x'), {});
    } catch (e) {
      return e;
    }
  })();
  assert.instance(error, MetaAgentError);
  assert.is((error as MetaAgentError).kind, 'config');
  assert.match((error as Error).message, /llm\.compat/);
  assert.match((error as Error).message, /num_ctx/);
  const settings = settingsFromYaml(yaml('    max_tokens_param: max_tokens\n    stream: true'), layoutFor('/tmp/x'), {});
  assert.is(settings.llm.compat.max_tokens_param, 'max_tokens');
  assert.is(settings.llm.compat.stream, true);
  assert.is(settingsFromYaml(yaml('    {}'), layoutFor('/tmp/x'), {}).llm.compat.stream, undefined, 'whole replies unless asked');
  assert.is(settings.llm.retryBudgetMs, 300_000, 'retry_budget_s defaults to 300');
  assert.is(settings.llm.maxRetries, undefined, 'no count cap unless configured');
});

// ---------------------------------------------------------------------------------------------
// outages

test('429 with Retry-After: 1, three times, then success: each wait is honoured and logged', async () => {
  const times: number[] = [];
  const script = (_req: any, index: number): Reply => {
    times.push(Date.now());
    return index < 3
      ? { status: 429, headers: { 'retry-after': '1' }, body: { error: { message: 'Rate limit reached', type: 'requests', code: 'rate_limit_exceeded' } } }
      : ok();
  };
  await withServer(script, async (llm) => {
    const { log, lines } = capturedLog();
    const response = await openAIChatModel(llmSettings(llm.url), log).complete(MESSAGES, new AbortController().signal);
    assert.is(response.choices[0]!.message.tool_calls?.[0]?.type, 'function');
    assert.is(llm.requests.length, 4);
    for (let i = 1; i < times.length; i++)
      assert.ok(times[i]! - times[i - 1]! >= 995, `request ${i} came ${times[i]! - times[i - 1]!} ms after the one before`);
    const retries = lines.filter((l) => l.retry !== undefined);
    assert.equal(
      retries.map((l) => [l.retry, l.wait_ms, l.status, l.from_server]),
      [
        [1, 1000, 429, true],
        [2, 1000, 429, true],
        [3, 1000, 429, true],
      ],
    );
  });
});

test('a 503 outage shorter than the retry budget: retried with backoff until the server is back', async () => {
  let until = 0;
  const script = (_req: any, index: number): Reply => {
    if (index === 0) until = Date.now() + 2500;
    return Date.now() < until ? { status: 503, body: { error: { message: 'Service Unavailable', type: 'server_error', code: null } } } : ok();
  };
  await withServer(script, async (llm) => {
    const started = Date.now();
    const response = await openAIChatModel(llmSettings(llm.url, { retryBudgetMs: 8000, backoff: { baseMs: 100, capMs: 600 } })).complete(
      MESSAGES,
      new AbortController().signal,
    );
    assert.ok(response.choices[0]);
    assert.ok(Date.now() - started >= 2500, 'it waited the outage out');
    assert.ok(llm.requests.length >= 3, `retried (${llm.requests.length} requests)`);
  });
});

test('a 503 longer than llm.retry_budget_s fails with a clear message, after about the budget', async () => {
  await withServer(
    () => ({ status: 503, body: { error: { message: 'Service Unavailable', type: 'server_error', code: null } } }),
    async (llm) => {
      const started = Date.now();
      const error = await openAIChatModel(llmSettings(llm.url, { retryBudgetMs: 1500, backoff: { baseMs: 100, capMs: 400 } }))
        .complete(MESSAGES, new AbortController().signal)
        .catch((e: unknown) => e);
      const elapsed = Date.now() - started;
      assert.instance(error, MetaAgentError);
      assert.is((error as MetaAgentError).kind, 'llm');
      assert.match((error as Error).message, /kept failing \(503\)/);
      assert.match((error as Error).message, /llm\.retry_budget_s: 1\.5/);
      assert.ok(elapsed >= 1400, `gave up after ${elapsed} ms, not before the budget`);
      assert.ok(llm.requests.length >= 3, 'retried within the budget');
    },
  );
});

test("the run's abort signal cuts a retry wait short", async () => {
  const script = (): Reply => ({ status: 429, headers: { 'retry-after': '30' }, body: { error: { message: 'slow down', type: 'requests', code: null } } });
  await withServer(script, async (llm) => {
    const controller = new AbortController();
    const started = Date.now();
    const pending = openAIChatModel(llmSettings(llm.url, { retryBudgetMs: 60_000 })).complete(MESSAGES, controller.signal);
    setTimeout(() => controller.abort(new MetaAgentError('interrupted', 'stopped by Ctrl-C')), 300);
    const error = await pending.catch((e: unknown) => e);
    assert.instance(error, MetaAgentError);
    assert.is((error as MetaAgentError).kind, 'interrupted');
    assert.ok(Date.now() - started < 10_000, 'not the 30 s the server asked for');
    assert.is(llm.requests.length, 1);
  });
});

// ---------------------------------------------------------------------------------------------
// the schedule, with an injected clock (no real waiting)

function fakeClock(random = () => 0.5): RetryClock & { waits: number[]; t: number } {
  const clock = {
    t: 0,
    waits: [] as number[],
    now: () => clock.t,
    sleep: async (ms: number, signal: AbortSignal) => {
      if (signal.aborted) throw signal.reason;
      clock.waits.push(ms);
      clock.t += ms;
    },
    random,
  };
  return clock;
}

const status = (code: number, headers: Record<string, string> = {}) => OpenAI.APIError.generate(code, { message: 'x' }, undefined, new Headers(headers));

test('backoff: exponential with full jitter, capped, until the budget is spent', async () => {
  assert.equal(
    [0, 1, 2, 3, 4, 10].map((n) => backoffMs(n, { baseMs: 1000, capMs: 8000 }, () => 0.999)),
    [999, 1998, 3996, 7992, 7992, 7992],
  );
  assert.equal(
    [0, 5].map((n) => backoffMs(n, { baseMs: 1000, capMs: 8000 }, () => 0)),
    [0, 0],
  );
  const clock = fakeClock(() => 0.999);
  const error = await withRetries(
    async () => {
      throw status(503);
    },
    { policy: { budgetMs: 20_000, baseMs: 1000, capMs: 8000 }, signal: new AbortController().signal, clock },
  ).catch((e: unknown) => e);
  assert.instance(error, RetriesExhausted);
  assert.is((error as RetriesExhausted).why, 'budget');
  // 999 + 1998 + 3996 + 7992 = 14985; the last wait is what is left of the 20 s.
  assert.equal(clock.waits, [999, 1998, 3996, 7992, 5015]);
  assert.is(clock.t, 20_000);
});

test('backoff: Retry-After (seconds, HTTP date, ms) wins; a wait past the budget stops at once; the count cap; 4xx are not retried', async () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.is(serverWaitMs(new Headers({ 'retry-after': '3' }), now), 3000);
  assert.is(serverWaitMs(new Headers({ 'retry-after': 'Thu, 01 Jan 2026 00:00:07 GMT' }), now), 7000);
  assert.is(serverWaitMs(new Headers({ 'retry-after-ms': '250', 'retry-after': '3' }), now), 250);
  assert.is(serverWaitMs(new Headers({ 'retry-after': 'soon' }), now), null);

  let calls = 0;
  const clock = fakeClock();
  const result = await withRetries(
    async () => {
      if (++calls <= 2) throw status(429, { 'retry-after': '4' });
      return 'ok';
    },
    { policy: { budgetMs: 60_000, baseMs: 1, capMs: 2 }, signal: new AbortController().signal, clock },
  );
  assert.is(result, 'ok');
  assert.equal(clock.waits, [4000, 4000]);

  const far = fakeClock();
  const stopped = await withRetries(
    async () => {
      throw status(429, { 'retry-after': '120' });
    },
    { policy: { budgetMs: 60_000, baseMs: 1, capMs: 2 }, signal: new AbortController().signal, clock: far },
  ).catch((e: unknown) => e);
  assert.is((stopped as RetriesExhausted).why, 'server_wait');
  assert.equal(far.waits, [], 'no pointless wait');

  const counted = fakeClock();
  const capped = await withRetries(
    async () => {
      throw status(500);
    },
    { policy: { budgetMs: 60_000, maxRetries: 2, baseMs: 10, capMs: 20 }, signal: new AbortController().signal, clock: counted },
  ).catch((e: unknown) => e);
  assert.is((capped as RetriesExhausted).why, 'count');
  assert.is(counted.waits.length, 2);

  let tries = 0;
  const refused = await withRetries(
    async () => {
      tries++;
      throw status(400);
    },
    { policy: { budgetMs: 60_000, baseMs: 10, capMs: 20 }, signal: new AbortController().signal, clock: fakeClock() },
  ).catch((e: unknown) => e);
  assert.instance(refused, OpenAI.BadRequestError);
  assert.is(tries, 1);
});

test.run();
