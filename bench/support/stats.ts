// Percentiles, medians and summaries for the benchmark: exact, from every sample (no histogram rounding).
// Pure functions only: no I/O, no clock.

export interface Summary {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** Nearest-rank percentile of ascending `sorted` samples; NaN when there are none. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function summarize(samples: readonly number[]): Summary {
  const sorted = Float64Array.from(samples).sort();
  let total = 0;
  for (const value of sorted) total += value;
  return {
    count: sorted.length,
    mean: sorted.length === 0 ? Number.NaN : total / sorted.length,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    p999: percentile(sorted, 99.9),
    max: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1]!,
  };
}

/** Median of the finite values (the middle one, or the mean of the two middle ones); NaN when there are none. */
export function median(values: readonly number[]): number {
  const sorted = Float64Array.from(values.filter((v) => Number.isFinite(v))).sort();
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Copies a summary's percentiles into flat metrics: `${prefix}_p50`, `_p90`, `_p99`, `_p999`, `_mean`, `_max`. */
export function flatten(prefix: string, s: Summary): Record<string, number> {
  return {
    [`${prefix}_p50`]: s.p50,
    [`${prefix}_p90`]: s.p90,
    [`${prefix}_p99`]: s.p99,
    [`${prefix}_p999`]: s.p999,
    [`${prefix}_mean`]: s.mean,
    [`${prefix}_max`]: s.max,
  };
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
