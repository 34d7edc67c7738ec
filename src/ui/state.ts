/** What the dashboard shows, read from the folders (the only truth). */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ReportSchema, type Report } from '../contract/report.ts';
import { CycleReportSchema } from '../contract/cycle.ts';
import type { Settings } from '../workspace/config.ts';
import { listPending } from '../gate/decide.ts';
import { readOwner } from '../queue/lease.ts';
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
  reports: Array<Pick<Report, 'task_id' | 'project' | 'type' | 'status' | 'outcome' | 'risk_level' | 'summary' | 'finished_at'> & { tests: string; dry_run: string; tokens: number; cost_usd: number | null; approval: string | null; has_metrics: boolean; error_kind: string | null; regressions: number; incomplete: boolean }>;
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
  const names = ext === '.md' ? await taskNames(dir) : (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => !n.startsWith('.') && n.toLowerCase().endsWith(ext));
  const now = Date.now();
  const out = await Promise.all(
    names.map(async (name) => {
      const stat = await fs.stat(path.join(dir, name)).catch(() => null);
      return { name, age_s: stat ? Math.round((now - stat.mtimeMs) / 1000) : 0, t: stat?.mtimeMs ?? 0 };
    }),
  );
  return { total: names.length, list: out.sort((a, b) => b.t - a.t).slice(0, MAX_LIST).map(({ name, age_s }) => ({ name, age_s })) };
}

async function entries(dir: string, ext: string): Promise<QueueEntry[]> {
  return (await listed(dir, ext)).list;
}

export async function readReport(settings: Settings, id: string): Promise<Report | null> {
  const text = await fs.readFile(path.join(settings.layout.reports, `${id}.json`), 'utf8').catch(() => null);
  if (!text) return null;
  const parsed = ReportSchema.safeParse(JSON.parse(text));
  return parsed.success ? parsed.data : null;
}

/**
 * The report of the run that filed a patch. The sidecar names the task: `<id>.<run_id>.patch`
 * (filed beside a pending one) belongs to task <id>; a later run's report moved this run's into the archive.
 */
export async function reportOfPatch(settings: Settings, patchFile: string): Promise<Report | null> {
  const text = await fs.readFile(`${patchFile}.json`, 'utf8').catch(() => null);
  const sidecar = PatchSidecarSchema.safeParse(jsonOrNull(text));
  if (!sidecar.success) return readReport(settings, path.basename(patchFile).replace(/\.patch$/i, ''));
  const { task_id, run_id } = sidecar.data;
  const current = await readReport(settings, task_id);
  if (current?.run_id === run_id) return current;
  const archived = ReportSchema.safeParse(jsonOrNull(await fs.readFile(archivedReportPath(settings.layout, task_id, run_id), 'utf8').catch(() => null)));
  return archived.success ? archived.data : current;
}

