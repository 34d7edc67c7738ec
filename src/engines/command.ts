/**
 * The `command` engine: an external coding-agent CLI (Codex CLI, Aider, Claude Code, a
 * script) run in the worktree without a shell, inside the sandbox (agentSandbox.ts) and
 * watched for liveness (agentProcess.ts). Its prompt (externalPrompt.ts) goes on stdin and
 * into a file whose path replaces `{prompt_file}`; `{worktree}` is replaced too, and
 * `{last_message_file}` by a writable file outside the worktree where the agent may leave
 * its last message (Codex: --output-last-message). Its report comes from the JSON block it
 * ends with, or its last message (agentReport.ts). The run
 * collects the diff and applies the scope check, the checks and the risk rules as for
 * every engine.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { CommandEngineConfig } from '../contract/config.ts';
import { MetaAgentError } from '../contract/errors.ts';
import { tail } from '../repo/checks.ts';
import { readAgentWrittenFile } from '../safety/paths.ts';
import { findProgram } from '../safety/sandbox.ts';
import { type AgentNeeds, agentNeeds, fillPlaceholders } from './agentNeeds.ts';
import { runAgentProcess } from './agentProcess.ts';
import { readAgentReport } from './agentReport.ts';
import { agentCommand, agentEnv, agentSandboxMode, fillHome, namedFiles, UNSANDBOXED_WARNING, userHome } from './agentSandbox.ts';
import { externalPrompt } from './externalPrompt.ts';
import { addAgentUsage, resolveCommand, type AgentOutput } from './presets/index.ts';
import { disposeShell, sessionFor } from './shellTool.ts';
import type { Engine, EngineContext, EngineResult } from './types.ts';
import { checkFindings } from './verify.ts';

export const COMMAND_EXAMPLE = 'preset: codex, or run: "my-agent --prompt-file {prompt_file}"';

/** The agent's private home, temp folder and prompt file, outside the worktree so they never become part of the diff. */
async function agentFolders(ctx: EngineContext, root: string, prompt: string, needs: AgentNeeds) {
  const home = path.join(root, 'agent-home');
  const tmp = path.join(root, 'agent-tmp');
  const promptDir = path.join(root, 'agent-prompt');
  await Promise.all([home, tmp, promptDir].map((d) => fs.mkdir(d, { recursive: true, mode: 0o755 })));
  await fs.chmod(promptDir, 0o755);
  const promptFile = path.join(promptDir, 'prompt.md');
  await fs.writeFile(promptFile, prompt, { mode: 0o644 });
  const missing = await fillHome(home, needs, userHome(ctx.settings));
  if (missing.length) ctx.log.warn({ missing }, 'command.home_files: not found in your home, not copied');
  return { home, tmp, promptDir, promptFile };
}

/** The agent's program on the PATH it gets (or at its path), or a config error naming the field to fix. */
async function requireProgram(name: string, worktree: string, env: NodeJS.ProcessEnv, field: string): Promise<string> {
  const program = await findProgram(name, worktree, env.PATH ?? '', env.PATHEXT);
  if (program) return program;
  const where = /[\\/]/.test(name) ? ', or at that path' : '';
  throw new MetaAgentError('config', `the engine program "${name}" is not found (on the PATH the agent gets${where}); install it or fix ${field}`, {
    file: 'meta-agent.yaml',
    field,
  });
}

export class CommandEngine implements Engine {
  readonly name = 'command' as const;

