// Turns runs into the report: the median of every metric across runs, a verdict per target, and the Markdown tables.
// Pure: formats what it is given, measures nothing.
import { median } from './stats.ts';
import { COMMAND_SEPARATOR } from './redis-cost.ts';
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
    case 'µs':
      return `${sign}${value.toFixed(Math.abs(value) < 10 ? 2 : Math.abs(value) < 100 ? 1 : 0)} µs`;
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
    case 'calls':
      return `${sign}${value.toLocaleString('en', { maximumFractionDigits: Math.abs(value) < 10 ? 2 : 1 })}`;
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

/** Commands shown per phase in the breakdown: the most called ones. */
const TOP_COMMANDS = 10;
const PHASES = [
  { metric: 'spillway', label: 'Spillway' },
  { metric: 'raw', label: 'raw BullMQ' },
] as const;

/**
 * Redis commands by name, per request, for each scenario that measured them: the union of each phase's top 10 by calls
 * (Spillway's order first), with the µs Redis spent executing them. A script's µs include the commands it ran, which
 * also have rows of their own: the µs column does not add up.
 */
export function redisCommandsTable(reports: readonly ScenarioReport[]): string {
  const callsOf = (r: ScenarioReport, phase: string, command: string) => r.median[`${phase}_redis_calls_per_req${COMMAND_SEPARATOR}${command}`];
  const usecOf = (r: ScenarioReport, phase: string, command: string) => r.median[`${phase}_redis_usec_per_req${COMMAND_SEPARATOR}${command}`];
  const phases = (r: ScenarioReport) => PHASES.filter((p) => Number.isFinite(r.median[`${p.metric}_redis_cmds_per_req`]));
  const measured = reports.filter((r) => phases(r).length > 0);
  if (measured.length === 0) return '';
  const header = PHASES.flatMap((p) => [`${p.label}: calls/request`, `${p.label}: exec µs/request`]);
  const lines = [`| scenario | command | ${header.join(' | ')} |`, `|---|---|${header.map(() => '--:').join('|')}|`];
  for (const r of measured) {
    const commands: string[] = [];
    for (const p of phases(r)) {
      const prefix = `${p.metric}_redis_calls_per_req${COMMAND_SEPARATOR}`;
      const names = Object.keys(r.median).filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
      names.sort((a, b) => (callsOf(r, p.metric, b) ?? 0) - (callsOf(r, p.metric, a) ?? 0));
      for (const name of names.slice(0, TOP_COMMANDS)) if (!commands.includes(name)) commands.push(name);
    }
    commands.forEach((command, i) => {
      const cells = PHASES.flatMap((p) => [formatValue(callsOf(r, p.metric, command), 'calls'), formatValue(usecOf(r, p.metric, command), 'µs')]);
      lines.push(`| ${i === 0 ? `**${r.name}**` : ''} | ${command.toUpperCase()} | ${cells.join(' | ')} |`);
    });
  }
  const note =
    'Redis commands by name per request (per stream for streaming scenarios), top 10 of each phase, from `INFO commandstats`: ' +
    "commands run by Lua scripts are counted on their own rows too; exec µs is Redis's time executing the command, a script's including its commands'.";
  return `${lines.join('\n')}\n\n${note}`;
}

function escape(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}
