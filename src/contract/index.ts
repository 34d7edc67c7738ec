/** Every file format of meta-agent, for export as JSON Schema (`npm run schema`). */
import { ConfigSchema } from './config.ts';
import { PatchSidecarSchema } from './patch.ts';
import { ReportSchema } from './report.ts';
import { TaskFrontMatterSchema } from './task.ts';
import { CycleReportSchema, PlanSchema } from './cycle.ts';

export const CONTRACT_SCHEMAS = {
  task: { schema: TaskFrontMatterSchema, io: 'input', title: 'meta-agent task file (front matter fields)' },
  report: { schema: ReportSchema, io: 'output', title: 'meta-agent run report (reports/<id>.json)' },
  patch: { schema: PatchSidecarSchema, io: 'output', title: 'meta-agent patch sidecar (patches/*/<id>.patch.json)' },
  config: { schema: ConfigSchema, io: 'input', title: 'meta-agent.yaml' },
  plan: { schema: PlanSchema, io: 'output', title: 'supervisor plan (the LLM\'s structured output)' },
  cycle: { schema: CycleReportSchema, io: 'output', title: 'supervisor cycle report (reports/cycles/<cycle-id>.json)' },
} as const;
