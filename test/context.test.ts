/**
 * Bounded context and budgets, through the real `openai` client against the scripted server:
 * a long run on a repo larger than the context window, a "maximum context length" answer, the
 * token limit with cached tokens, limits.max_cost_usd, and a server that cut the prompt.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { runTask } from '../src/run/runTask.ts';
import { loadSettings, type LlmSettings } from '../src/workspace/config.ts';
import OpenAI from 'openai';
import { MetaAgentError } from '../src/contract/errors.ts';
import { toLlmError } from '../src/engines/chatModel.ts';
import { isContextOverflow } from '../src/engines/history.ts';
import type { Report } from '../src/contract/report.ts';
import { errorReply, startFakeLlm, toolCall, type FakeLlm, type RecordedRequest, type Reply } from './helpers/fakeLlm.ts';
import { makeWorkspace, writeTask, type TestWorkspace } from './helpers/workspace.ts';

const TASK = `---
project: bot
type: audit_code
objective: Read the whole library and report on it
scope: ["bot/sizing.py"]
---
Read every file under lib/.
`;

const FILES = 30;
const FILE_CHARS = 5000;
const fileName = (i: number) => `lib/part_${String(i).padStart(2, '0')}.py`;
/** The units the code uses: characters / 4. */
const tokensOf = (value: unknown) => Math.ceil(JSON.stringify(value).length / 4);
const STUB = /^\[output of read_file lib\/part_\d\d\.py elided to save context; call the tool again if you need it\]$/;

interface Case {
  ws: TestWorkspace;
  llm: FakeLlm;
}

/** A workspace whose repo also has lib/ (FILES files of FILE_CHARS characters), with extra `llm:` lines and top-level YAML. */
async function setup(script: (request: RecordedRequest, index: number) => Reply, options: { llm?: string[]; extra?: string } = {}): Promise<Case> {
  const llm = await startFakeLlm(script);
  try {
    const ws = await makeWorkspace({ llmUrl: llm.url });
    await fs.mkdir(path.join(ws.repo, 'lib'));
    for (let i = 0; i < FILES; i++) {
      const line = `VALUE_${i} = ${i}  # a line of module ${i} that the agent reads\n`;
      await fs.writeFile(path.join(ws.repo, fileName(i)), line.repeat(Math.ceil(FILE_CHARS / line.length)).slice(0, FILE_CHARS));
    }
    await execa('git', ['add', '--all'], { cwd: ws.repo });
    await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-m', 'lib'], { cwd: ws.repo });
    const config = path.join(ws.root, 'meta-agent.yaml');
    const yaml = await fs.readFile(config, 'utf8');
    await fs.writeFile(config, `${yaml.replace('llm:\n', `llm:\n${(options.llm ?? []).map((l) => `  ${l}\n`).join('')}`) + (options.extra ?? '')}\n`);
    ws.settings = await loadSettings(ws.root, { PATH: process.env.PATH, HOME: process.env.HOME });
    return { ws, llm };
  } catch (error) {
    await llm.close();
    throw error;
  }
}

async function teardown(c: Case | undefined): Promise<void> {
  if (!c) return;
  await c.llm.close();
  await c.ws.cleanup();
}

/**
 * Usage as a real server reports it: the prompt is the request's size (4 characters a token),
 * and what starts like the previous request is served from the cache.
 */
function realisticUsage(): (request: RecordedRequest) => { prompt_tokens: number; completion_tokens: number; cached: number } {
  let previous = '';
  return (request) => {
    const messages = JSON.stringify(request.body.messages);
    let common = 0;
    while (common < previous.length && common < messages.length && previous[common] === messages[common]) common++;
    previous = messages;
    return { prompt_tokens: tokensOf(request.body), completion_tokens: 30, cached: Math.floor(common / 4) };
  };
}

const isPrefixExtension = (before: unknown[], after: unknown[]) =>
  after.length >= before.length && before.every((m, i) => JSON.stringify(m) === JSON.stringify(after[i]));

