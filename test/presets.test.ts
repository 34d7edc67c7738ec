/**
 * Engine presets without running the agents: the argv, environment and private HOME each
 * preset declares from `llm:`, the config's choice between `preset` and `run`, and the
 * parsing of the agents' own reports (Codex JSONL events, Claude Code's JSON result).
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigSchema } from '../src/contract/config.ts';
import type { LlmSettings } from '../src/workspace/config.ts';
import { fillPresetPlaceholders, resolveCommand } from '../src/engines/presets/index.ts';
import { parseCodexEvents, CODEX_LAST_MESSAGE } from '../src/engines/presets/codex.ts';
import { parseClaudeResult } from '../src/engines/presets/claude.ts';
import { agentNeeds, apiKeyValue } from '../src/engines/agentNeeds.ts';
import { fillHome } from '../src/engines/agentSandbox.ts';
import { diagnose } from '../src/service/doctor.ts';
import { loadSettings } from '../src/workspace/config.ts';
import { makeWorkspace } from './helpers/workspace.ts';

const LLM: LlmSettings = {
  model: 'gpt-5-codex',
  baseURL: 'http://127.0.0.1:11434/v1',
  apiKeyEnv: 'MY_LLM_KEY',
  maxRetries: 3,
  retryBudgetMs: 300_000,
  backoff: { baseMs: 1000, capMs: 60_000 },
  requestTimeoutMs: 120_000,
  contextWindow: 128_000,
  toolMode: 'native',
} as LlmSettings;

const PLACES = { home: '/private/home', promptFile: '/state/prompts/run-1.md', worktree: '/wt/run-1' };

/** The config.toml the codex preset writes into its private HOME. */
function codexToml(llm: LlmSettings): string {
  const file = resolveCommand(commandConfig({ preset: 'codex' }), llm).needs.homeFiles.find((f) => f.path === '.codex/config.toml');
  assert.ok(file?.content, 'the codex preset writes .codex/config.toml');
  return file!.content!;
}

function commandConfig(command: unknown) {
  return ConfigSchema.parse({ engine: 'command', command, projects: { bot: { repo: 'repo' } } }).command!;
}

test('codex: the flags of codex exec 0.171, the prompt on stdin, the last message in the private HOME', () => {
  const resolved = resolveCommand(commandConfig({ preset: 'codex' }), LLM);
  const { argv, env } = fillPresetPlaceholders(resolved, PLACES);
  assert.equal(argv, [
    'codex',
    'exec',
    '--sandbox',
    'workspace-write',
    '--skip-git-repo-check',
    '--ephemeral',
    '--ignore-rules',
    '--strict-config',
    '--json',
    '--output-last-message',
    `/private/home/${CODEX_LAST_MESSAGE}`,
    '-',
  ]);
  assert.not.ok(argv.includes('--full-auto'), 'the flag Codex removed');
  assert.equal(env, { CODEX_HOME: '/private/home/.codex', TMPDIR: '/private/home/tmp' });
  assert.equal(resolved.needs.homeFiles.map((f) => f.path).sort(), ['.codex/config.toml', 'tmp/.keep']);
  assert.ok(
    resolved.needs.homeFiles.every((f) => f.content !== undefined && f.copyFrom === undefined),
    'written, never copied from your home',
  );
  assert.is(resolved.needs.apiKeyEnv, 'MY_LLM_KEY');
  assert.is(resolved.needs.readsAgentsMd, true);
});

test('codex: config.toml carries llm: (model, base_url, key variable, retries, timeout) and the shell env policy', () => {
  const toml = codexToml(LLM);
  for (const line of [
    'model = "gpt-5-codex"',
    'model_provider = "meta-agent"',
    '[model_providers.meta-agent]',
    'base_url = "http://127.0.0.1:11434/v1"',
    'env_key = "MY_LLM_KEY"',
    'wire_api = "responses"',
    'request_max_retries = 3',
    'stream_idle_timeout_ms = 120000',
    '[shell_environment_policy]',
    'inherit = "core"',
    'ignore_default_excludes = false',
    'exclude_slash_tmp = true',
    'approval_policy = "never"',
  ]) {
    assert.ok(toml.split('\n').includes(line), `config.toml has ${line}:\n${toml}`);
  }
  // Without base_url: OpenAI's endpoint, still through our provider (never Codex's login).
  const openai = codexToml({ ...LLM, baseURL: undefined } as LlmSettings);
  assert.ok(openai.includes('base_url = "https://api.openai.com/v1"'));
  // A model name cannot break out of its TOML string.
  const hostile = codexToml({ ...LLM, model: 'x"\nsandbox_mode = "danger-full-access' } as LlmSettings);
  assert.not.ok(hostile.split('\n').includes('sandbox_mode = "danger-full-access"'));
});

