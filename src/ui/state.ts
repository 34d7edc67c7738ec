/** What the dashboard shows, read from the folders (the only truth). */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { ReportSchema, type Report } from '../contract/report.ts';
import { CycleReportSchema } from '../contract/cycle.ts';
import { toErrorInfo } from '../contract/errors.ts';
import { parseJsonText, readJsonFileOrNull } from '../contract/readJson.ts';
import { AppliedResultSchema, TrajectoryProgressSchema } from '../contract/uiFiles.ts';
import type { Settings } from '../workspace/config.ts';
import { listPending } from '../gate/decide.ts';
import { readOwner } from '../workspace/lease.ts';
import { ERROR_NOTE, taskNames } from '../queue/retry.ts';
import { TaskIdSchema } from '../contract/task.ts';
import { PatchSidecarSchema } from '../contract/patch.ts';
import { archivedReportPath } from '../run/report.ts';

export interface QueueEntry {
  name: string;
  age_s: number;
}

export interface DashboardState {
  root: string;
  projects: string[];
  templates: string[];
  counts: Record<string, number>;
  inbox: QueueEntry[];
  processing: Array<QueueEntry & { run_id: string | null; step: number | null; tokens: number | null }>;
  done: QueueEntry[];
  /** `retry_id`: the id the dashboard's Retry button sends (null when the file name is not a valid id). */
  failed: Array<QueueEntry & { reason: string | null; retry_id: string | null }>;
  reports: Array<
    Pick<Report, 'task_id' | 'project' | 'type' | 'status' | 'outcome' | 'risk_level' | 'summary' | 'finished_at'> & {
      tests: string;
      dry_run: string;
      tokens: number;
      cost_usd: number | null;
      approval: string | null;
      has_metrics: boolean;
      error_kind: string | null;
      regressions: number;
      incomplete: boolean;
    }
  >;
  patches: {
    pending: Awaited<ReturnType<typeof listPending>>;
    applied: Array<{ id: string; commit: string | null; at: string | null }>;
    rejected: Array<{ id: string; reason: string | null }>;
  };
  cycles: Array<{ cycle_id: string; goal: string; status: string; summary: string; finished_at: string }>;
}

const MAX_LIST = 200;

/** The newest MAX_LIST files of a folder, and how many there are. For `.md`, tasks, not files (taskNames: no error notes). */
async function listed(dir: string, ext: string): Promise<{ total: number; list: QueueEntry[] }> {
  const names =
    ext === '.md'
      ? await taskNames(dir)
      : (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => !n.startsWith('.') && n.toLowerCase().endsWith(ext));
  const now = Date.now();
  const out = await Promise.all(
    names.map(async (name) => {
      const stat = await fs.stat(path.join(dir, name)).catch(() => null);
      return { name, age_s: stat ? Math.round((now - stat.mtimeMs) / 1000) : 0, t: stat?.mtimeMs ?? 0 };
    }),
  );
  return {
    total: names.length,
    list: out
      .sort((a, b) => b.t - a.t)
      .slice(0, MAX_LIST)
      .map(({ name, age_s }) => ({ name, age_s })),
  };
}

async function entries(dir: string, ext: string): Promise<QueueEntry[]> {
  return (await listed(dir, ext)).list;
}

/**
 * A JSON file meta-agent wrote, checked against its schema; null when it is missing or damaged.
 * The dashboard is tolerant on purpose: one bad file must not break the whole page, so a
 * damaged one is skipped and logged (at debug: the page reloads its state every few seconds).
 */
export async function readTolerantly<S extends z.ZodType>(file: string, schema: S, log?: Logger): Promise<z.infer<S> | null> {
  try {
    return await readJsonFileOrNull(file, schema);
  } catch (error) {
    log?.debug({ err: toErrorInfo(error), file }, 'the dashboard skipped a damaged file');
    return null;
  }
}

export async function readReport(settings: Settings, id: string, log?: Logger): Promise<Report | null> {
  return readTolerantly(path.join(settings.layout.reports, `${id}.json`), ReportSchema, log);
}

/**
 * The report of the run that filed a patch. The sidecar names the task: `<id>.<run_id>.patch`
 * (filed beside a pending one) belongs to task <id>; a later run's report moved this run's into the archive.
 */
export async function reportOfPatch(settings: Settings, patchFile: string, log?: Logger): Promise<Report | null> {
  const sidecar = await readTolerantly(`${patchFile}.json`, PatchSidecarSchema, log);
  if (!sidecar) return readReport(settings, path.basename(patchFile).replace(/\.patch$/i, ''), log);
  const { task_id, run_id } = sidecar;
  const current = await readReport(settings, task_id, log);
  if (current?.run_id === run_id) return current;
  return (await readTolerantly(archivedReportPath(settings.layout, task_id, run_id), ReportSchema, log)) ?? current;
}

/** The running step of a task, from the tail of its trajectory. */
async function progress(settings: Settings, name: string): Promise<{ step: number | null; tokens: number | null }> {
  const id = name.replace(/\.md$/i, '');
  const file = path.join(settings.layout.reports, `${id}.trajectory.jsonl`);
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  let step: number | null = null;
  let tokens = 0;
  for (const line of text.trim().split('\n')) {
    if (!line.includes('"role":"assistant"')) continue;
    try {
      const r = parseJsonText(line, TrajectoryProgressSchema, file);
      step = r.step ?? step;
      tokens += (r.usage?.prompt_tokens ?? 0) + (r.usage?.completion_tokens ?? 0);
    } catch {
      // a line being written
    }
  }
  return { step, tokens: step === null ? null : tokens };
}

