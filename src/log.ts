/**
 * Logging: pino JSON lines into logs/meta-agent_YYYY-MM-DD.log (a new file each UTC day),
 * and readable lines on the console: the CLI passes a progress stream (service/progress.ts,
 * one line per event); pino-pretty blocks with META_AGENT_LOG=pretty or --verbose. Secrets
 * are redacted before anything is written.
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import { createRequire } from 'node:module';
import { redactDeep, type Redactor } from './safety/redact.ts';

export type { Logger };

export interface LoggerOptions {
  logsDir: string;
  /** File name prefix: `<prefix>_YYYY-MM-DD.log`. */
  prefix?: string;
  /** Terminal output: 'pretty' (default on a TTY), 'json', or 'none'; ignored when `consoleStream` is given. */
  console?: 'pretty' | 'json' | 'none';
  /** Receives the (redacted) JSON lines at info and above instead: e.g. the progress lines. */
  consoleStream?: NodeJS.WritableStream;
  level?: string;
  redact?: Redactor;
}

/** A stream that appends to `<dir>/<prefix>_<UTC date>.log`, switching files at midnight. */
class DailyFile extends Writable {
  private day = '';
  private stream: WriteStream | undefined;

  constructor(
    private readonly dir: string,
    private readonly prefix: string,
  ) {
    super();
    mkdirSync(dir, { recursive: true });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const day = new Date().toISOString().slice(0, 10);
    if (day !== this.day) {
      this.stream?.end();
      this.day = day;
      this.stream = createWriteStream(path.join(this.dir, `${this.prefix}_${day}.log`), { flags: 'a' });
    }
    this.stream!.write(chunk, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.stream) this.stream.end(callback);
    else callback();
  }
}

export function createLogger(options: LoggerOptions): Logger {
  const streams: pino.StreamEntry[] = [{ stream: new DailyFile(options.logsDir, options.prefix ?? 'meta-agent'), level: 'debug' }];
  const mode = options.console ?? (process.stderr.isTTY ? 'pretty' : 'none');
  if (options.consoleStream) {
    streams.push({ stream: options.consoleStream, level: 'info' });
  } else if (mode === 'pretty') {
    // Loaded only for a terminal: pino-pretty is ~10 MB a service writing to a file does not carry.
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
    streams.push({ stream: pretty({ destination: 2, colorize: process.stderr.isTTY, ignore: 'pid,hostname', translateTime: 'HH:MM:ss' }), level: 'info' });
  } else if (mode === 'json') {
    streams.push({ stream: process.stderr, level: 'info' });
  }
  const redact = options.redact;
  return pino(
    {
      level: options.level ?? 'debug',
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      ...(redact
        ? {
            formatters: { log: (object: Record<string, unknown>) => redactDeep(object, redact) },
            hooks: {
              logMethod(args: unknown[], method: (...a: unknown[]) => void) {
                method.apply(
                  this,
                  args.map((a) => (typeof a === 'string' ? redact(a) : a)),
                );
              },
            },
          }
        : {}),
    },
    pino.multistream(streams),
  );
}

/** A logger that writes nothing (library use without a workspace logger). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
