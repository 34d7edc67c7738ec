/**
 * The one error type of meta-agent. `kind` says what went wrong (and maps to an exit
 * code in the CLI); `file` and `field` say where, so a message is one line a user can act on.
 */
import { z } from 'zod';

export const ERROR_KINDS = [
  'input', // a task file or CLI argument is wrong
  'config', // meta-agent.yaml or the environment is wrong
  'llm', // the model endpoint refused or kept failing
  'format', // the model's replies had no usable tool call, several times in a row
  'budget', // max_steps / max_tokens spent
  'timeout', // task_timeout_s passed
  'interrupted', // Ctrl-C / SIGTERM
  'scope', // the change touched files outside the task's scope
  'git', // a git command failed
  'engine', // the external coding-agent command failed
  'internal', // a bug
] as const;
export const ErrorKindSchema = z.enum(ERROR_KINDS);
export type ErrorKind = z.infer<typeof ErrorKindSchema>;

/** An error as reports and cycle reports carry it. */
export const ErrorInfoSchema = z.object({
  kind: ErrorKindSchema,
  message: z.string(),
  file: z.string().optional(),
  field: z.string().optional(),
});
export type ErrorInfo = z.infer<typeof ErrorInfoSchema>;

export class MetaAgentError extends Error {
  readonly kind: ErrorKind;
  readonly file?: string;
  readonly field?: string;

  constructor(kind: ErrorKind, message: string, where: { file?: string; field?: string; cause?: unknown } = {}) {
    super(formatMessage(message, where.file, where.field), where.cause ? { cause: where.cause } : undefined);
    this.name = 'MetaAgentError';
    this.kind = kind;
    this.file = where.file;
    this.field = where.field;
  }

  toInfo(): ErrorInfo {
    return { kind: this.kind, message: this.message, ...(this.file ? { file: this.file } : {}), ...(this.field ? { field: this.field } : {}) };
  }
}

function formatMessage(message: string, file?: string, field?: string): string {
  const where = [file, field ? `field "${field}"` : undefined].filter(Boolean).join(': ');
  const oneLine = message.replace(/\s*\r?\n\s*/g, ' ').trim();
  return where ? `${where}: ${oneLine}` : oneLine;
}

/** Any thrown value as ErrorInfo; unknown errors are kept as `internal` with their message. */
export function toErrorInfo(error: unknown): ErrorInfo {
  if (error instanceof MetaAgentError) return error.toInfo();
  const message = error instanceof Error ? error.message : String(error);
  return { kind: 'internal', message: message.split(/\r?\n/)[0] ?? message };
}

/** Exit codes of the CLI: 2 for bad input or config, 1 for a task that ran and failed. */
export function exitCodeFor(kind: ErrorKind): number {
  return kind === 'input' || kind === 'config' ? 2 : 1;
}