  async run(ctx: EngineContext): Promise<EngineResult> {
    const config = ctx.settings.config.command;
    if (!config) {
      throw new MetaAgentError('config', `engine "command" needs a "command:" section with "preset" or "run" (e.g. ${COMMAND_EXAMPLE})`, {
        file: 'meta-agent.yaml',
        field: 'command',
      });
    }
    // A preset (presets/) knows its program, flags, home files and key; `run` is any other agent.
    const resolved = resolveCommand(config, ctx.settings.llm);
    const needs = agentNeeds(config, ctx.settings.llm.apiKeyEnv, resolved.preset ? resolved.needs : null);
    const programField = resolved.preset ? 'command.program' : 'command.run';
    // Refuses before anything runs when the sandbox cannot; `none` is said loudly, in the log and the report.
    const mode = await agentSandboxMode(ctx.settings, config);
    if (mode === 'none') {
      ctx.log.warn(UNSANDBOXED_WARNING);
      ctx.note?.(`${UNSANDBOXED_WARNING}.`);
    }
    const prompt = await externalPrompt({
      task: ctx.promptTask ?? ctx.task,
      worktree: ctx.worktree,
      denied: ctx.denied,
      redact: ctx.redact,
      readsAgentsMd: needs.readsAgentsMd,
    });
    const session = await sessionFor(ctx);
    let restore: () => Promise<void> = async () => {};
    try {
      const { home, tmp, promptDir, promptFile } = await agentFolders(ctx, session.root, prompt, needs);

      const configured = resolved.argv;
      // In the private home: writable by the agent, outside the worktree (never part of the diff).
      const lastMessageFile = path.join(home, '.meta-agent-last-message.md');
      const argv = configured.map((a) => fillPlaceholders(a, { home, worktree: session.worktree, promptFile, lastMessageFile }));
      const marker = randomBytes(12).toString('hex');
      const env = agentEnv({ ctx, session, needs, config, mode, home, tmp, promptFile, marker });
      const program = await requireProgram(argv[0]!, session.worktree, env, programField);
      const command = await agentCommand(ctx, session, mode, program, argv, env, home, promptDir, await namedFiles(configured));
      restore = command.restore;
      await ctx.record({ role: 'command', argv, sandbox: mode, env: Object.keys(env).sort(), prompt });
      ctx.log.info({ command: argv.join(' '), sandbox: mode }, 'command engine started');

      const ran = await runAgentProcess({
        file: command.file,
        args: command.args,
        cwd: session.worktree,
        env,
        input: prompt,
        timeoutMs: config.timeout_s * 1000,
        idleMs: config.idle_timeout_s * 1000,
        watchDir: session.worktree,
        marker,
        signal: ctx.signal,
      });
      const output = ctx.redact(tail(ran.output, 80, 8000));
      // In the report on every path, failures included (runTask reads it back on a throw).
      ctx.outputTail?.(output);
      await ctx.record({ role: 'command_result', exit_code: ran.exitCode, stopped: ran.stopped, output });
      // What the agent reported in its own events (a preset's): usage, its last message, problems.
      const agent: AgentOutput = await resolved.parseOutput({ stdout: ran.output, home }).catch(() => ({ lastMessage: null, usage: null, problems: [] }));
      if (agent.usage) addAgentUsage(ctx.usage, agent.usage, ctx.settings.llm);
      const written = await readAgentWrittenFile(lastMessageFile);
      const lastMessage = written !== null ? ctx.redact(written) : agent.lastMessage ? ctx.redact(agent.lastMessage) : null;
      const result = await this.judge(ctx, config, ran, output, ctx.redact(ran.output), lastMessage, path.basename(argv[0]!), mode);
      return agent.problems.length ? { ...result, risks: [...result.risks, ...agent.problems.map(ctx.redact)] } : result;
    } finally {
      await restore().catch(() => undefined);
      await disposeShell(ctx);
    }
  }

  private async judge(
    ctx: EngineContext,
    config: CommandEngineConfig,
    ran: Awaited<ReturnType<typeof runAgentProcess>>,
    output: string,
    fullOutput: string,
    lastMessage: string | null,
    program: string,
    mode: 'bwrap' | 'none',
  ): Promise<EngineResult> {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    if (ran.stopped === 'timeout')
      throw new MetaAgentError(
        'timeout',
        `the command engine ran longer than command.timeout_s (${config.timeout_s} s) and was stopped with every process it started`,
      );
    if (ran.stopped === 'idle') {
      throw new MetaAgentError(
        'timeout',
        `the command engine was idle (no output and no file change) for command.idle_timeout_s (${config.idle_timeout_s} s) and was stopped with every process it started; an unreachable model or a prompt it waits on looks like this`,
      );
    }
    if (ran.startError) throw new MetaAgentError('engine', `${program} could not start (${ran.startError})`);
    if (mode === 'bwrap' && ran.exitCode === 1 && output.startsWith('bwrap: '))
      throw new MetaAgentError('engine', `the sandbox could not start ${program}: ${output.split('\n')[0]}`);
    if (ran.exitCode !== 0) {
      const why = ran.exitCode === null ? `was killed by ${ran.signal ?? 'a signal'}` : `exited with code ${ran.exitCode}`;
      throw new MetaAgentError('engine', `${program} ${why}; output tail: ${output.trim().split('\n').slice(-3).join(' | ')}`);
    }
    // The redacted output only: what the agent printed may hold a secret it found.
    const said = readAgentReport(fullOutput, lastMessage, program);
    return {
      finished: true,
      summary: said.summary,
      risks: said.risks,
      risk_level: said.risk_level,
      next_actions: said.next_actions,
      findings: await checkFindings(ctx, said.rawFindings),
      steps: 1,
      model: null,
      output_tail: output,
    };
  }
}
