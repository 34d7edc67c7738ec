/**
 * Verification built into `finish`, and the `run_checks` tool's view of it.
 *
 * The checks are remembered with a fingerprint of the worktree they ran on. `finish` runs
 * them again when the worktree changed since, and compares each with the same check on the
 * base commit: a check (or, where the runner's output names its tests, a single test) that
 * passed on the base and fails now is a regression. `finish` is refused for it at most
 * MAX_REFUSALS times per run; after that the run records the regressions and raises its risk.
 *
 * Also here: the structured findings an agent gives to `finish`, each location checked
 * against the worktree (a file that exists and is not denied, a line inside it).
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { FINDING_SEVERITIES, type CheckName, type CheckResult, type Finding, type Regression } from '../contract/report.ts';
import { toPosix, type PathMatcher } from '../safety/globs.ts';
import { PathRefused, resolveInside, type ResolvedPath } from '../safety/paths.ts';
import type { ChecksOutcome } from './types.ts';
import { gitArgs } from '../workspace/gitArgs.ts';

/** How often `finish` is sent back over regressions; the next `finish` is accepted and flagged. */
export const MAX_REFUSALS = 2;
const MAX_FINDINGS = 100;
const MAX_FINDING_TEXT = 2000;
const REFUSAL_OUTPUT_CHARS = 2500;

/** A check on the base commit: passed, and which tests failed (null: the output does not say). */
export interface BaselineResult {
  passed: boolean;
  failed_tests: string[] | null;
}
export type Baselines = Record<CheckName, BaselineResult | null>;

const LABEL: Record<CheckName, string> = { tests: 'tests', dry_run: 'dry run' };

/**
 * The tests a runner says failed, or null when its output does not let us tell. pytest:
 * the `FAILED path::test` / `ERROR path` lines of the short summary, accepted only when
 * their number matches the final "N failed, M errors" line (so a cut output is not trusted).
 */
