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
  return completion({ role: 'assistant', content: null, tool_calls: [{ id, type: 'function', function: { name, arguments: options.rawArguments ?? JSON.stringify(args) } }] }, options.usage);
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
      usage: { prompt_tokens: prompt, completion_tokens: completionTokens, total_tokens: prompt + completionTokens, prompt_tokens_details: { cached_tokens: usage.cached ?? 40 } },
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
        res.writeHead(reply.status ?? 200, { 'content-type': 'application/json', ...(reply.headers ?? {}) });
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
