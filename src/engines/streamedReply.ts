/**
 * A streamed reply put back together into one ChatCompletion, so the loop reads a streamed
 * reply exactly like a whole one (`llm.compat.stream`).
 *
 * The SDK parses the SSE; the chunks are joined here rather than by the SDK's
 * ChatCompletionStream helper because that helper throws on what real servers send: a
 * missing or empty `finish_reason` (Ollama sends "" on every chunk, ollama#4357;
 * llama-cpp-python and vLLM sometimes end with null, vllm#27572), a tool-call delta
 * without `type` or `index`. Those are tolerated; a stream that broke off (the connection
 * cut, an error event, or no chunk for `idleMs`) becomes an APIConnectionError, which
 * llmRetry.ts retries like any lost connection.
 */
import OpenAI from 'openai';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionMessageToolCall } from 'openai/resources/chat/completions';

interface ToolCallParts {
  id: string;
  name: string;
  arguments: string;
}

/** Joins the chunks of one reply (one choice: we never ask for more). */
export class ReplyAssembler {
  private id = '';
  private model = '';
  private created = 0;
  private content: string | null = null;
  private refusal: string | null = null;
  private finishReason: string | null = null;
  private usage: ChatCompletion['usage'];
  private readonly calls: ToolCallParts[] = [];
  chunks = 0;

  add(chunk: ChatCompletionChunk): void {
    this.chunks++;
    this.id ||= chunk.id ?? '';
    this.model ||= chunk.model ?? '';
    this.created ||= chunk.created ?? 0;
    // The usage chunk (stream_options.include_usage) has no choices; some servers put usage on every chunk: the last wins.
    if (chunk.usage) this.usage = chunk.usage;
    const choice = chunk.choices?.[0];
    if (!choice) return;
    if (choice.finish_reason) this.finishReason = choice.finish_reason;
    const delta = choice.delta ?? {};
    if (typeof delta.content === 'string') this.content = (this.content ?? '') + delta.content;
    if (typeof delta.refusal === 'string') this.refusal = (this.refusal ?? '') + delta.refusal;
    for (const part of delta.tool_calls ?? []) this.addToolCall(part);
  }

  private addToolCall(part: ChatCompletionChunk.Choice.Delta.ToolCall): void {
    // Some servers send each call whole with no index (or all with index 0 but distinct ids).
    let call = typeof part.index === 'number' ? this.calls[part.index] : undefined;
    if (call && part.id && call.id && part.id !== call.id) call = this.calls.find((c) => c.id === part.id);
    if (!call && typeof part.index !== 'number' && !part.id) call = this.calls.at(-1);
    if (!call) {
      call = { id: '', name: '', arguments: '' };
      if (typeof part.index === 'number' && !this.calls[part.index]) this.calls[part.index] = call;
      else this.calls.push(call);
    }
    if (part.id) call.id = part.id;
    if (part.function?.name)
      call.name += call.name && part.function.name.startsWith(call.name) ? part.function.name.slice(call.name.length) : part.function.name;
    if (part.function?.arguments) call.arguments += part.function.arguments;
  }

  /** Whether the reply looks whole: a finish_reason came, or every tool call's arguments parse. */
  looksComplete(): boolean {
    if (this.finishReason) return true;
    if (this.chunks === 0) return false;
    return this.calls.filter(Boolean).every((c) => c.name && parses(c.arguments || '{}'));
  }

  completion(): ChatCompletion {
    const calls = this.calls.filter(Boolean);
    const toolCalls: ChatCompletionMessageToolCall[] = calls.map((c, i) => ({
      id: c.id || `call_streamed_${i}`,
      type: 'function',
      function: { name: c.name, arguments: c.arguments },
    }));
    const finish = (this.finishReason ?? (toolCalls.length ? 'tool_calls' : 'stop')) as ChatCompletion.Choice['finish_reason'];
    return {
      id: this.id || 'chatcmpl-streamed',
      object: 'chat.completion',
      created: this.created || Math.floor(Date.now() / 1000),
      model: this.model,
      choices: [
        {
          index: 0,
          finish_reason: finish,
          logprobs: null,
          message: { role: 'assistant', content: this.content, refusal: this.refusal, ...(toolCalls.length ? { tool_calls: toolCalls } : {}) },
        },
      ],
      ...(this.usage ? { usage: this.usage } : {}),
    };
  }
}

function parses(json: string): boolean {
  try {
    JSON.parse(json);
    return true;
  } catch {
    return false;
  }
}

/**
 * Reads a chunk stream into one completion. `idleMs`: the longest silence between chunks
 * (a server that stalls mid-reply is treated as a lost connection, and retried).
 */
export async function readStreamedReply(
  open: (signal: AbortSignal) => Promise<AsyncIterable<ChatCompletionChunk>>,
  signal: AbortSignal,
  idleMs: number,
): Promise<ChatCompletion> {
  const stop = new AbortController();
  let stalled = false;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      stalled = true;
      stop.abort();
    }, idleMs);
  };
  const onAbort = () => stop.abort(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  const reply = new ReplyAssembler();
  try {
    // Until the headers come, the client's own timeout (llm.request_timeout_s) applies.
    const chunks = await open(AbortSignal.any([signal, stop.signal]));
    arm();
    try {
      for await (const chunk of chunks) {
        arm();
        reply.add(chunk);
      }
    } catch (error) {
      if (signal.aborted || stalled) {
        // fall through: handled below
      } else if (error instanceof OpenAI.APIError && error.status === undefined) {
        // An error event inside the stream (the server failed mid-reply): re-sending the request is safe.
        throw new OpenAI.APIConnectionError({ message: `the reply stream ended with an error: ${error.message}`, cause: error });
      } else if (!(error instanceof OpenAI.APIError)) {
        throw new OpenAI.APIConnectionError({
          message: `the reply stream broke off: ${error instanceof Error ? error.message : String(error)}`,
          cause: error instanceof Error ? error : undefined,
        });
      } else throw error;
    }
    // The SDK ends the iteration quietly on an abort: say why it ended.
    if (signal.aborted) throw new OpenAI.APIUserAbortError();
    if (stalled)
      throw new OpenAI.APIConnectionTimeoutError({ message: `the reply stream stalled: no chunk for ${Math.round(idleMs / 1000)} s (llm.request_timeout_s)` });
    if (!reply.looksComplete())
      throw new OpenAI.APIConnectionError({ message: `the reply stream ended before the reply did (${reply.chunks} chunks, no finish_reason)` });
    return reply.completion();
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
  }
}
