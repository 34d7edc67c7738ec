/**
 * The scripted model of the soak: an OpenAI-compatible server on 127.0.0.1 (the tests'
 * fakeLlm) with a function script. It reads each request like a model would: which task
 * (the "# Task <id> (<type>)" line of the prompt), what happened so far (tool results),
 * and answers with the next tool call.
 *
 * - audit_code / custom (and their -redo follow-ups): one small, unique, harmless change
 *   (a comment line in bot/sizing.py, or a new trivial test file under tests/), then finish;
 * - risk_review, retrain_model: finish at once.
 *
 * Faults are decided per request by a hash of (seed, task, step, attempt), so the same
 * request gets the same answer whatever the timing: 429 bursts (sometimes longer than
 * llm.max_retries), 500s, a request that hangs past llm.request_timeout_s, and tool calls
 * with malformed (non-JSON) arguments.
 */
import { errorReply, finish, startFakeLlm, toolCall, type FakeLlm, type RecordedRequest, type Reply } from '../test/helpers/fakeLlm.ts';
import { hash32, keyed } from './prng.ts';

/** Tokens the scripted model reports per answer (prompt + completion). */
export const PROMPT_TOKENS = 1500;
export const COMPLETION_TOKENS = 100;
export const STEP_TOKENS = PROMPT_TOKENS + COMPLETION_TOKENS;

export type LlmFault = 'llm_429' | 'llm_429_exhausted' | 'llm_500' | 'llm_hang' | 'llm_malformed';

export interface ScriptedModel {
  llm: FakeLlm;
  /** Faults answered, by kind. */
  faults: Record<LlmFault, number>;
  /** Requests answered, by kind of answer. */
  answered: { edits: number; finishes: number; other: number };
  /** Tokens the model really served (answers with usage), by task id: what was spent, whatever the reports say. */
  served: Map<string, number>;
  /** Turns fault injection on or off (off while the harness checks, or for a clean run). */
  setEnabled(on: boolean): void;
  close(): Promise<void>;
}

export interface ScriptOptions {
  seed: number;
  maxRetries: number;
  /** Probabilities per (task, step). */
  rates?: Partial<Record<'p429' | 'p500' | 'hang' | 'malformed', number>>;
}

interface Message {
  role: string;
  content?: string | null;
  tool_calls?: Array<{ id: string; function: { name: string; arguments: string } }>;
  tool_call_id?: string;
}

/** The task id without the cycle's random suffix: stable across runs with the same seed. */
export function stableTaskKey(id: string): string {
  return id.replace(/-[0-9a-f]{4}(?=$|-redo)/, '');
}

export function tagFor(key: string): string {
  return hash32(key).toString(36);
}

