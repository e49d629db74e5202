// Configuration of routing strategies, model fallbacks, pool-wide provider limits and the response cache: defaults, and
// every mistake refused naming its field, also through the real CLI (`spillway check-config` exits 2; needs `npm run build`).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.ts';
import { configProblems } from '../support/config.ts';

const TENANTS = [{ id: 'acme', keys: [`sha256:${'c'.repeat(64)}`] }];
const PROVIDERS = [{ id: 'p', type: 'openai', baseUrl: 'https://api.example.com/v1' }];

function config(models: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { providers: PROVIDERS, models, tenants: TENANTS, ...extra };
}

const route = [{ provider: 'p', model: 'x' }];

describe('routing configuration', () => {
  it('defaults to the fallback strategy, no model fallbacks, no limits and the cache off', () => {
    const parsed = parseConfig(config([{ name: 'm', route }]));
    expect(parsed.models[0]).toMatchObject({ strategy: 'fallback' });
    expect(parsed.models[0]!.fallbacks).toBeUndefined();
    expect(parsed.providers[0]!.limits).toBeUndefined();
    expect(parsed.cache).toEqual({ enabled: false, ttlMs: 300_000, maxStaleMs: 0, maxEntryBytes: 1_048_576, shared: false, requestOptIn: true });
  });

  it('accepts every strategy, fallbacks and a context-window fallback naming configured models', () => {
    const parsed = parseConfig(
      config([
        { name: 'a', route, strategy: 'latency', fallbacks: ['b'], contextWindowFallback: 'c' },
        { name: 'b', route: [{ provider: 'p', model: 'x', weight: 3 }, { provider: 'p', model: 'y' }], strategy: 'weighted' },
        { name: 'c', route, strategy: 'least-busy' },
      ]),
    );
    expect(parsed.models.map((m) => m.strategy)).toEqual(['latency', 'weighted', 'least-busy']);
    expect(parsed.models[1]!.route[0]!.weight).toBe(3);
  });

  it.each([
    ['an unknown strategy', [{ name: 'a', route, strategy: 'round-robin' }], 'models[0].strategy'],
    ['a fallback naming no model', [{ name: 'a', route, fallbacks: ['gpt-5'] }], 'models[0].fallbacks[0]: no model named "gpt-5"'],
    ['a model that is its own fallback', [{ name: 'a', route, fallbacks: ['a'] }], 'models[0].fallbacks[0]'],
    ['a context-window fallback naming no model', [{ name: 'a', route, contextWindowFallback: 'wide' }], 'models[0].contextWindowFallback: no model named "wide"'],
    ['a weight without strategy weighted', [{ name: 'a', route: [{ provider: 'p', model: 'x', weight: 2 }] }], 'models[0].route[0].weight'],
    ['a weight of 0', [{ name: 'a', strategy: 'weighted', route: [{ provider: 'p', model: 'x', weight: 0 }] }], 'models[0].route[0].weight'],
  ])('refuses %s, naming the field', (_name, models, field) => {
    expect(configProblems(config(models)).join('\n')).toContain(field);
  });

  it('accepts pool-wide provider limits and refuses a zero or unknown one, naming the field', () => {
    const limited = parseConfig({ ...config([{ name: 'a', route }]), providers: [{ ...PROVIDERS[0], limits: { rpm: 600, tpm: 90_000, maxConcurrency: 20 } }] });
    expect(limited.providers[0]!.limits).toEqual({ rpm: 600, tpm: 90_000, maxConcurrency: 20, scope: 'provider' });
    expect(configProblems({ ...config([{ name: 'a', route }]), providers: [{ ...PROVIDERS[0], limits: { rpm: 0 } }] }).join('\n')).toContain('providers[0].limits.rpm');
    expect(configProblems({ ...config([{ name: 'a', route }]), providers: [{ ...PROVIDERS[0], limits: { rps: 5 } }] }).join('\n')).toContain('providers[0].limits');
  });

  it('accepts cache settings on the top level, a model and a tenant, and refuses `shared` on a tenant', () => {
    const parsed = parseConfig({
      ...config([{ name: 'a', route, cache: { enabled: true, ttlMs: 1000, shared: true } }], { cache: { maxStaleMs: 60_000 } }),
      tenants: [{ ...TENANTS[0], cache: { enabled: false } }],
    });
    expect(parsed.models[0]!.cache).toEqual({ enabled: true, ttlMs: 1000, shared: true });
    expect(parsed.cache.maxStaleMs).toBe(60_000);
    expect(configProblems({ ...config([{ name: 'a', route }]), tenants: [{ ...TENANTS[0], cache: { shared: true } }] }).join('\n')).toContain('tenants[0].cache');
  });
});

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/spillway.js');
const dir = mkdtempSync(join(tmpdir(), 'spillway-routing-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function checkConfig(input: Record<string, unknown>, name: string): Promise<{ code: number | null; stderr: string }> {
  if (!existsSync(join(ROOT, 'dist/src/cli.js'))) throw new Error('dist/ is missing: run `npm run build` before these tests');
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, stringify(input));
  return new Promise((done) => {
    execFile(process.execPath, [BIN, 'check-config', '--config', file], { cwd: ROOT, env: { PATH: process.env.PATH ?? '' }, timeout: 20_000 }, (err, _stdout, stderr) =>
      done({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stderr }),
    );
  });
}

describe('spillway check-config', () => {
  it('exits 2 naming the field for an unknown strategy', async () => {
    const run = await checkConfig(config([{ name: 'a', route, strategy: 'fastest' }]), 'bad-strategy');
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('models[0].strategy');
  });

  it('exits 2 naming the field for a fallback that names no model', async () => {
    const run = await checkConfig(config([{ name: 'a', route, fallbacks: ['claude-sonnet'] }]), 'bad-fallback');
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('models[0].fallbacks[0]');
    expect(run.stderr).toContain('claude-sonnet');
  });
});