async function trajectory(c: Case, id: string): Promise<any[]> {
  const text = await fs.readFile(path.join(c.ws.settings.layout.reports, `${id}.trajectory.jsonl`), 'utf8');
  return text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
}

// ---------------------------------------------------------------------------------------------

test('60 steps reading a repo twice the size of the context window: finishes, every request under the window, the prefix byte-stable between elisions', async () => {
  let c: Case | undefined;
  try {
    const WINDOW = 32_000;
    const usage = realisticUsage();
    c = await setup(
      (req, i) =>
        i < 59
          ? toolCall('read_file', { path: fileName(i % FILES) }, { usage: usage(req) })
          : toolCall('finish', { summary: 'Read it all.', risks: [], risk_level: 'low', next_actions: [] }, { usage: usage(req) }),
      { llm: [`context_window: ${WINDOW}`], extra: 'limits:\n  max_steps: 70\n  max_tokens: 100000000' },
    );
    assert.ok(FILES * FILE_CHARS > WINDOW * 4, 'the files add up to more than the window');
    const result = await runTask(await writeTask(c.ws.settings.layout.inbox, 'long-read.md', TASK), { settings: c.ws.settings });
    const report: Report = result.report;
    assert.is(report.status, 'ok', report.error?.message);
    assert.is(report.steps, 60);
    const requests = c.llm.requests;
    assert.is(requests.length, 60, 'one request a step, none refused');

    // Every request under the window; and the model did receive more than a window of file text.
    const sizes = requests.map((r) => tokensOf(r.body));
    for (const [i, size] of sizes.entries()) assert.ok(size <= WINDOW, `request ${i + 1}: about ${size} tokens, over the ${WINDOW}-token window`);
    const received = requests.reduce((sum, r) => sum + String(r.body.messages.at(-1).content ?? '').length, 0);
    assert.ok(received > WINDOW * 4 * 2, `the model received ${received} characters of tool output, over twice the window`);
    assert.ok(Math.max(...sizes) > WINDOW / 4, 'the conversation did grow before being elided');

    // Between elisions each request extends the previous one; an elision rewrites only tool
    // results into stubs (same tool_call_id), and elisions come in blocks.
    const breaks: number[] = [];
    for (let i = 1; i < requests.length; i++) {
      const before = requests[i - 1]!.body.messages as any[];
      const after = requests[i]!.body.messages as any[];
      if (isPrefixExtension(before, after)) continue;
      breaks.push(i);
      assert.ok(after.length >= before.length, `request ${i + 1} dropped messages`);
      for (const [j, m] of before.entries()) {
        if (JSON.stringify(m) === JSON.stringify(after[j])) continue;
        assert.is(m.role, 'tool', `request ${i + 1}: only tool results change (message ${j} is ${m.role})`);
        assert.is(after[j].tool_call_id, m.tool_call_id, 'the tool_call_id stays');
        assert.match(after[j].content, STUB);
      }
    }
    assert.ok(breaks.length >= 3, `several elisions happened (${breaks.length})`);
    const gaps = breaks.slice(1).map((b, k) => b - breaks[k]!);
    assert.ok(Math.min(...gaps) >= 3, `elisions come in blocks, at least 3 requests apart: ${breaks.join(', ')}`);
    const elisions = (await trajectory(c, 'long-read')).filter((e) => e.role === 'context' && e.event === 'elided');
    assert.is(elisions.length, breaks.length, 'every prefix change is an elision recorded in the trajectory');

    // The last request: system prompt, task, every assistant message, every tool result paired.
    const last = requests.at(-1)!.body.messages as any[];
    assert.is(last[0].role, 'system');
    assert.is(last[1].role, 'user');
    assert.match(last[1].content, /Read every file under lib/);
    assert.is(last.filter((m) => m.role === 'assistant').length, 59, 'no assistant message is dropped');
    const callIds = new Set(last.flatMap((m) => (m.role === 'assistant' ? m.tool_calls.map((t: any) => t.id) : [])));
    const tools = last.filter((m) => m.role === 'tool');
    assert.is(tools.length, 59);
    for (const t of tools) assert.ok(callIds.has(t.tool_call_id), 'each tool message answers a tool call');
    assert.match(tools.at(-1).content, /VALUE_28 = 28/, 'the newest result is shown in full');
    assert.ok(tools.filter((t) => STUB.test(t.content)).length >= 40, 'old results are stubs');
    // The cache keeps working: most prompt tokens of the run were served from it.
    assert.ok(report.usage.cached_tokens > report.usage.prompt_tokens / 2, `cached ${report.usage.cached_tokens} of ${report.usage.prompt_tokens}`);
  } finally {
    await teardown(c);
  }
});

