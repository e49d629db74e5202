// GET /v1/usage on a real ingress (in this process) against real Redis: the daily counters a worker writes
// (UsageCounters, written here directly) read back per day and grouped by tenant or model; an admin key sees every
// tenant, a tenant's key only its own; bad parameters and keys answer OpenAI-shaped errors.
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { newInstanceId } from '../../src/roles/context.ts';
import { startIngress, type RunningIngress } from '../../src/roles/ingress.ts';
import { runShutdown } from '../../src/roles/shutdown.ts';
import { createRedisKeys } from '../../src/queue/keys.ts';
import { UsageCounters, UsageRecorder, utcDay } from '../../src/usage/usage-counters.ts';
import { TENANT_KEY, testConfig } from '../support/spillway-cluster.ts';
import { uniquePrefix } from '../support/redis.ts';

const logger = createLogger('silent');
const BETA_KEY = 'sk-test-beta-0123456789';
const ADMIN_KEY = 'sk-admin-usage-0123456789';
const DAY_MS = 86_400_000;

let ingress: RunningIngress;
let redis: Redis;
let recorder: UsageRecorder;
let prefix: string;
const today = utcDay(Date.now());
const yesterday = utcDay(Date.now() - DAY_MS);

beforeAll(async () => {
  prefix = uniquePrefix('usage');
  const config = parseConfig(
    testConfig(inject('redisUrl'), prefix, 0, 'http://127.0.0.1:9', {
      logging: { level: 'silent' },
      tenants: [
        { id: 'acme', keys: [`sha256:${createHash('sha256').update(TENANT_KEY).digest('hex')}`] },
        { id: 'beta', keys: [BETA_KEY], dev: true },
      ],
      admin: { keys: [`sha256:${createHash('sha256').update(ADMIN_KEY).digest('hex')}`] },
      usage: { retentionDays: 30 },
    }),
  );
  ingress = await startIngress({ config, logger, metrics: createMetrics({ defaultMetrics: false }), instanceId: newInstanceId() });
  redis = new Redis(inject('redisUrl'));
  const errors: unknown[] = [];
  recorder = new UsageRecorder(new UsageCounters(redis, createRedisKeys(prefix), { retentionDays: 30 }), { onError: (err) => errors.push(err) });
  // What workers would have written: acme on two days and two models, beta today.
  recorder.record('acme', 'gpt-4o-mini', Date.now() - DAY_MS, { prompt: 10, completion: 5, cached: 0 }, 0.000_015);
  recorder.record('acme', 'gpt-4o-mini', Date.now(), { prompt: 100, completion: 20, cached: 40 }, 0.000_250);
  recorder.record('acme', 'gpt-4o-mini', Date.now(), { prompt: 1, completion: 1, cached: 0 }, 0.000_002);
  recorder.record('acme', 'text-embedding-3-small', Date.now(), { prompt: 8, completion: 0, cached: 0 }, 0);
  recorder.record('beta', 'gpt-4o-mini', Date.now(), { prompt: 3, completion: 4, cached: 0 }, 0.000_007);
  await recorder.close();
  expect(errors).toEqual([]);
});

afterAll(async () => {
  if (ingress !== undefined) await runShutdown(ingress.steps, logger);
  redis?.disconnect();
});

/** The JSON of a usage page or an error, as the tests read it. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a test reads the JSON by shape; toEqual checks it
type Json = any;

/** `key` null: no key at all. */
async function usage(query: string, key: string | null = ADMIN_KEY): Promise<{ status: number; body: Json }> {
  const response = await fetch(`${ingress.url}/v1/usage${query}`, { headers: key === null ? {} : { authorization: `Bearer ${key}` } });
  return { status: response.status, body: await response.json() };
}

