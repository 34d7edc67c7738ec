/**
 * Planning: a goal becomes 1-3 typed tasks. Known routines map to configured task lists
 * without an LLM; any other goal asks the model for a structured plan (JSON Schema
 * response_format from the zod PlanSchema), retried once when invalid.
 */
import { z } from 'zod';
import type { PlannedTask } from '../contract/config.ts';
import { PlanSchema, type Plan } from '../contract/cycle.ts';
import { MetaAgentError } from '../contract/errors.ts';
import type { Usage } from '../contract/report.ts';
import type { Settings } from '../workspace/config.ts';

export interface PlanResult {
  plan: Plan;
  source: 'routine' | 'llm';
  attempts: number;
  model: string | null;
}

/** Built-in routines; the config's `supervisor.routines` add to and override them. */
export const DEFAULT_ROUTINES: Record<string, PlannedTask[]> = {
  daily_maintenance: [
    {
      type: 'audit_code',
      objective: 'Daily audit: look for bugs and unsafe error handling in the code changed recently; fix clear bugs with tests.',
      scope: ['bot/**', 'tests/**'],
      tasks: ['Review recent commits', 'Report findings with file:line and severity'],
    },
    {
      type: 'risk_review',
      objective: 'Daily risk review of the recent trades: comment on the computed numbers and flags.',
      scope: [],
      tasks: ['Explain the flags, if any', 'Point to code that could cause them'],
    },
  ],
  weekly_retrain: [
    {
      type: 'retrain_model',
      objective: 'Weekly retrain on the latest data; compare with the current model.',
      scope: ['models/**'],
      tasks: ['Collect', 'Train', 'Evaluate against the baseline'],
    },
    { type: 'risk_review', objective: 'Weekly risk review of the trades.', scope: [], tasks: ['Comment on the weekly numbers'] },
  ],
};

export function routineFor(settings: Settings, goal: string): PlannedTask[] | null {
  const key = goal
    .trim()
    .toLowerCase()
    .replace(/[\s-]+/g, '_');
  return settings.config.supervisor.routines[key] ?? DEFAULT_ROUTINES[key] ?? null;
}

export interface Planner {
  plan(prompt: { system: string; user: string }, usage: Usage, signal: AbortSignal): Promise<{ plan: Plan; attempts: number; model: string }>;
}

export function llmPlanner(settings: Settings): Planner {
  return {
    async plan(prompt, usage, signal) {
      const llm = settings.llm;
      // Loaded on first use, like the engine's (runTask.ts engineFor).
      const [{ openAIClient, retryPolicy, toLlmError }, { withRetries }] = await Promise.all([
        import('../engines/chatModel.ts'),
        import('../engines/llmRetry.ts'),
      ]);
      const client = openAIClient(llm);
      const schema = z.toJSONSchema(PlanSchema, { target: 'draft-7' });
      const messages: Array<{ role: 'system' | 'user' | 'assistant'; content: string }> = [
        { role: 'system', content: prompt.system },
        { role: 'user', content: prompt.user },
      ];
      let lastProblem = '';
      for (let attempt = 1; attempt <= 2; attempt++) {
        let content: string;
        try {
          const response = await withRetries(
            () =>
              client.chat.completions.create(
                {
                  model: llm.model,
                  messages,
                  response_format: { type: 'json_schema', json_schema: { name: 'supervisor_plan', strict: true, schema: schema as Record<string, unknown> } },
                },
                { signal: AbortSignal.any([signal]) },
              ),
            { policy: retryPolicy(llm), signal },
          );
          usage.requests++;
          usage.prompt_tokens += response.usage?.prompt_tokens ?? 0;
          usage.completion_tokens += response.usage?.completion_tokens ?? 0;
          usage.cached_tokens += response.usage?.prompt_tokens_details?.cached_tokens ?? 0;
          content = response.choices[0]?.message?.content ?? '';
        } catch (error) {
          throw toLlmError(error, llm, signal);
        }
        lastProblem = validatePlan(content);
        if (!lastProblem) return { plan: PlanSchema.parse(JSON.parse(content)), attempts: attempt, model: llm.model };
        messages.push(
          { role: 'assistant', content },
          { role: 'user', content: `That plan is invalid: ${lastProblem}. Answer again with JSON that matches the schema exactly.` },
        );
      }
      throw new MetaAgentError('llm', `the planner returned an invalid plan twice (${lastProblem})`, { field: 'plan' });
    },
  };
}

/** '' when valid, else what is wrong (one line). */
export function validatePlan(content: string): string {
  let data: unknown;
  try {
    data = JSON.parse(content);
  } catch {
    return 'not JSON';
  }
  const result = PlanSchema.safeParse(data);
  if (result.success) return '';
  const issue = result.error.issues[0]!;
  return `${issue.path.join('.') || 'plan'}: ${issue.message}`;
}
