// What every scenario module exports: how to run it once (direct and through Spillway, side by side) and how to read
// its metrics (table rows, targets). Scenarios measure; they never judge — the runner compares medians with targets.
import type { Stack } from './stack.ts';

export interface ScenarioContext {
  stack: Stack;
  /** Length of each measured load phase. */
  durationMs: number;
  workers: number;
  /** Which run of the scenario this is, from 1 (e.g. to alternate the order of phases compared side by side). */
  run: number;
  /** Where child processes (the raw BullMQ round trip) write their logs. */
  logDir: string;
  log: (line: string) => void;
}

export interface RunResult {
  /** Flat numbers, medianed across runs: `direct_*`, `spillway_*`, and differences or ratios. */
  metrics: Record<string, number>;
  /** Anything else worth keeping in the results file (status counts, mock counters). */
  details: Record<string, unknown>;
}

/** `calls`: a count per request or per chunk (fractional); `µs`: microseconds (Redis CPU). */
export type Unit = 'ms' | 'µs' | 's' | 'req/s' | 'chunks/s' | '%' | 'MB' | 'count' | 'calls';

/** One table row: metric names for the direct, Spillway and comparison columns (any may be absent). */
export interface Row {
  label: string;
  unit: Unit;
  direct?: string;
  spillway?: string;
  /** Spillway minus direct, or a ratio: shown in the last column with its own unit. */
  compare?: { metric: string; unit: Unit };
}

export interface Target {
  label: string;
  metric: string;
  op: '<=' | '>=';
  limit: number;
  unit: Unit;
}

export interface Scenario {
  name: string;
  /** One line: the load and what is measured. */
  summary: string;
  rows: Row[];
  targets: Target[];
  run(ctx: ScenarioContext): Promise<RunResult>;
}

export const MB = 1024 * 1024;

/** Streaming loads and the raw round trip warm up this long first (JIT, connection pools); fixed loads use warmUp(). */
export const WARMUP_MS = 1_500;
