/**
 * The model endpoint: the configured OpenAI client (OpenAI, or an OpenAI-compatible server
 * such as Ollama, vLLM or LM Studio through `base_url`) behind a small interface, and the
 * translation of its failures into one-line errors a person can act on.
 *
 * Servers differ in the parameters they accept: `llm.compat` sets them, and a 400 naming
 * one we sent (o-series models refuse `parallel_tool_calls`, some servers
 * `max_completion_tokens`) is retried once without it; the choice holds for the run.
 * Outages are retried by llmRetry.ts. With `llm.compat.stream` the reply is streamed (a long
 * local generation then never meets the request timeout, only a silence does) and put back
 * together by streamedReply.ts; a server refusing `stream_options` streams without usage,
 * which is then estimated.
 */
import OpenAI from 'openai';
import type { ChatCompletion, ChatCompletionCreateParamsNonStreaming, ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources/chat/completions';
import type { Logger } from 'pino';
import { MetaAgentError } from '../contract/errors.ts';
import { silentLogger } from '../log.ts';
import type { LlmSettings } from '../workspace/config.ts';
import { llmMissingMessage } from '../workspace/config.ts';
import { RetriesExhausted, withRetries, type RetryPolicy } from './llmRetry.ts';
import { estimateTokens } from './history.ts';
import { readStreamedReply } from './streamedReply.ts';
import { TOOL_DEFINITIONS } from './toolbox.ts';

/** The model endpoint as a small interface, so the loop does not care how it is reached. */
export interface ChatModel {
  readonly name: string;
  /** `maxCompletionTokens` caps the reply (the token limit must not be crossed). */
  complete(messages: ChatCompletionMessageParam[], signal: AbortSignal, options?: { maxCompletionTokens?: number }): Promise<ChatCompletion>;
}

/** The configured client, without the SDK's own retries (see withRetries); one clear error when no model is configured. */
export function openAIClient(llm: LlmSettings): OpenAI {
  if (!llm.apiKey && !llm.baseURL) throw new MetaAgentError('config', llmMissingMessage(llm), { field: 'llm' });
  return new OpenAI({
    // Local servers (Ollama, LM Studio) need no key, but the client insists on one.
    apiKey: llm.apiKey ?? 'no-key-needed',
    ...(llm.baseURL ? { baseURL: llm.baseURL } : {}),
    maxRetries: 0,
    timeout: llm.requestTimeoutMs,
  });
}

export function retryPolicy(llm: LlmSettings): RetryPolicy {
  return { budgetMs: llm.retryBudgetMs, ...(llm.maxRetries !== undefined ? { maxRetries: llm.maxRetries } : {}), ...llm.backoff };
}

/** OpenAI's own API (no base_url, or api.openai.com): where the defaults of llm.compat differ. */
function isOpenAIApi(llm: LlmSettings): boolean {
  if (!llm.baseURL) return true;
  try {
    return new URL(llm.baseURL).hostname === 'api.openai.com';
  } catch {
    return false;
  }
}

/** The parameters a 400 may refuse and we can do without (or name differently). */
const ADJUSTABLE = ['parallel_tool_calls', 'max_completion_tokens', 'max_tokens', 'temperature', 'stream_options', 'stream'] as const;
type Adjustable = (typeof ADJUSTABLE)[number];
const REFUSAL = /unsupported|not supported|does not support|unrecognized|unknown (parameter|field|argument)|not permitted|extra (inputs|fields)|not allowed/i;

/** The parameter a 400 (or 422) refuses, when it is one we sent and can drop. */
export function refusedParameter(error: unknown, sent: readonly string[]): Adjustable | null {
  if (!(error instanceof OpenAI.BadRequestError || error instanceof OpenAI.UnprocessableEntityError)) return null;
  if (!REFUSAL.test(error.message) && !String(error.code ?? '').startsWith('unsupported')) return null;
  const candidates = ADJUSTABLE.filter((p) => sent.includes(p));
  const named = candidates.find((p) => p === error.param);
  return named ?? candidates.find((p) => new RegExp(`\\b${p}\\b`).test(error.message)) ?? null;
}

/** `tools`: the run's tool list (toolbox.ts toolDefinitions), the same in every request. */
export function openAIChatModel(llm: LlmSettings, log: Logger = silentLogger(), tools: ChatCompletionTool[] = TOOL_DEFINITIONS): ChatModel {
  const client = openAIClient(llm);
  const openAI = isOpenAIApi(llm);
  // What this run sends; a refusal changes it for the rest of the run.
  const sending = {
    parallelToolCalls: llm.compat.parallel_tool_calls ?? (openAI ? false : undefined),
    capParam: (llm.compat.max_tokens_param ?? (openAI ? 'max_completion_tokens' : 'max_tokens')) as 'max_tokens' | 'max_completion_tokens' | null,
    temperature: llm.temperature,
    stream: llm.compat.stream ?? false,
    streamUsage: true,
  };
  const refused = new Set<Adjustable>();
  const body = (messages: ChatCompletionMessageParam[], cap: number | undefined): ChatCompletionCreateParamsNonStreaming => ({
    model: llm.model,
    messages,
    ...(llm.toolMode === 'native' ? { tools, tool_choice: 'auto' as const } : {}),
    ...(llm.toolMode === 'native' && sending.parallelToolCalls !== undefined ? { parallel_tool_calls: sending.parallelToolCalls } : {}),
    ...(sending.temperature !== undefined ? { temperature: sending.temperature } : {}),
    ...(cap !== undefined && sending.capParam ? { [sending.capParam]: cap } : {}),
  });
  /** The parameters sent besides the body: what a 400 may name. */
  const streaming = (): { stream?: true; stream_options?: { include_usage: boolean } } =>
    sending.stream ? { stream: true, ...(sending.streamUsage ? { stream_options: { include_usage: true } } : {}) } : {};
  /** Stops sending a refused parameter (a refused cap name: the other one, or none if both were refused); returns what is sent instead, for the log. */
  const adjust = (param: Adjustable, refusedBefore: ReadonlySet<Adjustable>): string => {
    if (param === 'parallel_tool_calls') sending.parallelToolCalls = undefined;
    else if (param === 'temperature') sending.temperature = undefined;
    else if (param === 'stream_options') sending.streamUsage = false;
    else if (param === 'stream') {
      sending.stream = false;
      return 'with whole replies instead';
    } else {
      const other = param === 'max_tokens' ? 'max_completion_tokens' : 'max_tokens';
      sending.capParam = refusedBefore.has(other) ? null : other;
      if (sending.capParam) return `with ${sending.capParam} instead`;
    }
    return 'without it';
  };
  const policy = retryPolicy(llm);

  return {
    name: llm.model,
    async complete(messages, signal, options = {}) {
      for (;;) {
        const request = body(messages, options.maxCompletionTokens);
        const extra = streaming();
        try {
          const reply = await withRetries(
            // A fresh signal per request: the client adds a listener to it and never removes it.
            () =>
              extra.stream
                ? readStreamedReply(
                    (s) => client.chat.completions.create({ ...request, ...extra, stream: true }, { signal: s }),
                    AbortSignal.any([signal]),
                    llm.requestTimeoutMs,
                  )
                : client.chat.completions.create(request, { signal: AbortSignal.any([signal]) }),
            {
              policy,
              signal,
              onRetry: (note) =>
                log.warn(
                  { retry: note.retry, wait_ms: note.waitMs, status: note.status, from_server: note.fromServer },
                  `model request failed (${note.status ?? 'no connection'}: ${note.reason}); retry ${note.retry} in ${(note.waitMs / 1000).toFixed(1)} s`,
                ),
            },
          );
          return reply.usage ? reply : withEstimatedUsage(reply, messages);
        } catch (error) {
          const param = signal.aborted ? null : refusedParameter(error, [...Object.keys(request), ...Object.keys(extra)]);
          // Each parameter is dropped once per run, so this loop ends.
          if (!param || refused.has(param)) throw toLlmError(error, llm, signal);
          const instead = adjust(param, refused);
          refused.add(param);
          log.warn({ param, instead }, `the model endpoint refused "${param}" (400); retrying ${instead}, and keeping that for this run`);
        }
      }
    },
  };
}

/**
 * A reply without usage (a stream whose server refused `stream_options`, or a server that
 * never reports it) gets an estimate, so token budgets still hold.
 */
function withEstimatedUsage(reply: ChatCompletion, messages: ChatCompletionMessageParam[]): ChatCompletion {
  const message = reply.choices[0]?.message;
  const prompt = estimateTokens(messages);
  const completion = Math.ceil((JSON.stringify(message?.tool_calls ?? []).length + (message?.content ?? '').length) / 4);
  return { ...reply, usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion } };
}

