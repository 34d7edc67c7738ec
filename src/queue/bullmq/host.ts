/**
 * TEMPORARY (issue 17 refactor, branch r-bullmq): the folder host moved to
 * src/service/bullmq/host.ts. This re-export keeps src/queue/watch.ts working until the lead
 * points its import there at merge; then delete this file (it imports against the data flow).
 */
export { startRemoteExecution, type RemoteExecution } from '../../service/bullmq/host.ts';
