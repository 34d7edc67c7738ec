/**
 * The steps around a preset's process that the command engine takes: the private HOME is
 * made and filled, the agent's environment is built, and what it reported is added to the
 * run's usage.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { MetaAgentError } from '../../contract/errors.ts';
import type { Usage } from '../../contract/report.ts';
import type { LlmSettings } from '../../workspace/config.ts';
import { costUsd } from '../budget.ts';
import type { AgentUsage, ResolvedCommand } from './types.ts';

/** Creates the private HOME with the files the agent declares (never copies the user's). */
export async function makePrivateHome(resolved: ResolvedCommand, home: string): Promise<void> {
  await fs.mkdir(home, { recursive: true, mode: 0o700 });
  for (const file of resolved.needs.homeFiles) {
    const target = path.join(home, ...file.path.split('/'));
    await fs.mkdir(path.dirname(target), { recursive: true });
    if (file.content === undefined) throw new MetaAgentError('config', `${file.path}: a preset's home file has no content (presets never copy from your home)`);
    await fs.writeFile(target, file.content, { mode: 0o600 });
  }
}

const BASE_VARS = ['PATH', 'PATHEXT', 'SYSTEMROOT', 'SystemRoot', 'WINDIR', 'COMSPEC', 'LANG', 'LC_ALL', 'LC_CTYPE', 'TZ'];

/**
 * The agent's whole environment: PATH and locale, what the preset sets, the variables it
 * declares, and its one API key. Nothing else of the service's.
 */
export function agentEnv(resolved: ResolvedCommand, serviceEnv: Readonly<Record<string, string | undefined>>, filledEnv: Record<string, string>, home: string, llm: Pick<LlmSettings, 'apiKeyEnv'>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of [...BASE_VARS, ...resolved.needs.envAllow]) {
    const value = serviceEnv[name];
    if (value !== undefined) env[name] = value;
  }
  const name = resolved.needs.apiKeyEnv;
  const key = name ? serviceEnv[name] || (name === llm.apiKeyEnv || name === 'OPENAI_API_KEY' ? serviceEnv[llm.apiKeyEnv] : undefined) : undefined;
  return { ...env, HOME: home, USERPROFILE: home, ...filledEnv, ...(name && key ? { [name]: key } : {}) };
}

/** Adds the agent's own token counts to the run's usage (priced when llm.prices is set). */
export function addAgentUsage(usage: Usage, reported: AgentUsage, llm: LlmSettings): void {
  usage.requests += reported.turns;
  usage.prompt_tokens += reported.prompt_tokens;
  usage.cached_tokens += reported.cached_tokens;
  usage.completion_tokens += reported.completion_tokens;
  if (llm.prices) usage.cost_usd = costUsd(usage, llm.prices);
  else if (reported.cost_usd !== null) usage.cost_usd = (usage.cost_usd ?? 0) + reported.cost_usd;
}
