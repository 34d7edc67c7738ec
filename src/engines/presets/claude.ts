/**
 * Claude Code (`claude -p`), argv checked against `claude --help` of @anthropic-ai/claude-code
 * 2.1.328; the JSON result's fields from its documentation (code.claude.com/docs). Not run by
 * the tests against a model (only the argv and the parsing of a result are).
 *
 * `llm.base_url` must be an Anthropic Messages endpoint here and `llm.model` a Claude model;
 * the key is read from ANTHROPIC_API_KEY (set llm.api_key_env: ANTHROPIC_API_KEY) and is scrubbed from the
 * environment of the commands it runs (CLAUDE_CODE_SUBPROCESS_ENV_SCRUB). Only the private
 * HOME's settings are loaded: a repository's `.claude/` settings, hooks and MCP servers are not.
 */
import type { LlmSettings } from '../../workspace/config.ts';
import type { AgentOutput, PresetOptions, ResolvedCommand } from './types.ts';

export const CLAUDE_VERSION_CHECKED = '2.1.328';

export function claudePreset(options: PresetOptions, llm: LlmSettings): ResolvedCommand {
  return {
    preset: 'claude',
    argv: [
      options.program ?? 'claude',
      '-p',
      '--output-format',
      'json',
      '--model',
      llm.model,
      '--permission-mode',
      'acceptEdits',
      '--allowedTools',
      'Bash,Read,Edit,Write,Glob,Grep',
      '--setting-sources',
      'user',
      '--strict-mcp-config',
      '--no-session-persistence',
    ],
    needs: {
      homeFiles: [{ path: '.claude/.keep', content: '' }],
      envAllow: [],
      env: {
        CLAUDE_CONFIG_DIR: '{home}/.claude',
        CLAUDE_CODE_SUBPROCESS_ENV_SCRUB: '1',
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
        DISABLE_AUTOUPDATER: '1',
        ...(llm.baseURL ? { ANTHROPIC_BASE_URL: llm.baseURL } : {}),
      },
      apiKeyEnv: 'ANTHROPIC_API_KEY',
      readsAgentsMd: false,
    },
    parseOutput: async ({ stdout }) => parseClaudeResult(stdout),
  };
}

/** The one JSON object `claude -p --output-format json` prints (type "result"). */
export function parseClaudeResult(stdout: string): AgentOutput {
  const line = stdout
    .split(/\r?\n/)
    .reverse()
    .find((l) => l.trim().startsWith('{'));
  // biome-ignore lint/suspicious/noExplicitAny: the CLI's JSON result, read field by field with ?. and typeof checks
  let result: any = null;
  try {
    result = line ? JSON.parse(line) : null;
  } catch {
    result = null;
  }
  if (result?.type !== 'result') return { lastMessage: null, usage: null, problems: [] };
  const u = result.usage ?? {};
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.floor(v) : 0);
  const cacheRead = n(u.cache_read_input_tokens);
  return {
    lastMessage: typeof result.result === 'string' && result.result.trim() ? result.result.trim() : null,
    usage: result.usage
      ? {
          turns: n(result.num_turns),
          // Anthropic counts cache reads and writes apart from input_tokens; ours include them.
          prompt_tokens: n(u.input_tokens) + n(u.cache_creation_input_tokens) + cacheRead,
          cached_tokens: cacheRead,
          completion_tokens: n(u.output_tokens),
          cost_usd: typeof result.total_cost_usd === 'number' ? result.total_cost_usd : null,
        }
      : null,
    problems: result.is_error ? [`claude ended with an error (${String(result.subtype ?? 'unknown')})`] : [],
  };
}