test('a "maximum context length" 400 elides what the model has seen, is retried, and the run goes on within the window the server named', async () => {
  let c: Case | undefined;
  try {
    const usage = realisticUsage();
    const overflow =
      "This model's maximum context length is 8192 tokens. However, you requested 9731 tokens (9731 in the messages, 0 in the completion). Please reduce the length of the messages or completion.";
    c = await setup((req, i) => {
      if (i < 6) return toolCall('read_file', { path: fileName(i) }, { usage: usage(req) });
      if (i === 6) return errorReply(400, overflow);
      if (i < 10) return toolCall('read_file', { path: fileName(i) }, { usage: usage(req) });
      return toolCall('finish', { summary: 'Read six files.', risks: [], risk_level: 'low', next_actions: [] }, { usage: usage(req) });
    });
    const result = await runTask(await writeTask(c.ws.settings.layout.inbox, 'overflow.md', TASK), { settings: c.ws.settings });
    assert.is(result.report.status, 'ok', result.report.error?.message);
    const requests = c.llm.requests;
    assert.is(requests.length, 11, 'the refused request was sent again once');
    const refused = requests[6]!.body.messages as any[];
    const retried = requests[7]!.body.messages as any[];
    assert.is(retried.length, refused.length, 'the same conversation');
    assert.ok(tokensOf(requests[7]!.body) < tokensOf(requests[6]!.body) / 2, 'much shorter');
    const retriedTools = retried.filter((m) => m.role === 'tool');
    assert.is(retriedTools.filter((m) => STUB.test(m.content)).length, 5, 'every result the model had seen is a stub');
    assert.match(retriedTools.at(-1).content, /VALUE_5 = 5/, 'the result it has not seen yet is kept');
    for (const r of requests.slice(7))
      assert.ok(tokensOf(r.body) <= 8192, `after the 400, requests stay within the 8192 tokens the server named (${tokensOf(r.body)})`);
    const elisions = (await trajectory(c, 'overflow')).filter((e) => e.role === 'context');
    assert.is(elisions[0]?.reason, 'overflow');
    assert.is(elisions[0]?.context_window, 8192);
  } finally {
    await teardown(c);
  }
});

test('a "maximum context length" 400 with nothing left to elide fails the run with the endpoint\'s words (control: no loop)', async () => {
  let c: Case | undefined;
  try {
    c = await setup(() => errorReply(400, "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens."));
    const result = await runTask(await writeTask(c.ws.settings.layout.inbox, 'overflow-first.md', TASK), { settings: c.ws.settings });
    assert.is(result.report.outcome, 'failed');
    assert.is(result.report.error?.kind, 'llm');
    assert.match(result.report.error!.message, /maximum context length/);
    assert.is(c.llm.requests.length, 1, 'not retried: there was nothing to elide');
  } finally {
    await teardown(c);
  }
});

