/**
 * The `openai` engine: the agent loop (agentLoop.ts) talking to a Chat Completions
 * endpoint (chatModel.ts) with the agent's tools (toolbox.ts).
 */
import type { Logger } from 'pino';
import type { LlmSettings } from '../workspace/config.ts';
import { AgentLoop } from './agentLoop.ts';
import { openAIChatModel, type ChatModel } from './chatModel.ts';
import type { Engine, EngineContext, EngineResult } from './types.ts';

export { openAIChatModel, openAIClient, toLlmError, type ChatModel } from './chatModel.ts';
export { TOOL_DEFINITIONS, cutOutput } from './toolbox.ts';

export class OpenAIEngine implements Engine {
  readonly name = 'openai' as const;

  constructor(private readonly makeModel: (llm: LlmSettings, log: Logger) => ChatModel = openAIChatModel) {}

  async run(ctx: EngineContext): Promise<EngineResult> {
    const model = this.makeModel(ctx.settings.llm, ctx.log);
    return new AgentLoop(ctx, model).run();
  }
}
