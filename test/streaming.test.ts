/**
 * `llm.compat.stream`: replies streamed as server-sent events through the real `openai`
 * client and put back together. A streamed run must be the same run as a whole-reply one;
 * what real servers send (Ollama's "" finish_reason, tool calls without index or type, no
 * finish_reason at all) is tolerated; a stream that breaks off, stalls or carries an error
 * event is retried like a lost connection; a server refusing stream_options still works.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ReportSchema } from '../src/contract/report.ts';
import { openAIChatModel } from '../src/engines/chatModel.ts';
import { runTask } from '../src/run/runTask.ts';
import type { LlmSettings } from '../src/workspace/config.ts';
import { finish, startFakeLlm, textReply, toChunks, toolCall, type Reply, type Script } from './helpers/fakeLlm.ts';
import { capturedLog, llmSettings as baseSettings, withServer } from './helpers/llmCalls.ts';
import { makeWorkspace, readJson, writeTask } from './helpers/workspace.ts';

const llmSettings = (url: string, extra: Partial<LlmSettings> = {}): LlmSettings =>
  baseSettings(url, { compat: { stream: true }, backoff: { baseMs: 20, capMs: 100 }, ...extra });

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

/** A text reply whose finish_reason is "stop", as servers send for one. */
const stopReply = (content: string): Reply => {
  const r = textReply(content);
  (r.body as any).choices[0].finish_reason = 'stop';
  return r;
};

const twoCalls = (): Reply => {
  const a = toolCall('read_file', { path: 'bot/sizing.py' });
  const b = toolCall('list_files', { path: 'bot' });
  const body = a.body as any;
  body.choices[0].message.tool_calls.push((b.body as any).choices[0].message.tool_calls[0]);
  return a;
};

/** One run of the task against `script`, whole or streamed; what a person would compare. */
async function runOnce(stream: boolean) {
  const script: Script = [
    toolCall('read_file', { path: 'bot/sizing.py' }, { usage: { prompt_tokens: 900, completion_tokens: 30, cached: 0 } }),
    textReply('I will add the note now.'),
    toolCall('edit_file', EDIT, { usage: { prompt_tokens: 1200, completion_tokens: 60, cached: 800 } }),
    finish('Validated the sizing inputs.'),
  ];
  const llm = await startFakeLlm(script);
  const ws = await makeWorkspace({ llmUrl: llm.url, project: '    scope: ["**"]' });
  try {
    if (stream) ws.settings.llm.compat.stream = true;
    const file = await writeTask(ws.settings.layout.inbox, 'validate.md', TASK);
    const result = await runTask(file, { settings: ws.settings });
    const report = ReportSchema.parse(await readJson(result.report_path));
    const patchFile = report.patch_files.find((f) => f.endsWith('.patch'));
    assert.ok(patchFile, `a patch (${report.outcome}: ${report.error?.message ?? ''})`);
    const patch = await fs.readFile(path.join(ws.root, patchFile!), 'utf8');
    return { report, diff: patch.slice(patch.indexOf('diff --git')), requests: llm.requests.map((r) => r.body) };
  } finally {
    await llm.close();
    await ws.cleanup();
  }
}

test('a streamed run gives the same patch, steps, summary and token usage as a whole-reply run', async () => {
  const whole = await runOnce(false);
  const streamed = await runOnce(true);
  assert.ok(
    whole.requests.every((b) => !('stream' in b) && !('stream_options' in b)),
    'whole replies unless llm.compat.stream',
  );
  assert.ok(
    streamed.requests.every((b) => b.stream === true && b.stream_options?.include_usage === true),
    'every streamed request asks for usage',
  );
  assert.is(streamed.report.outcome, 'completed');
  assert.is(streamed.report.outcome, whole.report.outcome);
  assert.ok(streamed.diff.includes('+# Inputs are validated below.'), 'the edit is in the patch');
  assert.is(streamed.diff, whole.diff, 'the same diff');
  assert.is(streamed.report.summary, whole.report.summary);
  assert.is(streamed.report.steps, whole.report.steps);
  assert.equal(streamed.report.usage, whole.report.usage, "usage from the stream's usage chunk");
  assert.ok((streamed.report.usage?.prompt_tokens ?? 0) >= 2100, 'the scripted usage was counted');
  // The replies sent back to the model are the same too (what the model sees next).
  assert.equal(streamed.requests.at(-1).messages.length, whole.requests.at(-1).messages.length);
});

