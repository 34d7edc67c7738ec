/**
 * Writing a run's outputs: reports/<id>.json, reports/<id>_report.md, the trajectory.
 * An earlier run of the same id is moved to reports/archive/<id>/<run_id>/ first, so no
 * report is ever overwritten. A pending patch is never moved: only a person's approval or
 * rejection takes it out of patches/pending/; a newer run's patch is filed beside it.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ReportSchema, type CheckResult, type Finding, type Report, type Usage } from '../contract/report.ts';
import type { Layout } from '../workspace/layout.ts';
import { MetaAgentError } from '../contract/errors.ts';
import { parseJsonText, readJsonFile } from '../contract/readJson.ts';
import { z } from 'zod';
import { exists, publishFile } from '../workspace/files.ts';
import { redactDeep, type Redactor } from '../safety/redact.ts';
import { moveUnique } from '../queue/folders.ts';
import { pendingPatchesOf } from '../queue/pendingPatches.ts';

export { pendingPatchesOf };

export function reportPaths(layout: Layout, id: string) {
  return {
    json: path.join(layout.reports, `${id}.json`),
    md: path.join(layout.reports, `${id}_report.md`),
    trajectory: path.join(layout.reports, `${id}.trajectory.jsonl`),
  };
}

export interface EarlierRun {
  /** Where its outputs went (null: there were none). */
  dir: string | null;
  /**
   * What it spent without finishing: a run that died before its report (summed from its
   * trajectory) or was interrupted. The next run carries it, so the task's usage (and the
   * budget it counts against) includes every attempt; a finished run carries nothing.
   */
  unfinishedUsage: Usage | null;
}

/** What archiving needs of an earlier report; lenient, since it may be from an older version (a field it cannot use is left out). */
const EarlierReportSchema = z.object({
  run_id: ReportSchema.shape.run_id.optional(),
  usage: ReportSchema.shape.usage.optional().catch(undefined),
  error: ReportSchema.shape.error.optional().catch(null),
  incomplete: z.boolean().optional().catch(undefined),
});

