// Turns runs into the report: the median of every metric across runs, a verdict per target, and the Markdown tables.
// Pure: formats what it is given, measures nothing.
import { median } from './stats.ts';
import type { Row, RunResult, Scenario, Target, Unit } from './scenario.ts';

export interface Verdict extends Target {
  value: number;
  met: boolean;
}

export interface ScenarioReport {
  name: string;
  summary: string;
  runs: RunResult[];
  /** Median of each metric across runs. */
  median: Record<string, number>;
  rows: Row[];
  verdicts: Verdict[];
  /** Set when a run failed; the runs before it are kept. */
  error?: string;
}

export function aggregate(scenario: Scenario, runs: RunResult[], error?: string): ScenarioReport {
  const names = new Set(runs.flatMap((r) => Object.keys(r.metrics)));
  const med: Record<string, number> = {};
  for (const name of names) med[name] = median(runs.map((r) => r.metrics[name] ?? Number.NaN));
  const verdicts = scenario.targets.map((t) => {
    const value = med[t.metric] ?? Number.NaN;
    const met = Number.isFinite(value) && (t.op === '<=' ? value <= t.limit : value >= t.limit);
    return { ...t, value, met };
  });
  return { name: scenario.name, summary: scenario.summary, runs, median: med, rows: scenario.rows, verdicts, ...(error ? { error } : {}) };
}

export function formatValue(value: number | undefined, unit: Unit, signed = false): string {
  if (value === undefined || !Number.isFinite(value)) return '—';
  const sign = signed && value > 0 ? '+' : '';
  switch (unit) {
    case 'ms':
      return `${sign}${value.toFixed(Math.abs(value) < 10 ? 2 : 1)} ms`;
    case 's':
      return `${sign}${value.toFixed(2)} s`;
    case 'req/s':
    case 'chunks/s':
      return `${sign}${Math.round(value).toLocaleString('en')} ${unit}`;
    case '%':
      return `${sign}${value.toFixed(1)} %`;
    case 'MB':
      return `${sign}${value.toFixed(1)} MB`;
    case 'count':
      return `${sign}${Math.round(value).toLocaleString('en')}`;
    default:
      unit satisfies never;
      return String(value);
  }
}

/** One table for all scenarios: every row of each, medians across runs. */
export function resultsTable(reports: readonly ScenarioReport[], runs: number): string {
  const lines = [
    `| scenario | measure | direct | Spillway | Spillway vs direct |`,
    `|---|---|--:|--:|--:|`,
  ];
  for (const r of reports) {
    if (r.runs.length === 0) {
      lines.push(`| ${r.name} | failed: ${escape(r.error ?? 'no run completed')} | | | |`);
      continue;
    }
    r.rows.forEach((row, i) => {
      const cell = (metric: string | undefined) => (metric === undefined ? '' : formatValue(r.median[metric], row.unit));
      const compare = row.compare === undefined ? '' : formatValue(r.median[row.compare.metric], row.compare.unit, row.compare.unit === 'ms');
      lines.push(`| ${i === 0 ? `**${r.name}**` : ''} | ${row.label} | ${cell(row.direct)} | ${cell(row.spillway)} | ${compare} |`);
    });
  }
  const note = runs > 1 ? `Medians of ${runs} runs.` : 'One run.';
  return `${lines.join('\n')}\n\n${note}`;
}

export function targetsTable(reports: readonly ScenarioReport[]): string {
  const lines = [`| scenario | target | measured | verdict |`, `|---|---|--:|---|`];
  for (const r of reports) {
    for (const v of r.verdicts) {
      const limit = formatValue(v.limit, v.unit);
      lines.push(`| ${r.name} | ${v.label} ${v.op === '<=' ? '≤' : '≥'} ${limit} | ${formatValue(v.value, v.unit)} | ${v.met ? 'met' : '**not met**'} |`);
    }
  }
  return lines.join('\n');
}

function escape(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}
