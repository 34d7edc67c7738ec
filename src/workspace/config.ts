/**
 * Loads `meta-agent.yaml` once, validates it, applies the environment overrides, and
 * resolves paths. Everything below receives `Settings`; nothing else reads process.env.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import stringArgv from 'string-argv';
import YAML from 'yaml';
import type { z } from 'zod';
import { ConfigSchema, type CheckConfig, type Config, type ProjectConfig } from '../contract/config.ts';
import { MetaAgentError } from '../contract/errors.ts';
import { CONFIG_FILE, layoutFor, type Layout } from './layout.ts';
import { clockFromEnv, type Clock } from './clock.ts';
import { configureBusyRetry } from './files.ts';

export interface Check {
  label: 'test' | 'dry_run' | 'collect' | 'train' | 'eval' | 'syntax_check';
  /** As configured, for reports. */
  command: string;
  argv: [string, ...string[]];
  /** Relative to the repo root. */
  cwd: string;
  env: Record<string, string>;
  timeoutMs: number;
}

export interface RetrainChain extends Omit<NonNullable<ProjectConfig['retrain']>, 'collect' | 'train' | 'eval'> {
  collect: Check | null;
  train: Check;
  eval: Check;
}

export interface Project extends Omit<ProjectConfig, 'test' | 'dry_run' | 'retrain'> {
  name: string;
  repoPath: string;
  initFromPath?: string;
  test: Check | null;
  dry_run: Check | null;
  retrain: RetrainChain | null;
}

export interface LlmSettings {
  model: string;
  baseURL?: string;
  apiKey?: string;
  apiKeyEnv: string;
  /** Most retries of one request; undefined: as many as retryBudgetMs allows. */
  maxRetries?: number;
  retryBudgetMs: number;
  /** Exponential backoff with full jitter between retries: base doubles up to cap. Not in the YAML (tests shorten it). */
  backoff: { baseMs: number; capMs: number };
  requestTimeoutMs: number;
  temperature?: number;
  /** llm.context_window, in tokens. */
  contextWindow: number;
  prices?: Config['llm']['prices'];
  toolMode: Config['llm']['tool_mode'];
  compat: Config['llm']['compat'];
}

export interface Settings {
  layout: Layout;
  config: Config;
  projects: Record<string, Project>;
  llm: LlmSettings;
  /** The service's environment, kept only to pick allow-listed variables from. */
  env: Readonly<Record<string, string | undefined>>;
  /** The time of the scheduler, the cycles and retention (see clock.ts). */
  clock: Clock;
}

/** Resolves the workspace root: --root, then META_AGENT_ROOT, then the current folder. */
export function resolveRoot(root: string | undefined, env: Record<string, string | undefined> = process.env): string {
  return path.resolve(root ?? env.META_AGENT_ROOT ?? process.cwd());
}