type ReportRow = DashboardState['reports'][number];

const checkWord = (c: Report['tests']) => (c ? (c.passed ? 'passed' : 'failed') : 'not run');

/** A report as a row of the Reports table. */
function reportRow(r: Report): ReportRow {
  return {
    task_id: r.task_id,
    project: r.project,
    type: r.type,
    status: r.status,
    outcome: r.outcome,
    risk_level: r.risk_level,
    summary: r.summary.split('\n')[0] ?? '',
    finished_at: r.finished_at,
    tests: checkWord(r.tests),
    dry_run: checkWord(r.dry_run),
    tokens: r.usage.prompt_tokens + r.usage.completion_tokens,
    cost_usd: r.usage.cost_usd,
    approval: r.approval ? `${r.approval.decision}${r.approval.by === 'human' ? ' by a person' : ''}` : null,
    has_metrics: r.metrics !== null,
    error_kind: r.error?.kind ?? null,
    regressions: r.regressions.length,
    incomplete: r.incomplete,
  };
}

/** The newest reports first; a damaged one is left out. */
async function reportRows(settings: Settings, log?: Logger): Promise<ReportRow[]> {
  const reportFiles = (await fs.readdir(settings.layout.reports).catch(() => [] as string[])).filter((n) => n.endsWith('.json'));
  const reports = (await Promise.all(reportFiles.map((n) => readReport(settings, n.replace(/\.json$/, ''), log)))).filter((r): r is Report => r !== null);
  reports.sort((a, b) => b.finished_at.localeCompare(a.finished_at));
  return reports.slice(0, MAX_LIST).map(reportRow);
}

/** The supervisor's cycles, newest first; a damaged report is left out. */
async function cycleRows(settings: Settings, log?: Logger): Promise<DashboardState['cycles']> {
  const cycleDir = path.join(settings.layout.reports, 'cycles');
  const cycleFiles = (await fs.readdir(cycleDir).catch(() => [] as string[])).filter((n) => n.endsWith('.json'));
  const cycles = await Promise.all(cycleFiles.map((n) => readTolerantly(path.join(cycleDir, n), CycleReportSchema, log)));
  return cycles
    .filter((c): c is NonNullable<typeof c> => c !== null)
    .map(({ cycle_id, goal, status, summary, finished_at }) => ({ cycle_id, goal, status, summary, finished_at }))
    .sort((a, b) => b.finished_at.localeCompare(a.finished_at))
    .slice(0, 50);
}

/** Pending, applied (with the commit from the gate's record) and rejected (with the person's reason) patches. */
async function patchLists(settings: Settings, log?: Logger): Promise<DashboardState['patches']> {
  const { patches } = settings.layout;
  const stem = (name: string) => name.replace(/\.patch$/, '');
  const applied = await Promise.all(
    (await entries(patches.applied, '.patch')).map(async (e) => {
      const result = await readTolerantly(path.join(patches.applied, `${stem(e.name)}.result.json`), AppliedResultSchema, log);
      return { id: stem(e.name), commit: result?.commit ?? null, at: result?.at ?? null };
    }),
  );
  const rejected = await Promise.all(
    (await entries(patches.rejected, '.patch')).map(async (e) => ({
      id: stem(e.name),
      reason: (await fs.readFile(path.join(patches.rejected, `${stem(e.name)}.reason.md`), 'utf8').catch(() => null))?.replace(/^#.*\n+/, '').trim() ?? null,
    })),
  );
  return { pending: await listPending(settings), applied, rejected };
}

/** The four queue folders: counts, and the newest tasks of each with what the dashboard shows of them. */
async function queueLists(settings: Settings): Promise<Pick<DashboardState, 'counts' | 'inbox' | 'processing' | 'done' | 'failed'>> {
  const { layout } = settings;
  const [inbox, processing, done, failed] = await Promise.all([
    listed(layout.inbox, '.md'),
    listed(layout.processing, '.md'),
    listed(layout.done, '.md'),
    listed(layout.failed, '.md'),
  ]);
  return {
    counts: { inbox: inbox.total, processing: processing.total, done: done.total, failed: failed.total },
    inbox: inbox.list,
    processing: await Promise.all(
      processing.list.map(async (p) => ({
        ...p,
        run_id: (await readOwner(path.join(layout.processing, p.name)))?.run_id ?? null,
        ...(await progress(settings, p.name)),
      })),
    ),
    done: done.list,
    failed: await Promise.all(
      failed.list.map(async (f) => ({
        ...f,
        reason:
          (await fs.readFile(path.join(layout.failed, `${f.name}${ERROR_NOTE}`), 'utf8').catch(() => null))?.match(
            /\*\*What went wrong\*\*[^:]*:\s*(.*)/,
          )?.[1] ?? null,
        retry_id: TaskIdSchema.safeParse(f.name.replace(/\.md$/i, '')).success ? f.name.replace(/\.md$/i, '') : null,
      })),
    ),
  };
}

/** Everything the page shows. `log` hears of damaged files the page leaves out. */
export async function dashboardState(settings: Settings, log?: Logger): Promise<DashboardState> {
  const { layout } = settings;
  return {
    root: layout.root,
    projects: Object.keys(settings.projects),
    templates: (await fs.readdir(layout.templates).catch(() => [] as string[])).filter((n) => n.endsWith('.md')).map((n) => n.replace(/\.md$/, '')),
    ...(await queueLists(settings)),
    reports: await reportRows(settings, log),
    patches: await patchLists(settings, log),
    cycles: await cycleRows(settings, log),
  };
}
