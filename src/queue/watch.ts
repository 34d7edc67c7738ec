/**
 * Moved to src/service/watch.ts (issue 17). Only src/cli.ts still imports this path; the lead
 * deletes this file when the watch command imports '../service/watch.ts'.
 */
export * from '../service/watch.ts';
