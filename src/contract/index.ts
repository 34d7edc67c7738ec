/** Every file format of meta-agent, for export as JSON Schema (`npm run schema`). */
import { ConfigSchema } from './config.ts';
import { PatchSidecarSchema } from './patch.ts';
import { ReportSchema } from './report.ts';
import { TaskFrontMatterSchema } from './task.ts';
import { CycleReportSchema, PlanSchema } from './cycle.ts';
import { CycleJournalSchema, LedgerEntrySchema, OwnerNoteSchema, ScheduleStateSchema, SupervisorStateSchema } from './stateFiles.ts';

export const CONTRACT_SCHEMAS = {
  task: { schema: TaskFrontMatterSchema, io: 'input', title: 'meta-agent task file (front matter fields)' },
  report: { schema: ReportSchema, io: 'output', title: 'meta-agent run report (reports/<id>.json)' },
  patch: { schema: PatchSidecarSchema, io: 'output', title: 'meta-agent patch sidecar (patches/*/<id>.patch.json)' },
  config: { schema: ConfigSchema, io: 'input', title: 'meta-agent.yaml' },
  plan: { schema: PlanSchema, io: 'output', title: "supervisor plan (the LLM's structured output)" },
  cycle: { schema: CycleReportSchema, io: 'output', title: 'supervisor cycle report (reports/cycles/<cycle-id>.json)' },
  // Private state a person or a script may read (to see why a task re-ran, who holds a claim, what a cycle did).
  ledger: { schema: LedgerEntrySchema, io: 'output', title: 'ledger entry, one per task instance (.meta-agent/ledger/<key>.json)' },
  'owner-note': {
    schema: OwnerNoteSchema,
    io: 'output',
    title: 'owner of a claimed task or a lock (processing/.<name>.owner.json; .<lock>.owner.json beside each lock)',
  },
  'cycle-journal': { schema: CycleJournalSchema, io: 'output', title: 'supervisor cycle in progress (.meta-agent/supervisor/running/<cycle-id>.json)' },
  'schedule-state': { schema: ScheduleStateSchema, io: 'output', title: 'last run of each schedule job (.meta-agent/supervisor/schedule.json)' },
  'supervisor-state': {
    schema: SupervisorStateSchema,
    io: 'output',
    title: 'where the last supervisor cycle left off (.meta-agent/supervisor/<project>.json)',
  },
} as const;
