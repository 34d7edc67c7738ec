/** The lines commands print about runs and patches (tests and users read them: keep the wording). */
import path from 'node:path';
import type { RunTaskResult } from '../run/runTask.ts';
import { printable } from '../service/progress.ts';
import type { PendingPatch } from '../gate/decide.ts';
import { formatAge } from '../ui/terminal.ts';
import type { Settings } from '../workspace/config.ts';
import { displayPath } from '../workspace/layout.ts';
import type { Io } from './context.ts';

/** `--json` output: the value, indented, on stdout. */
export function printJson(io: Io, value: unknown): void {
  io.out(JSON.stringify(value, null, 2));
}

/** A finished run: status, summary or error, changed files, checks, cost, and where its report and patch are. */
export function summaryLine(settings: Settings, r: RunTaskResult): string {
  const rep = r.report;
  const parts = [
    `${r.task_id}: ${r.status.toUpperCase()} (${r.outcome})${rep.incomplete ? ' INCOMPLETE: the work so far is saved as a patch' : ''}${rep.regressions.length ? ` WITH ${rep.regressions.length} REGRESSION${rep.regressions.length === 1 ? '' : 'S'}: ${rep.regressions.map((g) => g.test ?? (g.check === 'tests' ? 'the tests' : 'the dry run')).join(', ')}` : ''}`,
    rep.summary && !rep.error ? `  ${rep.summary.split('\n')[0]}` : '',
    rep.error ? `  error (${rep.error.kind}): ${rep.error.message}` : '',
    rep.changed_files.length ? `  changed: ${rep.changed_files.join(', ')}` : '',
    rep.tests ? `  tests: ${rep.tests.passed ? 'passed' : 'FAILED'}${rep.dry_run ? `, dry run: ${rep.dry_run.passed ? 'passed' : 'FAILED'}` : ''}` : '',
    `  risk: ${rep.risk_level}; tokens: ${rep.usage.prompt_tokens + rep.usage.completion_tokens}${rep.usage.cost_usd !== null ? ` ($${rep.usage.cost_usd.toFixed(4)})` : ''}`,
    `  report: ${displayPath(settings.layout, r.report_md_path)}`,
    r.patch_path
      ? `  patch: ${displayPath(settings.layout, r.patch_path)}${rep.incomplete ? ' (incomplete)' : ''} (approve: move it into patches/approved/)`
      : '',
    r.patch_path && path.basename(r.patch_path) !== `${r.task_id}.patch`
      ? '  (filed beside an earlier patch of this task that still waits for review; decide on each)'
      : '',
  ];
  return parts.filter(Boolean).join('\n');
}

/** A patch waiting for review, in `status`: regressions, risk, age, files, and its summary's first line. */
export function pendingLine(p: PendingPatch): string {
  return `${p.id}${p.regressions.length ? `  ${p.regressions.length} REGRESSION${p.regressions.length === 1 ? '' : 'S'}` : ''}${p.incomplete ? '  INCOMPLETE' : ''}  risk ${p.risk_level ?? '?'}  ${formatAge(p.age_s)} old  ${printable(p.files.join(', '))}\n    ${printable(p.summary.split('\n')[0] ?? '')}`;
}
