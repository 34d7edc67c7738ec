/**
 * Aider (`aider --message-file`), argv checked against the options reference of aider-chat
 * 0.86.2 (aider.chat/docs/config/options.html); not run by the tests (only the argv is).
 *
 * The key is read from OPENAI_API_KEY (the `llm:` key when llm.api_key_env names another variable).
 * Aider edits the worktree and exits; it must not commit (the run collects the diff), write
 * its history files or `.gitignore` into the worktree, run shell commands it suggests, fetch
 * URLs it sees in the prompt, or read a `.env`. It prints no machine-readable events, so usage
 * and the last message are unknown (the report says so rather than guessing from its text).
 */
import type { LlmSettings } from '../../workspace/config.ts';
import type { PresetOptions, ResolvedCommand } from './types.ts';

export const AIDER_VERSION_CHECKED = '0.86.2';

export function aiderPreset(options: PresetOptions, llm: LlmSettings): ResolvedCommand {
  // litellm's "openai/" prefix: any OpenAI-compatible Chat Completions server at --openai-api-base.
  const model = llm.baseURL ? `openai/${llm.model}` : llm.model;
  return {
    preset: 'aider',
    argv: [
      options.program ?? 'aider',
      '--message-file',
      '{prompt_file}',
      '--model',
      model,
      ...(llm.baseURL ? ['--openai-api-base', llm.baseURL] : []),
      '--yes-always',
      '--no-auto-commits',
      '--no-dirty-commits',
      '--no-gitignore',
      '--no-suggest-shell-commands',
      '--no-detect-urls',
      '--no-check-update',
      '--analytics-disable',
      '--no-show-model-warnings',
      '--no-pretty',
      '--no-fancy-input',
      '--no-restore-chat-history',
      '--env-file',
      '{home}/aider.env',
      '--chat-history-file',
      '{home}/aider.chat.history.md',
      '--input-history-file',
      '{home}/aider.input.history',
    ],
    needs: {
      homeFiles: [{ path: 'aider.env', content: '' }],
      envAllow: [],
      env: {},
      apiKeyEnv: 'OPENAI_API_KEY',
      readsAgentsMd: false,
    },
    parseOutput: async () => ({ lastMessage: null, usage: null, problems: [] }),
  };
}