/** Moves the previous outputs of `id` (report, trajectory) into the archive; a pending patch stays where it is. */
export async function archiveEarlierRun(layout: Layout, id: string): Promise<EarlierRun> {
  const paths = reportPaths(layout, id);
  const candidates = [paths.json, paths.md, paths.trajectory];
  const present: string[] = [];
  for (const file of candidates) if (await exists(file)) present.push(file);
  if (present.length === 0) return { dir: null, unfinishedUsage: null };
  let earlierRun = 'unknown';
  let unfinishedUsage: Usage | null = null;
  try {
    const earlier = await readJsonFile(paths.json, EarlierReportSchema);
    earlierRun = earlier.run_id ?? earlierRun;
    // An interrupted run that saved an incomplete patch went to failed/: running it again is a person's new start.
    if (earlier.error?.kind === 'interrupted' && !earlier.incomplete && earlier.usage) unfinishedUsage = earlier.usage;
  } catch {
    earlierRun = `before-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    if (!(await exists(paths.json))) unfinishedUsage = await usageInTrajectory(paths.trajectory);
  }
  const dir = path.join(layout.reportArchive, id, earlierRun.replace(/[^A-Za-z0-9._-]/g, '_'));
  for (const file of present) await moveUnique(file, dir).catch(() => undefined);
  return { dir, unfinishedUsage };
}

/** Where `archiveEarlierRun` put the report of run `runId` of task `id`. */
export function archivedReportPath(layout: Layout, id: string, runId: string): string {
  return path.join(layout.reportArchive, id, runId.replace(/[^A-Za-z0-9._-]/g, '_'), `${id}.json`);
}

/** The file stem for a new patch of `id`: `<id>`, or `<id>.<run_id>` beside one still waiting for review. */
export async function patchStemFor(layout: Layout, id: string, runId: string): Promise<string> {
  return (await pendingPatchesOf(layout, id)).length ? `${id}.${runId}` : id;
}

/**
 * The refusal of a re-run while a patch of the task waits for review (null: none waits).
 * `run --force` and `watch` (which cannot ask) run anyway and file the new patch beside it.
 */
export async function pendingPatchRefusal(layout: Layout, id: string): Promise<MetaAgentError | null> {
  const pending = await pendingPatchesOf(layout, id);
  if (pending.length === 0) return null;
  const names = pending.map((f) => `patches/pending/${path.basename(f)}`).join(', ');
  return new MetaAgentError(
    'input',
    `${names} ${pending.length === 1 ? 'is' : 'are'} waiting for review; approve or reject ${pending.length === 1 ? 'it' : 'them'} first, or re-run with --force (the new patch is then filed beside ${pending.length === 1 ? 'it' : 'them'})`,
    { field: '--task-id' },
  );
}

/** The usage a trajectory line records (the model's own numbers, as the API returned them). */
const TrajectoryUsageSchema = z.object({
  usage: z
    .object({
      prompt_tokens: z.number().nullish(),
      completion_tokens: z.number().nullish(),
      prompt_tokens_details: z.object({ cached_tokens: z.number().nullish() }).nullish(),
    })
    .nullish(),
});
type TrajectoryUsage = z.infer<typeof TrajectoryUsageSchema>;

/** Sums the model usage recorded step by step in a trajectory (null when there is none). */
async function usageInTrajectory(file: string): Promise<Usage | null> {
  const text = await fs.readFile(file, 'utf8').catch(() => null);
  if (!text) return null;
  const usage: Usage = { requests: 0, prompt_tokens: 0, cached_tokens: 0, completion_tokens: 0, cost_usd: null };
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let entry: TrajectoryUsage;
    try {
      entry = parseJsonText(line, TrajectoryUsageSchema, file);
    } catch {
      continue; // the line the crash cut short
    }
    if (!entry.usage) continue;
    usage.requests++;
    usage.prompt_tokens += entry.usage.prompt_tokens ?? 0;
    usage.completion_tokens += entry.usage.completion_tokens ?? 0;
    usage.cached_tokens += entry.usage.prompt_tokens_details?.cached_tokens ?? 0;
  }
  return usage.requests ? usage : null;
}

export class TrajectoryWriter {
  constructor(
    readonly file: string,
    private readonly redact: Redactor,
  ) {}

  async record(entry: Record<string, unknown>): Promise<void> {
    await fs.mkdir(path.dirname(this.file), { recursive: true });
    await fs.appendFile(this.file, `${JSON.stringify(redactDeep({ ts: new Date().toISOString(), ...entry }, this.redact))}\n`);
  }
}

type ReportText = Pick<
  Report,
  | 'summary'
  | 'objective'
  | 'findings'
  | 'risks'
  | 'risk_reasons'
  | 'next_actions'
  | 'notes'
  | 'flags'
  | 'error'
  | 'tests'
  | 'dry_run'
  | 'engine_output_tail'
  | 'retrain'
>;

/**
 * The free text of a run's outcome (the agent's words, the task's, check output, error
 * messages) with secrets redacted; ids, paths, commands and numbers stay as they are.
 */
export function redactReportText<T extends ReportText>(report: T, redact: Redactor): T {
  const list = (items: string[]) => items.map((item) => redact(item));
  const check = (c: CheckResult | null) => (c ? { ...c, output_tail: redact(c.output_tail) } : null);
  return {
    ...report,
    summary: redact(report.summary),
    objective: redact(report.objective),
    findings: report.findings.map((f) => ({ ...f, file: redact(f.file), title: redact(f.title), detail: f.detail === null ? null : redact(f.detail) })),
    risks: list(report.risks),
    risk_reasons: list(report.risk_reasons),
    next_actions: list(report.next_actions),
    notes: list(report.notes),
    flags: list(report.flags),
    error: report.error ? { ...report.error, message: redact(report.error.message) } : null,
    tests: check(report.tests),
    dry_run: check(report.dry_run),
    engine_output_tail: report.engine_output_tail === null ? null : redact(report.engine_output_tail),
    retrain: report.retrain ? { ...report.retrain, steps: report.retrain.steps.map((step) => check(step)!) } : null,
  };
}

export async function writeReport(layout: Layout, report: Report): Promise<{ json: string; md: string }> {
  const checked = ReportSchema.parse(report);
  const paths = reportPaths(layout, report.task_id);
  const md = await publishOrSuffix(paths.md, renderMarkdown(checked));
  const json = await publishOrSuffix(paths.json, `${JSON.stringify(checked, null, 2)}\n`);
  return { json, md };
}

/** Two runs of one id at the same moment must not clobber each other: the second gets a suffix. */
async function publishOrSuffix(file: string, text: string): Promise<string> {
  try {
    await publishFile(file, text);
    return file;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const ext = file.endsWith('_report.md') ? '_report.md' : path.extname(file);
    const other = `${file.slice(0, -ext.length)}.${Date.now()}${ext}`;
    await publishFile(other, text);
    return other;
  }
}

export function renderMarkdown(r: Report): string {
  const lines: string[] = [...renderHead(r)];
  lines.push('## Objective', '', r.objective || '(none)', '');
  lines.push('## Summary', '', r.summary || '(none)', '');
  if (r.findings.length) lines.push(...renderFindings(r.findings));
  if (r.error) lines.push('## Error', '', `**${r.error.kind}**: ${r.error.message}`, '');
  if (r.changed_files.length)
    lines.push('## Changed files', '', ...r.changed_files.map((f) => `- \`${f}\`${r.scope_violations.includes(f) ? ' (outside scope or denied)' : ''}`), '');
  if (r.patch_files.length) {
    lines.push(
      r.incomplete ? '## Patch (incomplete: the run stopped before the agent called finish)' : '## Patch',
      '',
      ...r.patch_files.map((f) => `- \`${f}\``),
      '',
    );
    lines.push(`Approve by moving \`${path.basename(r.patch_files[0]!)}\` into \`patches/approved/\`; reject by moving it into \`patches/rejected/\`.`, '');
  }
  lines.push(
    '## Risks',
    '',
    ...(r.risks.length ? r.risks.map((x) => `- ${x}`) : ['- (none stated)']),
    '',
    `Risk level: **${r.risk_level}** (${r.risk_reasons.join('; ')})`,
    '',
  );
  lines.push(...renderMetrics(r), ...renderRetrain(r));
  if (r.notes.length) lines.push('## Notes', '', ...r.notes.map((n) => `- ${n}`), '');
  for (const [title, check] of [
    ['Tests', r.tests],
    ['Dry run', r.dry_run],
  ] as const)
    lines.push(...renderCheck(title, check));
  if (r.engine_output_tail) lines.push('## Engine output (tail)', '', '```', r.engine_output_tail, '```', '');
  lines.push('## Next actions', '', ...(r.next_actions.length ? r.next_actions.map((x) => `- ${x}`) : ['- (none)']), '');
  if (r.trajectory) lines.push(`Conversation with the model: \`${r.trajectory}\``, '');
  return lines.join('\n');
}

