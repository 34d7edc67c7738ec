/** Terminal views: `status`, `review`, and one-line results. */
import { promises as fs } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import type { Logger } from 'pino';
import type { Settings } from '../workspace/config.ts';
import { displayPath } from '../workspace/layout.ts';
import { approvePatch, listPending, rejectPatch, type PendingPatch } from '../gate/decide.ts';
import { processApprovedPatch, type GateResult } from '../gate/gate.ts';
import { reportOfPatch } from './state.ts';
import { countTasks } from '../queue/retry.ts';
import { printable } from '../service/progress.ts';

export interface WorkspaceStatus {
  counts: Record<string, number>;
  pending: PendingPatch[];
}

export async function workspaceStatus(settings: Settings): Promise<WorkspaceStatus> {
  const { layout } = settings;
  const count = async (dir: string, ext: string) =>
    (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => !n.startsWith('.') && n.endsWith(ext)).length;
  const counts: Record<string, number> = {
    inbox: await countTasks(layout.inbox),
    processing: await countTasks(layout.processing),
    done: await countTasks(layout.done),
    failed: await countTasks(layout.failed),
    'patches/pending': await count(layout.patches.pending, '.patch'),
    'patches/approved': await count(layout.patches.approved, '.patch'),
    'patches/applied': await count(layout.patches.applied, '.patch'),
    'patches/rejected': await count(layout.patches.rejected, '.patch'),
  };
  return { counts, pending: await listPending(settings) };
}

export function formatAge(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86_400)}d`;
}

export function gateLine(settings: Settings, r: GateResult): string {
  if (r.decision === 'applied') return `${r.task_id}: applied as ${r.commit?.slice(0, 10)}${r.already_applied ? ' (it was already applied)' : ''}`;
  if (r.decision === 'rejected')
    return `${r.task_id}: REJECTED by the gate: ${r.reason?.split('\n')[0]}\n  details: ${r.moved_to ? displayPath(settings.layout, r.moved_to.replace(/\.patch$/, '.reason.md')) : ''}`;
  return `${r.patch}: skipped (${r.reason})`;
}

const color = (code: number) => (text: string) => (process.stdout.isTTY ? `\x1b[${code}m${text}\x1b[0m` : text);
const green = color(32);
const red = color(31);
const cyan = color(36);
const bold = color(1);

export function colorDiff(diff: string): string {
  return diff
    .split('\n')
    .map((line) =>
      line.startsWith('+++') || line.startsWith('---')
        ? bold(line)
        : line.startsWith('+')
          ? green(line)
          : line.startsWith('-')
            ? red(line)
            : line.startsWith('@@')
              ? cyan(line)
              : line,
    )
    .join('\n');
}

/**
 * Interactive review; answers are read line by line from stdin, so it can be scripted:
 * `printf 'a\nr\ntoo risky\ns\n' | meta-agent review`.
 */
export async function review(settings: Settings, options: { io: { out: (t: string) => void }; now: boolean; log: Logger }): Promise<number> {
  const { io } = options;
  const pending = await listPending(settings);
  if (pending.length === 0) {
    io.out('no pending patches');
    return 0;
  }
  const rl = createInterface({ input: process.stdin, terminal: false });
  const lines = rl[Symbol.asyncIterator]();
  const ask = async (question: string): Promise<string | null> => {
    io.out(question);
    const next = await lines.next();
    return next.done ? null : String(next.value).trim();
  };
  let exitCode = 0;
  try {
    for (const [i, patch] of pending.entries()) {
      // `<id>.<run_id>.patch` belongs to task <id>: the report is found through the sidecar.
      const report = await reportOfPatch(settings, patch.file);
      io.out(
        bold(
          `\n[${i + 1}/${pending.length}] ${patch.id}  (${patch.project ?? '?'}, risk ${patch.risk_level ?? '?'}, ${formatAge(patch.age_s)} old)${patch.incomplete ? '  INCOMPLETE: the run stopped before the agent finished' : ''}`,
        ),
      );
      // Test names come from the repository's test output: no escape sequence reaches the terminal.
      if (patch.regressions.length)
        io.out(bold(`  REGRESSIONS: ${printable(patch.regressions.join(', '))} passed on the base commit and fail with this patch`));
      if (report?.summary) io.out(report.summary);
      if (report)
        io.out(
          `tests: ${report.tests ? (report.tests.passed ? 'passed' : 'FAILED') : 'not run'}; dry run: ${report.dry_run ? (report.dry_run.passed ? 'passed' : 'FAILED') : 'not run'}`,
        );
      io.out(colorDiff(await fs.readFile(patch.file, 'utf8')));
      const answer = (await ask('[a]pprove, [r]eject, [s]kip, [q]uit?'))?.toLowerCase() ?? 'q';
      if (answer.startsWith('q')) break;
      if (answer.startsWith('a')) {
        const moved = await approvePatch(settings, patch.id);
        io.out(`approved: ${displayPath(settings.layout, moved)}`);
        if (options.now) {
          const result = await processApprovedPatch(settings, moved, options.log);
          io.out(gateLine(settings, result));
          if (result.decision === 'rejected') exitCode = 1;
        }
      } else if (answer.startsWith('r')) {
        const reason = (await ask('reason?')) || 'rejected in review';
        const moved = await rejectPatch(settings, patch.id, reason);
        io.out(`rejected: ${displayPath(settings.layout, moved)}`);
      } else io.out('skipped');
    }
  } finally {
    rl.close();
  }
  return exitCode;
}
