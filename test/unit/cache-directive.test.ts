// Whether and how a request uses the response cache: opt-in per model, tenant or request, Cache-Control's no-cache and
// no-store, the settings each level overrides, and a key that ignores key order and labels but never mixes tenants.
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { parseCacheControl, planCache, type CacheRequest } from '../../src/cache/directive.ts';
import { canonicalJson, requestHash } from '../../src/cache/request-key.ts';
import { parseRateLimitReset } from '../../src/upstream/retry-policy.ts';

const KEY = `sha256:${'e'.repeat(64)}`;

function request(overrides: { model?: Record<string, unknown>; tenant?: Record<string, unknown>; cache?: Record<string, unknown>; cacheControl?: string; body?: Record<string, unknown>; stream?: boolean } = {}): CacheRequest {
  const config = parseConfig({
    cache: overrides.cache ?? {},
    providers: [{ id: 'p', type: 'mock' }],
    models: [{ name: 'gpt', route: [{ provider: 'p', model: 'x' }], ...(overrides.model === undefined ? {} : { cache: overrides.model }) }],
    tenants: [
      { id: 'acme', keys: [KEY], ...(overrides.tenant === undefined ? {} : { cache: overrides.tenant }) },
      { id: 'globex', keys: [`sha256:${'f'.repeat(64)}`] },
    ],
  });
  return {
    cache: config.cache,
    model: config.models[0]!,
    tenant: config.tenants[0]!,
    endpoint: 'chat.completions',
    body: overrides.body ?? { model: 'gpt', messages: [{ role: 'user', content: 'hi' }] },
    stream: overrides.stream ?? false,
    cacheControl: overrides.cacheControl,
  };
}

describe('planCache', () => {
  it('is off unless the model, the tenant or the request opts in', () => {
    expect(planCache(request())).toBeUndefined();
    expect(planCache(request({ model: { enabled: true } }))).toMatchObject({ lookup: true, directive: { ttlMs: 300_000, stale: true } });
    expect(planCache(request({ tenant: { enabled: true } }))).toBeDefined();
    expect(planCache(request({ cacheControl: 'max-age=60' }))).toMatchObject({ directive: { ttlMs: 60_000 } });
  });

  it("lets the tenant's setting win over the model's, and the model's over the top level", () => {
    expect(planCache(request({ cache: { enabled: true }, model: { enabled: false } }))).toBeUndefined();
    expect(planCache(request({ model: { enabled: true }, tenant: { enabled: false } }))).toBeUndefined();
    const plan = planCache(request({ cache: { ttlMs: 10_000, maxStaleMs: 5 }, model: { enabled: true, ttlMs: 20_000 }, tenant: { maxEntryBytes: 99 } }));
    expect(plan?.directive).toMatchObject({ ttlMs: 20_000, maxStaleMs: 5, maxEntryBytes: 99 });
  });

  it('no-store forbids the cache; no-cache (and max-age=0) skips the lookup and the stale fallback but stores the answer', () => {
    expect(planCache(request({ model: { enabled: true }, cacheControl: 'no-store' }))).toBeUndefined();
    expect(planCache(request({ model: { enabled: true }, cacheControl: 'no-cache' }))).toMatchObject({ lookup: false, directive: { stale: false } });
    expect(planCache(request({ model: { enabled: true }, cacheControl: 'max-age=0' }))).toMatchObject({ lookup: false });
  });

  it('a request max-age lowers the TTL, never raises it, and opts in only where requestOptIn allows', () => {
    expect(planCache(request({ model: { enabled: true, ttlMs: 5_000 }, cacheControl: 'max-age=60' }))?.directive.ttlMs).toBe(5_000);
    expect(planCache(request({ cache: { requestOptIn: false }, cacheControl: 'max-age=60' }))).toBeUndefined();
  });

  it('keys the same request the same whatever its key order or user label, and a stream apart from JSON', () => {
    const a = planCache(request({ model: { enabled: true }, body: { model: 'gpt', temperature: 0, messages: [{ content: 'hi', role: 'user' }], user: 'u1' } }));
    const b = planCache(request({ model: { enabled: true }, body: { messages: [{ role: 'user', content: 'hi' }], temperature: 0, model: 'gpt', user: 'u2' } }));
    const c = planCache(request({ model: { enabled: true }, body: { model: 'gpt', temperature: 1, messages: [{ role: 'user', content: 'hi' }] } }));
    const d = planCache(request({ model: { enabled: true }, stream: true, body: { model: 'gpt', temperature: 0, messages: [{ role: 'user', content: 'hi' }], stream: true } }));
    expect(a!.directive.key).toBe(b!.directive.key);
    expect(c!.directive.key).not.toBe(a!.directive.key);
    expect(d!.directive.key).not.toBe(a!.directive.key);
  });

  it('never mixes tenants unless the model shares its cache', () => {
    const identity = { endpoint: 'chat.completions', model: 'gpt', stream: false, body: { messages: [] } };
    expect(requestHash({ ...identity, scope: 'acme' })).not.toBe(requestHash({ ...identity, scope: 'globex' }));
    const shared = request({ model: { enabled: true, shared: true } });
    const other = { ...shared, tenant: { ...shared.tenant, id: 'globex' } };
    expect(planCache(shared)!.directive.key).toBe(planCache(other)!.directive.key);
    const own = request({ model: { enabled: true } });
    expect(planCache(own)!.directive.key).not.toBe(planCache({ ...own, tenant: { ...own.tenant, id: 'globex' } })!.directive.key);
  });
});

describe('parseCacheControl', () => {
  it('reads no-store, no-cache and max-age in any case and order, ignoring the rest', () => {
    expect(parseCacheControl('No-Cache, max-age=30, foo')).toEqual({ noStore: false, noCache: true, maxAge: 30 });
    expect(parseCacheControl(['no-store'])).toEqual({ noStore: true, noCache: false, maxAge: undefined });
    expect(parseCacheControl('max-age=abc')).toEqual({ noStore: false, noCache: false, maxAge: undefined });
  });
});

describe('canonicalJson', () => {
  it('sorts object keys at every depth and drops undefined members', () => {
    expect(canonicalJson({ b: [{ y: 1, x: 2 }], a: undefined, c: null })).toBe('{"b":[{"x":2,"y":1}],"c":null}');
  });
});

describe('parseRateLimitReset', () => {
  it("reads OpenAI's durations, taking the budget whose remaining is 0", () => {
    expect(parseRateLimitReset({ 'x-ratelimit-reset-requests': '1m30.5s', 'x-ratelimit-reset-tokens': '20ms', 'x-ratelimit-remaining-tokens': '0' })).toBe(20);
    expect(parseRateLimitReset({ 'x-ratelimit-reset-requests': '2s', 'x-ratelimit-reset-tokens': '6m0s' })).toBe(360_000);
  });

  it("reads Anthropic's reset times, and nothing from headers without a reset", () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRateLimitReset({ 'anthropic-ratelimit-requests-reset': '2026-01-01T00:00:03Z', 'anthropic-ratelimit-requests-remaining': '0' }, now)).toBe(3_000);
    expect(parseRateLimitReset({ 'x-ratelimit-remaining-requests': '0' })).toBeUndefined();
  });
});
