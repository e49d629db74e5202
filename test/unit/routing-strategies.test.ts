// Route ordering per strategy (fallback, weighted, least-busy, latency) with the signals and the random source handed in,
// and the route plan of a job: its model's targets, then the model fallbacks the tenant may use for the endpoint.
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { orderTargets, LATENCY_EXPLORE, type RouteSignals } from '../../src/upstream/strategies.ts';
import { FAILURE_LATENCY_MS, RoutingState } from '../../src/upstream/routing-state.ts';
import type { RouteTarget } from '../../src/catalogue/catalogue.ts';

const A: RouteTarget = { provider: 'a', model: 'm' };
const B: RouteTarget = { provider: 'b', model: 'm' };
const C: RouteTarget = { provider: 'c', model: 'm' };

const signals = (busy: Record<string, number> = {}, latency: Record<string, number> = {}): RouteSignals => ({
  busy: (t) => busy[t.provider] ?? 0,
  latency: (t) => latency[t.provider],
});

/** A random source that returns these values in turn. */
function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}

describe('orderTargets', () => {
  it('fallback keeps the configured order whatever the signals say', () => {
    expect(orderTargets('fallback', [A, B, C], signals({ a: 9 }, { a: 900 }))).toEqual([A, B, C]);
  });

  it('least-busy puts the target with the fewest calls in flight first, ties in configured order', () => {
    expect(orderTargets('least-busy', [A, B, C], signals({ a: 3, b: 1, c: 1 }))).toEqual([B, C, A]);
    expect(orderTargets('least-busy', [A, B, C], signals())).toEqual([A, B, C]);
  });

  it('latency puts the fastest first, and a never-measured target before any measured one', () => {
    const noExplore = sequence(0.99);
    expect(orderTargets('latency', [A, B, C], signals({}, { a: 300, b: 20, c: 80 }), noExplore)).toEqual([B, C, A]);
    expect(orderTargets('latency', [A, B, C], signals({}, { a: 300, b: 20 }), noExplore)).toEqual([C, B, A]);
  });

  it('latency sends a small share of requests to a random target first, so a slow one is measured again', () => {
    // Below LATENCY_EXPLORE: explore; the next draw picks the target (2/3 → C).
    const explore = sequence(LATENCY_EXPLORE / 2, 0.7);
    expect(orderTargets('latency', [A, B, C], signals({}, { a: 1, b: 2, c: 300 }), explore)[0]).toEqual(C);
  });

  it('weighted draws the first target in proportion to its weight', () => {
    const heavy = { ...A, weight: 3 };
    const light = { ...B, weight: 1 };
    let random = 0x2f6b;
    const lcg = () => {
      random = (random * 1103515245 + 12345) % 2 ** 31;
      return random / 2 ** 31;
    };
    const firsts = { a: 0, b: 0 };
    for (let i = 0; i < 4000; i++) firsts[orderTargets('weighted', [heavy, light], signals(), lcg)[0]!.provider as 'a' | 'b']++;
    // Expected 3000 : 1000; a fixed pseudo-random sequence, so the count is exact run to run.
    expect(firsts.a / 4000).toBeGreaterThan(0.7);
    expect(firsts.a / 4000).toBeLessThan(0.8);
  });

  it('a single target is returned as it is', () => {
    expect(orderTargets('least-busy', [A], signals())).toEqual([A]);
  });
});

const TENANT_KEY = `sha256:${'d'.repeat(64)}`;

function state(models: unknown[], tenants: unknown[] = [{ id: 'acme', keys: [TENANT_KEY] }]): RoutingState {
  const config = parseConfig({ providers: [{ id: 'a', type: 'mock' }, { id: 'b', type: 'mock' }, { id: 'c', type: 'mock' }], models, tenants });
  return new RoutingState({ config, random: () => 0.99 });
}

describe('RoutingState.plan', () => {
  const models = [
    { name: 'gpt', route: [{ provider: 'a', model: 'm' }], fallbacks: ['claude', 'embed-only', 'llama'], contextWindowFallback: 'wide' },
    { name: 'claude', route: [{ provider: 'b', model: 'm' }] },
    { name: 'embed-only', route: [{ provider: 'c', model: 'e' }], endpoints: ['embeddings'] },
    { name: 'llama', route: [{ provider: 'c', model: 'm' }] },
    { name: 'wide', route: [{ provider: 'c', model: 'w' }] },
  ];

  it("lists the model's route, then each fallback that serves the endpoint, in order", () => {
    const plan = state(models).plan({ model: 'gpt', tenant: 'acme', endpoint: 'chat.completions' }, [A]);
    expect(plan.map((stage) => stage.model)).toEqual(['gpt', 'claude', 'llama']);
    expect(plan[1]!.targets).toEqual([{ provider: 'b', model: 'm' }]);
  });

  it("leaves out a fallback the tenant may not use", () => {
    const routing = state(models, [{ id: 'acme', keys: [TENANT_KEY], models: ['gpt', 'llama'] }]);
    expect(routing.plan({ model: 'gpt', tenant: 'acme', endpoint: 'chat.completions' }, [A]).map((s) => s.model)).toEqual(['gpt', 'llama']);
  });

  it('names the context-window fallback of a model', () => {
    expect(state(models).contextWindowFallback('gpt')).toBe('wide');
    expect(state(models).contextWindowFallback('claude')).toBeUndefined();
  });

  it('orders by least-busy from the calls in flight it is told about', () => {
    const routing = state([{ name: 'lb', strategy: 'least-busy', route: [{ provider: 'a', model: 'm' }, { provider: 'b', model: 'm' }] }]);
    routing.callStarted(A);
    routing.callStarted(A);
    expect(routing.plan({ model: 'lb', tenant: 'acme', endpoint: 'chat.completions' }, [A, B])[0]!.targets).toEqual([B, A]);
    routing.callEnded(A, undefined);
    routing.callEnded(A, undefined);
    expect(routing.plan({ model: 'lb', tenant: 'acme', endpoint: 'chat.completions' }, [A, B])[0]!.targets).toEqual([A, B]);
  });

  it('keeps an EWMA of head latencies, and counts a failure as at least FAILURE_LATENCY_MS', () => {
    const routing = state([{ name: 'fast', strategy: 'latency', route: [{ provider: 'a', model: 'm' }, { provider: 'b', model: 'm' }] }]);
    routing.callStarted(A);
    routing.callEnded(A, { headMs: 100 });
    routing.callStarted(A);
    routing.callEnded(A, { headMs: 200 });
    expect(routing.latency(A)).toBeCloseTo(130);
    routing.callStarted(B);
    routing.callEnded(B, { failedAfterMs: 3 });
    expect(routing.latency(B)).toBe(FAILURE_LATENCY_MS);
    expect(routing.plan({ model: 'fast', tenant: 'acme', endpoint: 'chat.completions' }, [A, B])[0]!.targets).toEqual([A, B]);
  });
});
