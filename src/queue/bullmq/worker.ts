/**
 * `meta-agent worker`: runs the tasks a folder host queued in BullMQ, on any machine. It
 * never touches the folders: each job runs with runTask, exactly as a local run, in a
 * workspace of its own (a temp folder), on a mirror of the project's git remote fetched
 * before each job; the report, trajectory, patch and artifacts go back as the job's result
 * (job.ts), which the folder host files.
 *
 * Liveness is BullMQ's: the job lock is renewed while the job runs (execution.lock_s); a
 * worker that dies (kill -9, power loss) stops renewing it, and another worker runs the job
 * again, once (execution.max_stalled), then the job fails. SIGTERM (stop()) aborts the runs
 * and moves their jobs back to wait, which does not count as a stall.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { Worker, WaitingError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import { MetaAgentError, toErrorInfo } from '../../contract/errors.ts';
import type { PatchSidecar } from '../../contract/patch.ts';
import type { Report } from '../../contract/report.ts';
import type { Engine } from '../../engines/types.ts';
import { runTask } from '../../run/runTask.ts';
import type { Project, Settings } from '../../workspace/config.ts';
import { thisHost } from '../../workspace/faults.ts';
import { layoutDirs, layoutFor, type Layout } from '../../workspace/layout.ts';
import { redisTarget } from './connection.ts';
import { JobDataSchema, MAX_BUNDLE_ARTIFACT_BYTES, type Bundle } from './job.ts';
import { gitArgs } from '../../workspace/gitArgs.ts';

export interface WorkerOptions {
  settings: Settings;
  log: Logger;
  /** Jobs at once; default limits.concurrency. */
  concurrency?: number;
  /** Default execution.queue. */
  queue?: string;
  /** Replaces the configured engine (tests, benchmarks). */
  engine?: Engine;
}

export interface RunningWorker {
  /** Resolves once the worker listens for jobs. */
  ready: Promise<void>;
  /** Aborts the running jobs, returns them to the queue (not counted as a crash), and closes. */
  stop(): Promise<void>;
}

const GIT_TIMEOUT_MS = 300_000;

