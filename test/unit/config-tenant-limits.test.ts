// Tenant limit fields and `tenantDefaults`: refused at start when of the wrong type or sign (the error names the
// field's path), and resolved tenant > tenantDefaults > built-in default. Pure: no files, no Redis.
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { resolveTenantLimits } from '../../src/admission/limits.ts';
import { configProblems, minimalConfig, TENANT_KEY_HASH } from '../support/config.ts';

describe('tenant limits in the configuration', () => {
  it('accepts every limit on a tenant and under tenantDefaults', () => {
    const parsed = parseConfig(
      minimalConfig(
        { rpm: 120, burst: 4, tpm: 90_000, tokenBurst: 3_000, maxConcurrent: 5, maxQueueWaitMs: 5_000, priority: 'high', weight: 2.5, estimatedCompletionTokens: 256 },
        { tenantDefaults: { rpm: 60, tpm: 10_000, maxConcurrent: 2, priority: 'batch', weight: 0.5, estimatedCompletionTokens: 100 } },
      ),
    );
    expect(parsed.tenants[0]).toMatchObject({ rpm: 120, burst: 4, tpm: 90_000, tokenBurst: 3_000, maxConcurrent: 5, priority: 'high', weight: 2.5 });
    expect(parsed.tenantDefaults).toMatchObject({ rpm: 60, priority: 'batch', weight: 0.5 });
  });

  it('a negative rpm is refused, naming tenants[0].rpm', () => {
    expect(configProblems(minimalConfig({ rpm: -1 }))).toEqual([expect.stringMatching(/^tenants\[0\]\.rpm: /)]);
  });

  it.each([
    ['rpm', 0],
    ['rpm', 1.5],
    ['tpm', 'lots'],
    ['burst', -3],
    ['tokenBurst', 0],
    ['maxConcurrent', 0],
    ['maxConcurrent', true],
    ['weight', 0],
    ['weight', -2],
    ['priority', 'urgent'],
    ['estimatedCompletionTokens', -1],
  ])('%s: %j is refused, naming the field', (field, value) => {
    expect(configProblems(minimalConfig({ [field]: value }))).toEqual([expect.stringMatching(new RegExp(`^tenants\\[0\\]\\.${field}: `))]);
  });

  it('a bad value under tenantDefaults is refused, naming tenantDefaults.<field>', () => {
    expect(configProblems(minimalConfig({}, { tenantDefaults: { tpm: -5 } }))).toEqual([expect.stringMatching(/^tenantDefaults\.tpm: /)]);
  });

  it('an unknown field under tenantDefaults is refused (a typo is an error)', () => {
    expect(configProblems(minimalConfig({}, { tenantDefaults: { rmp: 60 } }))).toEqual([expect.stringMatching(/^tenantDefaults: unknown field "rmp"/)]);
  });

  it('tenantDefaults does not take per-tenant identity fields (keys belong to a tenant)', () => {
    expect(configProblems(minimalConfig({}, { tenantDefaults: { keys: [TENANT_KEY_HASH] } }))).toEqual([expect.stringMatching(/^tenantDefaults: unknown field "keys"/)]);
  });

  it('numbers written as strings (from ${ENV} interpolation) are accepted', () => {
    const parsed = parseConfig(minimalConfig({ rpm: '120', weight: '1.5' }));
    expect(parsed.tenants[0]).toMatchObject({ rpm: 120, weight: 1.5 });
  });
});

describe('resolveTenantLimits', () => {
  it('a tenant without limits has no budgets, class normal, weight 1 and the server queue wait', () => {
    const parsed = parseConfig(minimalConfig());
    expect(resolveTenantLimits(parsed, parsed.tenants[0]!)).toEqual({
      tenantId: 'acme',
      rpm: undefined,
      burst: 1,
      tpm: undefined,
      tokenBurst: 1,
      maxConcurrent: undefined,
      maxQueueWaitMs: parsed.server.maxQueueWaitMs,
      priority: 'normal',
      weight: 1,
      estimatedCompletionTokens: 1024,
    });
  });

  it('the default burst is one second worth of the rate, at least one', () => {
    const fast = parseConfig(minimalConfig({ rpm: 120, tpm: 90_000 }));
    expect(resolveTenantLimits(fast, fast.tenants[0]!)).toMatchObject({ burst: 2, tokenBurst: 1_500 });
    const slow = parseConfig(minimalConfig({ rpm: 30, tpm: 30 }));
    expect(resolveTenantLimits(slow, slow.tenants[0]!)).toMatchObject({ burst: 1, tokenBurst: 1 });
  });

  it("a tenant's own value wins over tenantDefaults, which wins over the built-in default", () => {
    const parsed = parseConfig(minimalConfig({ rpm: 600, priority: 'high' }, { tenantDefaults: { rpm: 60, burst: 7, tpm: 6_000, priority: 'batch', weight: 3 } }));
    expect(resolveTenantLimits(parsed, parsed.tenants[0]!)).toMatchObject({ rpm: 600, burst: 7, tpm: 6_000, tokenBurst: 100, priority: 'high', weight: 3 });
  });
});
