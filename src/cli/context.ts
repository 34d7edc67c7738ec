/**
 * What every command gets: the output streams, the workspace folder (--root), the log it
 * makes, and the exit code it sets.
 */
import { createLogger, type Logger, type LoggerOptions } from '../log.ts';
import { makeRedactor, type Redactor } from '../safety/redact.ts';
import { progressStream } from '../service/progress.ts';
import { loadSettings, resolveRoot, type Settings } from '../workspace/config.ts';

export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
}

export const defaultIo: Io = { out: (t) => process.stdout.write(`${t}\n`), err: (t) => process.stderr.write(`${t}\n`) };

/**
 * What the console shows of the log: progress lines, or pino itself (META_AGENT_LOG=pretty|json|none, or --verbose).
 * Any other value means progress lines.
 */
export function consoleModeFor(argv: string[], env: NodeJS.ProcessEnv): string {
  return env.META_AGENT_LOG ?? (argv.includes('--verbose') ? 'pretty' : 'progress');
}

export class CliContext {
  /** What `main` returns when the command ends without an error; a command sets it (1 a task failed, 2 bad input). */
  exitCode = 0;

  constructor(
    readonly io: Io,
    /** The --root option, read once the command line is parsed (it may come before or after the subcommand). */
    private readonly rootOption: () => string | undefined,
    private readonly consoleMode: string,
  ) {}

  /** The workspace folder: --root, then $META_AGENT_ROOT, then the current folder. */
  root(): string {
    return resolveRoot(this.rootOption());
  }

  settings(): Promise<Settings> {
    return loadSettings(this.root());
  }

  /** The log of a command: to logs/ always; to the console unless `quiet` (as the console mode says). */
  makeLog(settings: Settings, quiet?: boolean, prefix?: string): Logger {
    const redact = makeRedactor(settings.env, settings.llm.apiKey ? [settings.llm.apiKey] : []);
    return createLogger({
      logsDir: settings.layout.logs,
      ...(prefix ? { prefix } : {}),
      ...(quiet ? { console: 'none' as const } : this.consoleOf(redact)),
      redact,
    });
  }

  private consoleOf(redact: Redactor): Pick<LoggerOptions, 'console' | 'consoleStream'> {
    const mode = this.consoleMode;
    if (mode === 'pretty' || mode === 'json' || mode === 'none') return { console: mode };
    return { consoleStream: progressStream({ redact }) };
  }
}
