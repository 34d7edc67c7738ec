/**
 * What the supervisor knows before it plans: the repo's commits since the last cycle, new
 * lines in the bot's logs, the PnL numbers, the previous cycle's open next actions, the
 * patches still pending, and why patches were rejected (so the idea is not proposed again).
 * The real repo is only read here.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { MetaAgentError } from '../contract/errors.ts';
import { readJsonFileOrNull } from '../contract/readJson.ts';
import { CycleNextActionsSchema, SupervisorStateSchema, type CycleContext, type SupervisorState } from '../contract/stateFiles.ts';
import type { Project, Settings } from '../workspace/config.ts';
import { replaceFile } from '../workspace/files.ts';
import { git, resolveBranch } from '../repo/git.ts';
import { listPending } from '../gate/decide.ts';
import { computeTradeMetrics, metricsMarkdown, riskFlags } from '../run/tradeMetrics.ts';

export type { CycleContext, SupervisorState } from '../contract/stateFiles.ts';

const MAX_COMMITS = 50;
const MAX_REJECTIONS = 10;

export function stateFile(settings: Settings, project: string): string {
  return path.join(settings.layout.state, 'supervisor', `${project}.json`);
}

/** Where the last cycle left off; a first cycle, or a damaged file, starts from nothing (logs read anew). */
export async function readState(settings: Settings, project: string): Promise<SupervisorState> {
  const fresh: SupervisorState = { last_cycle_id: null, last_head: null, log_offsets: {} };
  try {
    return (await readJsonFileOrNull(stateFile(settings, project), SupervisorStateSchema)) ?? fresh;
  } catch (error) {
    if (error instanceof MetaAgentError) return fresh;
    throw error;
  }
}

export async function writeState(settings: Settings, project: string, state: SupervisorState): Promise<void> {
  await fs.mkdir(path.dirname(stateFile(settings, project)), { recursive: true });
  await replaceFile(stateFile(settings, project), `${JSON.stringify(state, null, 2)}\n`);
}

export async function gatherContext(settings: Settings, project: Project, state: SupervisorState): Promise<CycleContext> {
  const { commit: head } = await resolveBranch(project.repoPath, project.branch).catch(() => ({ commit: null as string | null }));
  const range = state.last_head && head && state.last_head !== head ? [`${state.last_head}..${head}`] : head ? [head] : [];
  const commits =
    range.length && state.last_head !== head
      ? (await git(project.repoPath, ['log', '--format=%h %ad %s', '--date=short', '-n', String(MAX_COMMITS), ...range]).catch(() => ''))
          .split('\n')
          .filter(Boolean)
      : [];
  const { lines: logLines, offsets } = await newLogLines(project, state.log_offsets, settings.config.supervisor.max_log_lines);
  return {
    commits,
    logLines,
    pnl: await pnlSummary(project),
    openNextActions: await previousNextActions(settings, state.last_cycle_id),
    pending: (await listPending(settings)).filter((p) => p.project === null || p.project === project.name),
    rejectedReasons: await rejectionReasons(settings),
    head,
    logOffsets: offsets,
  };
}

/** New lines since the last cycle, newest first, bounded. A file that shrank (rotated) is read from the start. */
async function newLogLines(project: Project, offsets: Record<string, number>, max: number): Promise<{ lines: string[]; offsets: Record<string, number> }> {
  const next: Record<string, number> = { ...offsets };
  const lines: string[] = [];
  for (const rel of project.logs) {
    const file = path.join(project.repoPath, rel);
    const stat = await fs.stat(file).catch(() => null);
    if (!stat?.isFile()) continue;
    let from = offsets[rel] ?? 0;
    if (from > stat.size) from = 0;
    // Read at most the last ~1 MB of new text.
    const start = Math.max(from, stat.size - 1_000_000);
    const handle = await fs.open(file, 'r');
    try {
      const buffer = Buffer.alloc(stat.size - start);
      await handle.read(buffer, 0, buffer.length, start);
      for (const line of buffer.toString('utf8').split(/\r?\n/)) if (line.trim()) lines.push(`${rel}: ${line}`);
    } finally {
      await handle.close();
    }
    next[rel] = stat.size;
  }
  return { lines: lines.reverse().slice(0, max), offsets: next };
}

async function pnlSummary(project: Project): Promise<string | null> {
  if (!project.trades) return null;
  const text = await fs.readFile(path.join(project.repoPath, project.trades.path), 'utf8').catch(() => null);
  if (text === null) return null;
  try {
    const metrics = computeTradeMetrics(text, project.trades);
    return metricsMarkdown(metrics, riskFlags(metrics, project.risk_thresholds));
  } catch (error) {
    return `(the trades CSV could not be read: ${(error as Error).message})`;
  }
}

/** The previous cycle's next actions; none when its report is gone or damaged (the cycle plans without them). */
async function previousNextActions(settings: Settings, cycleId: string | null): Promise<string[]> {
  if (!cycleId) return [];
  const file = path.join(settings.layout.reports, 'cycles', `${cycleId}.json`);
  const report = await readJsonFileOrNull(file, CycleNextActionsSchema).catch(() => null);
  return report?.next_actions ?? [];
}

async function rejectionReasons(settings: Settings): Promise<string[]> {
  const dir = settings.layout.patches.rejected;
  const names = (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.reason.md'));
  const withTimes = await Promise.all(names.map(async (n) => ({ n, t: (await fs.stat(path.join(dir, n))).mtimeMs })));
  const newest = withTimes.sort((a, b) => b.t - a.t).slice(0, MAX_REJECTIONS);
  return Promise.all(
    newest.map(async ({ n }) => {
      const text = (await fs.readFile(path.join(dir, n), 'utf8')).replace(/^#.*\n+/, '').trim();
      return `${n.replace(/\.reason\.md$/, '')}: ${text.split('\n').slice(0, 3).join(' ').slice(0, 300)}`;
    }),
  );
}

export function contextMarkdown(ctx: CycleContext): string {
  const section = (title: string, items: string[], empty: string) => `## ${title}\n${items.length ? items.map((i) => `- ${i}`).join('\n') : empty}`;
  return [
    section('Commits since the last cycle', ctx.commits, '(none)'),
    section('New log lines (newest first)', ctx.logLines, '(none)'),
    `## PnL\n${ctx.pnl ?? '(no trades CSV configured)'}`,
    section('Open next actions from the previous cycle', ctx.openNextActions, '(none)'),
    section(
      'Patches still pending (do not propose them again)',
      ctx.pending.map((p) => `${p.id} (risk ${p.risk_level}): ${p.summary.split('\n')[0]}`),
      '(none)',
    ),
    section('Rejected patches and why (do not propose these ideas again)', ctx.rejectedReasons, '(none)'),
  ].join('\n\n');
}