test('codex: usage, last message and failed edits from the JSONL events; other lines skipped', () => {
  const stdout = [
    'WARNING: something human',
    '{"type":"thread.started","thread_id":"t"}',
    '{"type":"turn.started"}',
    '{"type":"item.completed","item":{"id":"i1","type":"file_change","changes":[{"path":"a.py","kind":"update"}],"status":"failed"}}',
    '{"type":"item.completed","item":{"id":"i2","type":"agent_message","text":"first"}}',
    '{"type":"item.completed","item":{"id":"i3","type":"agent_message","text":"last words"}}',
    '{"type":"turn.completed","usage":{"input_tokens":655,"cached_input_tokens":11,"output_tokens":27,"reasoning_output_tokens":0}}',
    '{"type":"turn.completed","usage":{"input_tokens":5,"cached_input_tokens":-3,"output_tokens":"x"}}',
    '{not json',
  ].join('\r\n');
  const parsed = parseCodexEvents(stdout);
  assert.is(parsed.lastMessage, 'last words');
  assert.equal(parsed.usage, { turns: 2, prompt_tokens: 660, cached_tokens: 11, completion_tokens: 27, cost_usd: null });
  assert.equal(parsed.problems, ['edit failed: a.py']);
  assert.equal(parseCodexEvents('plain text only'), { lastMessage: null, usage: null, problems: [] });
});

test('codex: the --output-last-message file wins over the events; an empty file falls back to them', async () => {
  const home = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-preset-'));
  try {
    const resolved = resolveCommand(commandConfig({ preset: 'codex' }), LLM);
    const events = '{"type":"item.completed","item":{"id":"i","type":"agent_message","text":"from events"}}';
    assert.is((await resolved.parseOutput({ stdout: events, home })).lastMessage, 'from events');
    await fs.writeFile(path.join(home, CODEX_LAST_MESSAGE), '  \n');
    assert.is((await resolved.parseOutput({ stdout: events, home })).lastMessage, 'from events');
    await fs.writeFile(path.join(home, CODEX_LAST_MESSAGE), 'from the file\n');
    assert.is((await resolved.parseOutput({ stdout: events, home })).lastMessage, 'from the file');
  } finally {
    await fs.rm(home, { recursive: true, force: true });
  }
});

test('aider: one message from the prompt file, no commits, histories and .env in the private HOME', () => {
  const { argv, env } = fillPresetPlaceholders(resolveCommand(commandConfig({ preset: 'aider', program: '/opt/aider/bin/aider' }), LLM), PLACES);
  assert.is(argv[0], '/opt/aider/bin/aider');
  const pairs = new Map(argv.slice(1).map((a, i, all) => [a, all[i + 1]]));
  assert.is(pairs.get('--message-file'), PLACES.promptFile);
  assert.is(pairs.get('--model'), 'openai/gpt-5-codex');
  assert.is(pairs.get('--openai-api-base'), LLM.baseURL);
  assert.is(pairs.get('--env-file'), '/private/home/aider.env');
  assert.is(pairs.get('--chat-history-file'), '/private/home/aider.chat.history.md');
  assert.is(pairs.get('--input-history-file'), '/private/home/aider.input.history');
  for (const flag of [
    '--yes-always',
    '--no-auto-commits',
    '--no-dirty-commits',
    '--no-gitignore',
    '--no-suggest-shell-commands',
    '--no-detect-urls',
    '--analytics-disable',
    '--no-check-update',
  ]) {
    assert.ok(argv.includes(flag), flag);
  }
  assert.equal(env, {});
  const resolved = resolveCommand(commandConfig({ preset: 'aider' }), { ...LLM, baseURL: undefined } as LlmSettings);
  assert.ok(resolved.argv.includes('gpt-5-codex') && !resolved.argv.includes('--openai-api-base'), 'no base_url: the model as it is, no --openai-api-base');
  assert.is(resolved.needs.apiKeyEnv, 'OPENAI_API_KEY');
});

test('claude: claude -p with JSON output, edits accepted, only the private settings, the key scrubbed from its commands', () => {
  const resolved = resolveCommand(commandConfig({ preset: 'claude' }), { ...LLM, model: 'claude-sonnet-4-5', baseURL: 'http://127.0.0.1:9000' } as LlmSettings);
  const { argv, env } = fillPresetPlaceholders(resolved, PLACES);
  assert.equal(argv, [
    'claude',
    '-p',
    '--output-format',
    'json',
    '--model',
    'claude-sonnet-4-5',
    '--permission-mode',
    'acceptEdits',
    '--allowedTools',
    'Bash,Read,Edit,Write,Glob,Grep',
    '--setting-sources',
    'user',
    '--strict-mcp-config',
    '--no-session-persistence',
  ]);
  assert.is(env.CLAUDE_CONFIG_DIR, '/private/home/.claude');
  assert.is(env.CLAUDE_CODE_SUBPROCESS_ENV_SCRUB, '1');
  assert.is(env.ANTHROPIC_BASE_URL, 'http://127.0.0.1:9000');
  assert.is(resolved.needs.apiKeyEnv, 'ANTHROPIC_API_KEY');
});

