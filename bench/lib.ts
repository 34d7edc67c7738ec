/** Shared pieces of the benchmark: statistics, temp workspaces, generated target repos, the no-op engine. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { Engine, EngineResult } from '../src/engines/types.ts';
import { initWorkspace } from '../src/workspace/init.ts';
import { loadSettings, type Settings } from '../src/workspace/config.ts';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function progress(message: string): void {
  process.stdout.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

export interface Stats {
  n: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentiles. */
export function stats(samples: number[]): Stats {
  if (samples.length === 0) return { n: 0, min: NaN, p50: NaN, p90: NaN, p99: NaN, max: NaN, mean: NaN };
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
  return { n: s.length, min: s[0]!, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: s[s.length - 1]!, mean: s.reduce((a, b) => a + b, 0) / s.length };
}

export const fmt = (ms: number, digits = 1) => (Number.isFinite(ms) ? ms.toFixed(digits) : 'n/a');

/** The engine that does nothing: the run around it is what gets measured. */
export class NoopEngine implements Engine {
  // "command", not "openai": runTask refuses the openai engine when no LLM is configured.
  readonly name = 'command' as const;
  /** performance.now() at each run() call, for the before/after-engine split. */
  readonly calls: number[] = [];

  async run(): Promise<EngineResult> {
    this.calls.push(performance.now());
    return { finished: true, summary: 'noop', risks: [], risk_level: 'low', next_actions: [], steps: 0, model: null, output_tail: null };
  }
}

/** A task file with an empty scope (report only). */
export function taskText(i: number): string {
  return `---\nproject: bench\ntype: custom\nobjective: "Benchmark task ${i}: nothing to do"\nscope: []\n---\n\nNo-op.\n`;
}

/**
 * Writes task files into `staging` (a folder on the same volume as inbox/), with an mtime
 * in the past like createTask's, so that a later rename into inbox/ is an atomic publish.
 */
export async function stageTasks(staging: string, prefix: string, count: number): Promise<string[]> {
  await fs.mkdir(staging, { recursive: true });
  const names: string[] = [];
  const past = new Date(Date.now() - 10_000);
  for (let i = 0; i < count; i++) {
    const name = `${prefix}-${String(i).padStart(4, '0')}.md`;
    const file = path.join(staging, name);
    await fs.writeFile(file, taskText(i));
    await fs.utimes(file, past, past);
    names.push(name);
  }
  return names;
}

const GIT_ID = ['-c', 'user.name=bench', '-c', 'user.email=bench@localhost', '-c', 'commit.gpgsign=false'];

/** A committed git repo of `files` small text files spread over folders of 100. */
export async function makeTargetRepo(dir: string, files: number): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  const perDir = 100;
  for (let d = 0; d * perDir < files; d++) {
    const sub = path.join(dir, 'src', `mod${String(d).padStart(3, '0')}`);
    await fs.mkdir(sub, { recursive: true });
    const writes: Promise<void>[] = [];
    for (let i = d * perDir; i < Math.min(files, (d + 1) * perDir); i++) {
      writes.push(
        fs.writeFile(path.join(sub, `file${String(i).padStart(5, '0')}.py`), `# file ${i}\nVALUE_${i} = ${i}\n\ndef f_${i}(x):\n    return x + ${i}\n`),
      );
    }
    await Promise.all(writes);
  }
  await fs.writeFile(path.join(dir, 'README.md'), `# Generated benchmark repo\n\n${files} small files.\n`);
  await execa('git', ['init', '--quiet', '--initial-branch', 'main'], { cwd: dir });
  await execa('git', ['add', '--all'], { cwd: dir });
  await execa('git', [...GIT_ID, 'commit', '--quiet', '--no-verify', '-m', 'generated'], { cwd: dir });
}

export interface BenchWorkspace {
  root: string;
  staging: string;
  settings: Settings;
  /** Rewrites meta-agent.yaml and reloads the settings. */
  configure(options: ConfigOptions): Promise<Settings>;
}

export interface ConfigOptions {
  concurrency: number;
  settleMs: number;
  scanMs: number;
  /** Configure the `command` engine with run: ["true"] (for the `meta-agent watch` child). */
  commandTrue?: boolean;
}

/** The environment the service sees: no API keys, no git/host surprises. */
export function benchEnv(): Record<string, string | undefined> {
  // REDIS_URL: bench/scaleout.ts's folder host and workers (execution.engine: bullmq).
  return { PATH: process.env.PATH, HOME: process.env.HOME, LANG: process.env.LANG ?? 'C.UTF-8', REDIS_URL: process.env.REDIS_URL };
}

export async function makeBenchWorkspace(root: string, repo: string, options: ConfigOptions): Promise<BenchWorkspace> {
  await initWorkspace(root, { withConfig: false });
  const staging = path.join(root, 'staging');
  await fs.mkdir(staging, { recursive: true });
  const configure = async (o: ConfigOptions) => {
    const yaml = [
      `engine: ${o.commandTrue ? 'command' : 'openai'}`,
      ...(o.commandTrue ? ['command:', '  run: ["true"]'] : []),
      'sandbox: none',
      'projects:',
      '  bench:',
      `    repo: ${JSON.stringify(repo)}`,
      '    scope: ["**"]',
      'limits:',
      `  concurrency: ${o.concurrency}`,
      'queue:',
      `  settle_ms: ${o.settleMs}`,
      `  scan_interval_ms: ${o.scanMs}`,
      '  poll: false',
      '',
    ].join('\n');
    await fs.writeFile(path.join(root, 'meta-agent.yaml'), yaml);
    const settings = await loadSettings(root, benchEnv());
    ws.settings = settings;
    return settings;
  };
  const ws: BenchWorkspace = { root, staging, settings: undefined as unknown as Settings, configure };
  await configure(options);
  return ws;
}

/** Files directly in `dir` that are task files (not dotfiles). */
export async function mdFiles(dir: string): Promise<string[]> {
  return (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.md') && !n.startsWith('.'));
}

export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await sleep(20);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/**
 * docs/benchmarks.md is written by three benchmarks (run.ts, user.ts, scaleout.ts): each owns
 * the part between its own markers, and writing one keeps the others.
 */
export const BENCHMARKS_DOC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'benchmarks.md');
const begin = (name: string) => `<!-- BEGIN ${name}`;
const end = (name: string) => `<!-- END ${name} -->`;

/** Replaces (or appends) the section `name` of docs/benchmarks.md; `body` is its Markdown. */
export async function writeBenchmarkSection(name: string, generatedBy: string, body: string): Promise<void> {
  const section = `${begin(name)}: generated by \`${generatedBy}\`; do not edit by hand -->\n${body.trimEnd()}\n${end(name)}`;
  const doc = await fs.readFile(BENCHMARKS_DOC, 'utf8').catch(() => '# Benchmarks\n');
  const from = doc.indexOf(begin(name));
  const to = doc.indexOf(end(name));
  const next = from >= 0 && to > from ? doc.slice(0, from) + section + doc.slice(to + end(name).length) : `${doc.trimEnd()}\n\n${section}\n`;
  await fs.writeFile(BENCHMARKS_DOC, next);
}

/** The sections other benchmarks wrote into docs/benchmarks.md, to keep when run.ts rewrites the rest. */
export async function otherBenchmarkSections(): Promise<string> {
  const doc = await fs.readFile(BENCHMARKS_DOC, 'utf8').catch(() => '');
  const kept: string[] = [];
  for (const match of doc.matchAll(/<!-- BEGIN ([\w-]+)[\s\S]*?<!-- END \1 -->/g)) kept.push(match[0]);
  return kept.join('\n\n');
}
