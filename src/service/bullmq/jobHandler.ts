/**
 * A worker's job handler (the BullMQ processor): the job's task runs with runTask, exactly as
 * a local run, in a workspace of its own (a temp folder) on a mirror of the project fetched
 * just before; the result goes back as the job's bundle. Stopping (SIGTERM) aborts the runs
 * and moves their jobs back to wait, which BullMQ does not count as a stall.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { WaitingError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import { MetaAgentError } from '../../contract/errors.ts';
import { artifactPolicy } from '../../queue/bullmq/artifactStore.ts';
import { JobDataSchema, type Bundle, type JobData } from '../../queue/bullmq/job.ts';
import type { Engine } from '../../engines/types.ts';
import { runTask } from '../../run/runTask.ts';
import type { Settings } from '../../workspace/config.ts';
import { layoutDirs, layoutFor, type Layout } from '../../workspace/layout.ts';
import { withSpend } from './attemptSpend.ts';
import { bundleOf } from './bundle.ts';
import type { Mirrors } from './mirrors.ts';

export interface JobHandlerOptions {
  settings: Settings;
  log: Logger;
  /** The worker's temp folder: each job's workspace is made in it. */
  home: string;
  mirrors: Mirrors;
  lockMs: number;
  /** Replaces the configured engine (tests, benchmarks). */
  engine?: Engine;
}

export class JobHandler {
  /** Aborted by stop(): the runs end and their jobs go back to wait. */
  private readonly stopping = new AbortController();
  /** The run of each job id on this worker now. */
  private readonly active = new Map<string, AbortController>();

  constructor(private readonly options: JobHandlerOptions) {}

  /** The BullMQ processor: the job's task run, and its bundle returned. */
  readonly handle = async (job: Job, token?: string): Promise<Bundle> => {
    const data = JobDataSchema.parse(job.data);
    const jobLog = this.options.log.child({ job: job.id, run_id: data.run_id });
    const id = job.id ?? '';
    const own = new AbortController();
    const keepLock = this.supersede(id, own, job, token);
    const root = await fs.mkdtemp(path.join(this.options.home, 'job-'));
    try {
      const layout = layoutFor(root);
      const settings = await this.jobSettings(layout, data);
      const taskFile = await this.writeTask(root, data);
      jobLog.info({ task_file: data.name, attempt: job.attemptsStarted }, 'job started');
      const engine = this.options.engine;
      const result = await runTask(taskFile, {
        settings,
        log: jobLog,
        signal: AbortSignal.any([this.stopping.signal, own.signal]),
        runId: data.run_id,
        ...(engine ? { engine } : {}),
        ...withSpend(job, data, jobLog),
      });
      if (own.signal.aborted && !this.stopping.signal.aborted) throw own.signal.reason;
      if (this.stopping.signal.aborted) {
        // SIGTERM: back to wait for another worker (or this one's next start), not a stall.
        await job.moveToWait(token);
        jobLog.info('stopped: the job went back to the queue');
        throw new WaitingError();
      }
      return await bundleOf(layout, result.report, artifactPolicy(this.options.settings));
    } finally {
      if (keepLock) clearInterval(keepLock);
      if (this.active.get(id) === own) this.active.delete(id);
      await fs.rm(root, { recursive: true, force: true }).catch(() => undefined);
    }
  };

  /** Aborts the running jobs; each goes back to the queue as its run ends. */
  stop(): void {
    this.stopping.abort();
  }

  /**
   * Makes `own` the run of job `id`. If a run of it is here already, Redis lost the job while it
   * ran and the folder host added it again: the old run can never be completed, so it stops.
   * BullMQ renews locks by job id, and the old run's end stops the renewal of this one: the
   * timer returned renews it.
   */
  private supersede(id: string, own: AbortController, job: Job, token: string | undefined): NodeJS.Timeout | null {
    const previous = this.active.get(id);
    this.active.set(id, own);
    if (!previous) return null;
    previous.abort(new MetaAgentError('interrupted', 'Redis lost this job while it ran; it was added again and runs anew'));
    const lockMs = this.options.lockMs;
    return setInterval(() => void job.extendLock(token ?? '', lockMs).catch(() => undefined), lockMs / 3);
  }

  /** The worker's settings in the job's workspace, the project's repository its mirror. */
  private async jobSettings(layout: Layout, data: JobData): Promise<Settings> {
    const { settings, mirrors } = this.options;
    for (const dir of layoutDirs(layout)) await fs.mkdir(dir, { recursive: true });
    // An unknown project or a bad task file: runTask writes the failure report, as locally.
    const project = settings.projects[data.project];
    const projects = project ? { ...settings.projects, [project.name]: await mirrors.ready(project) } : settings.projects;
    return { ...settings, layout, projects };
  }

  /** The task file, outside inbox/: runTask reads it and claims nothing. */
  private async writeTask(root: string, data: JobData): Promise<string> {
    const taskFile = path.join(root, 'task', data.name);
    await fs.mkdir(path.dirname(taskFile), { recursive: true });
    await fs.writeFile(taskFile, Buffer.from(data.content, 'base64'));
    return taskFile;
  }
}
