/**
 * OpenAI Codex CLI (`codex exec`), checked against codex-cli 0.171.0.
 *
 * Codex gets a private CODEX_HOME with a generated config.toml (never the user's ~/.codex):
 * the model and provider from `llm:` (Codex speaks only the Responses API, so `base_url` must
 * serve /v1/responses), and the settings that keep secrets out of its shell: the shell's
 * environment is Codex's "core" set (HOME, PATH, USER, ...), never the API key, and commands
 * may write only the worktree and TMPDIR. `--strict-config` makes a Codex that no longer knows
 * one of these settings stop instead of silently running without it.
 */
import path from 'node:path';
import { readAgentWrittenFile } from '../../safety/paths.ts';
import type { LlmSettings } from '../../workspace/config.ts';
import type { AgentOutput, AgentUsage, PresetOptions, ResolvedCommand } from './types.ts';

export const CODEX_VERSION_CHECKED = '0.171.0';
/** Where `--output-last-message` writes, in the private HOME. */
export const CODEX_LAST_MESSAGE = 'codex-last-message.txt';
const PROVIDER_ID = 'meta-agent';
const OPENAI_BASE_URL = 'https://api.openai.com/v1';

/** A TOML basic string (JSON's escapes are valid TOML). */
const str = (value: string) => JSON.stringify(value);

export function codexConfigToml(llm: LlmSettings): string {
  const retries = llm.maxRetries === undefined ? [] : [`request_max_retries = ${llm.maxRetries}`, `stream_max_retries = ${llm.maxRetries}`];
  return [
    "# Written by meta-agent for one run; the user's ~/.codex is never read.",
    `model = ${str(llm.model)}`,
    `model_provider = ${str(PROVIDER_ID)}`,
    'approval_policy = "never"',
    'sandbox_mode = "workspace-write"',
    'web_search = "disabled"',
    '',
    '[history]',
    'persistence = "none"',
    '',
    // Commands run by the model: only the worktree and TMPDIR (a folder of the private HOME) are writable.
    '[sandbox_workspace_write]',
    'network_access = false',
    'exclude_slash_tmp = true',
    '',
    // "core": HOME, LOGNAME, PATH, SHELL, USER, USERNAME, TMPDIR, TEMP, TMP; then *KEY*, *SECRET*, *TOKEN* removed.
    '[shell_environment_policy]',
    'inherit = "core"',
    'ignore_default_excludes = false',
    '',
    `[model_providers.${PROVIDER_ID}]`,
    `name = ${str(PROVIDER_ID)}`,
    `base_url = ${str(llm.baseURL ?? OPENAI_BASE_URL)}`,
    `env_key = ${str(llm.apiKeyEnv)}`,
    'wire_api = "responses"',
    `stream_idle_timeout_ms = ${Math.round(llm.requestTimeoutMs)}`,
    ...retries,
    '',
  ].join('\n');
}

export function codexPreset(options: PresetOptions, llm: LlmSettings): ResolvedCommand {
  return {
    preset: 'codex',
    argv: [
      options.program ?? 'codex',
      'exec',
      '--sandbox',
      'workspace-write',
      '--skip-git-repo-check',
      '--ephemeral',
      '--ignore-rules',
      '--strict-config',
      '--json',
      '--output-last-message',
      `{home}/${CODEX_LAST_MESSAGE}`,
      '-',
    ],
    needs: {
      homeFiles: [
        { path: '.codex/config.toml', content: codexConfigToml(llm) },
        { path: 'tmp/.keep', content: '' },
      ],
      envAllow: [],
      env: {
        CODEX_HOME: '{home}/.codex',
        // Codex refuses to set up its sandbox helper when CODEX_HOME lies under the temp dir
        // (TMPDIR, else /tmp), and the model's commands may write TMPDIR: a folder of the private HOME.
        TMPDIR: '{home}/tmp',
      },
      apiKeyEnv: llm.apiKeyEnv,
      readsAgentsMd: true,
    },
    parseOutput: async ({ stdout, home }) => {
      const parsed = parseCodexEvents(stdout);
      const fromFile = await readAgentWrittenFile(path.join(home, CODEX_LAST_MESSAGE));
      return { ...parsed, lastMessage: fromFile?.trim() ? fromFile.trim() : parsed.lastMessage };
    },
  };
}

/** The JSONL events of `codex exec --json` (codex-rs/exec/src/exec_events.rs); other lines are skipped. */
export function parseCodexEvents(stdout: string): AgentOutput {
  let usage: AgentUsage | null = null;
  let lastMessage: string | null = null;
  const problems: string[] = [];
  for (const line of stdout.split(/\r?\n/)) {
    if (!line.startsWith('{')) continue;
    // biome-ignore lint/suspicious/noExplicitAny: an event from the CLI's JSON output, read field by field with ?. and String()
    let event: any;
    try {
      event = JSON.parse(line);
    } catch {
      continue;
    }
    const item = event?.item;
    if (event?.type === 'turn.completed' && event.usage) {
      usage ??= { turns: 0, prompt_tokens: 0, cached_tokens: 0, completion_tokens: 0, cost_usd: null };
      usage.turns++;
      usage.prompt_tokens += count(event.usage.input_tokens);
      usage.cached_tokens += count(event.usage.cached_input_tokens);
      usage.completion_tokens += count(event.usage.output_tokens);
    } else if (event?.type === 'turn.failed') {
      problems.push(`turn failed: ${String(event.error?.message ?? 'no message')}`);
    } else if (event?.type === 'error') {
      problems.push(`error: ${String(event.message ?? 'no message')}`);
    } else if (event?.type === 'item.completed' && item?.type === 'agent_message' && typeof item.text === 'string') {
      lastMessage = item.text;
    } else if (event?.type === 'item.completed' && item?.type === 'file_change' && item.status === 'failed') {
      // biome-ignore lint/suspicious/noExplicitAny: an event from the CLI's JSON output, read field by field with ?. and String()
      const files = Array.isArray(item.changes) ? item.changes.map((c: any) => String(c?.path)).join(', ') : '';
      problems.push(`edit failed${files ? `: ${files}` : ''}`);
    }
  }
  return { lastMessage, usage, problems };
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? Math.floor(value) : 0;
}
