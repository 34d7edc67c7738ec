/**
 * Progress a person can follow: a pino destination that turns the known log events into
 * one short line each, on any output (a terminal, a pipe, a service log):
 *
 *   task sizing  step 3/40  edit_file bot/sizing.py  tokens 7.2k
 *   task sizing  tests passed 30/30 in 4.8 s
 *   gate sizing  applied sizing as 1a2b3c4
 *
 * The JSON log in logs/ is unchanged; this only reads the lines pino writes. A check that
 * runs long says so every `aliveEveryMs`. Every line goes through the redactor (again), without
 * control characters.
 */
import { Writable } from 'node:stream';
import { stripVTControlCharacters } from 'node:util';
import type { Redactor } from '../safety/redact.ts';

export interface ProgressOptions {
  /** Where lines go; default stdout. */
  out?: (line: string) => void;
  redact?: Redactor;
  /** How often a running check says it is alive (default 30 s). */
  aliveEveryMs?: number;
}

/** A log event as pino writes it (only the fields read here). */
interface LogEvent {
  level?: number;
  msg?: string;
  task_id?: string;
  run_id?: string;
  gate?: string;
  [field: string]: unknown;
}

const WARN = 40;
/** Messages printed as they are (the service's own one-liners). */
const AS_IS = /^(health: |starting cycle |cycle \S+: |catching up |not starting |task created: |recorded a rejection|the gate run was interrupted|stopping)/;

/**
 * Text from the agent and the repo (tool targets, test names, reasons) reaches a terminal:
 * escape sequences (clear screen, retitle, hyperlinks) and control characters are dropped;
 * tabs and newlines stay.
 */
export function printable(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: removing control characters from agent text is the point
  return stripVTControlCharacters(text).replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, '');
}

export function progressStream(options: ProgressOptions = {}): Writable {
  const out = options.out ?? ((line: string) => void process.stdout.write(`${line}\n`));
  const redact = options.redact ?? ((s: string) => s);
  const aliveEveryMs = options.aliveEveryMs ?? 30_000;
  const running = new Map<string, NodeJS.Timeout>();
  const failedTests = new Map<string, string[]>();
  let pending = '';

  const print = (line: string) => out(redact(printable(line)));
  const handle = (e: LogEvent) => {
    const who = e.gate ? `gate ${e.gate}  ` : e.task_id ? `task ${e.task_id}  ` : '';
    const key = `${e.run_id ?? ''}|${e.gate ?? ''}|${String(e.check ?? '')}`;
    const msg = e.msg ?? '';
    if (msg.startsWith('check started: ')) {
      const started = Date.now();
      clearInterval(running.get(key));
      const timer = setInterval(() => print(`${who}${checkName(e.check)} still running (${duration(Date.now() - started)})`), aliveEveryMs);
      timer.unref();
      running.set(key, timer);
      return;
    }
    if (msg.startsWith('check finished: ')) {
      clearInterval(running.get(key));
      running.delete(key);
      const names = failedTestNames(String(e.tail ?? ''));
      if (e.gate) failedTests.set(e.gate, e.passed ? [] : names);
      return print(who + checkLine(e, names));
    }
    const line = lineFor(e, who, e.gate ? (failedTests.get(e.gate) ?? []) : []);
    if (line) print(line);
  };

  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      pending += chunk.toString('utf8');
      let newline: number;
      while ((newline = pending.indexOf('\n')) >= 0) {
        const text = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        try {
          handle(JSON.parse(text) as LogEvent);
        } catch {
          // Not a JSON log line: nothing to say about it.
        }
      }
      callback();
    },
    final(callback) {
      for (const timer of running.values()) clearInterval(timer);
      running.clear();
      callback();
    },
  });
}