/** The title, any regressions (first: the agent finished although this broke what passed before), the facts table and the sandbox warnings. */
function renderHead(r: Report): string[] {
  const lines: string[] = [];
  const icon = r.status === 'ok' ? 'OK' : 'ERROR';
  const broke = `${r.incomplete ? ', INCOMPLETE patch saved' : ''}${r.regressions.length ? `, ${r.regressions.length} REGRESSION${r.regressions.length === 1 ? '' : 'S'}` : ''}`;
  lines.push(`# ${r.task_id}: ${icon} (${r.outcome.replace('_', ' ')}${broke})`, '');
  if (r.regressions.length) {
    // First, before anything else: the agent finished although this broke what passed before.
    lines.push(
      `> **Regressions: this change breaks ${r.regressions.length === 1 ? 'a check' : 'checks'} that passed on the base commit** (the agent was told, and finished anyway; risk raised to high):`,
    );
    for (const reg of r.regressions)
      lines.push(`> - ${reg.check === 'tests' ? 'tests' : 'dry run'}: ${reg.test === null ? '(the whole check)' : `\`${inlineCode(reg.test)}\``}`);
    lines.push('');
  }
  lines.push(`| | |`, `|---|---|`);
  lines.push(`| Project | ${r.project} (${r.branch ?? '?'} @ ${r.base_commit?.slice(0, 10) ?? '?'}) |`);
  lines.push(`| Type / source | ${r.type} / ${r.source} |`);
  lines.push(`| Risk | **${r.risk_level}** |`);
  lines.push(`| Engine | ${r.engine}${r.model ? ` (${r.model})` : ''}, ${r.steps} steps |`);
  lines.push(
    `| Usage | ${r.usage.requests} requests, ${r.usage.prompt_tokens} prompt (${r.usage.cached_tokens} cached) + ${r.usage.completion_tokens} completion tokens${r.usage.cost_usd !== null ? `, $${r.usage.cost_usd.toFixed(4)}` : ''} |`,
  );
  if (r.secrets_redacted > 0) lines.push(`| Secrets redacted | ${r.secrets_redacted} (shown as [REDACTED] to the model and here) |`);
  lines.push(`| Time | ${r.started_at} -> ${r.finished_at} (${(r.duration_ms / 1000).toFixed(1)} s) |`);
  lines.push(`| Run | ${r.run_id} |`, '');
  if (r.checks_unsandboxed)
    lines.push(
      '> **Warning: checks ran unsandboxed** (`sandbox: none`): the tests and the dry run of this change could read any file of this user and reach the network. See the README, "What `sandbox: none` means".',
      '',
    );
  if (r.shell === 'unsandboxed')
    lines.push(
      "> **Warning: the agent's run_command ran unsandboxed** (`tools.shell: unsandboxed`): its commands could read any file of this user and reach the network.",
      '',
    );
  return lines;
}

/** The risk numbers computed in code from the bot's trades. */
function renderMetrics(r: Report): string[] {
  const lines: string[] = [];
  if (r.metrics) {
    const m = r.metrics;
    const f = (n: number | null, d = 2) => (n === null ? 'n/a' : n.toFixed(d));
    lines.push('## Risk numbers (computed in code)', '', '| metric | value |', '|---|---|');
    lines.push(
      `| trades | ${m.trades} |`,
      `| net_pnl | ${f(m.net_pnl)} |`,
      `| win_rate | ${f(m.win_rate, 3)} |`,
      `| profit_factor | ${f(m.profit_factor, 3)} |`,
    );
    lines.push(
      `| avg_win / avg_loss | ${f(m.avg_win)} / ${f(m.avg_loss)} |`,
      `| max_drawdown | ${f(m.max_drawdown)} (${f(m.max_drawdown_pct)}%) |`,
      `| worst_day | ${m.worst_day ? `${m.worst_day.date}: ${f(m.worst_day.pnl)}` : 'n/a'} |`,
      '',
    );
    lines.push(r.flags.length ? `Flags:\n${r.flags.map((x) => `- **${x}**`).join('\n')}` : 'No thresholds crossed.', '');
  }
  return lines;
}

function renderRetrain(r: Report): string[] {
  const lines: string[] = [];
  if (r.retrain) {
    lines.push('## Retrain', '');
    const c = r.retrain.comparison;
    if (c)
      lines.push(
        `Candidate ${c.metric} **${c.candidate}** vs baseline **${c.baseline ?? 'none'}** (margin ${c.margin}, ${c.higher_is_better ? 'higher' : 'lower'} is better): ${c.beats_baseline ? '**beats the baseline**' : '**does not beat the baseline** (the gate will not install it)'}.`,
        '',
      );
    for (const step of r.retrain.steps)
      lines.push(`- \`${step.command}\`: ${step.passed ? 'ok' : 'FAILED'} (exit ${step.exit_code ?? 'none'}, ${step.duration_ms} ms)`);
    if (r.retrain.artifacts.length) lines.push('', `Artifacts next to the patch: ${r.retrain.artifacts.map((a) => `\`${a}\``).join(', ')}`);
    lines.push('');
  }
  return lines;
}

const SEVERITY_ORDER: Record<Finding['severity'], number> = { high: 0, medium: 1, low: 2, info: 3 };

/** The agent's findings as a table, most severe first; a location that did not check out says why. */
function renderFindings(findings: Finding[]): string[] {
  const sorted = [...findings].sort((a, b) => SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity]);
  const rows = sorted.map((f) => {
    const where = `${f.file}${f.line === null ? '' : `:${f.line}`}`;
    const location = f.location_valid ? where : `${where} (not found: ${f.location_problem ?? 'unknown'})`;
    const what = f.detail ? `**${cell(f.title)}** ${cell(f.detail)}` : `**${cell(f.title)}**`;
    return `| ${f.severity} | ${cell(location)} | ${what} |`;
  });
  const unchecked = findings.filter((f) => !f.location_valid).length;
  return [
    `## Findings (${findings.length})`,
    '',
    '| Severity | Location | Finding |',
    '|---|---|---|',
    ...rows,
    '',
    ...(unchecked
      ? [
          `${unchecked} finding${unchecked === 1 ? '' : 's'} name${unchecked === 1 ? 's' : ''} a location that does not exist in the repository (marked "not found").`,
          '',
        ]
      : []),
  ];
}

/** A table cell: one line, no column breaks, no HTML or Markdown emphasis from the agent. */
function cell(text: string): string {
  return text
    .replace(/\r?\n|\r/g, ' ')
    .replace(/([\\|*_`[\]<>])/g, '\\$1')
    .trim();
}

/** Text inside a code span: no backticks to end it early, one line. */
function inlineCode(text: string): string {
  return text.replace(/`/g, "'").replace(/\r?\n|\r/g, ' ');
}

function renderCheck(title: string, check: CheckResult | null): string[] {
  if (!check) return [`## ${title}`, '', 'not run', ''];
  const verdict = check.passed ? 'passed' : check.timed_out ? 'timed out' : 'FAILED';
  const baseline = check.baseline_passed === null ? 'unknown' : check.baseline_passed ? 'passed' : 'failed (already failing before this change)';
  return [
    `## ${title}: ${verdict}`,
    '',
    `\`${check.command}\` exit ${check.exit_code ?? 'none'} in ${check.duration_ms} ms (sandbox: ${check.sandbox}; on the base commit: ${baseline})`,
    '',
    '```',
    check.output_tail.trim() || '(no output)',
    '```',
    '',
  ];
}
