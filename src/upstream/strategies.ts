// Route ordering per model (`models[].strategy`): which target a request tries first, and the order of the rest.
// Pure: the signals (calls in flight, latencies) and the random source are handed in, so every rule is testable alone.
import type { RoutingStrategy } from '../config/schema.ts';
import type { RouteTarget } from '../catalogue/catalogue.ts';

export interface RouteSignals {
  /** Calls in flight to the deployment across the pool (least-busy). */
  busy(target: RouteTarget): number;
  /** Recent latency to the response head, ms (EWMA); undefined when never measured (latency). */
  latency(target: RouteTarget): number | undefined;
}

/** `latency`: the share of requests sent to a random target, so a deployment once slow is measured again. */
export const LATENCY_EXPLORE = 0.05;

/**
 * The targets in the order they are tried. `fallback`: as configured. `weighted`: a weighted random order (each target
 * first with probability weight / total). `least-busy`: fewest calls in flight first. `latency`: lowest recent latency
 * first, a never-measured target before any measured one. Ties keep the configured order.
 */
export function orderTargets(strategy: RoutingStrategy, targets: readonly RouteTarget[], signals: RouteSignals, random: () => number = Math.random): readonly RouteTarget[] {
  if (targets.length < 2) return targets;
  switch (strategy) {
    case 'fallback':
      return targets;
    case 'weighted':
      return weightedOrder(targets, random);
    case 'least-busy':
      return stableSortBy(targets, (t) => signals.busy(t));
    case 'latency': {
      if (random() < LATENCY_EXPLORE) {
        const first = Math.floor(random() * targets.length);
        return [targets[first]!, ...targets.filter((_, i) => i !== first)];
      }
      return stableSortBy(targets, (t) => signals.latency(t) ?? -1);
    }
    default:
      return strategy satisfies never;
  }
}

/** Efraimidis–Spirakis: key u^(1/w) per target, highest first: the first is drawn by weight, and so is each next one. */
function weightedOrder(targets: readonly RouteTarget[], random: () => number): RouteTarget[] {
  return targets
    .map((target, index) => ({ target, index, key: Math.pow(Math.max(random(), Number.MIN_VALUE), 1 / (target.weight ?? 1)) }))
    .sort((a, b) => b.key - a.key || a.index - b.index)
    .map((entry) => entry.target);
}

function stableSortBy(targets: readonly RouteTarget[], score: (target: RouteTarget) => number): RouteTarget[] {
  return targets
    .map((target, index) => ({ target, index, score: score(target) }))
    .sort((a, b) => a.score - b.score || a.index - b.index)
    .map((entry) => entry.target);
}
