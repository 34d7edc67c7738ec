/** `meta-agent init`: the folder layout, a commented meta-agent.yaml and the task templates. */
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { MetaAgentError } from '../contract/errors.ts';
import { TASK_TYPES } from '../contract/task.ts';
import { findPython, venvPython } from '../safety/python.ts';
import { exists, publishFile } from './files.ts';
import { layoutDirs, layoutFor, type Layout } from './layout.ts';
import { gitArgs } from './gitArgs.ts';

/** The package's own folder (for the bundled example bot): the nearest folder up with our package.json, from src/ or dist/. */
export const PACKAGE_ROOT = findPackageRoot(path.dirname(fileURLToPath(import.meta.url)));

function findPackageRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    try {
      if ((JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string }).name === 'meta-agent') return dir;
    } catch {
      // not here
    }
    if (path.dirname(dir) === dir) return path.resolve(from, '..', '..');
  }
}

export interface InitOptions {
  /** Write meta-agent.yaml if absent (default true). */
  withConfig?: boolean;
  /** The project's repo; default: a demo repo made from the bundled example bot. */
  repo?: string;
  project?: string;
  /** What inspectRepo() found in `repo` (initWorkspace fills it in). */
  facts?: RepoFacts;
  /** Where Python is looked for (PATH, PATHEXT); default: this process's environment. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Default: this machine's. */
  platform?: NodeJS.Platform;
}

export interface InitResult {
  layout: Layout;
  created: string[];
  /** With `repo`: what was found there (whether or not a config was written). */
  facts: RepoFacts | null;
}

export async function initWorkspace(root: string, options: InitOptions = {}): Promise<InitResult> {
  // A repo that is not there is an error before anything is created.
  const platform = options.platform ?? process.platform;
  const env = options.env ?? process.env;
  if (options.repo && !options.facts) options = { ...options, facts: await inspectRepo(options.repo, platform, env) };
  const layout = layoutFor(root);
  const created: string[] = [];
  for (const dir of layoutDirs(layout)) {
    if (!(await exists(dir))) created.push(dir);
    await fs.mkdir(dir, { recursive: true });
  }
  for (const type of TASK_TYPES) {
    const file = path.join(layout.templates, `${type}.md`);
    if (await exists(file)) continue;
    await publishFile(file, taskTemplate(type));
    created.push(file);
  }
  if (options.withConfig !== false && !(await exists(layout.config))) {
    // The demo's commands name the Python that runs here (python3, python or py -3).
    const python = options.repo ? null : ((await findPython({ env, platform }))?.command ?? defaultPython(platform));
    await publishFile(layout.config, configTemplate(layout, options, platform, python));
    created.push(layout.config);
  }
  return { layout, created, facts: options.facts ?? null };
}

const TEMPLATE_TEXT: Record<(typeof TASK_TYPES)[number], { objective: string; scope: string[]; tasks: string[]; output: string }> = {
  audit_code: {
    objective: 'Audit {{area}} for bugs, unsafe error handling and missing tests.',
    scope: ['bot/**', 'tests/**'],
    tasks: ['List findings as file:line - severity - explanation', 'Fix clear bugs inside the scope, with a test each'],
    output: 'Findings report; optional fix patch',
  },
  propose_features: {
    objective: 'Propose improvements to {{area}} given {{context}}.',
    scope: ['bot/**', 'tests/**'],
    tasks: ['Rank proposals by expected effect, each with its risk', 'Implement the best one, with tests'],
    output: 'Ranked proposals; optional patch',
  },
  retrain_model: {
    objective: 'Retrain the model on {{period}} data and compare with the current one.',
    scope: ['models/**'],
    tasks: ['Collect data', 'Train', 'Evaluate against the baseline metrics'],
    output: 'Metrics comparison; candidate model',
  },
  risk_review: {
    objective: 'Review trading risk for {{period}}: sizing, stop losses, exposure, order error handling.',
    scope: [],
    tasks: ['Check position sizing limits', 'Check stop-loss handling', 'List concrete risks with file and line'],
    output: 'Risk report (no code changes)',
  },
  custom: {
    objective: '{{objective}}',
    scope: ['bot/**', 'tests/**'],
    tasks: [],
    output: 'Patch + report',
  },
};