export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const { settings, log } = options;
  const { execution } = settings.config;
  const target = redisTarget(settings, true);
  const queueName = options.queue ?? execution.queue;
  const concurrency = options.concurrency ?? settings.config.limits.concurrency;
  const home = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-worker-'));
  const mirrors = new Mirrors(path.join(home, 'repos'), settings);
  const stopping = new AbortController();
  let outage = false;

  const lockMs = execution.lock_s * 1000;
  const active = new Map<string, AbortController>();

  const processor = async (job: Job, token?: string): Promise<Bundle> => {
    const data = JobDataSchema.parse(job.data);
    const jobLog = log.child({ job: job.id, run_id: data.run_id });
    const id = job.id ?? '';
    const own = new AbortController();
    const previous = active.get(id);
    active.set(id, own);
    let keepLock: NodeJS.Timeout | null = null;
    if (previous) {
      // Redis lost this job while it ran here and the folder host added it again: the old run
      // can never be completed, so it stops. BullMQ renews locks by job id, and the old run's
      // end stops the renewal of this one: it is renewed here.
      previous.abort(new MetaAgentError('interrupted', 'Redis lost this job while it ran; it was added again and runs anew'));
      keepLock = setInterval(() => void job.extendLock(token ?? '', lockMs).catch(() => undefined), lockMs / 3);
    }
    const root = await fs.mkdtemp(path.join(home, 'job-'));
    try {
      const layout = layoutFor(root);
      for (const dir of layoutDirs(layout)) await fs.mkdir(dir, { recursive: true });
      // An unknown project or a bad task file: runTask writes the failure report, as locally.
      const project = settings.projects[data.project];
      const projects = project ? { ...settings.projects, [project.name]: await mirrors.ready(project) } : settings.projects;
      // Outside inbox/: runTask reads it and claims nothing.
      const taskFile = path.join(root, 'task', data.name);
      await fs.mkdir(path.dirname(taskFile), { recursive: true });
      await fs.writeFile(taskFile, Buffer.from(data.content, 'base64'));
      jobLog.info({ task_file: data.name, attempt: job.attemptsStarted }, 'job started');
      const result = await runTask(taskFile, { settings: { ...settings, layout, projects }, log: jobLog, signal: AbortSignal.any([stopping.signal, own.signal]), runId: data.run_id, ...(options.engine ? { engine: options.engine } : {}) });
      if (own.signal.aborted && !stopping.signal.aborted) throw own.signal.reason;
      if (stopping.signal.aborted) {
        // SIGTERM: back to wait for another worker (or this one's next start), not a stall.
        await job.moveToWait(token);
        jobLog.info('stopped: the job went back to the queue');
        throw new WaitingError();
      }
      return await bundleOf(layout, result.report);
    } finally {
      if (keepLock) clearInterval(keepLock);
      if (active.get(id) === own) active.delete(id);
      await fs.rm(root, { recursive: true, force: true }).catch(() => undefined);
    }
  };

  const worker = new Worker(queueName, processor, {
    connection: target.connection,
    concurrency,
    lockDuration: lockMs,
    stalledInterval: lockMs,
    maxStalledCount: execution.max_stalled,
    autorun: false,
  });
  worker.on('error', (error) => {
    if (outage) return;
    outage = true;
    log.error({ redis: target.where, err: toErrorInfo(error).message }, `Redis at ${target.where}: ${toErrorInfo(error).message}; the worker waits for it and goes on`);
  });
  worker.on('ready', () => {
    if (outage) log.info({ redis: target.where }, `Redis at ${target.where} is reachable again`);
    outage = false;
  });
  worker.on('failed', (job, error) => {
    if (error instanceof WaitingError || error?.name === 'WaitingError') return;
    log.error({ job: job?.id, err: error?.message }, `job failed: ${error?.message}`);
  });
  worker.on('completed', (job) => log.info({ job: job.id }, 'job done'));
  const running = worker.run().catch((error: unknown) => log.error({ err: toErrorInfo(error) }, 'the worker stopped on an error'));
  const ready = worker.waitUntilReady().then(() => log.info({ queue: queueName, concurrency, redis: target.where }, `worker listening on queue ${queueName}`));
  return {
    ready: ready.then(() => undefined),
    async stop() {
      stopping.abort();
      await worker.close();
      await running;
      await fs.rm(home, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}

/**
 * A clone of each project's remote (`projects.<p>.remote`, else its `repo` path),
 * fetched before every job, one fetch at a time per project. Jobs get worktrees of it.
 */
class Mirrors {
  private readonly busy = new Map<string, Promise<unknown>>();
  constructor(
    private readonly dir: string,
    private readonly settings: Settings,
  ) {}

  async ready(project: Project): Promise<Project> {
    const mirror = path.join(this.dir, project.name);
    const previous = this.busy.get(project.name) ?? Promise.resolve();
    const update = previous.catch(() => undefined).then(() => this.update(project, mirror));
    this.busy.set(project.name, update);
    await update;
    return { ...project, repoPath: mirror, initFromPath: undefined, link: [] } as Project;
  }

  private async update(project: Project, mirror: string): Promise<void> {
    const remote = remoteOf(project, this.settings.layout);
    const run = (args: string[], cwd?: string) => execa('git', gitArgs(args), { cwd, timeout: GIT_TIMEOUT_MS, reject: true });
    try {
      if (await fs.stat(mirror).then(() => false, () => true)) {
        await fs.mkdir(this.dir, { recursive: true });
        // Not bare (runTask wants a work tree repo), never checked out: only its worktrees are.
        await run(['clone', '--no-checkout', '--quiet', remote, mirror]);
      }
      await run(['fetch', '--prune', '--quiet', '--update-head-ok', 'origin', '+refs/heads/*:refs/heads/*'], mirror);
      // Each job's worktree lives in a temp workspace removed after it: forget those registrations.
      await run(['worktree', 'prune'], mirror);
    } catch (error) {
      const detail = String((error as { stderr?: string }).stderr || toErrorInfo(error).message).trim().split('\n').slice(-2).join(' ');
      throw new MetaAgentError('git', `could not fetch project ${project.name} from ${remote}: ${detail}`, { file: 'meta-agent.yaml', field: `projects.${project.name}.remote` });
    }
  }
}

/** A URL as it is; a path relative to the worker's workspace root. */
function remoteOf(project: Project, layout: Layout): string {
  const remote = project.remote;
  if (!remote) return project.repoPath;
  return /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(remote) || /^[^/\\]+@[^:]+:/.test(remote) ? remote : path.resolve(layout.root, remote);
}

/** The result of a run, read back from the job's workspace. */
async function bundleOf(layout: Layout, report: Report): Promise<Bundle> {
  const read = (rel: string) => fs.readFile(path.join(layout.root, rel));
  const trajectory = report.trajectory ? await read(report.trajectory).then((b) => b.toString('utf8'), () => null) : null;
  let patch: Bundle['patch'] = null;
  const [patchRel, sidecarRel] = report.patch_files;
  if (patchRel && sidecarRel) {
    const sidecarText = (await read(sidecarRel)).toString('utf8');
    const sidecar = JSON.parse(sidecarText) as PatchSidecar;
    const total = sidecar.artifacts.reduce((sum, a) => sum + a.bytes, 0);
    if (total > MAX_BUNDLE_ARTIFACT_BYTES) {
      throw new MetaAgentError('config', `the run's artifacts are ${total} bytes; a BullMQ result carries at most ${MAX_BUNDLE_ARTIFACT_BYTES} (an artifact store for larger ones is not built): use execution.engine local for this task type`, { file: 'meta-agent.yaml', field: 'execution' });
    }
    const artifactDir = path.join(layout.root, patchRel.replace(/\.patch$/, '.artifacts'));
    const artifacts = await Promise.all(sidecar.artifacts.map(async (a) => ({ path: a.path, base64: (await fs.readFile(path.join(artifactDir, a.path))).toString('base64') })));
    patch = { patch: (await read(patchRel)).toString('base64'), sidecar: sidecarText, artifacts };
  }
  return { report, trajectory, patch, worker: { host: thisHost(), pid: process.pid } };
}
