/** The agent's own token counts (its events) added to the run's usage. */
import type { Usage } from '../../contract/report.ts';
import type { LlmSettings } from '../../workspace/config.ts';
import { costUsd } from '../budget.ts';
import type { AgentUsage } from './types.ts';

/** Adds the agent's own token counts to the run's usage (priced when llm.prices is set). */
export function addAgentUsage(usage: Usage, reported: AgentUsage, llm: LlmSettings): void {
  usage.requests += reported.turns;
  usage.prompt_tokens += reported.prompt_tokens;
  usage.cached_tokens += reported.cached_tokens;
  usage.completion_tokens += reported.completion_tokens;
  if (llm.prices) usage.cost_usd = costUsd(usage, llm.prices);
  else if (reported.cost_usd !== null) usage.cost_usd = (usage.cost_usd ?? 0) + reported.cost_usd;
}
