/**
 * A scripted OpenAI Responses API server on 127.0.0.1 (POST /v1/responses, streamed as
 * server-sent events), for external agents that speak it (Codex CLI). Each POST to
 * /responses takes the next scripted turn; every request (any path) is recorded, so a test
 * can assert what the agent sent. The events are the ones Codex's SSE reader acts on
 * (codex-rs/codex-api/src/sse/responses.rs): response.created, response.output_item.added
 * and .done per item, response.completed with usage.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** One output item of a response: a function (tool) call or an assistant message. */
export type OutputItem =
  | { type: 'function_call'; name: string; arguments: string; call_id: string }
  | { type: 'message'; role: 'assistant'; content: Array<{ type: 'output_text'; text: string }> };

export interface TurnUsage {
  input_tokens: number;
  cached_tokens: number;
  output_tokens: number;
}

export type Turn =
  /** A streamed response with these items. */
  | { items: OutputItem[]; usage?: Partial<TurnUsage> }
  /** Accept the request and never answer (a model that stopped responding). */
  | { hang: true }
  /** A plain HTTP error. */
  | { status: number; body?: unknown };

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  /** The raw body text: what a leak test searches. */
  raw: string;
  body: any;
}

export interface ResponsesApi {
  /** base_url for the client (ends in /v1). */
  url: string;
  requests: RecordedRequest[];
  /** The POST /responses requests only. */
  turns(): RecordedRequest[];
  close(): Promise<void>;
}

let counter = 0;

export function functionCall(name: string, args: unknown): OutputItem {
  return { type: 'function_call', name, arguments: JSON.stringify(args), call_id: `call_${++counter}` };
}

export function assistantMessage(text: string): OutputItem {
  return { type: 'message', role: 'assistant', content: [{ type: 'output_text', text }] };
}

/** The text of every function call's output the agent sent back (what its tools returned). */
export function toolOutputs(request: RecordedRequest): string[] {
  const input: any[] = Array.isArray(request.body?.input) ? request.body.input : [];
  return input
    .filter((item) => item?.type === 'function_call_output')
    .map((item) => (typeof item.output === 'string' ? item.output : JSON.stringify(item.output)));
}

function sse(event: Record<string, unknown>): string {
  return `event: ${String(event.type)}\ndata: ${JSON.stringify(event)}\n\n`;
}

function streamTurn(res: http.ServerResponse, turn: { items: OutputItem[]; usage?: Partial<TurnUsage> }): void {
  const id = `resp_${++counter}`;
  const usage = { input_tokens: 100, cached_tokens: 0, output_tokens: 20, ...turn.usage };
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.write(sse({ type: 'response.created', response: { id, status: 'in_progress' } }));
  turn.items.forEach((item, index) => {
    const withId = { id: `item_${++counter}`, ...item };
    res.write(sse({ type: 'response.output_item.added', output_index: index, item: withId }));
    res.write(sse({ type: 'response.output_item.done', output_index: index, item: withId }));
  });
  res.write(
    sse({
      type: 'response.completed',
      response: {
        id,
        status: 'completed',
        usage: {
          input_tokens: usage.input_tokens,
          input_tokens_details: { cached_tokens: usage.cached_tokens },
          output_tokens: usage.output_tokens,
          output_tokens_details: { reasoning_tokens: 0 },
          total_tokens: usage.input_tokens + usage.output_tokens,
        },
      },
    }),
  );
  res.end();
}

/**
 * Starts the server. `script` is the list of turns (one per POST /responses, the last one
 * repeated when the script runs out), or a function of the request and its turn index.
 */
export async function startResponsesApi(script: Turn[] | ((request: RecordedRequest, index: number) => Turn)): Promise<ResponsesApi> {
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  let turnIndex = 0;
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
      const request: RecordedRequest = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, raw, body };
      requests.push(request);
      if (req.method !== 'POST' || !/\/responses(\?|$)/.test(request.path)) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: `not scripted: ${req.method} ${request.path}` } }));
        return;
      }
      const index = turnIndex++;
      const turn = typeof script === 'function' ? script(request, index) : (script[index] ?? script[script.length - 1]);
      if (!turn) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'script exhausted' } }));
      } else if ('hang' in turn) {
        // Hold the connection open without a byte; close() destroys it.
      } else if ('status' in turn) {
        res.writeHead(turn.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(turn.body ?? { error: { message: 'scripted error' } }));
      } else {
        streamTurn(res, turn);
      }
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
    turns: () => requests.filter((r) => r.method === 'POST' && /\/responses(\?|$)/.test(r.path)),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
