/**
 * Retention: logs/ and reports/ stay bounded. Old files are gzipped into an archive
 * folder (logs/archive/, reports/archive/expired/<YYYY-MM>/, cycle reports in its cycles/);
 * they are deleted only when `retention.action: delete` says so. Age is judged by the
 * settings' clock: a log by the date in its name, a report (of a task or of a cycle) by its
 * finished_at (a cycle report without one by its mtime). Files in use are never touched:
 * today's log, anything modified in the last hour, reports whose patch is still pending.
 * Temp files that dead processes left anywhere in the workspace are removed too, and blobs of
 * the artifact store (execution.artifact_store) not used for keep_results_days.
 */
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { Logger } from 'pino';
import { readJsonFile } from '../contract/readJson.ts';
import { CycleFinishedAtSchema } from '../contract/stateFiles.ts';
import type { Settings } from '../workspace/config.ts';
import { exists, faulty, renameBusy, retryBusy, tempNameFor } from '../workspace/files.ts';
import { artifactPolicy } from './bullmq/artifactStore.ts';
import { pendingPatchesOf } from './pendingPatches.ts';
import { removeDeadTemps } from './recover.ts';

export interface RetentionResult {
  logs: string[];
  reports: string[];
  /** Cycle ids whose reports/cycles/<id>.json and .md were retired. */
  cycles: string[];
  /** Temp files of dead processes, removed. */
  temps: string[];
  /** Files removed from execution.artifact_store (not used for keep_results_days). */
  blobs: string[];
}

const DAY = 86_400_000;
const IN_USE_MS = 3600_000;

async function gzipInto(file: string, dir: string): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  let target = path.join(dir, `${path.basename(file)}.gz`);
  for (let n = 2; await exists(target); n++) target = path.join(dir, `${path.basename(file)}.${n}.gz`);
  const temp = tempNameFor(target);
  await pipeline(createReadStream(file), createGzip(), createWriteStream(temp, { flags: 'wx' }));
  await renameBusy(temp, target);
  await retryBusy(() => faulty('unlink', file, () => fs.rm(file)), file);
  return target;
}

async function retire(settings: Settings, file: string, archiveDir: string): Promise<void> {
  if (settings.config.retention.action === 'delete') await fs.rm(file, { force: true });
  else await gzipInto(file, archiveDir);
}

export async function applyRetention(settings: Settings, log: Logger): Promise<RetentionResult> {
  const { layout, config } = settings;
  const now = settings.clock().getTime();
  const realNow = Date.now();
  const result: RetentionResult = { logs: [], reports: [], cycles: [], temps: [], blobs: [] };
  // First, so a retention run killed mid-gzip does not leave its temp behind forever.
  result.temps = await removeDeadTemps(layout, config.queue.lease_stale_s * 1000);
  const today = new Date().toISOString().slice(0, 10);
  for (const name of await fs.readdir(layout.logs).catch(() => [] as string[])) {
    const date = /_(\d{4}-\d{2}-\d{2})\.log$/.exec(name)?.[1];
    if (!date || date === today) continue;
    if (Date.parse(`${date}T00:00:00Z`) + DAY > now - config.retention.logs_days * DAY) continue;
    const file = path.join(layout.logs, name);
    const stat = await fs.stat(file).catch(() => null);
    if (!stat || realNow - stat.mtimeMs < IN_USE_MS) continue;
    await retire(settings, file, path.join(layout.logs, 'archive'));
    result.logs.push(name);
  }
  const limit = now - config.retention.reports_days * DAY;
  for (const name of await fs.readdir(layout.reports).catch(() => [] as string[])) {
    if (!name.endsWith('.json')) continue;
    const id = name.slice(0, -'.json'.length);
    const file = path.join(layout.reports, name);
    const finished = Date.parse(await readFinishedAt(file));
    if (!(finished < limit) || (await pendingPatchesOf(layout, id)).length > 0) continue;
    const month = new Date(finished).toISOString().slice(0, 7);
    const dir = path.join(layout.reportArchive, 'expired', month);
    for (const f of [`${id}_report.md`, `${id}.trajectory.jsonl`, name]) {
      const p = path.join(layout.reports, f);
      if (await exists(p)) await retire(settings, p, dir);
    }
    result.reports.push(id);
  }
  result.cycles = await retireCycleReports(settings, limit, realNow);
  // A blob is needed until the folder host filed it; a job result naming it lives keep_results_days in Redis.
  result.blobs = (await artifactPolicy(settings).store?.prune(config.execution.keep_results_days, now)) ?? [];
  if (result.blobs.length) log.info({ blobs: result.blobs.length }, `retention: removed ${result.blobs.length} blob(s) from the artifact store`);
  if (result.temps.length)
    log.warn({ temps: result.temps.map((f) => path.relative(layout.root, f)) }, `removed ${result.temps.length} temp file(s) left by dead processes`);
  if (result.logs.length || result.reports.length || result.cycles.length) {
    log.info(
      { logs: result.logs.length, reports: result.reports.length, cycles: result.cycles.length, action: config.retention.action },
      `retention: ${config.retention.action === 'delete' ? 'deleted' : 'archived'} ${result.logs.length} log(s), ${result.reports.length} report(s) and ${result.cycles.length} cycle report(s)`,
    );
  }
  return result;
}

/** reports/cycles/<id>.json and <id>.md, by the JSON's finished_at (else the newest file's mtime). Returns the ids retired. */
async function retireCycleReports(settings: Settings, limit: number, realNow: number): Promise<string[]> {
  const dir = path.join(settings.layout.reports, 'cycles');
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  const ids = new Set(names.filter((n) => !n.startsWith('.') && /\.(json|md)$/.test(n)).map((n) => n.replace(/\.(json|md)$/, '')));
  const retired: string[] = [];
  for (const id of [...ids].sort()) {
    const files = [`${id}.md`, `${id}.json`].filter((n) => names.includes(n)).map((n) => path.join(dir, n));
    const stats = await Promise.all(files.map((f) => fs.stat(f).catch(() => null)));
    const lastWrite = Math.max(...stats.map((s) => s?.mtimeMs ?? Infinity));
    const finished = Date.parse(await readFinishedAt(path.join(dir, `${id}.json`)));
    // No readable finished_at (a crash between the .md and the .json): its age by the real clock.
    const expired = Number.isNaN(finished) ? realNow - lastWrite > settings.config.retention.reports_days * DAY : finished < limit;
    if (!expired) continue;
    const month = new Date(Number.isNaN(finished) ? lastWrite : finished).toISOString().slice(0, 7);
    const archive = path.join(settings.layout.reportArchive, 'expired', month, 'cycles');
    for (const f of files) await retire(settings, f, archive);
    retired.push(id);
  }
  return retired;
}

/** The report's finished_at; '' when it has none, is missing or cannot be read (the caller then goes by file times). */
async function readFinishedAt(file: string): Promise<string> {
  const report = await readJsonFile(file, CycleFinishedAtSchema).catch(() => null);
  return report?.finished_at ?? '';
}