export function failedTests(output: string): string[] | null {
  const lines = output.split(/\r?\n/);
  const summary = [...lines]
    .reverse()
    .find(
      (l) =>
        /^=*\s*(?:\d+ (?:failed|passed|errors?|skipped|xfailed|xpassed|warnings?|deselected|rerun)(?:, )?)+.* in [\d.]+s\b/.test(l.trim()) ||
        /^=*\s*no tests ran\b/.test(l.trim()),
    );
  if (!summary) return null;
  const count = (word: string) => Number(new RegExp(`(\\d+) ${word}`).exec(summary)?.[1] ?? 0);
  const expected = count('failed') + count('errors?');
  const named = new Set<string>();
  for (const line of lines) {
    // path::test, with its [parameters] (which may hold " - "), then " - reason" or the end.
    const m = /^(?:FAILED|ERROR) ([^\s[]+(?:\[.*?\])?)(?: - |$)/.exec(line.trim());
    if (m?.[1]) named.add(m[1].trim());
  }
  return named.size === expected ? [...named].sort() : null;
}

/** What passed on the base and fails now: single tests where both outputs name them, else the whole check. */
export function regressionsOf(now: ChecksOutcome, baselines: Baselines): Regression[] {
  const found: Regression[] = [];
  for (const check of ['tests', 'dry_run'] as const) {
    const result = now[check];
    const base = baselines[check];
    if (!result || result.passed || !base) continue;
    const failedNow = check === 'tests' ? failedTests(result.output_tail) : null;
    const failedBefore = base.passed ? [] : base.failed_tests;
    if (failedNow && failedNow.length > 0 && failedBefore) {
      const before = new Set(failedBefore);
      for (const test of failedNow) if (!before.has(test)) found.push({ check, test });
    } else if (base.passed) {
      found.push({ check, test: null });
    }
  }
  return found;
}

export function describeRegression(r: Regression): string {
  return r.test ? `${LABEL[r.check]}: ${r.test}` : `${LABEL[r.check]} (the whole check)`;
}

/** The worktree's state: HEAD, the status, the diff against the base and the untracked files' contents. */
export async function worktreeFingerprint(worktree: string, baseCommit: string): Promise<string> {
  const git = (args: string[]) =>
    // Read-only: no index refresh (collectDiff takes an untouched index as one still at base).
    execa('git', gitArgs(args), { cwd: worktree, encoding: 'buffer', maxBuffer: 256 * 1024 * 1024, env: { GIT_OPTIONAL_LOCKS: '0' } }).then(
      (r) => r.stdout as Uint8Array,
    );
  const hash = createHash('sha256');
  hash.update(await git(['rev-parse', 'HEAD']));
  hash.update(await git(['status', '--porcelain=v1', '-z', '--untracked-files=all']));
  hash.update(await git(['diff', '--binary', baseCommit, '--']));
  const untracked = Buffer.from(await git(['ls-files', '--others', '--exclude-standard', '-z']))
    .toString('utf8')
    .split('\0')
    .filter(Boolean);
  for (const file of untracked) {
    hash.update(`\0${file}\0`);
    hash.update(await fs.readFile(path.join(worktree, file)).catch(() => Buffer.from('(unreadable)')));
  }
  return hash.digest('hex');
}

export interface VerifierDeps {
  worktree: string;
  baseCommit: string;
  /** Which checks the project has. */
  configured: Record<CheckName, boolean>;
  /** Runs the named checks (null: all) on the worktree as it is now. */
  runChecks: (which: CheckName | null) => Promise<ChecksOutcome>;
  /** The checks on the base commit (memoized by the caller). */
  baselines: () => Promise<Baselines>;
}

/** The run's memory of its checks: what ran on which state of the worktree, and the refusals so far. */
export class Verifier {
  private readonly last = new Map<CheckName, { fingerprint: string; result: CheckResult }>();
  private cleanFingerprint: string | null = null;
  private refusals = 0;
  /** The regressions `finish` was last refused over (the report says the agent finished anyway). */
  constructor(private readonly deps: VerifierDeps) {}

  /** Taken before the agent starts: an unchanged worktree is the base, which needs no checking. */
  async start(): Promise<void> {
    // Only beforeFinish reads it, and only when a check is configured: 4 git calls saved otherwise.
    if (this.names().length === 0) return;
    this.cleanFingerprint = await worktreeFingerprint(this.deps.worktree, this.deps.baseCommit);
  }

  private names(): CheckName[] {
    return (['tests', 'dry_run'] as const).filter((c) => this.deps.configured[c]);
  }

  private async run(which: CheckName | null): Promise<{ outcome: ChecksOutcome; fingerprint: string }> {
    const fingerprint = await worktreeFingerprint(this.deps.worktree, this.deps.baseCommit);
    const outcome = await this.deps.runChecks(which);
    for (const name of this.names()) {
      const result = outcome[name];
      if (result) this.last.set(name, { fingerprint, result });
    }
    return { outcome, fingerprint };
  }

  /** The last results when every check ran on the worktree as it is now, else null. */
  async current(): Promise<ChecksOutcome | null> {
    const names = this.names();
    if (names.length === 0) return null;
    const fingerprint = await worktreeFingerprint(this.deps.worktree, this.deps.baseCommit);
    const fresh = names.every((n) => this.last.get(n)?.fingerprint === fingerprint);
    return fresh ? { tests: this.last.get('tests')?.result ?? null, dry_run: this.last.get('dry_run')?.result ?? null } : null;
  }

  /** The `run_checks` tool: each check now beside the same check on the base commit. */
  async checksTool(which: CheckName | null): Promise<string> {
    if (this.names().length === 0) return 'This project has no test or dry_run command configured; there is nothing to run.';
    if (which && !this.deps.configured[which])
      return `This project has no ${which === 'tests' ? 'test' : 'dry_run'} command configured; run_checks can run: ${this.names().join(', ')}.`;
    const { outcome } = await this.run(which);
    const baselines = await this.deps.baselines();
    const parts: string[] = [];
    for (const name of which ? [which] : this.names()) {
      const now = outcome[name];
      if (now) parts.push(formatCheck(name, now, baselines[name]));
    }
    const regressions = regressionsOf(outcome, baselines);
    if (regressions.length)
      parts.push(`REGRESSIONS (passed on the base commit, fail now):\n${regressions.map((r) => `- ${describeRegression(r)}`).join('\n')}`);
    else parts.push(which ? `No regressions in ${LABEL[which]}.` : 'No regressions: nothing that passed on the base commit fails now.');
    return parts.join('\n\n');
  }

  /**
   * Before `finish` is accepted: the checks on the current worktree (run again if it
   * changed since they last ran), compared with the base. Returns the refusal to send
   * back, or null to accept.
   */
  async beforeFinish(): Promise<string | null> {
    if (this.names().length === 0 || this.refusals >= MAX_REFUSALS) return null;
    const fingerprint = await worktreeFingerprint(this.deps.worktree, this.deps.baseCommit);
    if (fingerprint === this.cleanFingerprint) return null;
    const stale = this.names().some((n) => this.last.get(n)?.fingerprint !== fingerprint);
    const outcome = stale
      ? (await this.run(null)).outcome
      : { tests: this.last.get('tests')?.result ?? null, dry_run: this.last.get('dry_run')?.result ?? null };
    const regressions = regressionsOf(outcome, await this.deps.baselines());
    if (regressions.length === 0) return null;
    this.refusals++;
    const output = regressions
      .map((r) => r.check)
      .filter((c, i, all) => all.indexOf(c) === i)
      .map((c) => `$ ${outcome[c]!.command}\n${outcome[c]!.output_tail.slice(-REFUSAL_OUTPUT_CHARS)}`)
      .join('\n\n');
    return [
      `finish refused (${this.refusals} of ${MAX_REFUSALS}): ${stale ? 'the checks ran on your final change and ' : ''}these passed on the base commit and fail now:`,
      ...regressions.map((r) => `- ${describeRegression(r)}`),
      '',
      'Fix what broke them (or undo the change that did), check with run_checks, then call finish again.',
      this.refusals >= MAX_REFUSALS
        ? 'If you cannot fix them, call finish again and say why in risks: it will be accepted, and the report will flag the regressions and set the risk to high.'
        : 'If you call finish again without fixing them, it may be refused once more.',
      '',
      output,
    ].join('\n');
  }
}

function formatCheck(name: CheckName, now: CheckResult, base: BaselineResult | null): string {
  const verdict = (passed: boolean) => (passed ? 'PASSED' : 'FAILED');
  const before =
    base === null
      ? 'unknown (did not finish)'
      : base.passed
        ? 'PASSED'
        : `FAILED${base.failed_tests?.length ? ` (${base.failed_tests.length} failing: ${base.failed_tests.slice(0, 10).join(', ')}${base.failed_tests.length > 10 ? ', ...' : ''})` : ''}`;
  return [
    `## ${LABEL[name]}: now ${verdict(now.passed)}, on the base commit ${before}`,
    `$ ${now.command}`,
    `exit code ${now.exit_code ?? 'none'}${now.timed_out ? ' (timed out)' : ''} in ${now.duration_ms} ms; the last lines of its output:`,
    now.output_tail,
  ].join('\n');
}

/** The `finish` tool's findings, each location checked in the worktree; bad entries are dropped, bad locations marked. */
export async function checkFindings(ctx: { worktree: string; denied: PathMatcher }, raw: unknown): Promise<Finding[]> {
  if (!Array.isArray(raw)) return [];
  const text = (v: unknown) => (typeof v === 'string' ? v.trim().slice(0, MAX_FINDING_TEXT) : '');
  const findings: Finding[] = [];
  for (const item of raw.slice(0, MAX_FINDINGS)) {
    if (!item || typeof item !== 'object') continue;
    const f = item as Record<string, unknown>;
    const title = text(f.title) || text(f.detail).split('\n')[0]!;
    if (!title) continue;
    const lineNumber = typeof f.line === 'number' ? f.line : typeof f.line === 'string' && /^\d+$/.test(f.line.trim()) ? Number(f.line) : null;
    const line = lineNumber !== null && Number.isSafeInteger(lineNumber) ? lineNumber : null;
    const severity = FINDING_SEVERITIES.includes(f.severity as Finding['severity']) ? (f.severity as Finding['severity']) : 'info';
    const file = text(f.file).slice(0, 500);
    const problem = await locationProblem(ctx, file, line);
    findings.push({ file, line, severity, title, detail: text(f.detail) || null, location_valid: problem === null, location_problem: problem });
  }
  return findings;
}

async function locationProblem(ctx: { worktree: string; denied: PathMatcher }, file: string, line: number | null): Promise<string | null> {
  if (!file) return 'no file given';
  let target: ResolvedPath;
  try {
    target = await resolveInside(ctx.worktree, file);
  } catch (error) {
    if (error instanceof PathRefused) return error.message;
    throw error;
  }
  // Through a symlink too: a link to a secret is as denied as the secret (its line count is no one's business).
  const real = await fs.realpath(target.abs).catch(() => null);
  const realRel = real ? toPosix(path.relative(await fs.realpath(ctx.worktree), real)) : target.rel;
  if (ctx.denied(target.rel) || ctx.denied(realRel)) return 'the file is on the deny list';
  const content = await fs.readFile(target.abs, 'utf8').catch((error: NodeJS.ErrnoException) => error);
  if (content instanceof Error) return content.code === 'EISDIR' ? 'a folder, not a file' : 'no such file in the repository';
  if (line === null) return 'no line number given';
  const lines = content.split('\n').length - (content.endsWith('\n') ? 1 : 0);
  if (line < 1 || line > lines) return `line ${line} is outside the file (it has ${lines} line${lines === 1 ? '' : 's'})`;
  return null;
}
