/**
 * A scripted OpenAI-compatible Chat Completions server on 127.0.0.1, so tests exercise the
 * real `openai` client: transport, tool calls, retries and errors. Each request takes the
 * next scripted reply; the server records every request body.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Reply {
  status?: number;
  headers?: Record<string, string>;
  body?: unknown;
  /** Never answer (until the client gives up or the server closes). */
  hang?: boolean;
  delayMs?: number;
  /**
   * For a streamed request (`stream: true`): the chunks to send instead of the body cut into
   * chunks by toChunks(); and how the stream ends: `done` (data: [DONE]), `cut` (the socket is
   * destroyed halfway), `stall` (half the chunks, then silence).
   */
  chunks?: unknown[];
  streamEnd?: 'done' | 'cut' | 'stall';
}

export type Script = Array<Reply | ((request: RecordedRequest) => Reply)> | ((request: RecordedRequest, index: number) => Reply);

export interface RecordedRequest {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: any;
}

export interface FakeLlm {
  /** base_url for the client (ends in /v1). */
  url: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

let callCounter = 0;

export function toolCall(name: string, args: unknown, options: { rawArguments?: string; usage?: Partial<Usage> } = {}): Reply {
  const id = `call_${++callCounter}`;
  return completion(
    { role: 'assistant', content: null, tool_calls: [{ id, type: 'function', function: { name, arguments: options.rawArguments ?? JSON.stringify(args) } }] },
    options.usage,
  );
}

export function textReply(content: string): Reply {
  return completion({ role: 'assistant', content });
}

export function finish(summary = 'Done.', risk_level = 'low', extra: Record<string, unknown> = {}): Reply {
  return toolCall('finish', { summary, risks: ['none known'], risk_level, next_actions: ['review the patch'], ...extra });
}

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  cached: number;
}

function completion(message: unknown, usage: Partial<Usage> = {}): Reply {
  const prompt = usage.prompt_tokens ?? 100;
  const completionTokens = usage.completion_tokens ?? 20;
  return {
    body: {
      id: `chatcmpl-${callCounter}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: 'scripted-model',
      choices: [{ index: 0, message, finish_reason: 'tool_calls', logprobs: null }],
      usage: {
        prompt_tokens: prompt,
        completion_tokens: completionTokens,
        total_tokens: prompt + completionTokens,
        prompt_tokens_details: { cached_tokens: usage.cached ?? 40 },
      },
    },
  };
}

export function errorReply(status: number, message = 'scripted error'): Reply {
  // retry-after-ms keeps the client's backoff short in tests.
  return { status, headers: { 'retry-after-ms': '5' }, body: { error: { message, type: 'scripted', code: null } } };
}

export async function startFakeLlm(script: Script): Promise<FakeLlm> {
  const requests: RecordedRequest[] = [];
  const sockets = new Set<import('node:net').Socket>();
  const server = http.createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => (raw += chunk));
    req.on('end', () => {
      let body: any = null;
      try {
        body = raw ? JSON.parse(raw) : null;
      } catch {
        body = raw;
      }
      const request: RecordedRequest = { path: req.url ?? '', headers: req.headers, body };
      const index = requests.length;
      requests.push(request);
      let reply: Reply;
      if (typeof script === 'function') reply = script(request, index);
      else {
        const step = script[index] ?? script[script.length - 1];
        if (!step) reply = errorReply(500, 'script exhausted');
        else reply = typeof step === 'function' ? step(request) : step;
      }
      if (reply.hang) return;
      const send = () => {
        const status = reply.status ?? 200;
        if (body?.stream === true && status === 200) return sendStream(res, reply, Boolean(body.stream_options?.include_usage));
        res.writeHead(status, { 'content-type': 'application/json', ...(reply.headers ?? {}) });
        res.end(JSON.stringify(reply.body ?? {}));
      };
      if (reply.delayMs) setTimeout(send, reply.delayMs);
      else send();
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * A whole completion cut into the chunks a server streams, as OpenAI does: a role chunk,
 * content in pieces, each tool call opened (index, id, type, name) then its arguments in
 * pieces, a finish_reason chunk, and a usage chunk (no choices) when asked for.
 * `style: 'ollama'` sends what Ollama does: finish_reason "" on every chunk but the last,
 * each tool call whole in one chunk without index or type.
 */
export function toChunks(completion: any, options: { includeUsage?: boolean; style?: 'openai' | 'ollama'; pieceChars?: number } = {}): unknown[] {
  const { id, created, model, usage } = completion;
  const choice = completion.choices?.[0] ?? {};
  const message = choice.message ?? {};
  const style = options.style ?? 'openai';
  const size = options.pieceChars ?? 7;
  const empty = style === 'ollama' ? '' : null;
  const chunk = (delta: unknown, finish: string | null = empty) => ({
    id,
    object: 'chat.completion.chunk',
    created,
    model,
    choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
  });
  const pieces = (text: string) => (text.match(new RegExp(`[\\s\\S]{1,${size}}`, 'g')) ?? []) as string[];
  const out: unknown[] = [chunk({ role: 'assistant', content: style === 'ollama' ? (message.content ?? '') : '' })];
  if (style !== 'ollama') for (const piece of pieces(message.content ?? '')) out.push(chunk({ content: piece }));
  (message.tool_calls ?? []).forEach((call: any, index: number) => {
    if (style === 'ollama') {
      out.push(chunk({ tool_calls: [{ id: call.id, function: { name: call.function.name, arguments: call.function.arguments } }] }));
      return;
    }
    out.push(chunk({ tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } }] }));
    for (const piece of pieces(call.function.arguments)) out.push(chunk({ tool_calls: [{ index, function: { arguments: piece } }] }));
  });
  out.push(chunk({}, choice.finish_reason ?? 'stop'));
  if (options.includeUsage && usage) out.push({ id, object: 'chat.completion.chunk', created, model, choices: [], usage });
  return out;
}

function sendStream(res: http.ServerResponse, reply: Reply, includeUsage: boolean): void {
  const chunks = reply.chunks ?? toChunks(reply.body, { includeUsage });
  const end = reply.streamEnd ?? 'done';
  const sent = end === 'done' ? chunks : chunks.slice(0, Math.max(1, Math.floor(chunks.length / 2)));
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...(reply.headers ?? {}) });
  for (const c of sent) res.write(`data: ${JSON.stringify(c)}\n\n`);
  if (end === 'done') res.end('data: [DONE]\n\n');
  else if (end === 'cut') setTimeout(() => res.socket?.destroy(), 20);
  // 'stall': the response stays open, silent, until the client gives up or the server closes.
}