test('what real servers stream: Ollama\'s "" finish_reason and whole tool calls without index or type, no finish_reason at all', async () => {
  const ollama = (r: Reply): Reply => ({ ...r, chunks: toChunks(r.body, { style: 'ollama', includeUsage: true }) });
  const noFinish = (r: Reply): Reply => ({
    ...r,
    chunks: toChunks(r.body).map((c: any) => ({ ...c, choices: c.choices.map((ch: any) => ({ ...ch, finish_reason: null })) })),
  });
  await withServer(
    [ollama(twoCalls()), ollama(stopReply('Plain words.')), noFinish(toolCall('list_files', { path: '.' })), noFinish(textReply('done'))],
    async (llm) => {
      const model = openAIChatModel(llmSettings(llm.url));
      const signal = new AbortController().signal;
      const first = await model.complete(MESSAGES, signal);
      const calls = first.choices[0]!.message.tool_calls ?? [];
      assert.is(calls.length, 2, 'two whole calls without index stay two calls');
      assert.equal(
        calls.map((c) => c.type === 'function' && c.function.name),
        ['read_file', 'list_files'],
      );
      assert.equal(JSON.parse(calls[0]!.type === 'function' ? calls[0]!.function.arguments : ''), { path: 'bot/sizing.py' });
      assert.is(first.choices[0]!.finish_reason, 'tool_calls');
      assert.is(first.usage?.prompt_tokens, 100, 'usage from the usage chunk');
      const text = await model.complete(MESSAGES, signal);
      assert.is(text.choices[0]!.message.content, 'Plain words.');
      assert.is(text.choices[0]!.finish_reason, 'stop', '"" is no finish_reason; the last chunk\'s "stop" is');
      const inferred = await model.complete(MESSAGES, signal);
      assert.is(inferred.choices[0]!.finish_reason, 'tool_calls', 'no finish_reason, whole arguments: taken as tool_calls');
      const inferredText = await model.complete(MESSAGES, signal);
      assert.is(inferredText.choices[0]!.finish_reason, 'stop');
      assert.is(inferredText.choices[0]!.message.content, 'done');
      assert.is(llm.requests.length, 4, 'none of these was retried');
    },
  );
});

test('a server refusing stream_options: retried without it, kept for the run, logged; usage is then estimated', async () => {
  const script = (req: any): Reply =>
    'stream_options' in req.body
      ? {
          status: 400,
          body: { error: { message: 'Unrecognized request argument supplied: stream_options', type: 'invalid_request_error', param: null, code: null } },
        }
      : toolCall('list_files', { path: '.' });
  await withServer(script, async (llm) => {
    const { log, lines } = capturedLog();
    const model = openAIChatModel(llmSettings(llm.url), log);
    const reply = await model.complete(MESSAGES, new AbortController().signal);
    await model.complete(MESSAGES, new AbortController().signal);
    assert.is(llm.requests.length, 3, 'the refused request, its retry, the next request');
    assert.is(llm.requests[1]!.body.stream, true, 'still streamed');
    assert.not.ok('stream_options' in llm.requests[1]!.body);
    assert.not.ok('stream_options' in llm.requests[2]!.body);
    assert.is(reply.choices[0]!.message.tool_calls?.length, 1);
    assert.ok((reply.usage?.prompt_tokens ?? 0) > 0 && (reply.usage?.completion_tokens ?? 0) > 0, 'estimated usage, so the token budget still counts');
    assert.ok(
      lines.some((l) => l.param === 'stream_options' && l.level === 40),
      'the choice is logged',
    );
  });
  // A server refusing streaming itself: whole replies for the rest of the run.
  const noStream = (req: any): Reply =>
    req.body.stream
      ? {
          status: 400,
          body: {
            error: {
              message: "Unsupported parameter: 'stream' is not supported with this model.",
              type: 'invalid_request_error',
              param: 'stream',
              code: 'unsupported_parameter',
            },
          },
        }
      : toolCall('list_files', { path: '.' });
  await withServer(noStream, async (llm) => {
    const model = openAIChatModel(llmSettings(llm.url));
    await model.complete(MESSAGES, new AbortController().signal);
    await model.complete(MESSAGES, new AbortController().signal);
    assert.is(llm.requests.length, 3);
    assert.not.ok('stream' in llm.requests[2]!.body, 'whole replies from then on');
  });
});

test('a stream cut halfway, one that stalls, and one carrying an error event are retried; the reply comes whole', async () => {
  const ok = () => toolCall('edit_file', EDIT);
  const errorEvent: Reply = { ...ok(), chunks: [toChunks(ok().body)[0], { error: { message: 'model overloaded', type: 'server_error' } }] };
  await withServer([{ ...ok(), streamEnd: 'cut' }, { ...ok(), streamEnd: 'stall' }, errorEvent, ok()], async (llm) => {
    const { log, lines } = capturedLog();
    // request_timeout_s is also the longest silence between chunks.
    const model = openAIChatModel(llmSettings(llm.url, { requestTimeoutMs: 400 }), log);
    const reply = await model.complete(MESSAGES, new AbortController().signal);
    const call = reply.choices[0]!.message.tool_calls?.[0];
    assert.ok(call && call.type === 'function');
    assert.equal(JSON.parse(call.function.arguments), EDIT, 'the arguments of the reply that came whole');
    assert.is(llm.requests.length, 4);
    const retries = lines.filter((l) => typeof l.retry === 'number').map((l) => l.msg as string);
    assert.is(retries.length, 3, retries.join('\n'));
    assert.match(retries[0]!, /broke off|ended before/);
    assert.match(retries[1]!, /stalled/);
    assert.match(retries[2]!, /model overloaded/);
  });
});

test('Ctrl-C during a stream ends the request at once, without a retry', async () => {
  await withServer([{ ...toolCall('list_files', { path: '.' }), streamEnd: 'stall' }], async (llm) => {
    const controller = new AbortController();
    const model = openAIChatModel(llmSettings(llm.url, { requestTimeoutMs: 60_000 }));
    const pending = model.complete(MESSAGES, controller.signal).then(
      () => null,
      (e: unknown) => e,
    );
    while (llm.requests.length === 0) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50));
    controller.abort();
    const error = await pending;
    assert.instance(error, Error, 'the request ends with an error');
    assert.is(llm.requests.length, 1, 'not retried');
  });
});

test.run();
