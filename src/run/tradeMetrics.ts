/**
 * Risk numbers computed in code, never by the LLM, from the project's trades CSV.
 * Equity = starting_equity + cumulative pnl, in time order.
 */
import { parse } from 'csv-parse/sync';
import { MetaAgentError } from '../contract/errors.ts';
import type { RiskThresholdsSchema, TradesConfig } from '../contract/config.ts';
import type { TradeMetricsSchema } from '../contract/report.ts';
import type { z } from 'zod';

/** The numbers, as reports carry them (contract/report.ts). */
export type TradeMetrics = z.infer<typeof TradeMetricsSchema>;
export type RiskThresholds = z.infer<typeof RiskThresholdsSchema>;

const round = (n: number, digits = 6) => Math.round(n * 10 ** digits) / 10 ** digits;

export function computeTradeMetrics(csvText: string, config: TradesConfig, file = config.path): TradeMetrics {
  let rows: Record<string, string>[];
  try {
    rows = parse(csvText.replace(/^\uFEFF/, ''), { columns: true, skip_empty_lines: true, trim: true, comment: '#' }) as Record<string, string>[];
  } catch (error) {
    throw new MetaAgentError('input', `not a valid CSV (${(error as Error).message.split('\n')[0]})`, { file });
  }
  const trades = rows.map((row, i) => {
    const time = row[config.time_column];
    const rawPnl = row[config.pnl_column];
    if (time === undefined)
      throw new MetaAgentError('input', `column "${config.time_column}" is missing (set trades.time_column)`, { file, field: config.time_column });
    if (rawPnl === undefined)
      throw new MetaAgentError('input', `column "${config.pnl_column}" is missing (set trades.pnl_column)`, { file, field: config.pnl_column });
    // An empty cell is not a break-even trade.
    const pnl = rawPnl.trim() === '' ? NaN : Number(rawPnl);
    if (!Number.isFinite(pnl)) {
      throw new MetaAgentError('input', `row ${i + 2}: "${rawPnl}" is not a number`, { file, field: config.pnl_column });
    }
    // Times without a zone are UTC, whatever the machine's zone.
    const t = Date.parse(/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(time) ? `${time.replace(' ', 'T')}Z` : time);
    if (Number.isNaN(t)) throw new MetaAgentError('input', `row ${i + 2}: "${time}" is not a date/time`, { file, field: config.time_column });
    return { t, pnl };
  });
  // Stable sort: trades closed at the same instant keep their file order.
  trades.sort((a, b) => a.t - b.t);
  let equity = config.starting_equity;
  let peak = equity;
  let maxDd = 0;
  let maxDdPct = 0;
  let wins = 0;
  let grossWin = 0;
  let grossLoss = 0;
  let losses = 0;
  const days = new Map<string, number>();
  const curve: TradeMetrics['equity_curve'] = [];
  for (const { t, pnl } of trades) {
    equity += pnl;
    if (pnl > 0) {
      wins++;
      grossWin += pnl;
    }
    if (pnl < 0) {
      losses++;
      grossLoss += pnl;
    }
    const day = new Date(t).toISOString().slice(0, 10);
    days.set(day, (days.get(day) ?? 0) + pnl);
    if (equity > peak) peak = equity;
    const dd = peak - equity;
    if (dd > maxDd) {
      maxDd = dd;
      maxDdPct = peak > 0 ? (dd / peak) * 100 : 0;
    }
    curve.push({ t: new Date(t).toISOString(), equity: round(equity, 2) });
  }
  let worst: TradeMetrics['worst_day'] = null;
  for (const [date, pnl] of [...days].sort(([a], [b]) => a.localeCompare(b))) if (!worst || pnl < worst.pnl) worst = { date, pnl: round(pnl) };
  return {
    trades: trades.length,
    net_pnl: round(grossWin + grossLoss),
    win_rate: trades.length ? round(wins / trades.length) : 0,
    profit_factor: grossLoss < 0 ? round(grossWin / Math.abs(grossLoss)) : null,
    avg_win: wins ? round(grossWin / wins) : null,
    avg_loss: losses ? round(grossLoss / losses) : null,
    max_drawdown: round(maxDd),
    max_drawdown_pct: round(maxDdPct),
    worst_day: worst,
    first_trade_at: trades.length ? new Date(trades[0]!.t).toISOString() : null,
    last_trade_at: trades.length ? new Date(trades.at(-1)!.t).toISOString() : null,
    equity_curve: curve,
  };
}

/** Human-readable flags for every configured threshold the numbers cross. */
export function riskFlags(m: TradeMetrics, th: RiskThresholds): string[] {
  const flags: string[] = [];
  if (th.max_drawdown_pct !== undefined && m.max_drawdown_pct > th.max_drawdown_pct)
    flags.push(`max_drawdown_pct ${m.max_drawdown_pct.toFixed(2)}% exceeds ${th.max_drawdown_pct}%`);
  if (th.min_win_rate !== undefined && m.win_rate < th.min_win_rate) flags.push(`win_rate ${m.win_rate.toFixed(3)} is below ${th.min_win_rate}`);
  if (th.min_profit_factor !== undefined && m.profit_factor !== null && m.profit_factor < th.min_profit_factor)
    flags.push(`profit_factor ${m.profit_factor.toFixed(3)} is below ${th.min_profit_factor}`);
  if (th.worst_day_pnl !== undefined && m.worst_day && m.worst_day.pnl < th.worst_day_pnl)
    flags.push(`worst day ${m.worst_day.date} lost ${m.worst_day.pnl.toFixed(2)}, beyond ${th.worst_day_pnl}`);
  if (th.min_net_pnl !== undefined && m.net_pnl < th.min_net_pnl) flags.push(`net_pnl ${m.net_pnl.toFixed(2)} is below ${th.min_net_pnl}`);
  return flags;
}

/** The numbers as a short Markdown block (for prompts, reports and cycle context). */
export function metricsMarkdown(m: TradeMetrics, flags: string[]): string {
  const f = (n: number | null, d = 2) => (n === null ? 'n/a' : n.toFixed(d));
  return [
    `| metric | value |`,
    `|---|---|`,
    `| trades | ${m.trades} |`,
    `| net_pnl | ${f(m.net_pnl)} |`,
    `| win_rate | ${f(m.win_rate, 3)} |`,
    `| profit_factor | ${f(m.profit_factor, 3)} |`,
    `| avg_win / avg_loss | ${f(m.avg_win)} / ${f(m.avg_loss)} |`,
    `| max_drawdown | ${f(m.max_drawdown)} (${f(m.max_drawdown_pct)}%) |`,
    `| worst_day | ${m.worst_day ? `${m.worst_day.date}: ${f(m.worst_day.pnl)}` : 'n/a'} |`,
    '',
    flags.length ? `Flags:\n${flags.map((x) => `- ${x}`).join('\n')}` : 'No thresholds crossed.',
  ].join('\n');
}