describe('GET /v1/usage', () => {
  it('gives an admin every tenant per day, grouped by tenant, with exact tokens and cost', async () => {
    const { status, body } = await usage(`?from=${yesterday}&to=${today}&group_by=tenant`);
    expect(status).toBe(200);
    expect(body).toMatchObject({ object: 'page', from: yesterday, to: today, group_by: 'tenant', has_more: false });
    expect(body.data.map((b: { date: string }) => b.date)).toEqual([yesterday, today]);
    expect(body.data[0].results).toEqual([
      { object: 'usage.result', tenant: 'acme', num_model_requests: 1, input_tokens: 10, output_tokens: 5, input_cached_tokens: 0, total_tokens: 15, cost: { value: 0.000015, currency: 'usd' } },
    ]);
    expect(body.data[1].results).toEqual([
      { object: 'usage.result', tenant: 'acme', num_model_requests: 3, input_tokens: 109, output_tokens: 21, input_cached_tokens: 40, total_tokens: 130, cost: { value: 0.000252, currency: 'usd' } },
      { object: 'usage.result', tenant: 'beta', num_model_requests: 1, input_tokens: 3, output_tokens: 4, input_cached_tokens: 0, total_tokens: 7, cost: { value: 0.000007, currency: 'usd' } },
    ]);
    expect(body.totals).toMatchObject({ num_model_requests: 5, input_tokens: 122, output_tokens: 30, cost: { value: 0.000274, currency: 'usd' } });
    expect(body.data[1].end_time - body.data[1].start_time).toBe(86_400);
  });

  it("gives a tenant's key its own usage only, whatever the grouping", async () => {
    const byTenant = await usage(`?from=${today}&group_by=tenant`, BETA_KEY);
    expect(byTenant.status).toBe(200);
    expect(byTenant.body.data[0].results.map((r: { tenant: string }) => r.tenant)).toEqual(['beta']);
    const byModel = await usage(`?from=${today}&group_by=model`, TENANT_KEY);
    expect(byModel.body.data[0].results).toEqual([
      expect.objectContaining({ model: 'gpt-4o-mini', num_model_requests: 2, input_tokens: 101 }),
      expect.objectContaining({ model: 'text-embedding-3-small', num_model_requests: 1, input_tokens: 8, output_tokens: 0 }),
    ]);
  });

  it('groups by model across tenants for an admin, and sums a whole day without group_by', async () => {
    const byModel = await usage(`?from=${today}&to=${today}&group_by=model`);
    expect(byModel.body.data[0].results.find((r: { model: string }) => r.model === 'gpt-4o-mini')).toMatchObject({ num_model_requests: 3, input_tokens: 104, output_tokens: 25 });
    const whole = await usage(`?from=${today}`);
    expect(whole.body.group_by).toBeNull();
    expect(whole.body.data[0].results).toEqual([expect.objectContaining({ num_model_requests: 4, input_tokens: 112, output_tokens: 25 })]);
    expect(whole.body.data[0].results[0]).not.toHaveProperty('tenant');
  });

  it('lists a day without usage as an empty bucket', async () => {
    const before = utcDay(Date.now() - 5 * DAY_MS);
    const { body } = await usage(`?from=${before}&to=${before}`);
    expect(body.data).toEqual([expect.objectContaining({ object: 'bucket', date: before, results: [] })]);
  });

  it("keeps each day's counters under the tenant's hash tag with a TTL of the retention plus a day", async () => {
    const key = createRedisKeys(prefix).tenantKeys('acme').usage(today);
    expect(key.startsWith(`{${prefix.slice(1, -1)}:tenant:acme}`)).toBe(true);
    const ttl = await redis.ttl(key);
    expect(ttl).toBeGreaterThan(30 * 86_400);
    expect(ttl).toBeLessThanOrEqual(31 * 86_400);
  });

  it.each([
    ['no from', '', 'from'],
    ['a malformed date', '?from=2026-1-01', 'from'],
    ['a date that does not exist', '?from=2026-02-30', 'from'],
    ['to before from', `?from=${today}&to=${yesterday}`, 'to'],
    ['a range over 366 days', `?from=2020-01-01&to=2022-01-01`, 'from'],
    ['an unknown group_by', `?from=${today}&group_by=day`, 'group_by'],
    ['an unknown parameter', `?from=${today}&tenant=beta`, 'tenant'],
  ])('answers 400 invalid_request_error naming the parameter for %s', async (_what, query, param) => {
    const { status, body } = await usage(query);
    expect(status).toBe(400);
    expect(body).toEqual({ error: { message: expect.any(String), type: 'invalid_request_error', param, code: null } });
  });

  it('answers 401 without a key and with a key that is neither an admin nor a tenant key', async () => {
    const missing = await usage(`?from=${today}`, null);
    expect(missing.status).toBe(401);
    expect(missing.body.error).toMatchObject({ type: 'invalid_request_error' });
    const wrong = await usage(`?from=${today}`, 'sk-not-a-key-at-all');
    expect(wrong.status).toBe(401);
    expect(wrong.body.error.code).toBe('invalid_api_key');
  });
});
