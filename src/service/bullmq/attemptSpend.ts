/**
 * What a job's attempts spent, so an attempt lost with its worker (kill -9, SIGTERM, a Redis
 * that lost the job) still counts against the task's limit and the cycle's budget, as an
 * unfinished local attempt does (run/report.ts archiveEarlierRun).
 *
 * A worker writes its run's usage so far (carried attempts included) into the job's progress
 * after each model step. BullMQ keeps progress across a stalled or returned attempt, so the
 * next attempt reads it there and carries it. The folder host follows it too: when Redis lost
 * the job, the host adds it again with the last spend it saw (recorded in the ledger run, so
 * a restarted host has it too) in the job data.
 */
import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import { z } from 'zod';
import { UsageSchema, type Usage } from '../../contract/report.ts';
import type { JobData } from '../../queue/bullmq/job.ts';
import { ledgerFor, type Claim } from '../../queue/folders.ts';
import type { Layout } from '../../workspace/layout.ts';

const ProgressSchema = z.object({ usage: UsageSchema });

/** The usage a job's progress records; null for BullMQ's default (0) or anything else. */
export function spendOf(progress: unknown): Usage | null {
  const parsed = ProgressSchema.safeParse(progress);
  return parsed.success ? parsed.data.usage : null;
}

/** What earlier attempts of this job spent: its progress, else what the folder host carried over a lost job. */
function carriedSpend(job: Job, data: JobData): Usage | null {
  const spent = spendOf(job.progress) ?? data.carried_usage ?? null;
  return spent && spent.requests > 0 ? spent : null;
}

/** The spend the ledger run records (null: none yet). */
export async function recordedSpend(layout: Layout, claim: Claim): Promise<Usage | null> {
  const entry = await ledgerFor(layout).get(claim.key);
  return entry?.runs.find((r) => r.run_id === claim.runId)?.spent ?? null;
}

/** Records `spent` in the ledger run when it differs from `known`; returns what is recorded now. */
export async function recordSpend(layout: Layout, claim: Claim, spent: Usage | null, known: Usage | null): Promise<Usage | null> {
  if (!spent || spent.requests === 0 || JSON.stringify(spent) === JSON.stringify(known)) return known;
  await ledgerFor(layout).update(claim.key, { key: claim.key, name: claim.name, sha256: claim.sha256 }, (entry) => {
    const run = entry.runs.find((r) => r.run_id === claim.runId);
    if (run) run.spent = spent;
  });
  return spent;
}

/** The job's data, re-added after Redis lost it, with what its attempts spent. */
export function carryingSpend(data: JobData, spent: Usage | null): JobData {
  return spent && spent.requests > 0 ? { ...data, carried_usage: spent } : data;
}

/** runTask's options for a job: the spend it carries, and its reporting. */
export function withSpend(job: Job, data: JobData, log: Logger): { carriedUsage?: Usage; onStep: (usage: Usage) => void } {
  const carried = carriedSpend(job, data);
  if (carried) log.info({ carried_tokens: carried.prompt_tokens + carried.completion_tokens }, 'an earlier attempt of this job spent tokens; carried');
  return { ...(carried ? { carriedUsage: carried } : {}), onStep: spendReporter(job, log) };
}

/** The run's onStep: its usage into the job's progress, once per change (several records make one step). */
function spendReporter(job: Job, log: Logger): (usage: Usage) => void {
  let last = '';
  return (usage) => {
    const text = JSON.stringify(usage);
    // No model call yet (or an engine without one, like `command`): nothing to carry.
    if (usage.requests === 0 || text === last) return;
    last = text;
    // The lock decides whether this attempt still owns the job; a failed update is only a less exact count.
    job.updateProgress({ usage: { ...usage } }).catch((error: unknown) => log.debug({ err: String(error) }, 'could not record the spend in the job'));
  };
}