export function taskTemplate(type: (typeof TASK_TYPES)[number]): string {
  const t = TEMPLATE_TEXT[type];
  const list = (items: string[]) => (items.length ? items.map((i) => `\n  - ${JSON.stringify(i)}`).join('') : ' []');
  return [
    '---',
    'project: demo',
    `type: ${type}`,
    `objective: ${JSON.stringify(t.objective)}`,
    `scope:${list(t.scope)}`,
    `tasks:${list(t.tasks)}`,
    `output: ${JSON.stringify(t.output)}`,
    '---',
    '',
    '<!-- Free Markdown for the agent: context, links, constraints. {{placeholders}} are filled by the supervisor or by you. -->',
    '',
  ].join('\n');
}

/** What `init --repo` found out about the target repository. */
export interface RepoFacts {
  /** The checked-out branch; null on a detached HEAD. */
  branch: string | null;
  /** The detected test command; null when none was recognized. */
  test: string | null;
  /** Why that test command (for the comment in the config). */
  testReason: string | null;
  /** The test command runs the repository's own `.venv` (so the config links it into worktrees). */
  usesVenv?: boolean;
}

const PYTHON_MARKERS = ['pyproject.toml', 'setup.cfg', 'setup.py', 'pytest.ini', 'tox.ini'];

/**
 * Checks that `repo` is a git repository and reads what a config for it needs: its
 * current branch, and a test command when it is recognizably a Python project with tests.
 */
