/**
 * Keeps the conversation inside the model's context window (`llm.context_window`).
 *
 * Old tool results are replaced by a one-line stub, in blocks (SWE-agent's last-N
 * observations, with its "polling" made size-driven): when a request would pass the high-water
 * mark (half the room for the prompt), the oldest tool results are elided all at once until it
 * is under the low-water mark (a quarter). Between two elisions the conversation only grows at
 * its end, so every request starts with the previous one byte for byte and the provider's
 * prompt cache keeps working. The system prompt, the task, every assistant message (its tool
 * calls) and every other message stay; a tool message keeps its tool_call_id (the API pairs
 * them), only its content shrinks.
 *
 * Sizes are estimated at 4 characters a token, over the JSON of what is sent. Code is denser
 * (about 3 characters a token), which the halved marks absorb; when a server still answers
 * "maximum context length", everything the model has already seen is elided and the request
 * sent again (and a window the server names is kept for the rest of the run).
 */
import OpenAI from 'openai';
import type { ChatCompletionMessageParam, ChatCompletionMessageToolCall } from 'openai/resources/chat/completions';
import { MetaAgentError } from '../contract/errors.ts';
import { TOOL_DEFINITIONS, toolTarget } from './toolbox.ts';

/** Characters of a request besides its messages: the tool definitions and a few fields. */
const REQUEST_OVERHEAD_CHARS = JSON.stringify(TOOL_DEFINITIONS).length + 200;

/** Room kept for the reply: the reply cap the loop sends at most, or a quarter of a small window. */
const REPLY_RESERVE = 4096;

/** Tool results the model saw last that survive a routine elision if they can (they are what it works on). */
const KEEP_RECENT = 3;

/**
 * A server-reported prompt under half the local estimate means the server cut the prompt;
 * checked only above this estimate (tokens), where the cut is what Ollama's default num_ctx
 * (2048-4096) would make, and where no request of a normal scripted test reaches.
 */
const TRUNCATION_CHECK_MIN = 8192;

/** Estimated tokens of a request carrying these messages: characters / 4. */
export function estimateTokens(messages: ChatCompletionMessageParam[]): number {
  return Math.ceil((JSON.stringify(messages).length + REQUEST_OVERHEAD_CHARS) / 4);
}

/** Texts of "the prompt does not fit" from OpenAI, Azure, vLLM, Ollama, LM Studio, llama.cpp, Gemini and Anthropic-compatible servers. */
const OVERFLOW_PATTERNS = [
  /context_length_exceeded/i,
  /maximum context length/i,
  /longer than the maximum model length/i,
  /too long to fit into the model/i,
  /exceeds? (the )?(model'?s? )?context (length|window|size)/i,
  /context (length|window) (exceeded|overflow)/i,
  /context length of only/i,
  /exceeds the available context size|exceed_context_size/i,
  /input token count .* exceeds the maximum/i,
  /prompt is too long/i,
  /reduce the length of the messages/i,
];

/** A window size named in an overflow message ("maximum context length is 8192 tokens"). */
const WINDOW_PATTERNS = [/maximum context length is (\d+)/i, /maximum model length of (\d+)/i, /context length of only (\d+)/i, /context length (\d+)\)/i];

/**
 * True when the model endpoint refused the request because it is longer than the context
 * window. The ChatModel turns API errors into MetaAgentError('llm') with the API error as
 * its cause; both texts are looked at.
 */
export function isContextOverflow(error: unknown): boolean {
  if (!(error instanceof MetaAgentError) || error.kind !== 'llm') return false;
  const cause = error.cause;
  if (cause instanceof OpenAI.APIError) {
    if (cause.status !== undefined && (cause.status < 400 || cause.status >= 500)) return false;
    if (cause.code === 'context_length_exceeded') return true;
  }
  const text = `${error.message}\n${cause instanceof Error ? cause.message : ''}`;
  return OVERFLOW_PATTERNS.some((p) => p.test(text));
}

function windowNamedIn(error: unknown): number | null {
  const text = `${error instanceof Error ? error.message : ''}\n${error instanceof Error && error.cause instanceof Error ? error.cause.message : ''}`;
  for (const pattern of WINDOW_PATTERNS) {
    const n = Number(pattern.exec(text)?.[1]);
    if (Number.isFinite(n) && n >= 512) return n;
  }
  return null;
}

export interface Elision {
  /** Tool results replaced by stubs this time. */
  elided: number;
  tokensBefore: number;
  tokensAfter: number;
  reason: 'high_water' | 'overflow';
}

export class ConversationWindow {
  /** The context window in tokens; lowered when a server names a smaller one. */
  private window: number;
  /** Bumped by every elision: a request after it no longer extends the one before it. */
  private generation = 0;
  /** User messages that carry tool results (calls written as text, and all of text mode): elided like tool messages. */
  private readonly textResults = new WeakSet<ChatCompletionMessageParam>();

  constructor(
    /** The loop's conversation; elision rewrites tool messages in place. */
    private readonly messages: ChatCompletionMessageParam[],
    contextWindow: number,
  ) {
    this.window = contextWindow;
  }

  /** Marks a user message that carries tool results, so it can be elided like a tool message. */
  markObservation(message: ChatCompletionMessageParam): void {
    this.textResults.add(message);
  }

  get contextWindow(): number {
    return this.window;
  }

  /** Changes whenever old messages were rewritten (the cached prefix is then shorter). */
  get version(): number {
    return this.generation;
  }

