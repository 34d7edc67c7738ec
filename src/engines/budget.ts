/**
 * The budgets of one run: what the calls so far cost (in weighted tokens and in USD), and how
 * long the next reply may be so that neither `limits.max_tokens` nor `limits.max_cost_usd` is
 * crossed.
 *
 * Tokens are weighted by what they cost: a prompt token the provider serves from its cache is
 * billed at a fraction of an uncached one (OpenAI's gpt-4.1 family 25%, newer models 10%,
 * Anthropic 10%), so counting it in full ends a normal run halfway.
 */
import { MetaAgentError } from '../contract/errors.ts';
import type { Usage } from '../contract/report.ts';
import type { Config } from '../contract/config.ts';
import type { LlmSettings } from '../workspace/config.ts';

type Prices = LlmSettings['prices'];

/**
 * Weight of a cached prompt token when llm.prices does not give both prices: the ratio of the
 * default model (gpt-4.1-mini: $0.10 cached / $0.40 uncached per million).
 */
export const DEFAULT_CACHED_WEIGHT = 0.25;

export type TokenCounts = Pick<Usage, 'prompt_tokens' | 'cached_tokens' | 'completion_tokens'>;

/** What a cached prompt token counts for, relative to an uncached one. */
export function cachedWeight(prices: Prices): number {
  if (!prices || prices.cached_per_mtok === undefined || prices.prompt_per_mtok <= 0) return DEFAULT_CACHED_WEIGHT;
  return Math.min(1, prices.cached_per_mtok / prices.prompt_per_mtok);
}

/** Uncached prompt + completion tokens, cached prompt tokens at their weight. */
export function weightedTokens(u: TokenCounts, prices: Prices): number {
  const cached = Math.min(u.cached_tokens, u.prompt_tokens);
  return u.prompt_tokens - cached + cached * cachedWeight(prices) + u.completion_tokens;
}

/** USD of these tokens (a cached token at the full prompt price when no cached price is given). */
export function costUsd(u: TokenCounts, prices: NonNullable<Prices>): number {
  const cached = Math.min(u.cached_tokens, u.prompt_tokens);
  const cachedPrice = prices.cached_per_mtok ?? prices.prompt_per_mtok;
  return ((u.prompt_tokens - cached) * prices.prompt_per_mtok + cached * cachedPrice + u.completion_tokens * prices.completion_per_mtok) / 1e6;
}

/** The next call as far as it can be known before it is made. */
export interface NextCall {
  /** Prompt tokens it will send (0 when unknown: the first call). */
  prompt: number;
  /** Of those, how many the provider will likely serve from its cache. */
  cached: number;
  /** Tokens the last reply took: a reply with less room than that is likely cut. */
  lastReply: number;
}

/**
 * Checked before each model call: the cap on the reply's tokens, or a `budget` error when the
 * call would likely cross a limit (what remains after its prompt is less than the last reply).
 */
export function nextReplyCap(limits: Config['limits'], llm: LlmSettings, usage: Usage, next: NextCall): number {
  const { prices } = llm;
  const weight = cachedWeight(prices);
  const minReply = Math.max(1, next.lastReply);
  const spent = weightedTokens(usage, prices);
  const prompt = weightedTokens({ prompt_tokens: next.prompt, cached_tokens: next.cached, completion_tokens: 0 }, prices);
  let cap = limits.max_tokens - spent - prompt;
  if (cap < minReply) {
    const cachedNote = usage.cached_tokens > 0 ? `, cached prompt tokens counted at ${weight}` : '';
    throw new MetaAgentError(
      'budget',
      `token limit reached (${Math.round(spent)} of ${limits.max_tokens} spent${cachedNote}, and the next model call would take about ${Math.round(prompt + next.lastReply)} more; limits.max_tokens) before the agent called finish`,
    );
  }
  if (limits.max_cost_usd !== undefined && prices) {
    const spentUsd = costUsd(usage, prices);
    const promptUsd = costUsd({ prompt_tokens: next.prompt, cached_tokens: next.cached, completion_tokens: 0 }, prices);
    const perReplyToken = prices.completion_per_mtok / 1e6;
    const left = limits.max_cost_usd - spentUsd - promptUsd;
    const costCap = perReplyToken > 0 ? Math.floor(left / perReplyToken) : left >= 0 ? Infinity : -1;
    if (costCap < minReply) {
      throw new MetaAgentError(
        'budget',
        `cost limit reached ($${spentUsd.toFixed(4)} of $${limits.max_cost_usd} spent, and the next model call would cost about $${(promptUsd + next.lastReply * perReplyToken).toFixed(4)} more; limits.max_cost_usd) before the agent called finish`,
      );
    }
    cap = Math.min(cap, costCap);
  }
  return Math.floor(cap);
}
