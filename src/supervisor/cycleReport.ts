/**
 * A supervisor cycle's summary for the human: reports/cycles/<cycle-id>.json (checked against
 * CycleReportSchema) and .md beside it, with a row per task and the patches to review.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { CycleReportSchema, type CycleReport, type CycleTask, type Plan } from '../contract/cycle.ts';
import { toErrorInfo } from '../contract/errors.ts';
import { readJsonFileOrNull } from '../contract/readJson.ts';
import type { Report } from '../contract/report.ts';
import type { Settings } from '../workspace/config.ts';
import { replaceFile, retryWrite } from '../workspace/files.ts';
import type { CycleContext } from './context.ts';

/** A task's row in the cycle report: its report's outcome, or "timeout" when no report came. */
export function cycleTask(id: string, planned: Plan['tasks'][number], report: Report | null): CycleTask {
  const check = (c: Report['tests']) => (c ? (c.passed ? 'passed' : 'failed') : 'not run');
  return {
    task_id: id,
    type: planned.type,
    objective: planned.objective,
    status: report ? report.status : 'timeout',
    outcome: report?.outcome ?? null,
    risk_level: report?.risk_level ?? null,
    tests: check(report?.tests ?? null),
    dry_run: check(report?.dry_run ?? null),
    duration_ms: report?.duration_ms ?? 0,
    tokens: report ? report.usage.prompt_tokens + report.usage.completion_tokens : 0,
    cost_usd: report?.usage.cost_usd ?? null,
    summary: report
      ? report.error
        ? report.error.message
        : (report.summary.split('\n')[0] ?? '')
      : 'no report before the wait timeout (supervisor.wait_timeout_s)',
    report: report ? report.report_md : null,
    patch: report?.patch_files[0] ?? null,
    incomplete: report?.incomplete ?? false,
  };
}

export function buildCycleReport(
  settings: Settings,
  x: {
    cycleId: string;
    goal: string;
    mode: 'daily' | 'weekly';
    project: string;
    started: Date;
    finished: Date;
    planner: CycleReport['planner'];
    context: CycleContext | null;
    tasks: CycleTask[];
    reports: Report[];
    budget: CycleReport['budget'];
    stopped: string | null;
    error: CycleReport['error'];
  },
): CycleReport {
  const root = settings.layout.root;
  const candidates = x.reports
    .filter((r) => r.patch_files.length > 0)
    .map((r) => ({
      task_id: r.task_id,
      patch: r.patch_files[0]!,
      files: r.changed_files,
      risk_level: r.risk_level,
      approve: `meta-agent approve ${r.task_id} --root "${root}"`,
      reject: `meta-agent reject ${r.task_id} --reason "..." --root "${root}"`,
      incomplete: r.incomplete,
    }));
  const ok = x.tasks.filter((t) => t.status === 'ok').length;
  const status: CycleReport['status'] = x.error ? 'error' : ok === x.tasks.length && !x.stopped ? 'ok' : 'partial';
  const summary = x.error
    ? `The cycle failed: ${x.error.message}`
    : `${x.tasks.length} task(s) run, ${ok} ok; ${candidates.length} patch(es) to review${candidates.some((c) => c.incomplete) ? ` (${candidates.filter((c) => c.incomplete).length} incomplete)` : ''}${x.stopped ? `; stopped early: ${x.stopped}` : ''}.`;
  const nextActions = [...new Set(x.reports.flatMap((r) => r.next_actions))].slice(0, 20);
  return CycleReportSchema.parse({
    cycle_id: x.cycleId,
    goal: x.goal,
    mode: x.mode,
    project: x.project,
    status,
    summary,
    started_at: x.started.toISOString(),
    finished_at: x.finished.toISOString(),
    planner: x.planner,
    context: {
      commits: x.context?.commits.length ?? 0,
      log_lines: x.context?.logLines.length ?? 0,
      pending_patches: x.context?.pending.length ?? 0,
      rejected_reasons: x.context?.rejectedReasons.length ?? 0,
      open_next_actions: x.context?.openNextActions.length ?? 0,
      pnl: x.context?.pnl ?? null,
    },
    tasks: x.tasks,
    candidates,
    next_actions: nextActions,
    budget: x.budget,
    stopped: x.stopped,
    error: x.error,
  });
}

