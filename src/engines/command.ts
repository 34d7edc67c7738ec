/**
 * The `command` engine: an external coding-agent CLI (Codex CLI's `codex exec`, Aider, ...)
 * run in the worktree without a shell. The prompt goes on stdin and into a file whose path
 * replaces `{prompt_file}`; `{worktree}` is replaced too. The diff is collected by the run.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { fillPlaceholders, resolveCommand } from './presets/index.ts';
import { addAgentUsage, agentEnv, makePrivateHome } from './presets/launch.ts';
import { MetaAgentError } from '../contract/errors.ts';
import { tail } from '../run/checks.ts';
import type { Engine, EngineContext, EngineResult } from './types.ts';

export class CommandEngine implements Engine {
  readonly name = 'command' as const;

  async run(ctx: EngineContext): Promise<EngineResult> {
    const config = ctx.settings.config.command;
    if (!config) {
      throw new MetaAgentError('config', 'engine "command" needs a "command:" section with "run" (e.g. run: "codex exec --full-auto -")', { file: 'meta-agent.yaml', field: 'command' });
    }
    const prompt = `${ctx.prompt.system}\n\n${ctx.prompt.user}\n`;
    // The prompt file lives outside the worktree so it never becomes part of the diff.
    const promptFile = path.join(ctx.settings.layout.state, 'prompts', `${ctx.runId}.md`);
    await fs.mkdir(path.dirname(promptFile), { recursive: true });
    await fs.writeFile(promptFile, prompt);
    // Presets (presets/): a private HOME and an allow-listed environment; `run` keeps the old ways.
    const resolved = resolveCommand(config, ctx.settings.llm);
    const home = path.join(ctx.settings.layout.state, 'engine-homes', ctx.runId);
    try {
      if (resolved.preset) await makePrivateHome(resolved, home);
      const filled = fillPlaceholders(resolved, { home, promptFile, worktree: ctx.worktree });
      const argv = filled.argv;
      const [file, ...args] = argv as [string, ...string[]];
      await ctx.record({ role: 'command', argv, prompt });
      ctx.log.info({ command: argv.join(' ') }, 'command engine started');
      const result = await execa(file, args, {
        cwd: ctx.worktree,
        input: prompt,
        all: true,
        reject: false,
        timeout: config.timeout_s * 1000,
        forceKillAfterDelay: 5000,
        cancelSignal: ctx.signal,
        maxBuffer: 100_000_000,
        // The agent CLI needs its own credentials; it runs as the service does.
        env: { ...(resolved.preset ? agentEnv(resolved, ctx.settings.env, filled.env, home, ctx.settings.llm) : ctx.settings.env), META_AGENT_PROMPT_FILE: promptFile, META_AGENT_TASK_ID: ctx.task.id },
        extendEnv: false,
      });
      const output = ctx.redact(tail(typeof result.all === 'string' ? result.all : '', 80, 8000));
      const agent = await resolved.parseOutput({ stdout: typeof result.stdout === 'string' ? result.stdout : '', home });
      if (agent.usage) addAgentUsage(ctx.usage, agent.usage, ctx.settings.llm);
      await ctx.record({ role: 'command_result', exit_code: result.exitCode ?? null, timed_out: Boolean(result.timedOut), output });
      if (ctx.signal.aborted) throw ctx.signal.reason;
      if (result.timedOut) throw new MetaAgentError('timeout', `the command engine ran longer than command.timeout_s (${config.timeout_s} s) and was stopped`);
      if (result.exitCode !== 0) {
        const why = result.exitCode === undefined ? `could not start (${result.shortMessage})` : `exited with code ${result.exitCode}`;
        throw new MetaAgentError('engine', `${file} ${why}; output tail: ${output.split('\n').slice(-3).join(' | ')}`);
      }
      const lastLines = output.trim().split('\n').slice(-5).join('\n');
      return {
        finished: true,
        summary: agent.lastMessage ? ctx.redact(agent.lastMessage) : lastLines ? `${path.basename(file)} finished. Last output:\n${lastLines}` : `${path.basename(file)} finished without output.`,
        risks: agent.problems.map(ctx.redact),
        risk_level: 'low',
        next_actions: ['Review the diff: the command engine does not explain its changes.'],
        steps: 1,
        model: null,
        output_tail: output,
      };
    } finally {
      await fs.rm(promptFile, { force: true });
      await fs.rm(home, { recursive: true, force: true });
    }
  }
}
