/**
 * The `openai` engine: an agent loop over Chat Completions with tool calls, in the shape
 * of mini-swe-agent: run -> step -> query -> observe. Works with OpenAI and with
 * OpenAI-compatible servers (Ollama, vLLM, LM Studio) through `base_url`.
 *
 * Recoverable problems (a bad tool call, a refused path, a reply without tools) go back to
 * the model as messages. Terminating ones (finish, limits, timeout, auth) end the loop.
 */
import OpenAI from 'openai';
import type { ChatCompletion, ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources/chat/completions';
import { MetaAgentError } from '../contract/errors.ts';
import { RISK_LEVELS, type RiskLevel } from '../contract/report.ts';
import type { LlmSettings } from '../workspace/config.ts';
import { llmMissingMessage } from '../workspace/config.ts';
import * as tools from './tools.ts';
import { ToolError } from './tools.ts';
import type { Engine, EngineContext, EngineResult } from './types.ts';

const str = (description: string) => ({ type: 'string', description }) as const;
const strList = (description: string) => ({ type: 'array', items: { type: 'string' }, description }) as const;

export const TOOL_DEFINITIONS: ChatCompletionTool[] = [
  fn('list_files', 'List the files under a folder of the repository (recursive; ignored files are not shown).', { path: str('Folder, relative to the repo root; "." for all') }, ['path']),
  fn(
    'read_file',
    'Read a text file, optionally a range of lines (1-based, inclusive).',
    { path: str('File, relative to the repo root'), start_line: { type: 'integer', minimum: 1 }, end_line: { type: 'integer', minimum: 1 } },
    ['path'],
  ),
  fn('search', 'Search files for an extended regular expression (git grep -E). Returns file:line:text.', { pattern: str('Regular expression'), path: str('Folder or file to search; default the whole repo') }, ['pattern']),
  fn('write_file', 'Create or replace a whole file (inside the task scope only).', { path: str('File, relative to the repo root'), content: str('The complete new content') }, ['path', 'content']),
  fn(
    'edit_file',
    'Replace one exact occurrence of "old" with "new" in a file (inside the task scope only). "old" must occur exactly once.',
    { path: str('File, relative to the repo root'), old: str('Exact text to replace, including whitespace'), new: str('Replacement text') },
    ['path', 'old', 'new'],
  ),
  fn('run_checks', "Run the project's tests and dry-run on the current state of your changes.", {}, []),
  fn(
    'finish',
    'End the task. Call it once, when the work is done (or cannot be done).',
    {
      summary: str('What you found and changed, for the human reviewer'),
      risks: strList('Risks of the change, one per item'),
      risk_level: { type: 'string', enum: [...RISK_LEVELS], description: 'Risk of merging your change' },
      next_actions: strList('What the human should do or check next'),
    },
    ['summary', 'risks', 'risk_level', 'next_actions'],
  ),
];

function fn(name: string, description: string, properties: Record<string, unknown>, required: string[]): ChatCompletionTool {
  return { type: 'function', function: { name, description, parameters: { type: 'object', properties, required, additionalProperties: false } } };
}

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

export function openAIChatModel(llm: LlmSettings): ChatModel {
  const client = openAIClient(llm);
  return {
    name: llm.model,
    async complete(messages, signal, options = {}) {
      try {
        return await client.chat.completions.create(
          {
            model: llm.model,
            messages,
            tools: TOOL_DEFINITIONS,
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

/** Long tool outputs keep their head and tail, with a note, so the context stays bounded. */
export function cutOutput(text: string, limit: number): string {
  if (text.length <= limit) return text;
  const head = Math.floor(limit * 0.6);
  const tail = limit - head;
  return `${text.slice(0, head)}\n\n[... ${text.length - limit} characters cut by meta-agent; showing the first ${head} and the last ${tail}. Use read_file with start_line/end_line or a narrower search to see the rest ...]\n\n${text.slice(-tail)}`;
}

interface FinishArgs {
  summary: string;
  risks: string[];
  risk_level: RiskLevel;
  next_actions: string[];
}

export class OpenAIEngine implements Engine {
  readonly name = 'openai' as const;

  constructor(private readonly makeModel: (llm: LlmSettings) => ChatModel = openAIChatModel) {}

  async run(ctx: EngineContext): Promise<EngineResult> {
    const model = this.makeModel(ctx.settings.llm);
    return new AgentLoop(ctx, model).run();
  }
}

/**
 * The reply cap is sent only when it is this small or smaller: every chat model can write
 * a reply this long, while a cap above a model's own output limit is refused (400) by some
 * servers. A larger cap is left to the model's own limit.
 */
const SENT_REPLY_CAP = 4096;

class AgentLoop {
  private readonly messages: ChatCompletionMessageParam[];
  private steps = 0;
  /** Tokens of the last model call, and how many messages the conversation had after it. */
  private lastCall: { prompt: number; completion: number; messages: number } | null = null;

  constructor(
    private readonly ctx: EngineContext,
    private readonly model: ChatModel,
  ) {
    this.messages = [
      { role: 'system', content: ctx.prompt.system },
      { role: 'user', content: ctx.prompt.user },
    ];
    // Usage carried from an attempt that died: its average step is the best guess for the
    // first call, so the limit check does not let that call cross the ceiling.
    const carried = ctx.usage;
    if (carried.requests > 0) {
      this.lastCall = { prompt: Math.ceil(carried.prompt_tokens / carried.requests), completion: Math.ceil(carried.completion_tokens / carried.requests), messages: this.messages.length };
    }
  }

  async run(): Promise<EngineResult> {
    await this.ctx.record({ role: 'system', content: this.ctx.prompt.system });
    await this.ctx.record({ role: 'user', content: this.ctx.prompt.user });
    for (;;) {
      const finished = await this.step();
      if (finished) {
        return { finished: true, ...finished, steps: this.steps, model: this.model.name, output_tail: null };
      }
    }
  }

  /** One model call and its tool calls; returns the finish arguments when the agent is done. */
  private async step(): Promise<FinishArgs | null> {
    const replyCap = this.checkLimits();
    const message = await this.query(replyCap);
    const calls = (message.tool_calls ?? []).filter((c) => c.type === 'function');
    if (calls.length === 0) {
      await this.say('You did not call a tool. Continue the task with the tools, and call finish when you are done.');
      return null;
    }
    let finish: FinishArgs | null = null;
    for (const call of calls) {
      const { content, finished } = await this.observe(call.function.name, call.function.arguments);
      this.messages.push({ role: 'tool', tool_call_id: call.id, content });
      await this.ctx.record({ role: 'tool', tool_call_id: call.id, name: call.function.name, content });
      finish ??= finished;
    }
    return finish;
  }

  /**
   * Checked before each model call; returns the cap on the reply's tokens.
   *
   * limits.max_tokens is a ceiling, never crossed (a cycle gives its task what is left of
   * supervisor.budget_tokens). Each request re-sends the whole conversation, so the next one
   * costs at least the last call's prompt and reply plus what was added since (about 4
   * characters a token); what remains after that is the most its reply may take. If that is
   * less than the last reply took, the call would likely cross the limit: stop instead.
   */
  private checkLimits(): number {
    const { limits } = this.ctx.settings.config;
    const { usage } = this.ctx;
    if (this.ctx.signal.aborted) throw this.ctx.signal.reason;
    if (this.steps >= limits.max_steps) {
      throw new MetaAgentError('budget', `step limit reached (${limits.max_steps} model calls, limits.max_steps) before the agent called finish`);
    }
    const spent = usage.prompt_tokens + usage.completion_tokens;
    const last = this.lastCall;
    const resent = last ? last.prompt + last.completion + Math.ceil(JSON.stringify(this.messages.slice(last.messages)).length / 4) : 0;
    const replyCap = limits.max_tokens - spent - resent;
    if (replyCap < Math.max(1, last?.completion ?? 0)) {
      const next = resent + (last?.completion ?? 0);
      throw new MetaAgentError('budget', `token limit reached (${spent} of ${limits.max_tokens} spent, and the next model call would take about ${next} more; limits.max_tokens) before the agent called finish`);
    }
    return replyCap;
  }

  private async query(replyCap: number) {
    this.steps++;
    const response = await this.model.complete(this.messages, this.ctx.signal, replyCap <= SENT_REPLY_CAP ? { maxCompletionTokens: replyCap } : {});
    this.addUsage(response);
    const choice = response.choices?.[0];
    if (!choice?.message) throw new MetaAgentError('llm', 'the model endpoint returned no message (empty choices)');
    const { message } = choice;
    // Keep only what the API accepts back; some servers add extra fields.
    this.messages.push({ role: 'assistant', content: message.content ?? null, ...(message.tool_calls?.length ? { tool_calls: message.tool_calls } : {}) });
    this.lastCall = { prompt: response.usage?.prompt_tokens ?? 0, completion: response.usage?.completion_tokens ?? 0, messages: this.messages.length };
    await this.ctx.record({ role: 'assistant', step: this.steps, content: message.content ?? null, tool_calls: message.tool_calls ?? [], usage: response.usage ?? null });
    const u = this.ctx.usage;
    const calls = (message.tool_calls ?? []).map((c) => (c.type === 'function' ? { tool: c.function.name, target: toolTarget(c.function.arguments) } : { tool: c.type, target: null }));
    this.ctx.log.info({ step: this.steps, max_steps: this.ctx.settings.config.limits.max_steps, tools: calls.map((c) => c.tool), targets: calls.map((c) => c.target), tokens: u.prompt_tokens + u.completion_tokens }, `step ${this.steps}`);
    return message;
  }

  private addUsage(response: ChatCompletion): void {
    const u = this.ctx.usage;
    u.requests++;
    u.prompt_tokens += response.usage?.prompt_tokens ?? 0;
    u.completion_tokens += response.usage?.completion_tokens ?? 0;
    u.cached_tokens += response.usage?.prompt_tokens_details?.cached_tokens ?? 0;
    const prices = this.ctx.settings.llm.prices;
    if (prices) {
      const cachedPrice = prices.cached_per_mtok ?? prices.prompt_per_mtok;
      u.cost_usd =
        ((u.prompt_tokens - u.cached_tokens) * prices.prompt_per_mtok + u.cached_tokens * cachedPrice + u.completion_tokens * prices.completion_per_mtok) / 1e6;
    }
  }

  private async say(content: string): Promise<void> {
    this.messages.push({ role: 'user', content });
    await this.ctx.record({ role: 'user', content });
  }

  /** Runs one tool call. Tool errors and bad arguments become the tool's result. */
  private async observe(name: string, rawArgs: string): Promise<{ content: string; finished: FinishArgs | null }> {
    let args: Record<string, unknown>;
    try {
      const parsed: unknown = rawArgs.trim() === '' ? {} : JSON.parse(rawArgs);
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not a JSON object');
      args = parsed as Record<string, unknown>;
    } catch (error) {
      return { content: `ERROR: the arguments of ${name} are not valid JSON (${(error as Error).message}); call the tool again with a JSON object`, finished: null };
    }
    try {
      if (name === 'finish') return this.finish(args);
      // Every tool result is redacted here, whatever the tool (file names, errors, check output).
      const output = this.ctx.redact(await this.runTool(name, args));
      return { content: cutOutput(output, this.ctx.settings.config.limits.tool_output_chars), finished: null };
    } catch (error) {
      if (error instanceof ToolError) return { content: `ERROR: ${this.ctx.redact(error.message)}`, finished: null };
      throw error;
    }
  }

  private async runTool(name: string, args: Record<string, unknown>): Promise<string> {
    switch (name) {
      case 'list_files':
        return tools.listFiles(this.ctx, args);
      case 'read_file':
        return tools.readFile(this.ctx, args);
      case 'search':
        return tools.search(this.ctx, args);
      case 'write_file':
        return tools.writeFile(this.ctx, args);
      case 'edit_file':
        return tools.editFile(this.ctx, args);
      case 'run_checks':
        return formatChecks(await this.ctx.runChecks());
      default:
        throw new ToolError(`unknown tool "${name}"; the tools are ${TOOL_DEFINITIONS.map((t) => (t.type === 'function' ? t.function.name : '')).join(', ')}`);
    }
  }

  private finish(args: Record<string, unknown>): { content: string; finished: FinishArgs } | never {
    const list = (v: unknown) => (Array.isArray(v) ? v.map(String) : typeof v === 'string' && v ? [v] : []);
    if (typeof args.summary !== 'string' || !args.summary.trim()) throw new ToolError('finish needs a non-empty "summary"');
    const level = RISK_LEVELS.includes(args.risk_level as RiskLevel) ? (args.risk_level as RiskLevel) : 'medium';
    return {
      content: 'finished',
      finished: { summary: args.summary.trim(), risks: list(args.risks), risk_level: level, next_actions: list(args.next_actions) },
    };
  }
}

function formatChecks(outcome: Awaited<ReturnType<EngineContext['runChecks']>>): string {
  const parts: string[] = [];
  for (const check of [outcome.tests, outcome.dry_run]) {
    if (!check) continue;
    parts.push(`$ ${check.command}\nexit code ${check.exit_code ?? 'none'}${check.timed_out ? ' (timed out)' : ''} - ${check.passed ? 'PASSED' : 'FAILED'} in ${check.duration_ms} ms\n${check.output_tail}`);
  }
  return parts.length ? parts.join('\n\n') : 'this project has no test or dry_run command configured';
}

/** The file (or pattern) a tool call is about, for the progress line; the model's text, bounded. */
function toolTarget(rawArguments: string): string | null {
  try {
    const args = JSON.parse(rawArguments) as Record<string, unknown>;
    const target = [args.path, args.pattern].find((v): v is string => typeof v === 'string');
    return target ? target.replace(/[\r\n\t]/g, ' ').slice(0, 120) : null;
  } catch {
    return null;
  }
}