const cycleReportFile = (settings: Settings, cycleId: string, ext: 'md' | 'json') => path.join(settings.layout.reports, 'cycles', `${cycleId}.${ext}`);

/** Atomic, and idempotent (the cycle id is this cycle's own), so a failed write can be retried and a resumed cycle can write it again. */
export async function writeCycleReport(settings: Settings, report: CycleReport): Promise<void> {
  await fs.mkdir(path.join(settings.layout.reports, 'cycles'), { recursive: true });
  await retryWrite(() => replaceFile(cycleReportFile(settings, report.cycle_id, 'md'), cycleMarkdown(report)));
  await retryWrite(() => replaceFile(cycleReportFile(settings, report.cycle_id, 'json'), `${JSON.stringify(report, null, 2)}\n`));
}

/**
 * The report of a cycle that wrote it already (it died before removing its journal); null when
 * there is none, or when it is damaged (the cycle is then finished again and writes it anew).
 */
export async function readCycleReport(settings: Settings, cycleId: string, log: Logger): Promise<CycleReport | null> {
  const file = cycleReportFile(settings, cycleId, 'json');
  try {
    return await readJsonFileOrNull(file, CycleReportSchema);
  } catch (error) {
    log.warn({ file, err: toErrorInfo(error) }, 'the cycle report is not usable; the cycle is finished again');
    return null;
  }
}

export function cycleMarkdown(r: CycleReport): string {
  const lines = [
    `# Supervisor cycle ${r.cycle_id}: ${r.status.toUpperCase()}`,
    '',
    `Goal **${r.goal}** (${r.mode}) on **${r.project}**, ${r.started_at} -> ${r.finished_at}.`,
    '',
    r.summary,
    '',
    `Plan: ${r.planner.source === 'routine' ? 'configured routine (no LLM)' : `LLM ${r.planner.model} (${r.planner.attempts} attempt(s))`}. Budget: ${r.budget.spent_tokens} of ${r.budget.tokens} tokens${r.budget.exhausted ? ' (spent)' : ''}.`,
    '',
  ];
  if (r.stopped) lines.push(`**Stopped early:** ${r.stopped}`, '');
  if (r.error) lines.push(`**Error** (${r.error.kind}): ${r.error.message}`, '');
  lines.push('## Tasks', '', '| task | type | status | risk | tests | dry run | duration | tokens |', '|---|---|---|---|---|---|---|---|');
  for (const t of r.tasks) {
    lines.push(
      `| ${t.report ? `[${t.task_id}](../../${t.report})` : t.task_id} | ${t.type} | ${t.status}${t.outcome ? ` (${t.outcome})` : ''}${t.incomplete ? ' **incomplete patch**' : ''} | ${t.risk_level ?? '-'} | ${t.tests} | ${t.dry_run} | ${(t.duration_ms / 1000).toFixed(1)} s | ${t.tokens} |`,
    );
  }
  lines.push('');
  for (const t of r.tasks) lines.push(`- **${t.task_id}**: ${t.summary}`);
  lines.push('', '## Candidate changes', '');
  if (r.candidates.length === 0) lines.push('(none)');
  for (const c of r.candidates) {
    lines.push(
      `### ${c.task_id} (risk ${c.risk_level}${c.incomplete ? ', INCOMPLETE' : ''})`,
      '',
      `Patch: \`${c.patch}\`${c.incomplete ? ' (incomplete: the run stopped before the agent finished; review what it did so far)' : ''}`,
      '',
      `Files: ${c.files.map((f) => `\`${f}\``).join(', ')}`,
      '',
      '```',
      c.approve,
      c.reject,
      '```',
      '',
    );
  }
  lines.push('', '## Next actions', '', ...(r.next_actions.length ? r.next_actions.map((a) => `- ${a}`) : ['(none)']), '');
  if (r.context.pnl) lines.push('## PnL at the start of the cycle', '', r.context.pnl, '');
  return lines.join('\n');
}
