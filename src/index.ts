/** The library API of meta-agent: what the CLI, a GUI or another program imports. */
export { MetaAgentError, toErrorInfo, exitCodeFor, type ErrorKind, type ErrorInfo } from './contract/errors.ts';
export { parseTask, TaskSchema, TASK_TYPES, TASK_SOURCES, type Task, type TaskInput } from './contract/task.ts';
export { ReportSchema, type Report, type CheckResult, type Usage, type RiskLevel } from './contract/report.ts';
export { PatchSidecarSchema, type PatchSidecar } from './contract/patch.ts';
export { ConfigSchema, type Config } from './contract/config.ts';
export { CONTRACT_SCHEMAS } from './contract/index.ts';
export { loadSettings, resolveRoot, type Settings, type Project } from './workspace/config.ts';
export { initWorkspace } from './workspace/init.ts';
export { layoutFor, type Layout } from './workspace/layout.ts';
export { createTask, type TaskSource } from './queue/createTask.ts';
export { runTask, type RunTaskOptions, type RunTaskResult } from './run/runTask.ts';
export { runStages } from './run/stages.ts';
export { startWatching, type Watcher, type WatchOptions, type Health } from './service/watch.ts';
export { OpenAIEngine, type ChatModel } from './engines/openai.ts';
export { CommandEngine } from './engines/command.ts';
export type { Engine, EngineContext, EngineResult } from './engines/types.ts';
export { createLogger } from './log.ts';
