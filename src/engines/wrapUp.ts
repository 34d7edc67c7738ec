/**
 * The wrap-up warning: once, before the run's end, the model is told that few steps, few
 * tokens or little time are left, so it finishes with a summary instead of being cut off.
 * (Work cut off is still kept as an incomplete patch; a finished one explains itself.)
 */

/** Steps left (this call included) at which the model is warned. */
export const WRAP_UP_STEPS = 3;
/** Share of the tokens or of the time left at which the model is warned. */
export const WRAP_UP_SHARE = 0.15;

export interface BudgetLeft {
  /** Model calls made so far, and the most allowed. */
  steps: number;
  maxSteps: number;
  /** Tokens spent so far, and the ceiling. */
  spentTokens: number;
  maxTokens: number;
  /** What the last model call took (prompt + reply): the next one costs at least that. */
  lastCallTokens: number;
  /** The run's deadline and its whole length, in ms (no deadline: no time warning). */
  deadline: number | undefined;
  timeoutMs: number;
  now: number;
}

/** The warning to send before the next model call, or null when there is still room (or nothing was done yet). */
export function wrapUpWarning(left: BudgetLeft): string | null {
  // The first call has the task itself to read: a warning there (max_steps <= 3) would only confuse.
  if (left.steps === 0) return null;
  const reasons: string[] = [];
  const stepsLeft = left.maxSteps - left.steps;
  if (stepsLeft <= WRAP_UP_STEPS) reasons.push(`${stepsLeft} model call${stepsLeft === 1 ? '' : 's'} left (this one included)`);
  // 15% of the budget, or what pays for only WRAP_UP_STEPS more calls of the last one's size
  // (each call re-sends the conversation, so a long run's calls may each take more than 15%).
  const tokensLeft = left.maxTokens - left.spentTokens;
  if (tokensLeft <= Math.max(left.maxTokens * WRAP_UP_SHARE, left.lastCallTokens * WRAP_UP_STEPS))
    reasons.push(`${Math.max(0, Math.round((tokensLeft / left.maxTokens) * 100))}% of the token budget left`);
  if (left.deadline !== undefined) {
    const msLeft = left.deadline - left.now;
    if (msLeft <= left.timeoutMs * WRAP_UP_SHARE) reasons.push(`about ${Math.max(0, Math.round(msLeft / 1000))} s of the time limit left`);
  }
  if (reasons.length === 0) return null;
  return `Only ${reasons.join(', ')}: wrap up and call finish. Stop exploring; make sure what you changed is consistent, then call finish with a summary that says what is done and what is not.`;
}
