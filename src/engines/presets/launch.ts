/**
 * The steps around a preset's process that the command engine takes: the private HOME is
 * made and filled, the agent's environment is built, and what it reported is added to the
 * run's usage.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Usage } from '../../contract/report.ts';
import type { LlmSettings } from '../../workspace/config.ts';
import { costUsd } from '../budget.ts';
import type { AgentUsage, ResolvedCommand } from './types.ts';

/** Creates the private HOME with the folders and files the agent declares (never copies the user's). */
export async function makePrivateHome(resolved: ResolvedCommand, home: string): Promise<void> {
  await fs.mkdir(home, { recursive: true, mode: 0o700 });
  for (const dir of resolved.needs.homeDirs) await fs.mkdir(path.join(home, dir), { recursive: true });
  for (const [file, content] of Object.entries(resolved.needs.homeFiles)) {
    await fs.mkdir(path.dirname(path.join(home, file)), { recursive: true });
    await fs.writeFile(path.join(home, file), content, { mode: 0o600 });
  }
}

const BASE_VARS = ['PATH', 'PATHEXT', 'SYSTEMROOT', 'SystemRoot', 'WINDIR', 'COMSPEC', 'LANG', 'LC_ALL', 'LC_CTYPE', 'TZ'];

/**
 * The agent's whole environment: PATH and locale, what the preset sets, the variables it
 * declares, and its one API key (renamed as it expects). Nothing else of the service's.
 */
export function agentEnv(resolved: ResolvedCommand, serviceEnv: Readonly<Record<string, string | undefined>>, filledEnv: Record<string, string>, home: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of [...BASE_VARS, ...resolved.needs.envAllow]) {
    const value = serviceEnv[name];
    if (value !== undefined) env[name] = value;
  }
  const key = resolved.needs.apiKey;
  const keyValue = key ? serviceEnv[key.from] : undefined;
  if (key && keyValue !== undefined) env[key.as] = keyValue;
  return { ...env, HOME: home, USERPROFILE: home, ...filledEnv };
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
