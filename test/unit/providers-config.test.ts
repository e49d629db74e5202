// Configuration of provider types, breakers and health checks: defaults, and every mistake refused naming its field,
// also through the real CLI (`spillway check-config` exits 2). The CLI part needs `npm run build` (npm test runs it).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.ts';
import { countsAgainstDeployment } from '../../src/upstream/breakers.ts';
import { clientFailure, failureFromNetworkError, failureFromResponse, deadlineFailure, tooLargeFailure } from '../../src/upstream/providers/openai/errors.ts';
import { configProblems } from '../support/config.ts';

const TENANTS = [{ id: 'acme', keys: [`sha256:${'c'.repeat(64)}`] }];

function config(provider: Record<string, unknown>, models: unknown[] = [{ name: 'm', route: [{ provider: 'p', model: 'x' }] }]): Record<string, unknown> {
  return { providers: [{ id: 'p', baseUrl: 'https://api.example.com/v1', ...provider }], models, tenants: TENANTS };
}

describe('provider types', () => {
  it('accepts azure-openai with an apiVersion and anthropic with its version and default max_tokens', () => {
    const parsed = parseConfig({
      ...config({ type: 'azure-openai', apiVersion: '2024-10-21' }),
      providers: [
        { id: 'p', type: 'azure-openai', baseUrl: 'https://contoso.openai.azure.com', apiVersion: '2024-10-21' },
        { id: 'claude', type: 'anthropic', baseUrl: 'https://api.anthropic.com/v1', anthropicVersion: '2023-06-01', defaultMaxTokens: 2048 },
      ],
    });
    expect(parsed.providers.map((p) => p.type)).toEqual(['azure-openai', 'anthropic']);
    expect(parsed.providers[1]).toMatchObject({ anthropicVersion: '2023-06-01', defaultMaxTokens: 2048 });
  });

  it('an azure-openai provider without apiVersion is refused at providers[i].apiVersion', () => {
    expect(configProblems(config({ type: 'azure-openai' }))).toEqual([expect.stringMatching(/^providers\[0\]\.apiVersion: required for type "azure-openai"/)]);
  });

  it('a field of another provider type is refused, naming it', () => {
    expect(configProblems(config({ type: 'openai', defaultMaxTokens: 100 }))).toEqual([expect.stringMatching(/^providers\[0\]\.defaultMaxTokens: only for type "anthropic"/)]);
    expect(configProblems(config({ type: 'anthropic', apiVersion: '2024-10-21' }))).toEqual([expect.stringMatching(/^providers\[0\]\.apiVersion: only for type "azure-openai"/)]);
  });

  it('a model that declares embeddings cannot route to an anthropic provider', () => {
    const models = [{ name: 'e', route: [{ provider: 'p', model: 'claude' }], endpoints: ['embeddings'] }];
    expect(configProblems(config({ type: 'anthropic' }, models))).toEqual([expect.stringMatching(/^models\[0\]\.route\[0\]\.provider: provider "p" \(anthropic\) cannot serve embeddings/)]);
  });
});

describe('circuitBreaker and healthCheck', () => {
  it('default to 5 failures in 60 s, open 30 s, enabled; no health check unless configured, then every 10 s', () => {
    const parsed = parseConfig(config({ type: 'openai' }));
    expect(parsed.providers[0]?.circuitBreaker).toEqual({ enabled: true, failureThreshold: 5, windowMs: 60_000, resetTimeoutMs: 30_000 });
    expect(parsed.providers[0]?.healthCheck).toBeUndefined();
    expect(parseConfig(config({ type: 'openai', healthCheck: {} })).providers[0]?.healthCheck).toEqual({ intervalMs: 10_000 });
  });

  it('a failureThreshold of 0 is refused, naming the field', () => {
    expect(configProblems(config({ type: 'openai', circuitBreaker: { failureThreshold: 0 } }))).toEqual([expect.stringMatching(/^providers\[0\]\.circuitBreaker\.failureThreshold: /)]);
  });

  it('unknown breaker fields, a health-check path without a leading slash and a tiny interval are refused', () => {
    expect(configProblems(config({ type: 'openai', circuitBreaker: { threshold: 3 } }))).toEqual([expect.stringMatching(/^providers\[0\]\.circuitBreaker: unknown field "threshold"/)]);
    expect(configProblems(config({ type: 'openai', healthCheck: { path: 'models', intervalMs: 10 } }))).toEqual([
      expect.stringMatching(/^providers\[0\]\.healthCheck\.path: must start with \//),
      expect.stringMatching(/^providers\[0\]\.healthCheck\.intervalMs: /),
    ]);
  });
});

describe('which failures count against a deployment', () => {
  it('5xx, 408, timeouts, resets and broken streams count; client 4xx, 429, our own deadline, size caps and refusals do not', () => {
    const status = (s: number) => failureFromResponse(s, {}, undefined);
    expect([500, 502, 503, 504, 408].map((s) => countsAgainstDeployment(status(s)))).toEqual([true, true, true, true, true]);
    expect([400, 401, 403, 404, 413, 422, 429].map((s) => countsAgainstDeployment(status(s)))).toEqual([false, false, false, false, false, false, false]);
    expect(countsAgainstDeployment(failureFromNetworkError(Object.assign(new Error('x'), { code: 'UND_ERR_HEADERS_TIMEOUT' })))).toBe(true);
    expect(countsAgainstDeployment(failureFromNetworkError(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })))).toBe(true);
    expect(countsAgainstDeployment(deadlineFailure())).toBe(false);
    expect(countsAgainstDeployment(tooLargeFailure(200, 'big'))).toBe(false);
    expect(countsAgainstDeployment(clientFailure('n > 1', 'n', 'refused'))).toBe(false);
  });
});

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/spillway.js');
const dir = mkdtempSync(join(tmpdir(), 'spillway-providers-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('spillway check-config', () => {
  it('exits 2 naming the breaker field when failureThreshold is 0', async () => {
    if (!existsSync(join(ROOT, 'dist/src/cli.js'))) throw new Error('dist/ is missing: run `npm run build` before these tests');
    const file = join(dir, 'bad-breaker.yaml');
    writeFileSync(file, stringify(config({ type: 'openai', circuitBreaker: { failureThreshold: 0 } })));
    const run = await new Promise<{ code: number | null; stderr: string }>((done) => {
      execFile(process.execPath, [BIN, 'check-config', '--config', file], { cwd: ROOT, env: { PATH: process.env.PATH ?? '' }, timeout: 20_000 }, (err, _stdout, stderr) =>
        done({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stderr }),
      );
    });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('providers[0].circuitBreaker.failureThreshold');
  });
});
