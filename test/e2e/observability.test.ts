// Operations end to end (real processes: 1 ingress, 1 worker with its own metrics port, real Redis, mock upstream,
// a real webhook receiver): a scripted mix of traffic (success, a tenant's 429, an upstream 429 absorbed, an upstream
// failure, a stream, a cache hit, an async job with its webhook) moves the scraped counters by exactly the expected
// amounts; GET /v1/usage shows the same tokens; a client's request id is in both the ingress's and the worker's log
// line of its request; and no configured secret appears anywhere in the processes' output.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parse } from 'yaml';
import OpenAI from 'openai';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';
import { configuredSecrets, findLeaks } from '../support/log-secrets.ts';
import { freePort } from '../support/ports.ts';
import { waitFor } from '../support/wait.ts';

const TINY_KEY = 'sk-test-tiny-0123456789';
const ADMIN_KEY = 'sk-admin-observability-0123456789';
const PRICE = { input: 2.5, output: 10, cachedInput: 1.25 };
const MODEL = 'gpt-4o-mini';
const DEPLOYMENT = { provider: 'mock', deployment: 'mock/mock-chat' };
const sha256 = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;

let cluster: Cluster;
let receiver: WebhookReceiver;
let workerMetricsUrl: string;
let client: OpenAI;

beforeAll(async () => {
  receiver = await startWebhookReceiver();
  const metricsPort = await freePort();
  workerMetricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  cluster = await startCluster({
    redisUrl: inject('redisUrl'),
    workers: 1,
    secrets: [ADMIN_KEY],
    config: {
      worker: { metricsPort },
      models: [
        { name: MODEL, route: [{ provider: 'mock', model: 'mock-chat' }], price: PRICE },
        { name: 'text-embedding-3-small', route: [{ provider: 'mock', model: 'mock-embed' }], endpoints: ['embeddings'] },
      ],
      tenants: [
        { id: 'acme', keys: [sha256(TENANT_KEY)], webhook: { url: receiver.url, secrets: [receiver.secret] } },
        // One request a minute and no waiting: the second is refused with 429 at admission.
        { id: 'tiny', keys: [TINY_KEY], dev: true, rpm: 1, burst: 1, maxQueueWaitMs: 0 },
      ],
      admin: { keys: [sha256(ADMIN_KEY)] },
      webhooks: { allowHttp: true, allowHosts: ['127.0.0.1'], timeoutMs: 2_000 },
    },
  });
  client = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0 });
  await waitFor(async () => (await fetch(workerMetricsUrl)).ok, { what: 'the worker metrics port' });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
  await receiver?.close();
});

/** Series → value from a Prometheus text exposition (a series is its name and sorted labels). */
type Scrape = Map<string, number>;

