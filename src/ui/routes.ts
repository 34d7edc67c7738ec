/**
 * The dashboard's routes. Every action goes through the library calls and file moves that
 * Explorer and the CLI use. The checks (token, origin, action token) are applied by
 * routeTable.ts by the kind of route; a handler here only does its one job.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { MetaAgentError } from '../contract/errors.ts';
import { TASK_TYPES, type Task } from '../contract/task.ts';
import { CreateTaskBodySchema, EmptyBodySchema, RejectBodySchema, type CreateTaskBody } from '../contract/uiFiles.ts';
import { approvePatch, rejectPatch } from '../gate/decide.ts';
import { createTask } from '../queue/createTask.ts';
import { ERROR_NOTE, findFailedTask, retryFailedTask } from '../queue/retry.ts';
import { fillTemplate, loadTemplate } from '../workspace/templates.ts';
import { HttpError, type Reply } from './http.ts';
import { patchView, pendingTarget } from './patchView.ts';
import { change, type Route, type UiContext } from './routeTable.ts';
import { dashboardState, readReport } from './state.ts';

const HTML = 'text/html; charset=utf-8';
const STATIC_ROUTES: Array<[path: string, file: string, type: string]> = [
  ['/', 'page.html', HTML],
  ['/index.html', 'page.html', HTML],
  ['/app.js', 'app.js', 'text/javascript; charset=utf-8'],
  ['/app.css', 'app.css', 'text/css; charset=utf-8'],
];

/** A file's text, or null when it is not there. */
const textOrNull = (file: string) => fs.readFile(file, 'utf8').catch(() => null);

/** A patch moved by a second tab or a reload is not pending any more: a conflict, and nothing is repeated. */
const notPending = (id: string, matches: (e: MetaAgentError) => boolean) => (e: unknown) => {
  throw e instanceof MetaAgentError && e.kind === 'input' && matches(e) ? new HttpError(409, `${id} is not pending (already approved or rejected)`) : e;
};

const movedTo = (ctx: UiContext, file: string): Reply => ({ json: { ok: true, moved_to: path.relative(ctx.settings.layout.root, file) } });

async function reportView(ctx: UiContext, id: string): Promise<Reply> {
  const report = await readReport(ctx.settings, id, ctx.log);
  if (!report) throw new HttpError(404, `no report ${id}`);
  const md = (await textOrNull(path.join(ctx.settings.layout.reports, `${id}_report.md`))) ?? '';
  return { json: { report, html: await renderUntrustedLazily(md) } };
}

async function cycleView(ctx: UiContext, id: string): Promise<Reply> {
  const md = await textOrNull(path.join(ctx.settings.layout.reports, 'cycles', `${id}.md`));
  if (md === null) throw new HttpError(404, `no cycle ${id}`);
  return { json: { html: await renderUntrustedLazily(md) } };
}

/** A failed task's error note, and the token its Retry button needs. */
async function failedView(ctx: UiContext, id: string): Promise<Reply> {
  const { layout } = ctx.settings;
  const name = id.endsWith('.md') ? id : `${id}.md`;
  if (!(await findFailedTask(layout, id))) throw new HttpError(404, `no failed task ${id}`);
  const note = await textOrNull(path.join(layout.failed, `${name}${ERROR_NOTE}`));
  return { json: { id, html: note === null ? '' : await renderUntrustedLazily(note), actions: { retry: ctx.tokens.issue('retry', id) } } };
}

async function approve(ctx: UiContext, id: string): Promise<Reply> {
  const moved = await approvePatch(ctx.settings, id).catch(notPending(id, () => true));
  ctx.log.info({ patch: id }, 'approved from the dashboard');
  return movedTo(ctx, moved);
}

async function reject(ctx: UiContext, id: string, reason: string): Promise<Reply> {
  const moved = await rejectPatch(ctx.settings, id, reason).catch(notPending(id, (e) => /no pending patch/.test(e.message)));
  ctx.log.info({ patch: id }, 'rejected from the dashboard');
  return movedTo(ctx, moved);
}

