/**
 * Where an external agent (the `command` engine) runs: the sandbox of the agent's
 * run_command (shellTool.ts, itself the checks' sandbox of sandbox.ts) with the network on.
 *
 * Under bubblewrap the agent sees: the worktree writable at its own path, the system
 * folders and its own program's install folder read-only, a private /tmp, a private $HOME
 * holding only the files its needs declare (agentNeeds.ts; copied in, never the user's
 * home itself), the prompt file read-only. Not visible: the real repository, the
 * workspace (.meta-agent state, inbox, reports, patches, other worktrees), the user's
 * homes. Its `.git` is the run's read-only history snapshot (base commit, deny-listed
 * files filtered out), so `git status`, `git diff` and `git log` work and nothing can be
 * committed; the run reads the change from the real worktree afterwards. Files on the deny
 * list in the worktree read as empty. As root it runs as `nobody`, like checks.
 *
 * Its environment is an allow-list: PATH, the locale, TZ, HOME and TMPDIR (the private
 * ones), what its needs declare, `command.env_allow`, and its one API key.
 *
 * `command.sandbox: none` keeps the environment allow-list, the private $HOME and the git
 * snapshot (GIT_DIR), but the agent can read and write every file this user can.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { CommandEngineConfig } from '../contract/config.ts';
import { MetaAgentError } from '../contract/errors.ts';
import { scrubbedEnv } from '../safety/env.ts';
import { CHECK_MARKER } from '../safety/processes.ts';
import {
  bwrapCommand,
  CHECK_GID,
  CHECK_UID,
  dropsPrivileges,
  sandboxStatus,
  sandboxTools,
  type SandboxSettings,
  type SandboxStatus,
} from '../safety/sandbox.ts';
import type { Settings } from '../workspace/config.ts';
import { apiKeyValue, fillPlaceholders, type AgentNeeds } from './agentNeeds.ts';
import { handOver, sandboxPlan, type Session } from './shellTool.ts';
import type { EngineContext } from './types.ts';

export type AgentSandboxMode = 'bwrap' | 'none';

export const UNSANDBOXED_WARNING =
  'command.sandbox: none: the external agent runs WITHOUT a sandbox: it can read and write every file this user can (your home, the real repository, the workspace) and send them to its model; only its environment is cut to an allow-list';

/** Whether the sandbox runs (sandbox.ts sandboxStatus; the doctor passes its own probe). */
export type SandboxProbe = (settings: SandboxSettings, platform: NodeJS.Platform) => Promise<SandboxStatus>;

/** How the agent runs; a config error (field command.sandbox) when the sandbox it needs cannot run here. */
export async function agentSandboxMode(
  settings: Pick<Settings, 'env'>,
  config: Pick<CommandEngineConfig, 'sandbox'>,
  platform: NodeJS.Platform = process.platform,
  probe: SandboxProbe = (s, p) => sandboxStatus(s, { platform: p }),
): Promise<AgentSandboxMode> {
  if (config.sandbox === 'none') return 'none';
  const status = await probe({ config: { sandbox: config.sandbox }, env: settings.env }, platform);
  if (!status.error) return 'bwrap';
  const why = status.error.replace(/^sandbox: \w+: /, '').replace(/,? ?or set "sandbox: none".*$/, '');
  throw new MetaAgentError(
    'config',
    `the command engine runs its agent only in the sandbox, and the sandbox cannot run here: ${why}; or set "command.sandbox: none" to run the agent unsandboxed, with access to every file this user can read`,
    { file: 'meta-agent.yaml', field: 'command.sandbox' },
  );
}

/** The private $HOME: the declared files copied from the user's home or written; nothing else. */
export async function fillHome(home: string, needs: AgentNeeds, userHome: string | undefined): Promise<string[]> {
  const missing: string[] = [];
  for (const file of needs.homeFiles) {
    const target = path.join(home, ...file.path.split('/'));
    await fs.mkdir(path.dirname(target), { recursive: true });
    if (file.content !== undefined) {
      await fs.writeFile(target, file.content, { mode: 0o600 });
      continue;
    }
    const from = userHome ? path.join(userHome, ...(file.copyFrom ?? file.path).split('/')) : null;
    // Links are copied as links (they lead nowhere in the sandbox): never a file outside what was named.
    const copied = from
      ? await fs.cp(from, target, { recursive: true, dereference: false, errorOnExist: false }).then(
          () => true,
          () => false,
        )
      : false;
    if (!copied) missing.push(file.copyFrom ?? file.path);
  }
  return missing;
}

export interface AgentEnvInput {
  ctx: EngineContext;
  session: Session;
  needs: AgentNeeds;
  config: CommandEngineConfig;
  mode: AgentSandboxMode;
  home: string;
  /** The private temp folder when unsandboxed (under bubblewrap /tmp is private). */
  tmp: string;
  promptFile: string;
  marker: string;
  platform?: NodeJS.Platform;
}