/** The line for one event, or null for the events a person need not see. */
export function lineFor(e: LogEvent, who: string, failed: string[] = []): string | null {
  const msg = e.msg ?? '';
  if (/^step \d+$/.test(msg)) {
    const tools = Array.isArray(e.tools) ? (e.tools as unknown[]).map(String) : [];
    const targets = Array.isArray(e.targets) ? (e.targets as unknown[]) : [];
    const calls = tools.map((tool, i) => (typeof targets[i] === 'string' && targets[i] ? `${tool} ${targets[i] as string}` : tool)).join(', ') || 'reply';
    const steps = e.max_steps ? `${String(e.step)}/${String(e.max_steps)}` : String(e.step);
    return `${who}step ${steps}  ${calls}  tokens ${tokens(e.tokens)}`;
  }
  if (msg.startsWith('run started: ')) return `${who}started (project ${String(e.project)}, ${String(e.type)}, engine ${String(e.engine)})`;
  if (msg.startsWith('run finished: ')) return `${who}finished: ${String(e.outcome)} (${String(e.status)}), risk ${String(e.risk)}, tokens ${tokens(e.tokens)}`;
  if (msg.startsWith('applied as ') && e.gate) return `${who}applied ${e.gate} as ${String(e.commit).slice(0, 7)}`;
  if (msg.startsWith('already applied') && e.gate) return `${who}applied ${e.gate} as ${String(e.commit).slice(0, 7)} (it was already on the branch)`;
  if (msg === 'patch rejected by the gate' && e.gate) return `${who}rejected ${e.gate}: ${rejectionReason(String(e.reason ?? ''), failed)}`;
  if (AS_IS.test(msg)) return `${who}${msg}`;
  if ((e.level ?? 0) >= WARN) {
    const err = e.err as { message?: unknown } | undefined;
    return `${who}${(e.level ?? 0) >= 50 ? 'error' : 'warning'}: ${msg}${err?.message ? `: ${String(err.message).split('\n')[0]}` : ''}`;
  }
  return null;
}

function checkLine(e: LogEvent, failed: string[]): string {
  const name = checkName(e.check);
  const took = seconds(Number(e.duration_ms ?? 0));
  if (e.timed_out) return `${name} TIMED OUT after ${took}`;
  const counts = pytestCounts(String(e.tail ?? ''));
  if (e.passed) return `${name} passed${counts ? ` ${counts.passed}/${counts.total}` : ''} in ${took}`;
  const which = failed.length ? `: ${failed.slice(0, 3).join(', ')}${failed.length > 3 ? `, +${failed.length - 3} more` : ''}` : '';
  return `${name} FAILED${counts ? ` ${counts.total - counts.passed}/${counts.total}` : ''} (exit ${e.exit_code ?? 'none'}) in ${took}${which}`;
}

function rejectionReason(reason: string, failed: string[]): string {
  const check = /^the (tests|dry run) failed/.exec(reason);
  if (check) return `${check[1]} failed${failed.length ? ` (${failed.slice(0, 3).join(', ')})` : ''}`;
  return reason.split('\n')[0]!.replace(/:$/, '');
}

function checkName(label: unknown): string {
  return label === 'test' ? 'tests' : label === 'dry_run' ? 'dry run' : String(label ?? 'check');
}

/** pytest's summary line (`3 failed, 27 passed in 4.80s`): passed and total, or null. */
export function pytestCounts(output: string): { passed: number; total: number } | null {
  const lines = output.split(/\r?\n/).filter((l) => / in [\d.]+s\b/.test(l) && /\b\d+ (passed|failed|error|errors)\b/.test(l));
  const summary = lines.at(-1);
  if (!summary) return null;
  const count = (word: string) => Number(new RegExp(`(\\d+) ${word}\\b`).exec(summary)?.[1] ?? 0);
  const passed = count('passed');
  const total = passed + count('failed') + count('errors?');
  return total > 0 ? { passed, total } : null;
}

/** The test names of pytest's `FAILED path::test_name - ...` lines. */
export function failedTestNames(output: string): string[] {
  const names: string[] = [];
  for (const match of output.matchAll(/^(?:FAILED|ERROR) \S*?::(\S+)/gm)) if (!names.includes(match[1]!)) names.push(match[1]!);
  return names;
}

function tokens(value: unknown): string {
  const n = Number(value ?? 0);
  return n >= 1_000_000 ? `${(n / 1_000_000).toFixed(1)}M` : n >= 1000 ? `${(n / 1000).toFixed(1)}k` : String(n);
}

function seconds(ms: number): string {
  return ms >= 60_000 ? duration(ms) : `${(ms / 1000).toFixed(1)} s`;
}

function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}
