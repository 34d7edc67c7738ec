/**
 * Engine presets: `command: {preset: codex | aider | claude}` instead of a hand-written `run`.
 * resolveCommand turns the config and `llm:` into what the command engine starts; a plain
 * `run` resolves too (no home files, the API key under its own name, output read as text).
 */
import stringArgv from 'string-argv';
import { MetaAgentError } from '../../contract/errors.ts';
import type { Config } from '../../contract/config.ts';
import type { LlmSettings } from '../../workspace/config.ts';
import { codexPreset } from './codex.ts';
import { aiderPreset } from './aider.ts';
import { claudePreset } from './claude.ts';
import type { PresetBuilder, PresetName, ResolvedCommand } from './types.ts';

export type { AgentOutput, AgentUsage, EngineNeeds, HomeFile, PresetName, ResolvedCommand } from './types.ts';
export { PRESET_NAMES } from './types.ts';
export { CODEX_VERSION_CHECKED } from './codex.ts';
export { addAgentUsage } from './usage.ts';
import { fillPlaceholders, type Placeholders } from '../agentNeeds.ts';
export { AIDER_VERSION_CHECKED } from './aider.ts';
export { CLAUDE_VERSION_CHECKED } from './claude.ts';

type CommandConfig = NonNullable<Config['command']>;

const PRESETS: Record<PresetName, PresetBuilder> = { codex: codexPreset, aider: aiderPreset, claude: claudePreset };

/** What the command engine starts for this config: a preset's, or the `run` command's. */
export function resolveCommand(config: CommandConfig, llm: LlmSettings): ResolvedCommand {
  if (config.preset) return PRESETS[config.preset]({ preset: config.preset, program: config.program }, llm);
  if (!config.run)
    throw new MetaAgentError('config', 'the command engine needs "command.preset" (codex, aider or claude) or "command.run"', {
      file: 'meta-agent.yaml',
      field: 'command',
    });
  const argv = Array.isArray(config.run) ? config.run : stringArgv(config.run);
  if (argv.length === 0) throw new MetaAgentError('config', 'command.run is empty', { file: 'meta-agent.yaml', field: 'command.run' });
  return {
    preset: null,
    argv: argv as [string, ...string[]],
    needs: { homeFiles: [], envAllow: [], env: {}, apiKeyEnv: llm.apiKeyEnv, readsAgentsMd: false },
    parseOutput: async () => ({ lastMessage: null, usage: null, problems: [] }),
  };
}

/** argv and needs.env values with the placeholders replaced (home files are written as they are). */
export function fillPresetPlaceholders(resolved: ResolvedCommand, values: Placeholders): { argv: [string, ...string[]]; env: Record<string, string> } {
  const fill = (text: string) => fillPlaceholders(text, values);
  return {
    argv: resolved.argv.map(fill) as [string, ...string[]],
    env: Object.fromEntries(Object.entries(resolved.needs.env).map(([key, value]) => [key, fill(value)])),
  };
}
