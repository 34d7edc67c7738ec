/**
 * What an external agent said, turned into the report: the JSON block its prompt asks for
 * (externalPrompt.ts) at the end of its last message, or, when there is none, its last
 * message as the summary. Never the raw output tail (token counts, progress lines): that
 * stays in `engine_output_tail`.
 */
import { z } from 'zod';
import type { RiskLevel } from '../contract/report.ts';

const MAX_TEXT = 4000;
const MAX_ITEMS = 20;

const text = z
  .string()
  .trim()
  .min(1)
  .transform((s) => s.slice(0, MAX_TEXT));
const list = z
  .array(z.unknown())
  .default([])
  .transform((items) =>
    items
      .filter((i): i is string => typeof i === 'string' && i.trim() !== '')
      .map((i) => i.trim().slice(0, MAX_TEXT))
      .slice(0, MAX_ITEMS),
  );

/** The block an external agent ends with; extra keys are ignored, a bad risk_level is dropped. */
export const AgentReportBlockSchema = z.object({
  summary: text,
  risks: list,
  risk_level: z.enum(['low', 'medium', 'high']).optional().catch(undefined),
  next_actions: list,
  /** Checked against the worktree by the engine (verify.ts checkFindings). */
  findings: z.array(z.unknown()).default([]),
});
export type AgentReportBlock = z.infer<typeof AgentReportBlockSchema>;

export interface AgentSaid {
  summary: string;
  risks: string[];
  /** The agent's own claim; "medium" when it made none (the rule floor applies on top). */
  risk_level: RiskLevel;
  next_actions: string[];
  rawFindings: unknown[];
  /** Whether the JSON block was found (else the summary is the last message). */
  fromBlock: boolean;
}

/**
 * The report from the agent's last message (a preset reads it from the agent's events) or,
 * without one, from its output: the last JSON block that fits the schema, else the last
 * message (the output's last paragraph) as the summary.
 */
export function readAgentReport(output: string, lastMessage: string | null, program: string): AgentSaid {
  for (const source of [lastMessage, output]) {
    const block = source ? lastBlock(source) : null;
    if (block) {
      return {
        summary: block.summary,
        risks: block.risks,
        risk_level: block.risk_level ?? 'medium',
        next_actions: block.next_actions,
        rawFindings: block.findings,
        fromBlock: true,
      };
    }
  }
  const message = (lastMessage?.trim() || lastParagraph(output)).slice(0, MAX_TEXT);
  return {
    summary: message || `${program} ended without a message.`,
    risks: [],
    risk_level: 'medium',
    next_actions: [`${program} gave no report block: read the diff and its output (engine_output_tail) before approving.`],
    rawFindings: [],
    fromBlock: false,
  };
}

/** The last ```json (or bare ```) fenced block, or else the last balanced {...}, that parses and fits. */
function lastBlock(text: string): AgentReportBlock | null {
  const fenced = [...text.matchAll(/```(?:json)?[ \t]*\r?\n([\s\S]*?)```/g)].map((m) => m[1]!);
  for (const candidate of [...fenced.reverse(), ...jsonObjects(text).reverse()]) {
    let value: unknown;
    try {
      value = JSON.parse(candidate);
    } catch {
      continue;
    }
    const parsed = AgentReportBlockSchema.safeParse(value);
    if (parsed.success) return parsed.data;
  }
  return null;
}

/** Top-level balanced `{...}` spans of `text` (strings and escapes respected), in order. */
function jsonObjects(text: string): string[] {
  const found: string[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  let escaped = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') inString = false;
      else if (c === '\n') inString = false; // JSON strings hold no raw newline: this was prose
      continue;
    }
    if (c === '"' && depth > 0) inString = true;
    else if (c === '{') {
      if (depth === 0) start = i;
      depth++;
    } else if (c === '}' && depth > 0) {
      depth--;
      if (depth === 0) found.push(text.slice(start, i + 1));
    }
  }
  return found;
}

/** The last block of non-empty lines (CRLF tolerated). */
function lastParagraph(output: string): string {
  const paragraphs = output
    .replace(/\r\n?/g, '\n')
    .split(/\n[ \t]*\n/)
    .map((p) => p.trim())
    .filter(Boolean);
  return paragraphs.at(-1) ?? '';
}