export async function startScriptedModel(options: ScriptOptions): Promise<ScriptedModel> {
  const rates = { p429: 0.05, p500: 0.04, hang: 0.025, malformed: 0.06, ...options.rates };
  const faults: Record<LlmFault, number> = { llm_429: 0, llm_429_exhausted: 0, llm_500: 0, llm_hang: 0, llm_malformed: 0 };
  const answered = { edits: 0, finishes: 0, other: 0 };
  const served = new Map<string, number>();
  const attempts = new Map<string, number>();
  let enabled = true;
  const usage = { usage: { prompt_tokens: PROMPT_TOKENS, completion_tokens: COMPLETION_TOKENS } };

  const script = (req: RecordedRequest): Reply => {
    if (req.body?.response_format) return errorReply(400, 'the soak uses routines only; no planner request expected');
    const messages = (req.body?.messages ?? []) as Message[];
    const prompt = String(messages[1]?.content ?? '');
    const head = /^# Task (\S+) \((\w+)\)/m.exec(prompt);
    if (!head) return errorReply(400, 'no "# Task <id> (<type>)" line in the prompt');
    const [, id, type] = head as unknown as [string, string, string];
    const key = stableTaskKey(id);
    const step = messages.filter((m) => m.role === 'assistant').length;
    const attemptKey = `${key}|${step}`;
    const attempt = attempts.get(attemptKey) ?? 0;
    attempts.set(attemptKey, attempt + 1);

    const plan = keyed(options.seed, `llm:${key}:${step}`);
    const roll = plan.next();
    if (enabled) {
      if (roll < rates.p429) {
        // A burst: usually shorter than the client's retries (recovered), sometimes longer (the task fails).
        const burst = plan.chance(0.2) ? options.maxRetries + 1 : plan.int(1, options.maxRetries);
        if (attempt < burst) {
          if (burst > options.maxRetries && attempt === burst - 1) faults.llm_429_exhausted++;
          else faults.llm_429++;
          return errorReply(429, 'rate limited (scripted burst)');
        }
      } else if (roll < rates.p429 + rates.p500) {
        if (attempt === 0) {
          faults.llm_500++;
          return errorReply(500, 'scripted server error');
        }
      } else if (roll < rates.p429 + rates.p500 + rates.hang) {
        if (attempt === 0) {
          faults.llm_hang++;
          return { hang: true };
        }
      }
    }

    // What happened so far: which tool calls were made, and their results.
    const names = new Map<string, string>();
    let editDone = false;
    let editFailed = false;
    for (const m of messages) {
      if (m.role === 'assistant') for (const c of m.tool_calls ?? []) names.set(c.id, c.function.name);
      if (m.role === 'tool' && m.tool_call_id) {
        const name = names.get(m.tool_call_id);
        if (name === 'edit_file' || name === 'write_file') {
          if (String(m.content).startsWith('ERROR')) {
            if (!String(m.content).includes('not valid JSON')) editFailed = true;
          } else editDone = true;
        }
      }
    }
    const wantsEdit = type === 'audit_code' || type === 'custom' || type === 'propose_features';
    const malformed = enabled && step < 3 && roll >= 1 - rates.malformed;
    if (wantsEdit && !editDone && step < 4) {
      const tag = tagFor(key);
      const newTest = keyed(options.seed, `kind:${key}`).chance(0.5) || editFailed;
      if (malformed) {
        faults.llm_malformed++;
        return toolCall(newTest ? 'write_file' : 'edit_file', null, {
          rawArguments: '{"path": "bot/sizing.py", "old": "def position_size(',
          usage: usage.usage,
        });
      }
      answered.edits++;
      return newTest
        ? toolCall(
            'write_file',
            {
              path: `tests/test_soak_${tag}.py`,
              content: `"""Added by the soak's scripted agent (${key})."""\n\n\ndef test_soak_${tag}():\n    assert True\n`,
            },
            usage,
          )
        : toolCall(
            'edit_file',
            { path: 'bot/sizing.py', old: 'def position_size(', new: `# soak note ${tag}: the inputs are validated below.\ndef position_size(` },
            usage,
          );
    }
    if (malformed) {
      faults.llm_malformed++;
      return toolCall('finish', null, { rawArguments: '{"summary": "unterminated', usage: usage.usage });
    }
    answered.finishes++;
    const summary = wantsEdit ? `Soak ${key}: ${editDone ? 'added a small note' : 'nothing to change'}.` : `Soak ${key}: reviewed, nothing to change.`;
    return withUsage(finish(summary, 'low'));
  };

  const withUsage = (reply: Reply): Reply => {
    const body = reply.body as { usage?: Record<string, unknown> } | undefined;
    if (body?.usage) body.usage = { ...body.usage, prompt_tokens: PROMPT_TOKENS, completion_tokens: COMPLETION_TOKENS, total_tokens: STEP_TOKENS };
    return reply;
  };

  const llm = await startFakeLlm((req) => {
    try {
      const reply = script(req);
      const body = reply.body as { usage?: { total_tokens?: number; prompt_tokens?: number; completion_tokens?: number } } | undefined;
      if (!reply.hang && (reply.status ?? 200) === 200 && body?.usage) {
        const id = /^# Task (\S+) /m.exec(String(((req.body?.messages ?? []) as Message[])[1]?.content ?? ''))?.[1];
        if (id) served.set(id, (served.get(id) ?? 0) + (body.usage.prompt_tokens ?? 0) + (body.usage.completion_tokens ?? 0));
      }
      return reply;
    } catch (error) {
      answered.other++;
      return errorReply(400, `the soak script failed: ${(error as Error).message}`);
    }
  });
  return {
    llm,
    faults,
    answered,
    served,
    setEnabled: (on) => {
      enabled = on;
    },
    close: () => llm.close(),
  };
}