test('what counts as "the request is longer than the context window" (the error as the ChatModel throws it)', () => {
  const llm: LlmSettings = {
    model: 'm',
    apiKeyEnv: 'OPENAI_API_KEY',
    maxRetries: 0,
    retryBudgetMs: 0,
    backoff: { baseMs: 1, capMs: 1 },
    toolMode: 'native',
    compat: {},
    requestTimeoutMs: 1000,
    contextWindow: 128_000,
    baseURL: 'http://127.0.0.1:1/v1',
  };
  const thrown = (status: number, message: string, code: string | null = null) =>
    toLlmError(
      OpenAI.APIError.generate(status, { error: { message, type: 'invalid_request_error', code } }, message, new Headers()),
      llm,
      new AbortController().signal,
    );
  const overflow = [
    [
      'OpenAI',
      thrown(400, "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens.", 'context_length_exceeded'),
    ],
    ['OpenAI, code only', thrown(400, 'Input too long.', 'context_length_exceeded')],
    [
      'vLLM',
      thrown(
        400,
        "This model's maximum context length is 16384 tokens. However, you requested 122946 tokens (112946 in the messages, 10000 in the completion).",
      ),
    ],
    ['vLLM V1', thrown(400, 'The decoder prompt (length 17772) is longer than the maximum model length of 16384.')],
    ['Ollama', thrown(400, 'the input length exceeds the context length')],
    [
      'LM Studio',
      thrown(
        400,
        'Trying to keep the first 5000 tokens when context the overflows. However, the model is loaded with context length of only 4096 tokens, which is not enough.',
      ),
    ],
    ['llama.cpp', thrown(400, 'the request exceeds the available context size, try increasing it')],
    ['Anthropic-compatible', thrown(400, 'prompt is too long: 210000 tokens > 200000 maximum')],
    ['Gemini-compatible', thrown(400, 'The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).')],
  ] as const;
  for (const [who, error] of overflow) assert.ok(isContextOverflow(error), who);
  const other = [
    ['an unsupported parameter', thrown(400, "Unsupported parameter: 'parallel_tool_calls' is not supported with this model.")],
    ['a bad tool message', thrown(400, "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.")],
    ['a reply cap over the output limit', thrown(400, 'max_tokens is too large: 100000. This model supports at most 16384 completion tokens.')],
    ['a 500 mentioning the context', thrown(500, 'maximum context length is 8192 tokens')],
    ['a 401', thrown(401, 'Incorrect API key provided')],
  ] as const;
  for (const [what, error] of other) assert.not.ok(isContextOverflow(error), what);
});

test('max_tokens counts cached prompt tokens at their price ratio: a run with a warm cache goes further than one without, and neither crosses the ceiling', async () => {
  const callsWith = async (cached: number, llmLines: string[] = []) => {
    let c: Case | undefined;
    try {
      c = await setup((_req) => toolCall('list_files', { path: 'bot' }, { usage: { prompt_tokens: 1000, completion_tokens: 20, cached } }), {
        llm: llmLines,
        extra: 'limits:\n  max_tokens: 6000',
      });
      const result = await runTask(await writeTask(c.ws.settings.layout.inbox, `cached-${cached}.md`, TASK), { settings: c.ws.settings });
      assert.is(result.report.error?.kind, 'budget', result.report.error?.message);
      assert.match(result.report.error!.message, /limits\.max_tokens/);
      const u = result.report.usage;
      return { requests: c.llm.requests.length, u };
    } finally {
      await teardown(c);
    }
  };
  const cold = await callsWith(0);
  const warm = await callsWith(900);
  const priced = await callsWith(900, ['prices: { prompt_per_mtok: 2, cached_per_mtok: 1, completion_per_mtok: 8 }']);
  assert.ok(cold.requests >= 3, `cold: ${cold.requests} calls`);
  assert.ok(warm.requests > cold.requests * 2, `a warm cache (counted at 0.25) goes further: ${warm.requests} calls against ${cold.requests}`);
  assert.ok(priced.requests > cold.requests && priced.requests < warm.requests, `cached at half price (llm.prices): between the two (${priced.requests})`);
  assert.ok(cold.u.prompt_tokens + cold.u.completion_tokens <= 6000, 'cold: never over');
  assert.ok(warm.u.prompt_tokens - warm.u.cached_tokens + warm.u.cached_tokens * 0.25 + warm.u.completion_tokens <= 6000, 'warm: never over, weighted');
  assert.ok(warm.u.prompt_tokens + warm.u.completion_tokens > 6000, 'warm: more raw tokens than the ceiling (the weighting is what let it go on)');
  assert.ok(
    priced.u.prompt_tokens - priced.u.cached_tokens + priced.u.cached_tokens * 0.5 + priced.u.completion_tokens <= 6000,
    'priced: never over, weighted at 0.5',
  );
});