export function agentEnv(input: AgentEnvInput): Record<string, string> {
  const { ctx, session, needs, mode, home } = input;
  const windows = (input.platform ?? process.platform) === 'win32';
  const tmp = mode === 'bwrap' ? '/tmp' : input.tmp;
  const fill = (value: string) => fillPlaceholders(value, { home, worktree: session.worktree });
  const declared = Object.fromEntries(Object.entries(needs.env).map(([name, value]) => [name, fill(value)]));
  const key = apiKeyValue(needs, input.config, ctx.settings.env, ctx.settings.llm);
  return scrubbedEnv(ctx.settings.env, needs.envAllow, {
    HOME: home,
    ...(windows ? { USERPROFILE: home } : {}),
    TMPDIR: tmp,
    TEMP: tmp,
    TMP: tmp,
    // git never looks above the worktree, never prompts, and takes the sandbox's folders
    // (owned by another user there) as safe; unsandboxed it uses the snapshot, not the real repository.
    GIT_CEILING_DIRECTORIES: path.dirname(session.worktree),
    GIT_TERMINAL_PROMPT: '0',
    GIT_OPTIONAL_LOCKS: '0',
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: 'safe.directory',
    GIT_CONFIG_VALUE_0: '*',
    ...(mode === 'none' ? { GIT_DIR: session.gitDir ?? path.join(session.root, 'no-history'), GIT_WORK_TREE: session.worktree } : {}),
    META_AGENT_PROMPT_FILE: input.promptFile,
    META_AGENT_TASK_ID: ctx.task.id,
    ...declared,
    ...(needs.apiKeyEnv && key ? { [needs.apiKeyEnv]: key } : {}),
    [CHECK_MARKER]: input.marker,
  });
}

export interface AgentCommand {
  file: string;
  args: string[];
  /** Gives the worktree back to its owner (after a run as `nobody`). */
  restore: () => Promise<void>;
}

/**
 * The command line that runs `argv` (its program resolved to `program`) in the mode: under
 * bubblewrap, the run_command sandbox with the network on, plus the prompt folder, the
 * files named in `command.run`, and the resolver's config read-only.
 */
export async function agentCommand(
  ctx: EngineContext,
  session: Session,
  mode: AgentSandboxMode,
  program: string,
  argv: string[],
  env: Record<string, string>,
  home: string,
  promptDir: string,
  named: string[],
): Promise<AgentCommand> {
  if (mode === 'none') return { file: program, args: argv.slice(1), restore: async () => undefined };
  const plan = await sandboxPlan(ctx, session, program, env, home);
  plan.network = true;
  plan.readOnly.push(promptDir, ...named, ...(await resolverFiles()));
  // The agent's own install folder (and a script's folder) are in plan.readOnly through its program.
  const [file, args] = bwrapCommand(await sandboxTools(ctx.settings), plan, [program, ...argv.slice(1)]);
  let restore: () => Promise<void> = async () => {};
  if (dropsPrivileges()) {
    await chownTree(home);
    restore = await handOver(session.worktree, home);
  }
  return { file, args, restore };
}

/**
 * Files named in `command.run` or `command.program` (a script, its config, the agent's
 * program): absolute paths that exist. A program installed by npm (`<prefix>/node_modules/.bin/codex`)
 * needs its whole install, not one file: the outermost node_modules folder it lives in is named instead.
 */
export async function namedFiles(argv: string[]): Promise<string[]> {
  const files = new Set<string>();
  for (const arg of argv) {
    if (!path.isAbsolute(arg)) continue;
    const real = await fs.realpath(arg).catch(() => null);
    if (!real || !(await fs.stat(real)).isFile()) continue;
    const parts = real.split(path.sep);
    const modules = parts.indexOf('node_modules');
    files.add(modules > 0 ? parts.slice(0, modules + 1).join(path.sep) : real);
  }
  return [...files];
}

/** /etc/resolv.conf when it is a link out of /etc (systemd-resolved): DNS must work for the model. */
async function resolverFiles(): Promise<string[]> {
  const real = await fs.realpath('/etc/resolv.conf').catch(() => null);
  return real && !real.startsWith('/etc/') ? [path.dirname(real)] : [];
}

/** As root the agent runs as nobody: its home and everything in it become nobody's. */
async function chownTree(dir: string): Promise<void> {
  await fs.lchown(dir, CHECK_UID, CHECK_GID);
  for (const rel of await fs.readdir(dir, { recursive: true })) await fs.lchown(path.join(dir, rel), CHECK_UID, CHECK_GID).catch(() => undefined);
}

/** The user's real home (where declared home files are copied from). */
export function userHome(settings: Pick<Settings, 'env'>): string | undefined {
  return settings.env.HOME || settings.env.USERPROFILE || os.homedir();
}
