/**
 * The agent loop over Chat Completions with tool calls, in the shape of mini-swe-agent:
 * run -> step -> query -> observe.
 *
 * Recoverable problems (a bad tool call, a refused path, a reply without tools) go back to
 * the model as messages. Terminating ones (finish, limits, timeout, auth) end the loop.
 */
import type { ChatCompletion, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { MetaAgentError } from '../contract/errors.ts';
import { RISK_LEVELS, type Finding, type RiskLevel } from '../contract/report.ts';
import { costUsd, nextReplyCap, weightedTokens } from './budget.ts';
import type { ChatModel } from './chatModel.ts';
import { ConversationWindow, checkPromptCount, isContextOverflow, type Elision } from './history.ts';
import { cutOutput, runTool, toolDefinitions, toolTarget } from './toolbox.ts';
import { ToolError } from './tools.ts';
import { formatFailure, MAX_FORMAT_ERRORS, readReply, TEXT_CALL_NOTE, textProtocolPrompt, type ParsedToolCall, type ReplyReading } from './textToolCalls.ts';
import type { EngineContext, EngineResult } from './types.ts';
import { checkFindings } from './verify.ts';
import { wrapUpWarning } from './wrapUp.ts';

interface FinishArgs {
  summary: string;
  risks: string[];
  risk_level: RiskLevel;
  next_actions: string[];
  findings: Finding[];
}

/**
 * The reply cap is sent only when it is this small or smaller: every chat model can write
 * a reply this long, while a cap above a model's own output limit is refused (400) by some
 * servers. A larger cap is left to the model's own limit.
 */
const SENT_REPLY_CAP = 4096;

export class AgentLoop {
  private readonly messages: ChatCompletionMessageParam[];
  /** Elides old tool results so each request fits llm.context_window. */
  private readonly context: ConversationWindow;
  private steps = 0;
  private warned = false;
  /** Tokens of the last model call, how many messages the conversation had after it, and the context's version then. */
  private lastCall: { prompt: number; cached: number; completion: number; messages: number; version: number } | null = null;
  /** Replies in a row without a usable tool call. */
  private formatErrors = 0;
  private readonly system: string;

  constructor(
    private readonly ctx: EngineContext,
    private readonly model: ChatModel,
  ) {
    // Text mode: the protocol goes after the system prompt, the same bytes every call.
    this.system =
      ctx.settings.llm.toolMode === 'text'
        ? `${ctx.prompt.system}\n\n${textProtocolPrompt(toolDefinitions({ shell: ctx.shell ?? 'off' }))}`
        : ctx.prompt.system;
    this.messages = [
      { role: 'system', content: this.system },
      { role: 'user', content: ctx.prompt.user },
    ];
    this.context = new ConversationWindow(this.messages, ctx.settings.llm.contextWindow);
    // Usage carried from an attempt that died: its average step is the best guess for the
    // first call, so the limit check does not let that call cross the ceiling.
    const carried = ctx.usage;
    if (carried.requests > 0) {
      const perCall = (n: number) => Math.ceil(n / carried.requests);
      this.lastCall = {
        prompt: perCall(carried.prompt_tokens),
        cached: 0,
        completion: perCall(carried.completion_tokens),
        messages: this.messages.length,
        version: 0,
      };
    }
  }

  async run(): Promise<EngineResult> {
    await this.ctx.record({ role: 'system', content: this.system });
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
    const reply = await this.query(replyCap);
    const mode = this.ctx.settings.llm.toolMode;
    if (reply.kind === 'format_error') {
      this.countFormatError(reply.message);
      for (const call of reply.answer) await this.answer(call, `ERROR: ${reply.message}`);
      if (!reply.answer.length) await this.say(reply.message);
      return null;
    }
    let finish: FinishArgs | null = null;
    let usable = false;
    const written: string[] = [];
    let commands = 0;
    const { max_steps } = this.ctx.settings.config.limits;
    for (const call of reply.calls) {
      // run_command costs a step per call: a second one in the same reply pays for itself.
      const extraStep = call.name === 'run_command' && commands++ > 0;
      if (extraStep) this.steps++;
      const { content, finished, malformed } =
        extraStep && this.steps > max_steps
          ? {
              content: `ERROR: not run: each run_command costs one step, and the step limit (${max_steps}, limits.max_steps) is reached`,
              finished: null,
              malformed: false,
            }
          : await this.observe(call.name, call.arguments);
      usable ||= !malformed;
      if (call.id) await this.answer(call, content);
      else written.push(`Result of ${call.name}:\n${content}`);
      finish ??= finished;
    }
    // Calls written as text get their results in a user message (there is no call id to answer).
    if (written.length) await this.say([...(mode === 'native' ? [TEXT_CALL_NOTE] : []), ...written].join('\n\n'), true);
    if (usable) this.formatErrors = 0;
    else this.countFormatError('the arguments were not valid JSON');
    return finish;
  }

  /** mini-swe-agent's rule: a few replies in a row without a usable tool call end the run. */
  private countFormatError(problem: string): void {
    this.formatErrors++;
    this.ctx.log.warn(
      { step: this.steps, format_errors: this.formatErrors },
      `format error ${this.formatErrors} of ${MAX_FORMAT_ERRORS}: ${problem.split('\n')[0]}`,
    );
    if (this.formatErrors >= MAX_FORMAT_ERRORS) throw formatFailure(problem, this.ctx.settings.llm.toolMode);
  }

  private async answer(call: ParsedToolCall, content: string): Promise<void> {
    this.messages.push({ role: 'tool', tool_call_id: call.id!, content });
    await this.ctx.record({ role: 'tool', tool_call_id: call.id, name: call.name, content });
  }

  /**
   * Checked before each model call; returns the cap on the reply's tokens.
   *
   * limits.max_tokens is a ceiling, never crossed (a cycle gives its task what is left of
   * supervisor.budget_tokens). Each request re-sends the whole conversation, so the next one
   * costs at least the last call's prompt and reply plus what was added since (about 4
   * characters a token); what remains after that is the most its reply may take. If that is
   * less than the last reply took, the call would likely cross the limit: stop instead
   * (budget.ts; the same for limits.max_cost_usd). What the last call had cached is likely
   * cached again, unless old messages were elided since.
   */
  private checkLimits(): number {
    const { limits } = this.ctx.settings.config;
    if (this.ctx.signal.aborted) throw this.ctx.signal.reason;
    if (this.steps >= limits.max_steps) {
      throw new MetaAgentError('budget', `step limit reached (${limits.max_steps} model calls, limits.max_steps) before the agent called finish`);
    }
    const last = this.lastCall;
    const prompt = last ? last.prompt + last.completion + Math.ceil(JSON.stringify(this.messages.slice(last.messages)).length / 4) : 0;
    const cached = last && last.version === this.context.version ? last.cached : 0;
    return nextReplyCap(limits, this.ctx.settings.llm, this.ctx.usage, { prompt, cached, lastReply: last?.completion ?? 0 });
  }

  /** Once, when few steps, tokens or little time are left: "wrap up and call finish" (wrapUp.ts). */
  private async warnBeforeTheEnd(): Promise<void> {
    if (this.warned) return;
    const { limits } = this.ctx.settings.config;
    const u = this.ctx.usage;
    // Tokens as limits.max_tokens counts them: cached prompt tokens by their price ratio (budget.ts).
    const prices = this.ctx.settings.llm.prices;
    const last = this.lastCall;
    const lastCallTokens = last ? weightedTokens({ prompt_tokens: last.prompt, cached_tokens: last.cached, completion_tokens: last.completion }, prices) : 0;
    const warning = wrapUpWarning({
      steps: this.steps,
      maxSteps: limits.max_steps,
      spentTokens: weightedTokens(u, prices),
      maxTokens: limits.max_tokens,
      lastCallTokens,
      deadline: this.ctx.deadline,
      timeoutMs: limits.task_timeout_s * 1000,
      now: performance.now(),
    });
    if (!warning) return;
    this.warned = true;
    await this.say(warning);
  }

  /** One model call; returns the reply as calls to run or a format error (textToolCalls.ts). */
  private async query(replyCap: number): Promise<ReplyReading> {
    this.steps++;
    await this.noteElision(this.context.fit());
    const response = await this.completeWithin(replyCap <= SENT_REPLY_CAP ? { maxCompletionTokens: replyCap } : {});
    const choice = response.choices?.[0];
    if (!choice?.message) throw new MetaAgentError('llm', 'the model endpoint returned no message (empty choices)');
    const { message } = choice;
    // Keep only what the API accepts back; some servers add extra fields.
    this.messages.push({ role: 'assistant', content: message.content ?? null, ...(message.tool_calls?.length ? { tool_calls: message.tool_calls } : {}) });
    const usage = response.usage;
    this.lastCall = {
      prompt: usage?.prompt_tokens ?? 0,
      cached: usage?.prompt_tokens_details?.cached_tokens ?? 0,
      completion: usage?.completion_tokens ?? 0,
      messages: this.messages.length,
      version: this.context.version,
    };
    await this.ctx.record({
      role: 'assistant',
      step: this.steps,
      content: message.content ?? null,
      tool_calls: message.tool_calls ?? [],
      finish_reason: choice.finish_reason ?? null,
      usage: response.usage ?? null,
    });
    const cutAt = response.usage?.completion_tokens ?? (replyCap <= SENT_REPLY_CAP ? replyCap : null);
    const reply = readReply(message, choice.finish_reason, cutAt, this.ctx.settings.llm.toolMode);
    const u = this.ctx.usage;
    const calls = reply.kind === 'calls' ? reply.calls.map((c) => ({ tool: c.name, target: toolTarget(c.arguments) })) : [];
    this.ctx.log.info(
      {
        step: this.steps,
        max_steps: this.ctx.settings.config.limits.max_steps,
        tools: calls.map((c) => c.tool),
        targets: calls.map((c) => c.target),
        tokens: u.prompt_tokens + u.completion_tokens,
      },
      `step ${this.steps}`,
    );
    return reply;
  }

  /**
   * The model call; a "context length exceeded" answer elides what the model has seen and
   * sends the request again. A server that counted far fewer prompt tokens than were sent
   * (it cut the prompt) stops the run.
   */
  private async completeWithin(options: { maxCompletionTokens?: number }): Promise<ChatCompletion> {
    for (;;) {
      const sent = this.context.estimate();
      try {
        const response = await this.model.complete(this.messages, this.ctx.signal, options);
        this.addUsage(response);
        checkPromptCount(response.usage?.prompt_tokens, sent, this.context.contextWindow);
        return response;
      } catch (error) {
        const elision = isContextOverflow(error) ? this.context.afterOverflow(error) : null;
        if (!elision) throw error;
        await this.noteElision(elision);
      }
    }
  }

  private async noteElision(elision: Elision | null): Promise<void> {
    if (!elision) return;
    const { elided, tokensBefore, tokensAfter, reason } = elision;
    const why = reason === 'overflow' ? 'the endpoint said the request is longer than the context window' : 'the conversation passed half the context window';
    this.ctx.log.info(
      { step: this.steps, elided, tokens_before: tokensBefore, tokens_after: tokensAfter, context_window: this.context.contextWindow, reason },
      `elided ${elided} old tool result(s): ${why}`,
    );
    await this.ctx.record({ role: 'context', step: this.steps, event: 'elided', ...elision, context_window: this.context.contextWindow });
  }

  private addUsage(response: ChatCompletion): void {
    const u = this.ctx.usage;
    u.requests++;
    u.prompt_tokens += response.usage?.prompt_tokens ?? 0;
    u.completion_tokens += response.usage?.completion_tokens ?? 0;
    u.cached_tokens += response.usage?.prompt_tokens_details?.cached_tokens ?? 0;
    const prices = this.ctx.settings.llm.prices;
    if (prices) u.cost_usd = costUsd(u, prices);
  }

  /** A user message; `observation`: it carries tool results (calls written as text), which elision may stub. */
  private async say(content: string, observation = false): Promise<void> {
    const message: ChatCompletionMessageParam = { role: 'user', content };
    this.messages.push(message);
    if (observation) this.context.markObservation(message);
    await this.ctx.record({ role: 'user', content });
  }

  /** Runs one tool call. Tool errors and bad arguments become the tool's result. */
  private async observe(name: string, rawArgs: string): Promise<{ content: string; finished: FinishArgs | null; malformed?: boolean }> {
    let args: Record<string, unknown>;
    try {
      const parsed: unknown = rawArgs.trim() === '' ? {} : JSON.parse(rawArgs);
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not a JSON object');
      args = parsed as Record<string, unknown>;
    } catch (error) {
      return {
        content: `ERROR: the arguments of ${name} are not valid JSON (${(error as Error).message}); call the tool again with a JSON object`,
        finished: null,
        malformed: true,
      };
    }
    try {
      if (name === 'finish') return await this.finish(args);
      // Every tool result is redacted here, whatever the tool (file names, errors, check output).
      const output = this.ctx.redact(await runTool(this.ctx, name, args));
      return { content: cutOutput(output, this.ctx.settings.config.limits.tool_output_chars), finished: null };
    } catch (error) {
      if (error instanceof ToolError) return { content: `ERROR: ${this.ctx.redact(error.message)}`, finished: null };
      throw error;
    }
  }

  /** Accepted unless the verifier refuses it (a check that passed on the base fails now): then the model gets its turn back. */
  private async finish(args: Record<string, unknown>): Promise<{ content: string; finished: FinishArgs | null }> {
    const list = (v: unknown) => (Array.isArray(v) ? v.map(String) : typeof v === 'string' && v ? [v] : []);
    if (typeof args.summary !== 'string' || !args.summary.trim()) throw new ToolError('finish needs a non-empty "summary"');
    const level = RISK_LEVELS.includes(args.risk_level as RiskLevel) ? (args.risk_level as RiskLevel) : 'medium';
    const refusal = await this.ctx.verifier?.beforeFinish();
    if (refusal) return { content: cutOutput(this.ctx.redact(refusal), this.ctx.settings.config.limits.tool_output_chars), finished: null };
    const findings = await checkFindings(this.ctx, args.findings);
    return {
      content: 'finished',
      finished: { summary: args.summary.trim(), risks: list(args.risks), risk_level: level, next_actions: list(args.next_actions), findings },
    };
  }
}
