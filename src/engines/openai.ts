/**
 * The `openai` engine: the agent loop (agentLoop.ts) talking to a Chat Completions
 * endpoint (chatModel.ts) with the agent's tools (toolbox.ts).
 */
import type { ChatCompletionTool } from 'openai/resources/chat/completions';
import type { Logger } from 'pino';
import type { LlmSettings } from '../workspace/config.ts';
import { AgentLoop } from './agentLoop.ts';
import { openAIChatModel, type ChatModel } from './chatModel.ts';
import { disposeShell } from './shellTool.ts';
import { toolDefinitions } from './toolbox.ts';
import type { Engine, EngineContext, EngineResult } from './types.ts';

export { openAIChatModel, openAIClient, toLlmError, type ChatModel } from './chatModel.ts';
export { TOOL_DEFINITIONS, cutOutput, toolDefinitions } from './toolbox.ts';

export class OpenAIEngine implements Engine {
  readonly name = 'openai' as const;

  constructor(private readonly makeModel: (llm: LlmSettings, log: Logger, tools: ChatCompletionTool[]) => ChatModel = openAIChatModel) {}

  async run(ctx: EngineContext): Promise<EngineResult> {
    const model = this.makeModel(ctx.settings.llm, ctx.log, toolDefinitions({ shell: ctx.shell ?? 'off' }));
    try {
      return await new AgentLoop(ctx, model).run();
    } finally {
      await disposeShell(ctx);
    }
  }
}
