/**
 * A patch that no longer applies (the branch moved on) can come back as a task: "redo this
 * change on the current HEAD", dropped into inbox/ once per patch (gate.redo_on_conflict).
 */
import type { Logger } from 'pino';
import { RedoMarkerSchema, type RedoMarker } from '../contract/gateFiles.ts';
import { toErrorInfo } from '../contract/errors.ts';
import type { PatchSidecar } from '../contract/patch.ts';
import type { Settings } from '../workspace/config.ts';
import { publishFile, replaceFile } from '../workspace/files.ts';
import { createTask } from '../queue/createTask.ts';
import { readReport } from './approvalRecord.ts';
import { readGateFile, type GateStateFiles } from './gateRun.ts';

/**
 * Drops the redo task at most once per patch: a marker is published (never overwritten) before
 * the task, so the run after a crash between the two reuses it instead of dropping another.
 */
export async function dropRedoTaskOnce(
  settings: Settings,
  state: GateStateFiles,
  sidecar: PatchSidecar,
  conflicts: string[],
  log: Logger,
): Promise<string | null> {
  try {
    await publishFile(state.redo, markerText({ task: null }));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      log.warn({ err: toErrorInfo(error) }, 'could not create the follow-up task');
      return null;
    }
    const earlier = await readGateFile(state.redo, RedoMarkerSchema, log);
    return earlier?.task ?? null;
  }
  const file = await dropRedoTask(settings, sidecar, conflicts, log);
  if (file) {
    await replaceFile(state.redo, markerText({ task: file })).catch((error: unknown) =>
      log.warn({ err: toErrorInfo(error) }, 'could not note the follow-up task; a crash before the filing would leave it unnamed'),
    );
  }
  return file;
}

function markerText(marker: RedoMarker): string {
  return `${JSON.stringify(marker)}\n`;
}

async function dropRedoTask(settings: Settings, sidecar: PatchSidecar, conflicts: string[], log: Logger): Promise<string | null> {
  // By task, not file: `<id>.<run_id>.patch` belongs to task <id>, whose report holds the objective.
  const id = sidecar.task_id;
  const report = await readReport(settings, id, log);
  try {
    const { path: file } = await createTask(
      settings,
      `${id}-redo`,
      {
        project: sidecar.project,
        type: report?.type ?? 'custom',
        objective: `Redo the change of task ${id} on the current HEAD: its approved patch no longer applies (conflicts in ${conflicts.join(', ') || 'some files'}). Original objective: ${report?.objective ?? sidecar.summary}`,
        scope: sidecar.scope,
        body: `The earlier change, for reference:\n\n${sidecar.summary}`,
      },
      'human',
    );
    return file;
  } catch (error) {
    log.warn({ err: toErrorInfo(error) }, 'could not create the follow-up task');
    return null;
  }
}
