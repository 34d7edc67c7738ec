/**
 * What an engine preset declares: how to start a known coding-agent CLI, what it needs in its
 * private HOME and environment, and how to read its output. The command engine runs it (in its
 * sandbox, with its env allow-list); a preset only describes.
 *
 * Placeholders, replaced by the command engine in argv and needs.env values:
 * `{home}` the private HOME the agent sees, `{prompt_file}` the prompt file, `{worktree}` the
 * worktree.
 */
import type { LlmSettings } from '../../workspace/config.ts';
import { PRESET_NAMES } from '../../contract/config.ts';

export { PRESET_NAMES };
export type PresetName = (typeof PRESET_NAMES)[number];

/** One file of the agent's private HOME (the same shape as the command engine's AgentNeeds). */
export interface HomeFile {
  /** Where in the private HOME, relative to it, with "/" (".codex/config.toml"). */
  path: string;
  /** Written as is: a config the preset generates. */
  content?: string;
  /** Or copied from this path relative to the user's real home; presets never copy. */
  copyFrom?: string;
}

export interface EngineNeeds {
  /** Files of the private HOME, written before the run (their folders are created). */
  homeFiles: HomeFile[];
  /** Names of variables passed through from the service's environment (besides PATH and locale). */
  envAllow: string[];
  /** Variables set for the agent; `{home}` and `{worktree}` in a value are replaced. */
  env: Record<string, string>;
  /**
   * The variable the agent reads its one API key from. The key is the service's variable of
   * that name, or the `llm:` key when the name is llm.api_key_env (or OPENAI_API_KEY): never
   * an OpenAI key handed to another provider's variable. Presets keep it out of the agent's shell.
   */
  apiKeyEnv: string | null;
  /** The agent reads AGENTS.md by itself, so the prompt leaves it out. */
  readsAgentsMd: boolean;
}

export interface AgentUsage {
  /** Model turns the agent reported (Codex: one per `turn.completed`; not HTTP requests). */
  turns: number;
  prompt_tokens: number;
  cached_tokens: number;
  completion_tokens: number;
  /** USD as the agent reported it (Claude Code), else null. */
  cost_usd: number | null;
}

export interface AgentOutput {
  /** The agent's last message (its own words), when it gives one. */
  lastMessage: string | null;
  /** Token counts from the agent's own events, when it reports them. */
  usage: AgentUsage | null;
  /** Problems the agent reported in its events (failed edits, failed turns), for the report. */
  problems: string[];
}

export interface ResolvedCommand {
  /** null: a plain `run` command. */
  preset: PresetName | null;
  /** Program and arguments; `{home}`, `{prompt_file}` and `{worktree}` are replaced. */
  argv: [string, ...string[]];
  needs: EngineNeeds;
  /**
   * Reads what the agent printed (stdout) and left in its private HOME (`home`: the folder's
   * path as the service sees it).
   */
  parseOutput(output: { stdout: string; home: string }): Promise<AgentOutput>;
}

/** The part of a preset a config chooses: `command: {preset, program}`. */
export interface PresetOptions {
  /** null: a plain `run` command. */
  preset: PresetName | null;
  /** The executable, when it is not the preset's program on PATH. */
  program?: string | undefined;
}

export type PresetBuilder = (options: PresetOptions, llm: LlmSettings) => ResolvedCommand;