async function scrape(url: string): Promise<Scrape> {
  const text = await (await fetch(url)).text();
  const series: Scrape = new Map();
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels = [...(match[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => `${m[1]}="${m[2]}"`).sort();
    series.set(`${match[1]}{${labels.join(',')}}`, Number(match[4]));
  }
  return series;
}

const key = (name: string, labels: Record<string, string> = {}) =>
  `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(',')}}`;

/** Every series of `family` (optionally only those `keep` accepts) whose value moved, with how much. */
function deltas(before: Scrape, after: Scrape, family: string, keep: (series: string) => boolean = () => true): Record<string, number> {
  const moved: Record<string, number> = {};
  for (const [series, value] of after) {
    if (!series.startsWith(`${family}{`) || !keep(series)) continue;
    const delta = value - (before.get(series) ?? 0);
    if (delta !== 0) moved[series] = delta;
  }
  return moved;
}

const chatBody = { model: MODEL, messages: [{ role: 'user' as const, content: 'Count to five, please.' }] };
const mock = (extra: Record<string, string> = {}) => ({ 'x-mock-chunks': '5', ...extra });

async function post(path: string, body: unknown, headers: Record<string, string> = {}, apiKey = TENANT_KEY): Promise<Response> {
  return fetch(`${cluster.baseUrl}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}

interface LogLine {
  msg: string;
  reqId?: string;
  [field: string]: unknown;
}

const logLines = (output: string): LogLine[] =>
  output.split('\n').flatMap((line) => {
    try {
      const parsed = JSON.parse(line) as unknown;
      return parsed !== null && typeof parsed === 'object' ? [parsed as LogLine] : [];
    } catch {
      return [];
    }
  });

describe('a scripted mix of traffic', () => {
  let ingressBefore: Scrape;
  let ingressAfter: Scrape;
  let workerBefore: Scrape;
  let workerAfter: Scrape;
  /** One answer's usage: every chat request below asks the same, so each costs the same tokens. */
  let usage: { prompt_tokens: number; completion_tokens: number };
  const streamId = 'obs-stream-1';
  const successId = 'obs-success-1';

  beforeAll(async () => {
    ingressBefore = await scrape(`${cluster.baseUrl}/metrics`);
    workerBefore = await scrape(workerMetricsUrl);

    // 1. Success (JSON), with the client's own request id.
    const success = await post('/v1/chat/completions', chatBody, { ...mock(), 'x-request-id': successId });
    expect(success.status).toBe(200);
    usage = ((await success.json()) as { usage: typeof usage }).usage;

    // 2. A stream, asking for its usage.
    const stream = await client.chat.completions.create({ ...chatBody, stream: true, stream_options: { include_usage: true } }, { headers: { ...mock(), 'x-request-id': streamId } });
    let streamUsage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) if (chunk.usage) streamUsage = chunk.usage;
    expect(streamUsage).toMatchObject(usage);

    // 3. An upstream failure: three attempts (worker.maxAttempts), each a 500, then 502 to the client.
    expect((await post('/v1/chat/completions', chatBody, mock({ 'x-mock-status': '500' }))).status).toBe(502);

    // 4. An upstream 429 with Retry-After, once: the deployment is paused, the job waits and then succeeds.
    const limited = await post('/v1/chat/completions', chatBody, mock({ 'x-mock-status': '429', 'x-mock-retry-after': '1', 'x-mock-fail-times': '1', 'x-mock-tag': 'obs-429' }));
    expect(limited.status).toBe(200);

    // 5. A cache miss, then the same request answered from the cache (request opt-in).
    const cached = mock({ 'cache-control': 'max-age=60' });
    expect((await post('/v1/chat/completions', chatBody, cached)).status).toBe(200);
    const hit = await post('/v1/chat/completions', chatBody, cached);
    expect(hit.status).toBe(200);
    expect(hit.headers.get('x-spillway-cache')).toBe('hit');

    // 6. A tenant over its limit: the first request runs, the second is refused at admission with 429.
    expect((await post('/v1/chat/completions', chatBody, mock(), TINY_KEY)).status).toBe(200);
    expect((await post('/v1/chat/completions', chatBody, mock(), TINY_KEY)).status).toBe(429);

    // 7. An async job, answered by its webhook.
    const accepted = await post('/v1/chat/completions', chatBody, { ...mock(), prefer: 'respond-async' });
    expect(accepted.status).toBe(202);
    const jobId = ((await accepted.json()) as { id: string }).id;
    await waitFor(() => receiver.received.some((r) => r.unwrapped?.data.id === jobId && r.status === 200), { timeoutMs: 20_000, what: 'the async job webhook' });

    // The worker counts a delivery once BullMQ has recorded it, a moment after the receiver answered.
    workerAfter = await waitFor(async () => {
      const now = await scrape(workerMetricsUrl);
      return (now.get(key('spillway_webhook_deliveries_total', { outcome: 'delivered' })) ?? 0) > (workerBefore.get(key('spillway_webhook_deliveries_total', { outcome: 'delivered' })) ?? 0) ? now : undefined;
    }, { what: 'the webhook delivery counted' });
    ingressAfter = await scrape(`${cluster.baseUrl}/metrics`);
  }, 60_000);

  it('moves the ingress request, admission, cache and stream counters by exactly the traffic sent', () => {
    const api = (series: string) => series.includes('route="/v1/');
    const requests = (status: string, tenant = 'acme') => key('spillway_http_requests_total', { route: '/v1/chat/completions', status, tenant, model: MODEL });
    expect(deltas(ingressBefore, ingressAfter, 'spillway_http_requests_total', api)).toEqual({
      // success, stream, the absorbed 429, the cache miss and the cache hit
      [requests('200')]: 5,
      [requests('502')]: 1,
      [requests('202')]: 1,
      [requests('200', 'tiny')]: 1,
      [requests('429', 'tiny')]: 1,
    });
    // The cache hit is answered before admission; the async job is admitted in its own class.
    expect(deltas(ingressBefore, ingressAfter, 'spillway_admission_decisions_total')).toEqual({
      [key('spillway_admission_decisions_total', { tenant: 'acme', outcome: 'now' })]: 6,
      [key('spillway_admission_decisions_total', { tenant: 'tiny', outcome: 'now' })]: 1,
      [key('spillway_admission_decisions_total', { tenant: 'tiny', outcome: 'rejected' })]: 1,
    });
    expect(deltas(ingressBefore, ingressAfter, 'spillway_cache_hits_total')).toEqual({ [key('spillway_cache_hits_total', { kind: 'fresh' })]: 1 });
    expect(deltas(ingressBefore, ingressAfter, 'spillway_cache_misses_total')).toEqual({ [key('spillway_cache_misses_total')]: 1 });
    expect(deltas(ingressBefore, ingressAfter, 'spillway_time_to_first_token_seconds_count')).toEqual({ [key('spillway_time_to_first_token_seconds_count', { model: MODEL })]: 1 });
    expect(deltas(ingressBefore, ingressAfter, 'spillway_stream_interruptions_total')).toEqual({});
  });

  it('moves the worker upstream, job, token, cost, queue-wait and webhook counters by exactly the traffic sent', () => {
    expect(deltas(workerBefore, workerAfter, 'spillway_upstream_requests_total')).toEqual({
      // success, stream, the 429's second run, the cache miss, tiny's request, the async job
      [key('spillway_upstream_requests_total', { ...DEPLOYMENT, outcome: 'ok' })]: 6,
      [key('spillway_upstream_requests_total', { ...DEPLOYMENT, outcome: 'error' })]: 3,
      [key('spillway_upstream_requests_total', { ...DEPLOYMENT, outcome: 'rate_limited' })]: 1,
    });
    expect(deltas(workerBefore, workerAfter, 'spillway_upstream_retries_total')).toEqual({ [key('spillway_upstream_retries_total', { ...DEPLOYMENT, reason: 'server_error' })]: 2 });
    expect(deltas(workerBefore, workerAfter, 'spillway_upstream_rate_limits_absorbed_total')).toEqual({ [key('spillway_upstream_rate_limits_absorbed_total', DEPLOYMENT)]: 1 });
    expect(deltas(workerBefore, workerAfter, 'spillway_upstream_fallbacks_total')).toEqual({});
    expect(deltas(workerBefore, workerAfter, 'spillway_jobs_processed_total')).toEqual({
      [key('spillway_jobs_processed_total', { outcome: 'ok' })]: 6,
      [key('spillway_jobs_processed_total', { outcome: 'error' })]: 1,
    });
    // Five answered acme jobs (the cache hit cost nothing upstream) and one of tiny's, each with the same usage.
    const tokens = (tenant: string, kind: string) => key('spillway_tokens_total', { tenant, model: MODEL, kind });
    expect(deltas(workerBefore, workerAfter, 'spillway_tokens_total')).toEqual({
      [tokens('acme', 'prompt')]: 5 * usage.prompt_tokens,
      [tokens('acme', 'completion')]: 5 * usage.completion_tokens,
      [tokens('tiny', 'prompt')]: usage.prompt_tokens,
      [tokens('tiny', 'completion')]: usage.completion_tokens,
    });
    const perAnswer = (usage.prompt_tokens * PRICE.input + usage.completion_tokens * PRICE.output) / 1e6;
    const cost = deltas(workerBefore, workerAfter, 'spillway_cost_usd_total');
    expect(Object.keys(cost).sort()).toEqual([key('spillway_cost_usd_total', { tenant: 'acme', model: MODEL }), key('spillway_cost_usd_total', { tenant: 'tiny', model: MODEL })].sort());
    expect(cost[key('spillway_cost_usd_total', { tenant: 'acme', model: MODEL })]).toBeCloseTo(5 * perAnswer, 12);
    expect(cost[key('spillway_cost_usd_total', { tenant: 'tiny', model: MODEL })]).toBeCloseTo(perAnswer, 12);
    // Taken by a worker: six synchronous acme jobs (the 429's twice), tiny's, and the async job in the batch class.
    const waits = (tenant: string, priority: string) => key('spillway_queue_wait_seconds_count', { model: MODEL, tenant, priority });
    expect(deltas(workerBefore, workerAfter, 'spillway_queue_wait_seconds_count')).toEqual({
      [waits('acme', 'normal')]: 6,
      [waits('tiny', 'normal')]: 1,
      [waits('acme', 'batch')]: 1,
    });
    expect(deltas(workerBefore, workerAfter, 'spillway_webhook_deliveries_total')).toEqual({ [key('spillway_webhook_deliveries_total', { outcome: 'delivered' })]: 1 });
  });

  it('reports breakers, the undici pool and Redis connections on the worker, and queue depth on the ingress', () => {
    expect(workerAfter.get(key('spillway_upstream_breaker_state', { ...DEPLOYMENT, state: 'closed' }))).toBe(1);
    expect(workerAfter.get(key('spillway_upstream_breaker_state', { ...DEPLOYMENT, state: 'open' }))).toBe(0);
    expect(workerAfter.get(key('spillway_upstream_pool_connections', { provider: 'mock', state: 'connected' }))).toBeGreaterThan(0);
    for (const connection of ['worker', 'worker-replies', 'worker-cancels']) expect(workerAfter.get(key('spillway_redis_connection_up', { connection })), connection).toBe(1);
    for (const connection of ['ingress', 'ingress-replies']) expect(ingressAfter.get(key('spillway_redis_connection_up', { connection })), connection).toBe(1);
    expect(ingressAfter.get(key('spillway_queue_depth', { queue: 'completions', state: 'waiting' }))).toBe(0);
    expect(ingressAfter.has(key('spillway_queue_depth', { queue: 'webhooks', state: 'failed' }))).toBe(true);
  });

  it('shows the same requests, tokens and cost in GET /v1/usage, per tenant for the admin key', async () => {
    const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
    type Page = { data: { results: { tenant: string; num_model_requests: number; input_tokens: number; output_tokens: number; cost: { value: number } }[] }[] };
    const read = async (): Promise<Page> => {
      // Yesterday too: the traffic may have straddled midnight UTC.
      const response = await fetch(`${cluster.baseUrl}/v1/usage?from=${day(Date.now() - 86_400_000)}&group_by=tenant`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
      expect(response.status).toBe(200);
      return (await response.json()) as Page;
    };
    const totalIn = (page: Page, tenant: string) => {
      const rows = page.data.flatMap((b) => b.results).filter((r) => r.tenant === tenant);
      return { requests: rows.reduce((n, r) => n + r.num_model_requests, 0), input: rows.reduce((n, r) => n + r.input_tokens, 0), output: rows.reduce((n, r) => n + r.output_tokens, 0), cost: rows.reduce((n, r) => n + r.cost.value, 0) };
    };
    // The worker writes its counters once a second: wait for the last job's.
    const page = await waitFor(async () => {
      const now = await read();
      return totalIn(now, 'acme').requests >= 5 && totalIn(now, 'tiny').requests >= 1 ? now : undefined;
    }, { what: 'the usage counters to be written' });
    const total = (tenant: string) => totalIn(page, tenant);
    const perAnswer = (usage.prompt_tokens * PRICE.input + usage.completion_tokens * PRICE.output) / 1e6;
    expect(total('acme')).toEqual({ requests: 5, input: 5 * usage.prompt_tokens, output: 5 * usage.completion_tokens, cost: expect.closeTo(5 * perAnswer, 9) });
    expect(total('tiny')).toEqual({ requests: 1, input: usage.prompt_tokens, output: usage.completion_tokens, cost: expect.closeTo(perAnswer, 9) });
    // A tenant's own key sees only its own.
    const own = await fetch(`${cluster.baseUrl}/v1/usage?from=${day(Date.now() - 86_400_000)}&group_by=tenant`, { headers: { authorization: `Bearer ${TINY_KEY}` } });
    const tenants = ((await own.json()) as typeof page).data.flatMap((b) => b.results.map((r) => r.tenant));
    expect(new Set(tenants)).toEqual(new Set(['tiny']));
  });

  it("shows a model's price in GET /v1/models", async () => {
    const model = (await (await fetch(`${cluster.baseUrl}/v1/models/${MODEL}`, { headers: { authorization: `Bearer ${TENANT_KEY}` } })).json()) as Record<string, unknown>;
    expect(model).toMatchObject({ id: MODEL, object: 'model', pricing: { currency: 'usd', unit: '1M tokens', input: 2.5, output: 10, cached_input: 1.25 } });
  });

  it("puts the client's request id in the ingress's and the worker's log line of its request", async () => {
    const lineOf = (output: string, msg: string, reqId: string) => logLines(output).filter((l) => l.msg === msg && l.reqId === reqId);
    for (const [reqId, stream] of [[successId, false], [streamId, true]] as const) {
      // The worker writes its line as the job ends, the ingress as the response ends: both are out by now or soon.
      const ingressLines = await waitFor(() => {
        const lines = lineOf(cluster.ingress.output(), 'request completed', reqId);
        return lines.length > 0 ? lines : undefined;
      }, { what: `the ingress line of ${reqId}` });
      const workerLines = await waitFor(() => {
        const lines = lineOf(cluster.workers[0]!.output(), 'job finished', reqId);
        return lines.length > 0 ? lines : undefined;
      }, { what: `the worker line of ${reqId}` });
      expect(ingressLines).toEqual([expect.objectContaining({ route: '/v1/chat/completions', status: 200, tenant: 'acme', model: MODEL, ms: expect.any(Number) })]);
      expect(workerLines).toEqual([
        expect.objectContaining({
          tenant: 'acme',
          model: MODEL,
          stream,
          outcome: 'ok',
          status: 200,
          deployment: 'mock/mock-chat',
          attempts: 1,
          queueWaitMs: expect.any(Number),
          upstreamMs: expect.any(Number),
          tokens: { prompt: usage.prompt_tokens, completion: usage.completion_tokens, cached: 0 },
          costUsd: expect.closeTo((usage.prompt_tokens * PRICE.input + usage.completion_tokens * PRICE.output) / 1e6, 12),
        }),
      ]);
    }
  });

  it('counts a stream its client leaves half-way as interrupted, by cause', async () => {
    const before = await scrape(`${cluster.baseUrl}/metrics`);
    const controller = new AbortController();
    const response = await fetch(`${cluster.baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TENANT_KEY}`, 'content-type': 'application/json', ...mock({ 'x-mock-chunks': '200', 'x-mock-chunk-delay-ms': '20' }) },
      body: JSON.stringify({ ...chatBody, stream: true }),
      signal: controller.signal,
    });
    expect(response.status).toBe(200);
    await response.body!.getReader().read();
    controller.abort();
    const cause = key('spillway_stream_interruptions_total', { cause: 'client_closed' });
    const after = await waitFor(async () => {
      const now = await scrape(`${cluster.baseUrl}/metrics`);
      return (now.get(cause) ?? 0) > (before.get(cause) ?? 0) ? now : undefined;
    }, { what: 'the interrupted stream to be counted' });
    expect(deltas(before, after, 'spillway_stream_interruptions_total')).toEqual({ [cause]: 1 });
  });

  it('prints no configured secret (tenant, admin and provider keys, webhook secrets) in any process output', () => {
    const config = parse(readFileSync(cluster.configFile, 'utf8')) as unknown;
    const secrets = configuredSecrets(config, [ADMIN_KEY, TINY_KEY]);
    // The scan knows every kind of secret the config holds, and finds one when it is there.
    expect(secrets.map((s) => s.label)).toEqual(expect.arrayContaining(['providers[0].apiKey', 'tenants[0].webhook.secrets[0]', 'tenants[1].keys[0]', 'admin.keys[0]']));
    expect(findLeaks([{ name: 'a planted line', text: `{"headers":{"authorization":"Bearer ${TENANT_KEY}"}}` }], secrets)).toEqual(['a planted line printed the test tenant key']);
    const outputs = [{ name: 'the ingress', text: cluster.ingress.output() }, ...cluster.workers.map((w, i) => ({ name: `worker ${i + 1}`, text: w.output() }))];
    // The logs are there to scan: both processes logged this traffic.
    for (const { name, text } of outputs) expect(logLines(text).length, name).toBeGreaterThan(10);
    expect(findLeaks(outputs, secrets)).toEqual([]);
  });
});
