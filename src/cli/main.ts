/**
 * The `meta-agent` command: builds the commander program, one module per command
 * (commands/), and maps errors to exit codes: 0 ok, 1 a task ran and failed, 2 bad input or
 * configuration.
 */
import { Command, CommanderError } from 'commander';
import { exitCodeFor, toErrorInfo } from '../contract/errors.ts';
import { registerApprove } from './commands/approve.ts';
import { registerDoctor } from './commands/doctor.ts';
import { registerInit } from './commands/init.ts';
import { registerNew } from './commands/new.ts';
import { registerReject } from './commands/reject.ts';
import { registerRetry } from './commands/retry.ts';
import { registerReview } from './commands/review.ts';
import { registerRun } from './commands/run.ts';
import { registerSchedule } from './commands/schedule.ts';
import { registerService } from './commands/service.ts';
import { registerStatus } from './commands/status.ts';
import { registerSupervise } from './commands/supervise.ts';
import { registerUi } from './commands/ui.ts';
import { registerValidate } from './commands/validate.ts';
import { registerWatch } from './commands/watch.ts';
import { registerWorker } from './commands/worker.ts';
import { CliContext, consoleModeFor, defaultIo, type Io } from './context.ts';
import { installFaultHooks } from './faults.ts';
import { packageVersion } from './version.ts';

/** The commands, in the order `--help` lists them. */
const COMMANDS: ReadonlyArray<(program: Command, cli: CliContext) => void> = [
  registerInit,
  registerNew,
  registerRun,
  registerValidate,
  registerRetry,
  registerUi,
  registerWatch,
  registerService,
  registerWorker,
  registerDoctor,
  registerSupervise,
  registerSchedule,
  registerStatus,
  registerApprove,
  registerReject,
  registerReview,
];

export async function main(argv: string[], io: Io = defaultIo): Promise<number> {
  installFaultHooks(process.env);
  const program = createProgram(io);
  const cli = new CliContext(io, () => program.opts<{ root?: string }>().root, consoleModeFor(argv, process.env));
  for (const register of COMMANDS) register(program, cli);
  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    const info = toErrorInfo(error);
    io.err(`meta-agent: ${info.message}`);
    return exitCodeFor(info.kind);
  }
  return cli.exitCode;
}

/** The program and its global options; commander's own output (help, usage errors) goes to `io`. */
function createProgram(io: Io): Command {
  return (
    new Command('meta-agent')
      .description('Overnight code maintenance with an LLM coding agent, through a folder queue and a human approval gate.')
      .version(packageVersion(), '--version', 'print the version and exit')
      .option('--root <dir>', 'workspace folder (default: $META_AGENT_ROOT, then the current folder)')
      .option('--verbose', 'show the log itself on the console (pino), not the progress lines (also: META_AGENT_LOG=pretty)')
      // Every subcommand's help shows --root too (it may come before or after the subcommand).
      .configureHelp({ showGlobalOptions: true })
      .showHelpAfterError()
      .exitOverride()
      .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
  );
}