async function retry(ctx: UiContext, id: string): Promise<Reply> {
  const moved = await retryFailedTask(ctx.settings.layout, id).catch((e: unknown) => {
    throw e instanceof MetaAgentError && e.kind === 'input' ? new HttpError(409, e.message) : e;
  });
  ctx.log.info({ task: id }, 'retried from the dashboard');
  return movedTo(ctx, moved.to);
}

/** The New task form as a task file in the inbox; what the form leaves out comes from the type's template. */
async function createFromForm(ctx: UiContext, form: CreateTaskBody): Promise<Reply> {
  const { settings } = ctx;
  const template = await loadTemplate(settings, form.template || form.type || 'custom');
  const type = (TASK_TYPES as readonly string[]).includes(form.type ?? '') ? (form.type as Task['type']) : template.type;
  const objective = form.objective ?? '';
  const project = form.project ?? '';
  const name = form.name?.trim()
    ? form.name
    : `${type}-${new Date()
        .toISOString()
        .replace(/[-:]/g, '')
        .replace(/\.\d+Z$/, '')}`;
  const fields = {
    project,
    type,
    objective,
    scope: form.scope ?? template.scope,
    tasks: form.tasks ?? template.tasks,
    output: template.output,
    body: fillTemplate(template.body, { objective, project }),
  };
  const { path: file, task } = await createTask(settings, name, fields, 'gui');
  ctx.log.info({ task: task.id }, 'task created from the dashboard');
  return { status: 201, json: { ok: true, id: task.id, file: path.relative(settings.layout.root, file) } };
}

/** Method + path pattern -> handler; `:id` is a validated id. */
export const ROUTES: readonly Route[] = [
  ...STATIC_ROUTES.map(([p, file, type]): Route => ({ kind: 'public', method: 'GET', path: p, handle: (ctx) => ({ bytes: ctx.files[file]!, type }) })),
  { kind: 'read', method: 'GET', path: '/api/state', handle: async (ctx) => ({ json: await dashboardState(ctx.settings, ctx.log) }) },
  {
    kind: 'read',
    method: 'GET',
    path: '/api/events',
    handle: (ctx, { req, res }) => {
      ctx.events.subscribe(req, res);
      return undefined;
    },
  },
  { kind: 'read', method: 'GET', path: '/api/reports/:id', handle: (ctx, { params }) => reportView(ctx, params.id!) },
  { kind: 'read', method: 'GET', path: '/api/cycles/:id', handle: (ctx, { params }) => cycleView(ctx, params.id!) },
  { kind: 'read', method: 'GET', path: '/api/patches/:id', handle: async (ctx, { params }) => ({ json: await patchView(ctx, params.id!) }) },
  { kind: 'read', method: 'GET', path: '/api/failed/:id', handle: (ctx, { params }) => failedView(ctx, params.id!) },
  { kind: 'read', method: 'GET', path: '/api/tasks/new', handle: (ctx) => ({ json: { actions: { create: ctx.tokens.issue('create', 'task') } } }) },
  change({
    path: '/api/patches/:id/approve',
    body: EmptyBodySchema,
    action: 'approve',
    target: (ctx, { id }) => pendingTarget(ctx, id!),
    handle: (ctx, { params }) => approve(ctx, params.id!),
  }),
  change({
    path: '/api/patches/:id/reject',
    body: RejectBodySchema,
    action: 'reject',
    target: (ctx, { id }) => pendingTarget(ctx, id!),
    handle: (ctx, { params, body }) => reject(ctx, params.id!, body.reason),
  }),
  change({
    path: '/api/failed/:id/retry',
    body: EmptyBodySchema,
    action: 'retry',
    target: (_ctx, { id }) => id!,
    handle: (ctx, { params }) => retry(ctx, params.id!),
  }),
  change({ path: '/api/tasks', body: CreateTaskBodySchema, action: 'create', target: () => 'task', handle: (ctx, { body }) => createFromForm(ctx, body) }),
];

/** The Markdown renderer and sanitizer (~20 MB) are loaded when a page first needs them, not with the service. */
async function renderUntrustedLazily(markdown: string): Promise<string> {
  return (await import('./markdown.ts')).renderUntrusted(markdown);
}
