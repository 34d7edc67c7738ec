/**
 * What an external coding agent (the `command` engine) declares it needs from the machine:
 * the files of its private $HOME, the variables of its environment, its one API key, and
 * whether it reads AGENTS.md itself. Everything else of the service's home and environment
 * stays out of its sandbox. A preset (Codex, Aider, Claude Code) fills this in; without one
 * the `command:` section's fields do, and they add to a preset's.
 */
import type { CommandEngineConfig } from '../contract/config.ts';
import { MetaAgentError } from '../contract/errors.ts';

/** One file (or folder) of the agent's private home. */
export interface HomeFile {
  /** Where in the private home, relative to it, with "/" (".codex/config.toml"). */
  path: string;
  /** Written as is: a config the preset generates. */
  content?: string;
  /** Or copied from this path relative to the user's real home (skipped when missing); default: `path`. */
  copyFrom?: string;
}

export interface AgentNeeds {
  homeFiles: HomeFile[];
  /** Variables of the service's environment passed through, besides PATH, the locale and TZ. */
  envAllow: string[];
  /** Variables set for the agent; "{home}" (its private home) and "{worktree}" in a value are replaced. */
  env: Record<string, string>;
  /** The variable the agent reads its API key from; null: it needs none (a local model). */
  apiKeyEnv: string | null;
  /** The agent reads the repository's AGENTS.md on its own (Codex does): the prompt leaves it out. */
  readsAgentsMd: boolean;
}

const CONFIG_FILE = 'meta-agent.yaml';

/** The paths a command line or a declared variable may name: `{home}`, `{prompt_file}`, `{worktree}`, `{last_message_file}`. */
export interface Placeholders {
  /** The private HOME as the agent sees it. */
  home: string;
  promptFile?: string;
  worktree: string;
  lastMessageFile?: string;
}

/** `text` with the placeholders it names replaced (one rule for argv, declared variables and presets). */
export function fillPlaceholders(text: string, values: Placeholders): string {
  let out = text.replaceAll('{home}', values.home).replaceAll('{worktree}', values.worktree);
  if (values.promptFile !== undefined) out = out.replaceAll('{prompt_file}', values.promptFile);
  if (values.lastMessageFile !== undefined) out = out.replaceAll('{last_message_file}', values.lastMessageFile);
  return out;
}

/**
 * What the agent gets: a preset's needs (if any) plus the config's `command:` fields.
 * Without a preset and without `command.api_key_env` the key is the `llm:` section's
 * (`llm.api_key_env`), as the built-in engine finds it.
 */
export function agentNeeds(config: CommandEngineConfig, llmApiKeyEnv: string, preset: AgentNeeds | null = null): AgentNeeds {
  const base: AgentNeeds = preset ?? { homeFiles: [], envAllow: [], env: {}, apiKeyEnv: config.api_key_env ?? llmApiKeyEnv, readsAgentsMd: false };
  const homeFiles = [...base.homeFiles];
  for (const rel of config.home_files) homeFiles.push({ path: homeRelative(rel, 'command.home_files') });
  for (const file of homeFiles) homeRelative(file.path, 'command.home_files');
  return {
    homeFiles,
    envAllow: [...new Set([...base.envAllow, ...config.env_allow])],
    env: { ...base.env },
    apiKeyEnv: base.apiKeyEnv,
    readsAgentsMd: config.reads_agents_md ?? base.readsAgentsMd,
  };
}

/**
 * The API key's value: from `command.api_key_env` when set, else from the variable the agent
 * reads; the `llm:` key only when the agent reads it under the `llm:` name (never an OpenAI
 * key handed to another provider's variable).
 */
export function apiKeyValue(
  needs: AgentNeeds,
  config: Pick<CommandEngineConfig, 'api_key_env'>,
  env: Readonly<Record<string, string | undefined>>,
  llm: { apiKey?: string; apiKeyEnv: string },
): string | undefined {
  if (!needs.apiKeyEnv) return undefined;
  if (config.api_key_env) return env[config.api_key_env] || undefined;
  return env[needs.apiKeyEnv] || (needs.apiKeyEnv === llm.apiKeyEnv || needs.apiKeyEnv === 'OPENAI_API_KEY' ? llm.apiKey : undefined);
}

/** A path inside the home: relative, no "..", so a declared file can never name one outside it. */
function homeRelative(rel: string, field: string): string {
  const parts = rel
    .replace(/\\/g, '/')
    .split('/')
    .filter((p) => p && p !== '.');
  if (rel.startsWith('/') || /^[A-Za-z]:/.test(rel) || parts.length === 0 || parts.includes('..')) {
    throw new MetaAgentError('config', `"${rel}" must be a path inside the home folder (relative, no "..")`, { file: CONFIG_FILE, field });
  }
  return parts.join('/');
}
