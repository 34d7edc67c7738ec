/**
 * The agent loop over Chat Completions with tool calls, in the shape of mini-swe-agent:
 * run -> step -> query -> observe.
 *
 * Recoverable problems (a bad tool call, a refused path, a reply without tools) go back to
 * the model as messages. Terminating ones (finish, limits, timeout, auth) end the loop.
 */
import type { ChatCompletion, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { MetaAgentError } from '../contract/errors.ts';
import { RISK_LEVELS, type RiskLevel } from '../contract/report.ts';
import type { ChatModel } from './chatModel.ts';
import { cutOutput, runTool, toolTarget } from './toolbox.ts';
import { ToolError } from './tools.ts';
import type { EngineContext, EngineResult } from './types.ts';
import { wrapUpWarning } from './wrapUp.ts';

interface FinishArgs {
  summary: string;
  risks: string[];
  risk_level: RiskLevel;
  next_actions: string[];
}

/**
 * The reply cap is sent only when it is this small or smaller: every chat model can write
 * a reply this long, while a cap above a model's own output limit is refused (400) by some
 * servers. A larger cap is left to the model's own limit.
 */
const SENT_REPLY_CAP = 4096;

export class AgentLoop {
  private readonly messages: ChatCompletionMessageParam[];
  private steps = 0;
  private warned = false;
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
    await this.warnBeforeTheEnd();
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

  /** Once, when few steps, tokens or little time are left: "wrap up and call finish" (wrapUp.ts). */
  private async warnBeforeTheEnd(): Promise<void> {
    if (this.warned) return;
    const { limits } = this.ctx.settings.config;
    const u = this.ctx.usage;
    const warning = wrapUpWarning({ steps: this.steps, maxSteps: limits.max_steps, spentTokens: u.prompt_tokens + u.completion_tokens, maxTokens: limits.max_tokens, lastCallTokens: (this.lastCall?.prompt ?? 0) + (this.lastCall?.completion ?? 0), deadline: this.ctx.deadline, timeoutMs: limits.task_timeout_s * 1000, now: Date.now() });
    if (!warning) return;
    this.warned = true;
    await this.say(warning);
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
      const output = this.ctx.redact(await runTool(this.ctx, name, args));
      return { content: cutOutput(output, this.ctx.settings.config.limits.tool_output_chars), finished: null };
    } catch (error) {
      if (error instanceof ToolError) return { content: `ERROR: ${this.ctx.redact(error.message)}`, finished: null };
      throw error;
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