test('limits.max_cost_usd stops a run before it would cost more (with llm.prices), and is refused without prices', async () => {
  let c: Case | undefined;
  try {
    c = await setup(() => toolCall('list_files', { path: 'bot' }, { usage: { prompt_tokens: 1000, completion_tokens: 20, cached: 0 } }), {
      // $1 a prompt of 1000 tokens, $0.04 a reply of 20: about $1.04 a call.
      llm: ['prices: { prompt_per_mtok: 1000, cached_per_mtok: 250, completion_per_mtok: 2000 }'],
      extra: 'limits:\n  max_steps: 20\n  max_cost_usd: 5',
    });
    const result = await runTask(await writeTask(c.ws.settings.layout.inbox, 'costly.md', TASK), { settings: c.ws.settings });
    const report = result.report;
    assert.is(report.outcome, 'limit_reached');
    assert.is(report.error?.kind, 'budget');
    assert.match(report.error!.message, /limits\.max_cost_usd/);
    assert.ok(report.usage.cost_usd! <= 5, `never over: $${report.usage.cost_usd}`);
    assert.ok(report.usage.cost_usd! > 3, `it spent most of it: $${report.usage.cost_usd}`);
    assert.is(c.llm.requests.length, 4);
    const caps = c.llm.requests.map((r) => (r.body.max_completion_tokens ?? r.body.max_tokens) as number | undefined);
    assert.ok(caps.at(-1)! > 0 && caps.at(-1)! <= 4096, `the last reply is capped by what the money left buys (${caps.at(-1)})`);

    // Without prices the same setting is a configuration error naming the field.
    const config = path.join(c.ws.root, 'meta-agent.yaml');
    await fs.writeFile(config, (await fs.readFile(config, 'utf8')).replace(/^ {2}prices:.*\n/m, ''));
    const refused = await loadSettings(c.ws.root, { PATH: process.env.PATH }).then(
      () => null,
      (error: unknown) => error,
    );
    assert.instance(refused, MetaAgentError);
    assert.is((refused as MetaAgentError).kind, 'config');
    assert.is((refused as MetaAgentError).field, 'limits.max_cost_usd');
    assert.match((refused as MetaAgentError).message, /llm\.prices/);
  } finally {
    await teardown(c);
  }
});

test('a server that counts far fewer prompt tokens than were sent (Ollama cutting at num_ctx) stops the run with the fix', async () => {
  let c: Case | undefined;
  try {
    // Ollama with num_ctx 4096 keeps the last 4096 tokens and reports that many.
    c = await setup((req, i) =>
      toolCall('read_file', { path: fileName(i % FILES) }, { usage: { prompt_tokens: Math.min(4096, tokensOf(req.body)), completion_tokens: 20, cached: 0 } }),
    );
    const result = await runTask(await writeTask(c.ws.settings.layout.inbox, 'cut.md', TASK), { settings: c.ws.settings });
    const report = result.report;
    assert.is(report.outcome, 'failed');
    assert.is(report.error?.kind, 'llm');
    assert.match(report.error!.message, /num_ctx/);
    assert.match(report.error!.message, /OLLAMA_CONTEXT_LENGTH/);
    assert.match(report.error!.message, /llm\.context_window/);
    const sizes = c.llm.requests.map((r) => tokensOf(r.body));
    assert.ok(sizes.length >= 3, 'requests the server could hold in full went through');
    assert.ok(sizes.at(-1)! > 8192, `it stopped at the first request over twice what the server counted (${sizes.at(-1)})`);
    assert.ok(
      sizes.slice(0, -1).every((s) => s <= 8192),
      'and not before',
    );
  } finally {
    await teardown(c);
  }
});

test.run();