  estimate(): number {
    return estimateTokens(this.messages);
  }

  /** Most prompt tokens a request may carry: the window less room for the reply. */
  private get room(): number {
    return this.window - Math.min(REPLY_RESERVE, Math.floor(this.window / 4));
  }

  /**
   * Called before each model call: past the high-water mark, elides the oldest tool results
   * until the conversation is under the low-water mark. Throws a `budget` error when even the
   * system prompt, the task and the newest results do not fit the window.
   */
  fit(): Elision | null {
    const before = this.estimate();
    if (before <= Math.floor(this.room / 2)) return null;
    const low = Math.floor(this.room / 4);
    let elided = this.elideOldest(low, KEEP_RECENT);
    // The assistant messages and stubs that stay add up over a long run: when keeping the
    // recent results leaves less than a quarter of the room to grow into, keep only the
    // newest, so elisions stay blocks apart.
    if (this.estimate() > (this.room * 3) / 8) elided += this.elideOldest(low, 1);
    if (this.estimate() > this.room) elided += this.elideOldest(low, 0);
    const after = this.estimate();
    if (after > this.room) {
      throw new MetaAgentError(
        'budget',
        `the conversation (about ${after} tokens at 4 characters a token) does not fit the model's context window (${this.window} tokens, llm.context_window) even with every earlier tool result elided; raise llm.context_window if the model has more, or lower limits.tool_output_chars`,
        { field: 'llm.context_window' },
      );
    }
    return elided > 0 ? this.bump({ elided, tokensBefore: before, tokensAfter: after, reason: 'high_water' }) : null;
  }

  /**
   * Called when the endpoint refused a request as too long: keeps the window it names, elides
   * every tool result the model has already seen, and returns what was done; null when there
   * was nothing left to elide (the caller then fails with the endpoint's error).
   */
  afterOverflow(error: unknown): Elision | null {
    const named = windowNamedIn(error);
    if (named !== null && named < this.window) this.window = named;
    const before = this.estimate();
    const elided = this.elideOldest(0, 0);
    if (elided === 0) return null;
    return this.bump({ elided, tokensBefore: before, tokensAfter: this.estimate(), reason: 'overflow' });
  }

  private bump(elision: Elision): Elision {
    this.generation++;
    return elision;
  }

  /**
   * Replaces the oldest tool results by stubs, oldest first, until the estimate is at most
   * `target` tokens; never the `keep` newest results the model has seen, nor any it has not
   * seen yet (those after the last assistant message). Returns how many were replaced.
   */
  private elideOldest(target: number, keep: number): number {
    const lastAssistant = this.messages.map((m) => m.role).lastIndexOf('assistant');
    const seen = this.messages.flatMap((m, i) => ((m.role === 'tool' || this.textResults.has(m)) && i < lastAssistant && !isStub(m.content) ? [i] : []));
    const candidates = seen.slice(0, Math.max(0, seen.length - keep));
    let elided = 0;
    for (const i of candidates) {
      if (this.estimate() <= target) break;
      const message = this.messages[i]!;
      const stub = message.role === 'tool' ? stubFor(this.callOf(message.tool_call_id, i)) : `[results of earlier tool calls ${STUB_TAIL}`;
      const old = typeof message.content === 'string' ? message.content : JSON.stringify(message.content);
      if (old.length <= stub.length) continue;
      this.messages[i] = { ...message, content: stub } as ChatCompletionMessageParam;
      elided++;
    }
    return elided;
  }

  /** The tool call a tool message answers: in the nearest assistant message before it. */
  private callOf(id: string, index: number): ChatCompletionMessageToolCall | undefined {
    for (let i = index - 1; i >= 0; i--) {
      const m = this.messages[i]!;
      if (m.role === 'assistant') return m.tool_calls?.find((c) => c.id === id);
    }
    return undefined;
  }
}

const STUB_TAIL = 'elided to save context; call the tool again if you need it]';

function stubFor(call: ChatCompletionMessageToolCall | undefined): string {
  if (call?.type !== 'function') return `[tool output ${STUB_TAIL}`;
  const target = toolTarget(call.function.arguments);
  return `[output of ${call.function.name}${target ? ` ${target}` : ''} ${STUB_TAIL}`;
}

function isStub(content: unknown): boolean {
  return typeof content === 'string' && content.startsWith('[') && content.endsWith(STUB_TAIL);
}

/**
 * After each reply: a server that counted far fewer prompt tokens than were sent cut the
 * prompt to fit a smaller window (Ollama does so silently when num_ctx is small), and the
 * model then works from a conversation missing its start; the run stops with the fix.
 */
export function checkPromptCount(reportedPromptTokens: number | undefined, sentEstimate: number, contextWindow: number): void {
  if (!reportedPromptTokens || sentEstimate < TRUNCATION_CHECK_MIN) return;
  if (reportedPromptTokens * 2 >= sentEstimate) return;
  throw new MetaAgentError(
    'llm',
    `the model server counted ${reportedPromptTokens} prompt tokens for a request of about ${sentEstimate} (4 characters a token): it cut the conversation to fit a smaller context window than llm.context_window (${contextWindow}). Ollama does this silently when its num_ctx is small: start it with OLLAMA_CONTEXT_LENGTH=${contextWindow} (or set PARAMETER num_ctx in a Modelfile), or set llm.context_window to the server's window`,
    { field: 'llm.context_window' },
  );
}