export function toLlmError(error: unknown, llm: LlmSettings, signal: AbortSignal): Error {
  if (signal.aborted && signal.reason instanceof MetaAgentError) return signal.reason;
  const where = llm.baseURL ?? 'api.openai.com';
  const retried = error instanceof RetriesExhausted ? error : null;
  const after = retried ? ` ${retriedFor(retried, llm)}` : '';
  if (retried) error = retried.last;
  if (error instanceof OpenAI.AuthenticationError) {
    return new MetaAgentError('llm', `the model endpoint ${where} refused the API key (401); check ${llm.apiKeyEnv}`, { field: 'llm.api_key_env' });
  }
  if (error instanceof OpenAI.PermissionDeniedError) {
    return new MetaAgentError('llm', `the model endpoint ${where} denied access (403): ${firstLine(error.message)}`, { field: 'llm' });
  }
  if (error instanceof OpenAI.NotFoundError) {
    return new MetaAgentError('llm', `model "${llm.model}" not found at ${where} (404); set llm.model or META_AGENT_MODEL to a model the server has`, {
      field: 'llm.model',
    });
  }
  if (error instanceof OpenAI.RateLimitError) {
    return new MetaAgentError('llm', `rate limited by ${where} (429)${after}: ${firstLine(error.message)}`, { cause: error });
  }
  if (error instanceof OpenAI.InternalServerError) {
    return new MetaAgentError('llm', `the model endpoint ${where} kept failing (${error.status})${after}: ${firstLine(error.message)}`, { cause: error });
  }
  if (error instanceof OpenAI.APIConnectionTimeoutError) {
    return new MetaAgentError('llm', `no answer from ${where} within llm.request_timeout_s${after}`);
  }
  if (error instanceof OpenAI.APIConnectionError) {
    return new MetaAgentError('llm', `cannot reach ${where}${after}: ${firstLine(error.message)}; is the server running and llm.base_url right?`, {
      field: 'llm.base_url',
    });
  }
  if (error instanceof OpenAI.APIError) {
    // The cause lets the loop tell a "context length exceeded" answer apart (history.ts).
    return new MetaAgentError('llm', `the model endpoint ${where} answered ${error.status ?? 'an error'}${after}: ${firstLine(error.message)}`, {
      cause: error,
    });
  }
  return error instanceof Error ? error : new Error(String(error));
}

function retriedFor(r: RetriesExhausted, llm: LlmSettings): string {
  const spent = `after ${r.retries} ${r.retries === 1 ? 'retry' : 'retries'} over ${(r.elapsedMs / 1000).toFixed(1)} s`;
  const budget = `llm.retry_budget_s: ${llm.retryBudgetMs / 1000}`;
  if (r.why === 'count') return `${spent} (llm.max_retries: ${llm.maxRetries})`;
  if (r.why === 'server_wait') return `${spent}; it asked to wait ${Math.ceil((r.serverWaitMs ?? 0) / 1000)} s more, past the retry budget (${budget})`;
  return `${spent} (${budget})`;
}

const firstLine = (s: string) => s.split('\n')[0] ?? s;
