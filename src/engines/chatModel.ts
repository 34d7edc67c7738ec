/**
 * The model endpoint: the configured OpenAI client (OpenAI, or an OpenAI-compatible server
 * such as Ollama, vLLM or LM Studio through `base_url`) behind a small interface, and the
 * translation of its failures into one-line errors a person can act on.
 */
import OpenAI from 'openai';
import type { ChatCompletion, ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources/chat/completions';
import { MetaAgentError } from '../contract/errors.ts';
import type { LlmSettings } from '../workspace/config.ts';
import { llmMissingMessage } from '../workspace/config.ts';
import { TOOL_DEFINITIONS } from './toolbox.ts';

/** The model endpoint as a small interface, so the loop does not care how it is reached. */
export interface ChatModel {
  readonly name: string;
  /** `maxCompletionTokens` caps the reply (the token limit must not be crossed). */
  complete(messages: ChatCompletionMessageParam[], signal: AbortSignal, options?: { maxCompletionTokens?: number }): Promise<ChatCompletion>;
}

/** The configured client; one clear error when no model is configured. */
export function openAIClient(llm: LlmSettings): OpenAI {
  if (!llm.apiKey && !llm.baseURL) throw new MetaAgentError('config', llmMissingMessage(llm), { field: 'llm' });
  return new OpenAI({
    // Local servers (Ollama, LM Studio) need no key, but the client insists on one.
    apiKey: llm.apiKey ?? 'no-key-needed',
    ...(llm.baseURL ? { baseURL: llm.baseURL } : {}),
    maxRetries: llm.maxRetries,
    timeout: llm.requestTimeoutMs,
  });
}

/** `tools`: the run's tool list (toolbox.ts toolDefinitions), the same in every request. */
export function openAIChatModel(llm: LlmSettings, tools: ChatCompletionTool[] = TOOL_DEFINITIONS): ChatModel {
  const client = openAIClient(llm);
  return {
    name: llm.model,
    async complete(messages, signal, options = {}) {
      try {
        return await client.chat.completions.create(
          {
            model: llm.model,
            messages,
            tools,
            tool_choice: 'auto',
            parallel_tool_calls: false,
            ...(llm.temperature !== undefined ? { temperature: llm.temperature } : {}),
            ...(options.maxCompletionTokens !== undefined ? { max_completion_tokens: options.maxCompletionTokens } : {}),
          },
          // A fresh signal per request: the client adds a listener to it and never removes it.
          { signal: AbortSignal.any([signal]) },
        );
      } catch (error) {
        throw toLlmError(error, llm, signal);
      }
    },
  };
}

export function toLlmError(error: unknown, llm: LlmSettings, signal: AbortSignal): Error {
  if (signal.aborted && signal.reason instanceof MetaAgentError) return signal.reason;
  const where = llm.baseURL ?? 'api.openai.com';
  if (error instanceof OpenAI.AuthenticationError) {
    return new MetaAgentError('llm', `the model endpoint ${where} refused the API key (401); check ${llm.apiKeyEnv}`, { field: 'llm.api_key_env' });
  }
  if (error instanceof OpenAI.PermissionDeniedError) {
    return new MetaAgentError('llm', `the model endpoint ${where} denied access (403): ${firstLine(error.message)}`, { field: 'llm' });
  }
  if (error instanceof OpenAI.NotFoundError) {
    return new MetaAgentError('llm', `model "${llm.model}" not found at ${where} (404); set llm.model or META_AGENT_MODEL to a model the server has`, { field: 'llm.model' });
  }
  if (error instanceof OpenAI.RateLimitError) {
    return new MetaAgentError('llm', `rate limited by ${where} (429) after ${llm.maxRetries} retries: ${firstLine(error.message)}`);
  }
  if (error instanceof OpenAI.InternalServerError) {
    return new MetaAgentError('llm', `the model endpoint ${where} kept failing (${error.status}) after ${llm.maxRetries} retries`);
  }
  if (error instanceof OpenAI.APIConnectionTimeoutError) {
    return new MetaAgentError('llm', `no answer from ${where} within llm.request_timeout_s after ${llm.maxRetries} retries`);
  }
  if (error instanceof OpenAI.APIConnectionError) {
    return new MetaAgentError('llm', `cannot reach ${where}: ${firstLine(error.message)}; is the server running and llm.base_url right?`, { field: 'llm.base_url' });
  }
  if (error instanceof OpenAI.APIError) {
    return new MetaAgentError('llm', `the model endpoint ${where} answered ${error.status ?? 'an error'}: ${firstLine(error.message)}`);
  }
  return error instanceof Error ? error : new Error(String(error));
}

const firstLine = (s: string) => s.split('\n')[0] ?? s;
