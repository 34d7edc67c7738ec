/** Risk: the higher of what the agent says and what the project's rules say. The agent cannot lower it. */
import type { Regression, RiskLevel } from '../contract/report.ts';
import type { Project } from '../workspace/config.ts';
import { caseInsensitiveFs, globMatcher } from '../safety/globs.ts';

const ORDER: Record<RiskLevel, number> = { low: 0, medium: 1, high: 2 };

export function maxRisk(a: RiskLevel, b: RiskLevel): RiskLevel {
  return ORDER[a] >= ORDER[b] ? a : b;
}

export function assessRisk(
  agentLevel: RiskLevel,
  changedFiles: readonly string[],
  project: Pick<Project, 'risk'>,
  platform: NodeJS.Platform = process.platform,
): { level: RiskLevel; reasons: string[] } {
  let level = agentLevel;
  const reasons = [`agent: ${agentLevel}`];
  for (const rule of project.risk) {
    const matches = globMatcher(rule.paths, { nocase: caseInsensitiveFs(platform) }); // Bot/Execution/x.py is bot/execution/x.py on Windows
    const hit = changedFiles.filter(matches);
    if (hit.length === 0) continue;
    level = maxRisk(level, rule.level);
    reasons.push(`rule ${rule.level}${rule.reason ? ` (${rule.reason})` : ''}: ${hit.slice(0, 5).join(', ')}${hit.length > 5 ? ', ...' : ''}`);
  }
  return { level, reasons };
}

/** A change that breaks what passed on the base commit is high risk, whatever anyone says. */
export function withRegressions(risk: { level: RiskLevel; reasons: string[] }, regressions: readonly Regression[]): { level: RiskLevel; reasons: string[] } {
  if (regressions.length === 0) return risk;
  const what = regressions.map((r) => r.test ?? `${r.check === 'tests' ? 'the tests' : 'the dry run'}`);
  return {
    level: 'high',
    reasons: [
      ...risk.reasons,
      `regressions: ${what.slice(0, 5).join(', ')}${what.length > 5 ? `, ... (${what.length})` : ''} passed on the base commit and fail now`,
    ],
  };
}