function jsonOrNull(text: string | null): unknown {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

/** The running step of a task, from the tail of its trajectory. */
async function progress(settings: Settings, name: string): Promise<{ step: number | null; tokens: number | null }> {
  const id = name.replace(/\.md$/i, '');
  const text = await fs.readFile(path.join(settings.layout.reports, `${id}.trajectory.jsonl`), 'utf8').catch(() => '');
  let step: number | null = null;
  let tokens = 0;
  for (const line of text.trim().split('\n')) {
    if (!line.includes('"role":"assistant"')) continue;
    try {
      const r = JSON.parse(line) as { step?: number; usage?: { prompt_tokens?: number; completion_tokens?: number } | null };
      step = r.step ?? step;
      tokens += (r.usage?.prompt_tokens ?? 0) + (r.usage?.completion_tokens ?? 0);
    } catch {
      // a line being written
    }
  }
  return { step, tokens: step === null ? null : tokens };
}

export async function dashboardState(settings: Settings): Promise<DashboardState> {
  const { layout } = settings;
  const check = (c: Report['tests']) => (c ? (c.passed ? 'passed' : 'failed') : 'not run');
  const reportFiles = (await fs.readdir(layout.reports).catch(() => [] as string[])).filter((n) => n.endsWith('.json'));
  const reports = (await Promise.all(reportFiles.map((n) => readReport(settings, n.replace(/\.json$/, ''))))).filter((r): r is Report => r !== null);
  reports.sort((a, b) => b.finished_at.localeCompare(a.finished_at));
  const processing = await listed(layout.processing, '.md');
  const failed = await listed(layout.failed, '.md');
  const cycleDir = path.join(layout.reports, 'cycles');
  const cycleFiles = (await fs.readdir(cycleDir).catch(() => [] as string[])).filter((n) => n.endsWith('.json'));
  const cycles = (
    await Promise.all(
      cycleFiles.map(async (n) => {
        const parsed = CycleReportSchema.safeParse(JSON.parse(await fs.readFile(path.join(cycleDir, n), 'utf8')));
        return parsed.success ? { cycle_id: parsed.data.cycle_id, goal: parsed.data.goal, status: parsed.data.status, summary: parsed.data.summary, finished_at: parsed.data.finished_at } : null;
      }),
    )
  )
    .filter((c): c is NonNullable<typeof c> => c !== null)
    .sort((a, b) => b.finished_at.localeCompare(a.finished_at));
  const applied = await Promise.all(
    (await entries(layout.patches.applied, '.patch')).map(async (e) => {
      const result = JSON.parse((await fs.readFile(path.join(layout.patches.applied, e.name.replace(/\.patch$/, '.result.json')), 'utf8').catch(() => 'null')) ?? 'null') as { commit?: string; at?: string } | null;
      return { id: e.name.replace(/\.patch$/, ''), commit: result?.commit ?? null, at: result?.at ?? null };
    }),
  );
  const rejected = await Promise.all(
    (await entries(layout.patches.rejected, '.patch')).map(async (e) => ({
      id: e.name.replace(/\.patch$/, ''),
      reason: (await fs.readFile(path.join(layout.patches.rejected, e.name.replace(/\.patch$/, '.reason.md')), 'utf8').catch(() => null))?.replace(/^#.*\n+/, '').trim() ?? null,
    })),
  );
  const inbox = await listed(layout.inbox, '.md');
  const done = await listed(layout.done, '.md');
  return {
    root: layout.root,
    projects: Object.keys(settings.projects),
    templates: (await fs.readdir(layout.templates).catch(() => [] as string[])).filter((n) => n.endsWith('.md')).map((n) => n.replace(/\.md$/, '')),
    counts: { inbox: inbox.total, processing: processing.total, done: done.total, failed: failed.total },
    inbox: inbox.list,
    processing: await Promise.all(
      processing.list.map(async (p) => ({ ...p, run_id: (await readOwner(path.join(layout.processing, p.name)))?.run_id ?? null, ...(await progress(settings, p.name)) })),
    ),
    done: done.list,
    failed: await Promise.all(
      failed.list.map(async (f) => ({
        ...f,
        reason: (await fs.readFile(path.join(layout.failed, `${f.name}${ERROR_NOTE}`), 'utf8').catch(() => null))?.match(/\*\*What went wrong\*\*[^:]*:\s*(.*)/)?.[1] ?? null,
        retry_id: TaskIdSchema.safeParse(f.name.replace(/\.md$/i, '')).success ? f.name.replace(/\.md$/i, '') : null,
      })),
    ),
    reports: reports.slice(0, MAX_LIST).map((r) => ({
      task_id: r.task_id,
      project: r.project,
      type: r.type,
      status: r.status,
      outcome: r.outcome,
      risk_level: r.risk_level,
      summary: r.summary.split('\n')[0] ?? '',
      finished_at: r.finished_at,
      tests: check(r.tests),
      dry_run: check(r.dry_run),
      tokens: r.usage.prompt_tokens + r.usage.completion_tokens,
      cost_usd: r.usage.cost_usd,
      approval: r.approval ? `${r.approval.decision}${r.approval.by === 'human' ? ' by a person' : ''}` : null,
      has_metrics: r.metrics !== null,
      error_kind: r.error?.kind ?? null,
      regressions: r.regressions.length,
      incomplete: r.incomplete,
    })),
    patches: { pending: await listPending(settings), applied, rejected },
    cycles: cycles.slice(0, 50),
  };
}
