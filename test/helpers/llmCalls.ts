/**
 * What tests of the model endpoint share: LlmSettings pointed at the scripted server, a
 * server for the length of a test, and a logger whose lines the test can read.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import type { LlmSettings } from '../../src/workspace/config.ts';
import { startFakeLlm, type FakeLlm, type Script } from './fakeLlm.ts';

export function llmSettings(url: string, extra: Partial<LlmSettings> = {}): LlmSettings {
  return {
    model: 'scripted-model',
    baseURL: url,
    apiKeyEnv: 'OPENAI_API_KEY',
    retryBudgetMs: 10_000,
    backoff: { baseMs: 50, capMs: 400 },
    requestTimeoutMs: 5000,
    toolMode: 'native',
    contextWindow: 128_000,
    compat: {},
    ...extra,
  };
}

/** A pino logger whose lines the test can read. */
export function capturedLog(): { log: pino.Logger; lines: Array<Record<string, any>> } {
  const lines: Array<Record<string, any>> = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      callback();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

export async function withServer<T>(script: Script, body: (llm: FakeLlm) => Promise<T>): Promise<T> {
  const llm = await startFakeLlm(script);
  try {
    return await body(llm);
  } finally {
    await llm.close();
  }
}
