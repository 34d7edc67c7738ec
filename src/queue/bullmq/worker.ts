/**
 * TEMPORARY (issue 17 refactor, branch r-bullmq): the worker moved to
 * src/service/bullmq/worker.ts. This re-export keeps src/cli.ts working until the lead points
 * its import there at merge; then delete this file (it imports against the data flow).
 */
export { startWorker, type RunningWorker, type WorkerOptions } from '../../service/bullmq/worker.ts';
