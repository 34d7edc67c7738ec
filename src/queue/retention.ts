/**
 * Retention: logs/ and reports/ stay bounded. Old files are gzipped into an archive
 * folder (logs/archive/, reports/archive/expired/<YYYY-MM>/); they are deleted only when
 * `retention.action: delete` says so. Age is judged by the settings' clock: a log by the
 * date in its name, a report by its finished_at. Files in use are never touched: today's
 * log, anything modified in the last hour, reports whose patch is still pending.
 */
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { Logger } from 'pino';
import type { Settings } from '../workspace/config.ts';
import { exists, tempNameFor } from '../workspace/files.ts';

export interface RetentionResult {
  logs: string[];
  reports: string[];
}

const DAY = 86_400_000;
const IN_USE_MS = 3600_000;

async function gzipInto(file: string, dir: string): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  let target = path.join(dir, `${path.basename(file)}.gz`);
  for (let n = 2; await exists(target); n++) target = path.join(dir, `${path.basename(file)}.${n}.gz`);
  const temp = tempNameFor(target);
  await pipeline(createReadStream(file), createGzip(), createWriteStream(temp, { flags: 'wx' }));
  await fs.rename(temp, target);
  await fs.rm(file);
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
  const result: RetentionResult = { logs: [], reports: [] };
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
    let finished: number;
    try {
      finished = Date.parse((JSON.parse(await fs.readFile(file, 'utf8')) as { finished_at?: string }).finished_at ?? '');
    } catch {
      continue;
    }
    if (!(finished < limit) || (await exists(path.join(layout.patches.pending, `${id}.patch`)))) continue;
    const month = new Date(finished).toISOString().slice(0, 7);
    const dir = path.join(layout.reportArchive, 'expired', month);
    for (const f of [`${id}_report.md`, `${id}.trajectory.jsonl`, name]) {
      const p = path.join(layout.reports, f);
      if (await exists(p)) await retire(settings, p, dir);
    }
    result.reports.push(id);
  }
  if (result.logs.length || result.reports.length) {
    log.info({ logs: result.logs.length, reports: result.reports.length, action: config.retention.action }, `retention: ${config.retention.action === 'delete' ? 'deleted' : 'archived'} ${result.logs.length} log(s) and ${result.reports.length} report(s)`);
  }
  return result;
}