test('claude: the JSON result gives the last message, usage with cache reads and writes, and the cost', () => {
  const stdout = JSON.stringify({
    type: 'result',
    subtype: 'success',
    is_error: false,
    result: 'Changed two files.',
    num_turns: 4,
    total_cost_usd: 0.0123,
    usage: { input_tokens: 100, cache_creation_input_tokens: 50, cache_read_input_tokens: 800, output_tokens: 70 },
  });
  assert.equal(parseClaudeResult(`noise\n${stdout}\n`), {
    lastMessage: 'Changed two files.',
    usage: { turns: 4, prompt_tokens: 950, cached_tokens: 800, completion_tokens: 70, cost_usd: 0.0123 },
    problems: [],
  });
  assert.equal(parseClaudeResult(JSON.stringify({ type: 'result', subtype: 'error_max_turns', is_error: true })).problems, [
    'claude ended with an error (error_max_turns)',
  ]);
  assert.equal(parseClaudeResult('not json'), { lastMessage: null, usage: null, problems: [] });
});

test('run: resolves to its own argv with no private files; the config takes exactly one of preset and run', () => {
  const resolved = resolveCommand(commandConfig({ run: 'my-agent --go "{prompt_file}"' }), LLM);
  assert.is(resolved.preset, null);
  assert.equal(fillPresetPlaceholders(resolved, PLACES).argv, ['my-agent', '--go', PLACES.promptFile]);
  assert.equal(resolved.needs.homeFiles, []);
  const refused = (command: unknown) => ConfigSchema.safeParse({ engine: 'command', command, projects: { bot: { repo: 'repo' } } }).success === false;
  assert.ok(refused({ preset: 'codex', run: 'codex exec -' }), 'both');
  assert.ok(refused({}), 'neither');
  assert.ok(refused({ run: 'x', program: 'y' }), 'program without preset');
  assert.ok(refused({ preset: 'gemini' }), 'unknown preset');
  assert.not.ok(refused({ preset: 'codex', program: '/opt/codex' }), 'positive control');
});

test("the one key under the name the agent reads (never an OpenAI-style key under another provider's name); the private home holds what the preset writes", async () => {
  const service = { PATH: '/usr/bin', LANG: 'C.UTF-8', MY_LLM_KEY: 'sk-abc', EXCHANGE_SECRET: 'canary', HOME: '/home/real' };
  const llm = { apiKey: 'sk-abc', apiKeyEnv: LLM.apiKeyEnv };
  const needsOf = (command: Record<string, unknown>) => {
    const config = commandConfig(command);
    return { config, needs: agentNeeds(config, LLM.apiKeyEnv, resolveCommand(config, LLM).needs) };
  };
  // Aider reads OPENAI_API_KEY: the llm: key (MY_LLM_KEY) is given under that name.
  const aider = needsOf({ preset: 'aider' });
  assert.is(aider.needs.apiKeyEnv, 'OPENAI_API_KEY');
  assert.is(apiKeyValue(aider.needs, aider.config, service, llm), 'sk-abc');
  // Claude Code reads ANTHROPIC_API_KEY: an OpenAI-style llm: key is never handed to it under that name.
  const claude = needsOf({ preset: 'claude' });
  assert.is(apiKeyValue(claude.needs, claude.config, service, llm), undefined);
  assert.is(apiKeyValue(claude.needs, claude.config, { ...service, ANTHROPIC_API_KEY: 'sk-ant' }, llm), 'sk-ant');
  const home = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-preset-home-'));
  try {
    const codex = needsOf({ preset: 'codex' });
    assert.equal(await fillHome(path.join(home, 'h'), codex.needs, '/home/real'), [], 'a preset copies nothing from your home');
    assert.equal((await fs.readdir(path.join(home, 'h'))).sort(), ['.codex', 'tmp']);
    assert.ok((await fs.readFile(path.join(home, 'h', '.codex', 'config.toml'), 'utf8')).includes('[shell_environment_policy]'));
  } finally {
    await fs.rm(home, { recursive: true, force: true });
  }
});

test('doctor: a preset whose program is missing, or whose key variable is unset, is an error naming the field', async () => {
  const doctor = async (program: string, key: string | undefined) => {
    const ws = await makeWorkspace({ extra: ['engine: command', 'command:', '  preset: codex', `  program: ${JSON.stringify(program)}`].join('\n') });
    try {
      const settings = await loadSettings(ws.root, { PATH: process.env.PATH, HOME: process.env.HOME, OPENAI_API_KEY: key });
      const report = await diagnose(settings, { platform: 'linux', freeBytes: async () => 50 * 1024 ** 3, oneVolume: async () => undefined });
      return report.findings.filter((f) => f.field?.startsWith('command') || f.field === 'llm.api_key_env');
    } finally {
      await ws.cleanup();
    }
  };
  const missing = await doctor('/nonexistent/codex', 'sk-x');
  assert.equal(
    missing.map((f) => [f.level, f.field]),
    [['error', 'command.program']],
  );
  const noKey = await doctor(process.execPath, undefined);
  assert.equal(
    noKey.map((f) => [f.level, f.field]),
    [['error', 'llm.api_key_env']],
  );
  assert.match(noKey[0]!.message, 'OPENAI_API_KEY');
  assert.equal(await doctor(process.execPath, 'sk-x'), [], 'positive control: program found, key set');
});

test.run();