export async function loadSettings(root: string, env: Record<string, string | undefined> = process.env): Promise<Settings> {
  const layout = layoutFor(root);
  let text: string;
  try {
    text = await fs.readFile(layout.config, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new MetaAgentError('config', `cannot read ${layout.config} (${code})`, { file: CONFIG_FILE });
    throw new MetaAgentError('config', `not found in ${layout.root}; run "meta-agent init --root ${layout.root}" or pass --root`, { file: CONFIG_FILE });
  }
  const settings = settingsFromYaml(text, layout, env);
  configureBusyRetry({ budgetMs: settings.config.queue.busy_retry_s * 1000 });
  return settings;
}

export function settingsFromYaml(text: string, layout: Layout, env: Record<string, string | undefined>): Settings {
  const lineCounter = new YAML.LineCounter();
  const doc = YAML.parseDocument(text.replace(/^\uFEFF/, ''), { prettyErrors: false, lineCounter });
  if (doc.errors.length > 0) {
    const first = doc.errors[0]!;
    const line = lineCounter.linePos(first.pos[0]).line;
    throw new MetaAgentError('config', `${line ? `line ${line}: ` : ''}not valid YAML (${first.message.split('\n')[0]})`, { file: CONFIG_FILE });
  }
  const parsed = ConfigSchema.safeParse(doc.toJS() ?? {});
  if (!parsed.success) throw configError(parsed.error);
  return resolveSettings(parsed.data, layout, env);
}

function configError(error: z.ZodError): MetaAgentError {
  const issue = error.issues[0]!;
  const field = issue.path.map(String).join('.') || '(top level)';
  const message = issue.code === 'unrecognized_keys' ? `unknown key(s) ${issue.keys.join(', ')}` : issue.message;
  return new MetaAgentError('config', message, {
    file: CONFIG_FILE,
    field: issue.code === 'unrecognized_keys' && field === '(top level)' ? issue.keys.join(', ') : field,
  });
}

function resolveSettings(config: Config, layout: Layout, env: Record<string, string | undefined>): Settings {
  const projects: Record<string, Project> = {};
  for (const [name, project] of Object.entries(config.projects)) {
    const { test, dry_run, retrain, ...rest } = project;
    const field = `projects.${name}.retrain`;
    const timeout = config.limits.check_timeout_s;
    projects[name] = {
      ...rest,
      name,
      repoPath: path.resolve(layout.root, project.repo),
      ...(project.init_from ? { initFromPath: path.resolve(layout.root, project.init_from) } : {}),
      test: resolveCheck('test', test, `projects.${name}.test`, config.limits.check_timeout_s),
      dry_run: resolveCheck('dry_run', dry_run, `projects.${name}.dry_run`, config.limits.check_timeout_s),
      retrain: retrain
        ? {
            ...retrain,
            collect: resolveCheck('collect', retrain.collect ?? null, `${field}.collect`, timeout),
            train: resolveCheck('train', retrain.train, `${field}.train`, timeout)!,
            eval: resolveCheck('eval', retrain.eval, `${field}.eval`, timeout)!,
          }
        : null,
    };
  }
  if (config.limits.max_cost_usd !== undefined && !config.llm.prices) {
    throw new MetaAgentError('config', 'max_cost_usd needs llm.prices (USD per million prompt, cached and completion tokens) to count what a run costs', {
      file: CONFIG_FILE,
      field: 'limits.max_cost_usd',
    });
  }
  const apiKey = env[config.llm.api_key_env] || env.OPENAI_API_KEY || undefined;
  const baseURL = env.OPENAI_BASE_URL || config.llm.base_url;
  const llm: LlmSettings = {
    model: env.META_AGENT_MODEL || config.llm.model,
    apiKeyEnv: config.llm.api_key_env,
    ...(config.llm.max_retries !== undefined ? { maxRetries: config.llm.max_retries } : {}),
    retryBudgetMs: config.llm.retry_budget_s * 1000,
    backoff: { baseMs: 1000, capMs: 60_000 },
    requestTimeoutMs: config.llm.request_timeout_s * 1000,
    contextWindow: config.llm.context_window,
    toolMode: config.llm.tool_mode,
    compat: {
      ...(config.llm.compat.parallel_tool_calls !== undefined ? { parallel_tool_calls: config.llm.compat.parallel_tool_calls } : {}),
      ...(config.llm.compat.max_tokens_param ? { max_tokens_param: config.llm.compat.max_tokens_param } : {}),
      ...(config.llm.compat.stream !== undefined ? { stream: config.llm.compat.stream } : {}),
    },
    ...(baseURL ? { baseURL } : {}),
    ...(apiKey ? { apiKey } : {}),
    ...(config.llm.temperature !== undefined ? { temperature: config.llm.temperature } : {}),
    ...(config.llm.prices ? { prices: config.llm.prices } : {}),
  };
  return { layout, config, projects, llm, env, clock: clockFromEnv(env) };
}

function resolveCheck(label: Check['label'], check: CheckConfig | null, field: string, defaultTimeoutS: number): Check | null {
  if (check === null) return null;
  const long = typeof check === 'string' ? { command: check, cwd: '.', env: {}, timeout_s: undefined } : check;
  const argv = stringArgv(long.command);
  if (argv.length === 0) throw new MetaAgentError('config', 'command is empty', { file: CONFIG_FILE, field });
  const cwd = path.normalize(long.cwd);
  if (path.isAbsolute(cwd) || cwd.split(path.sep).includes('..')) {
    throw new MetaAgentError('config', 'cwd must be a folder inside the repo (relative, no "..")', { file: CONFIG_FILE, field: `${field}.cwd` });
  }
  return { label, command: long.command, argv: argv as [string, ...string[]], cwd, env: long.env, timeoutMs: (long.timeout_s ?? defaultTimeoutS) * 1000 };
}

export function projectFor(settings: Settings, name: string, file?: string): Project {
  const project = settings.projects[name];
  if (!project) {
    throw new MetaAgentError('input', `unknown project "${name}"; configured projects: ${Object.keys(settings.projects).join(', ')}`, {
      file,
      field: 'project',
    });
  }
  return project;
}

/** The one-line hint for users without an LLM configured. */
export function llmMissingMessage(llm: LlmSettings): string {
  return `no LLM configured: set ${llm.apiKeyEnv} (OpenAI key), or llm.base_url in ${CONFIG_FILE} / OPENAI_BASE_URL for a local OpenAI-compatible server (Ollama: http://127.0.0.1:11434/v1, LM Studio: http://127.0.0.1:1234/v1, vLLM: http://127.0.0.1:8000/v1)`;
}