export async function inspectRepo(
  repo: string,
  platform: NodeJS.Platform = process.platform,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<RepoFacts> {
  const stat = await fs.stat(repo).catch(() => null);
  if (!stat) throw new MetaAgentError('input', `--repo ${repo}: no such folder`);
  if (!stat.isDirectory()) throw new MetaAgentError('input', `--repo ${repo} is a file, not a folder`);
  const inside = await execa('git', gitArgs(['rev-parse', '--is-inside-work-tree']), { cwd: repo, reject: false });
  if (inside.stdout.trim() !== 'true')
    throw new MetaAgentError('input', `--repo ${repo} is not a git repository (run "git init" there and commit, then init again)`);
  const head = await execa('git', gitArgs(['symbolic-ref', '--quiet', '--short', 'HEAD']), { cwd: repo, reject: false });
  const branch = head.exitCode === 0 && head.stdout.trim() ? head.stdout.trim() : null;
  const found: string[] = [];
  for (const marker of [...PYTHON_MARKERS, 'tests', 'test']) if (await exists(path.join(repo, marker))) found.push(marker);
  const hasTests = found.some((m) => m === 'tests' || m === 'test' || m === 'pytest.ini' || m === 'tox.ini');
  const isPython = found.some((m) => PYTHON_MARKERS.includes(m));
  if (!(isPython && hasTests) && !(hasTests && (await hasPythonTests(repo, found)))) return { branch, test: null, testReason: null };
  // The Python that runs here: python.org's Windows installer makes "python" and "py", never "python3".
  const python = await findPython({ env, repo, platform });
  const reason = `a Python project (${found.join(', ')})${python ? `; ${python.version} as "${python.command}"` : "; no Python 3 runs on this machine yet (not python3, python or py -3, nor the repository's .venv): install it, then check this command"}`;
  return { branch, test: `${python?.command ?? defaultPython(platform)} -m pytest -q`, testReason: reason, usesVenv: python?.command === venvPython(platform) };
}

/** What a config says when no Python runs yet (the doctor names the problem). */
function defaultPython(platform: NodeJS.Platform): string {
  return platform === 'win32' ? 'py -3' : 'python3';
}

/** A tests/ folder without Python packaging files: Python if it holds test_*.py files. */
async function hasPythonTests(repo: string, found: string[]): Promise<boolean> {
  for (const dir of found.filter((m) => m === 'tests' || m === 'test')) {
    const names = await fs.readdir(path.join(repo, dir)).catch(() => [] as string[]);
    if (names.some((n) => /^test_.*\.py$|_test\.py$/.test(n))) return true;
  }
  return false;
}

/** The system's IANA timezone (the schedule runs in it). */
export function systemTimezone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

/**
 * Checks run code an LLM wrote. On Linux they run under bubblewrap, and a missing
 * bubblewrap stops the service (fail closed); elsewhere there is no sandbox, so the config
 * says `none` out loud, with what that means, instead of a setting that cannot start.
 */
export function sandboxSetting(platform: NodeJS.Platform): string {
  if (platform === 'linux') {
    return `# auto/bwrap: test, dry_run and retrain steps run under bubblewrap (no network, only a throwaway
# copy of the worktree writable, your home and repository invisible); without bubblewrap the
# service refuses to start. none: unsandboxed (README, "What \`sandbox: none\` means").
sandbox: auto`;
  }
  return `# There is no sandbox on ${platform === 'win32' ? 'Windows' : platform}: checks (test, dry_run, retrain steps) run as your
# user, with the network and your files. Read README, "What \`sandbox: none\` means", before the
# first night; for sandboxed checks run meta-agent in WSL2 with bubblewrap (sandbox: auto).
sandbox: none`;
}

function configTemplate(layout: Layout, options: InitOptions, platform: NodeJS.Platform, python: string | null): string {
  const project = options.project ?? 'demo';
  return `# meta-agent configuration. Full reference: docs/contract.md (schema: schema/config.json).
# Environment overrides: OPENAI_API_KEY, OPENAI_BASE_URL, META_AGENT_MODEL, META_AGENT_ROOT.

llm:
  model: gpt-4.1-mini
  # For a local OpenAI-compatible server (no key needed):
  #   Ollama: http://127.0.0.1:11434/v1   LM Studio: http://127.0.0.1:1234/v1   vLLM: http://127.0.0.1:8000/v1
  # base_url: http://127.0.0.1:11434/v1
  api_key_env: OPENAI_API_KEY
  # prices: { prompt_per_mtok: 0.4, cached_per_mtok: 0.1, completion_per_mtok: 1.6 }
  # context_window: 128000            # tokens; a local model: its num_ctx / max_model_len (e.g. 32768)

# openai: the built-in agent loop. command: an external coding-agent CLI (see "command").
engine: openai
# command:
#   preset: codex                     # or aider / claude (docs/engines.md); or any agent: run: ["my-agent", "{prompt_file}"]
#   timeout_s: 1800
#   idle_timeout_s: 300                # no output and no file change this long: stopped
#   sandbox: auto                      # the agent runs under bubblewrap (refuses without it); none: unsandboxed
#   env_allow: []                      # variables it sees besides PATH, the locale and one API key (api_key_env)
#   home_files: []                     # files of your home copied into its private $HOME, e.g. [".codex/config.toml"]

${sandboxSetting(platform)}

projects:
  ${project}:
${options.repo ? repoProject(options.repo, options.facts ?? { branch: null, test: null, testReason: null }) : demoProject(layout, python ?? 'python3')}

supervisor:
  timezone: ${JSON.stringify(systemTimezone())}   # this machine's timezone when "init" ran; the schedule and trading windows use it
  budget_tokens: 300000                 # per cycle (planner + tasks)
  # Goals daily_maintenance and weekly_retrain are built-in routines (no LLM needed to plan them);
  # override or add your own:
  # routines:
  #   daily_maintenance:
  #     - { type: audit_code, objective: "Audit recent changes", scope: ["bot/**", "tests/**"], tasks: [] }
  schedule: []
  # schedule:
  #   - { cron: "30 2 * * *", goal: daily_maintenance }
  #   - { cron: "0 4 * * 6", goal: weekly_retrain, mode: weekly }
  # trading_windows:                    # no cycle starts inside one; a running cycle stops creating tasks
  #   - { days: [mon, tue, wed, thu, fri], start: "08:00", end: "23:00" }

limits:
  max_steps: 40
  max_tokens: 800000                  # cached prompt tokens count at their price ratio (0.25 without prices)
  # max_cost_usd: 2                   # needs llm.prices
  task_timeout_s: 1800
  check_timeout_s: 600
  concurrency: 2

patch:
  max_bytes: 1000000
  max_files: 50
  protected: []                         # files no patch may touch
  executable: []                        # files a patch may make executable, e.g. ["scripts/*.sh"]; symlinks and submodules never change
`;
}

/** The bundled example bot: its real test and dry-run commands, risk rule, trades and retrain chain. */
function demoProject(layout: Layout, python: string): string {
  return `    # A git repo made from the bundled example bot on first use (git-ignored).
    repo: .meta-agent/demo-repo
    init_from: ${JSON.stringify(
      path
        .relative(layout.root, path.join(PACKAGE_ROOT, 'examples', 'scalper-bot'))
        .split(path.sep)
        .join('/') || '.',
    )}
    # branch: main                      # default: the repo's current branch
    scope: ["**"]                       # outer bound for every task's scope
    deny: []                            # added to .env*, *.pem, *.key, secrets/**
    test: "${python} -m pytest -q -p no:cacheprovider"
    dry_run: "${python} -m bot.main --dry-run"
    # test: { command: "python -m pytest -q", cwd: "bot", env: { PYTHONPATH: "." }, timeout_s: 600 }
    link: []                            # git-ignored paths made available in worktrees, e.g. [".venv", "data/raw"]
    risk:
      - paths: ["bot/execution/**"]
        level: high
        reason: order execution
    env_allow: []                       # variables passed to test/dry_run besides PATH, HOME, LANG
    # risk_review: numbers computed in code from the trades CSV
    trades: { path: data/trades.csv, time_column: closed_at, pnl_column: pnl, starting_equity: 10000 }
    risk_thresholds: { max_drawdown_pct: 5, min_win_rate: 0.4, min_profit_factor: 1.2 }
    # retrain_model: collect -> train -> eval in the worktree; the gate installs the model only if it beats the baseline
    retrain:
      train: "${python} scripts/train.py"
      eval: "${python} scripts/eval.py"
      metrics: models/candidate.json    # what eval writes
      baseline: models/metrics.json     # the approved model's metrics (the patch updates it)
      metric: sharpe
      margin: 0.05
      artifacts: [models/model.pkl]
    logs: []                            # bot log files whose new lines the supervisor reads`;
}

/** A repository of the user's: what was detected, and placeholders ("doctor" flags them) for the rest. */
function repoProject(repo: string, facts: RepoFacts): string {
  const branch = facts.branch
    ? `    branch: ${JSON.stringify(facts.branch)}   # the branch checked out when "init" ran`
    : '    # branch: main                      # TODO: the repo has a detached HEAD; name the branch to work on';
  const test = facts.test
    ? `    test: ${JSON.stringify(facts.test)}   # detected: ${facts.testReason}`
    : '    test: null                          # TODO: the command that runs your tests, e.g. "npm test" or "python3 -m pytest -q"; without it patches are proposed untested';
  return `    repo: ${JSON.stringify(repo)}
${branch}
    scope: ["**"]                       # outer bound for every task's scope
    deny: []                            # added to .env*, *.pem, *.key, secrets/**
${test}
    dry_run: null                       # optional: a command that runs the program without side effects, e.g. "python3 -m app --dry-run"
${facts.usesVenv ? '    link: [".venv"]                     # the test command runs the repository\'s own virtualenv' : '    link: []                            # git-ignored paths made available in worktrees, e.g. [".venv", "data/raw"]'}
    risk: []                            # e.g. [{ paths: ["src/payments/**"], level: high, reason: "money moves here" }]
    env_allow: []                       # variables passed to test/dry_run besides PATH, HOME, LANG
    # trades:, risk_thresholds: and retrain: enable risk_review numbers and retrain_model (docs/contract.md)
    logs: []                            # log files whose new lines the supervisor reads`;
}
