/** Every file format of meta-agent, for export as JSON Schema (`npm run schema`). */
import { ConfigSchema } from './config.ts';
import { PatchSidecarSchema } from './patch.ts';
import { ReportSchema } from './report.ts';
import { TaskSchema } from './task.ts';

export const CONTRACT_SCHEMAS = {
  task: { schema: TaskSchema, io: 'input', title: 'meta-agent task file (front matter fields)' },
  report: { schema: ReportSchema, io: 'output', title: 'meta-agent run report (reports/<id>.json)' },
  patch: { schema: PatchSidecarSchema, io: 'output', title: 'meta-agent patch sidecar (patches/*/<id>.patch.json)' },
  config: { schema: ConfigSchema, io: 'input', title: 'meta-agent.yaml' },
} as const;
