/** The workspace: a folder whose sub-folders are the queue. One source for every path. */
import path from 'node:path';

export const CONFIG_FILE = 'meta-agent.yaml';

export interface Layout {
  root: string;
  config: string;
  inbox: string;
  processing: string;
  done: string;
  failed: string;
  reports: string;
  reportArchive: string;
  patches: { pending: string; approved: string; rejected: string; applied: string };
  logs: string;
  templates: string;
  /** Private state: worktrees, caches, the demo repo. */
  state: string;
  worktrees: string;
  cache: string;
}

export function layoutFor(root: string): Layout {
  const r = path.resolve(root);
  const reports = path.join(r, 'reports');
  const state = path.join(r, '.meta-agent');
  return {
    root: r,
    config: path.join(r, CONFIG_FILE),
    inbox: path.join(r, 'inbox'),
    processing: path.join(r, 'processing'),
    done: path.join(r, 'done'),
    failed: path.join(r, 'failed'),
    reports,
    reportArchive: path.join(reports, 'archive'),
    patches: {
      pending: path.join(r, 'patches', 'pending'),
      approved: path.join(r, 'patches', 'approved'),
      rejected: path.join(r, 'patches', 'rejected'),
      applied: path.join(r, 'patches', 'applied'),
    },
    logs: path.join(r, 'logs'),
    templates: path.join(r, 'templates'),
    state,
    worktrees: path.join(state, 'worktrees'),
    cache: path.join(state, 'cache'),
  };
}

/** Every folder `init` creates, in order. */
export function layoutDirs(layout: Layout): string[] {
  return [layout.inbox, layout.processing, layout.done, layout.failed, layout.reports, ...Object.values(layout.patches), layout.logs, layout.templates];
}

/** `rel` for people: workspace-relative with forward slashes when inside the workspace. */
export function displayPath(layout: Layout, file: string): string {
  const rel = path.relative(layout.root, file);
  return rel.startsWith('..') || path.isAbsolute(rel) ? file : rel.split(path.sep).join('/');
}
