/**
 * The soak's workspace: the `meta-agent init` layout in a temp folder, a copy of
 * examples/scalper-bot as a git repo, and a meta-agent.yaml for unattended nights
 * (the demo config's project settings, a fast queue, a bounded budget, small retention).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { initWorkspace } from '../src/workspace/init.ts';
import { EXAMPLE_BOT } from '../test/helpers/workspace.ts';

export interface SoakConfig {
  llmUrl: string;
  budgetTokens: number;
  waitTimeoutS: number;
  taskTimeoutS: number;
  maxSteps: number;
  retentionReportsDays: number;
  retentionLogsDays: number;
  timezone: string;
  /** The BullMQ mode (soak/cluster.ts): `execution.engine: bullmq` with this lock_s. */
  bullmq?: { lockS: number; maxStalled: number };
}

export interface SoakWorkspace {
  /** Holds the workspace, the clock file and the ENOSPC flag. */
  base: string;
  root: string;
  repo: string;
  clockFile: string;
  enospcFlag: string;
}

export async function makeSoakWorkspace(base: string, config: SoakConfig): Promise<SoakWorkspace> {
  const root = path.join(base, 'ws');
  const repo = path.join(root, 'target-repo');
  await fs.mkdir(root, { recursive: true });
  await fs.cp(EXAMPLE_BOT, repo, {
    recursive: true,
    filter: (src) => !/(__pycache__|\.pytest_cache|\.benchmarks)$/.test(src) && path.basename(src) !== '.env',
  });
  const g = (args: string[]) => execa('git', args, { cwd: repo });
  await g(['init', '--quiet', '--initial-branch', 'main']);
  await g(['add', '--all']);
  await g(['-c', 'user.name=Soak Human', '-c', 'user.email=human@soak', 'commit', '--quiet', '-m', 'initial']);
  await initWorkspace(root, { withConfig: false });
  await fs.writeFile(path.join(root, 'meta-agent.yaml'), configYaml(repo, config));
  return { base, root, repo, clockFile: path.join(base, 'clock.json'), enospcFlag: path.join(base, 'enospc.flag') };
}

export function configYaml(repo: string, c: SoakConfig): string {
  return `# Written by the soak harness (soak/workspace.ts).
llm:
  model: scripted-model
  base_url: ${c.llmUrl}
  max_retries: 2
  request_timeout_s: 2
engine: openai
sandbox: auto
projects:
  bot:
    repo: ${JSON.stringify(repo)}
    scope: ["**"]
    test: "python3 -m pytest -q -p no:cacheprovider"
    dry_run: "python3 -m bot.main --dry-run"
    risk:
      - paths: ["bot/execution/**"]
        level: high
        reason: order execution
    trades: { path: data/trades.csv, time_column: closed_at, pnl_column: pnl, starting_equity: 10000 }
    risk_thresholds: { max_drawdown_pct: 5, min_win_rate: 0.4, min_profit_factor: 1.2 }
    retrain:
      train: "python3 scripts/train.py"
      eval: "python3 scripts/eval.py"
      metrics: models/candidate.json
      baseline: models/metrics.json
      metric: sharpe
      margin: 0.05
      artifacts: [models/model.pkl]
supervisor:
  timezone: ${c.timezone}
  tick_s: 0.5
  schedule:
    - { cron: "30 2 * * *", goal: daily_maintenance }
    - { cron: "0 3 * * 6", goal: weekly_retrain, mode: weekly }
  budget_tokens: ${c.budgetTokens}
  wait_timeout_s: ${c.waitTimeoutS}
queue:
  settle_ms: 300
  scan_interval_ms: 300
  lease_stale_s: 3
  shutdown_grace_s: 1
limits:
  task_timeout_s: ${c.taskTimeoutS}
  check_timeout_s: 60
  max_steps: ${c.maxSteps}
  concurrency: 2
retention:
  logs_days: ${c.retentionLogsDays}
  reports_days: ${c.retentionReportsDays}
  action: archive
${c.bullmq ? `execution:\n  engine: bullmq\n  lock_s: ${c.bullmq.lockS}\n  max_stalled: ${c.bullmq.maxStalled}\n` : ''}`;
}
