// Async jobs end to end (split-mode Spillway processes, the mock upstream, a real webhook receiver): submit, poll,
// list, cancel, Idempotency-Key on jobs and on synchronous requests, tenant isolation, webhook URL safety, TTLs.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';
import { waitFor } from '../support/wait.ts';
import { hashTagName } from '../../src/queue/keys.ts';

const OTHER_KEY = 'sk-test-globex-0123456789';
const SLOW_KEY = 'sk-test-slowpoke-0123456789';
const sha = (key: string) => `sha256:${createHash('sha256').update(key).digest('hex')}`;

let cluster: Cluster;
let receiver: WebhookReceiver;

interface JobJson {
  id: string;
  object: string;
  status: string;
  endpoint: string;
  model: string;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  attempts: number;
  queue_position: number | null;
  status_code: number | null;
  result: Record<string, unknown> | null;
  error: { message: string; type: string; param: string | null; code: string | null } | null;
  usage: Record<string, unknown> | null;
  webhook: { url: string; metadata: unknown; status: string | null } | null;
}

beforeAll(async () => {
  receiver = await startWebhookReceiver();
  cluster = await startCluster({
    redisUrl: inject('redisUrl'),
    workers: 2,
    config: {
      tenants: [
        { id: 'acme', keys: [sha(TENANT_KEY)], webhook: { secrets: [receiver.secret] } },
        { id: 'globex', keys: [sha(OTHER_KEY)] },
        // One request a minute: its second job waits for budget, queued, for as long as a test needs.
        { id: 'slowpoke', keys: [sha(SLOW_KEY)], rpm: 1, burst: 1, webhook: { url: receiver.url, secrets: [receiver.secret] } },
      ],
      webhooks: { allowHttp: true, allowHosts: ['127.0.0.1'], timeoutMs: 2_000, maxAttempts: 3, backoff: { initialMs: 100, multiplier: 2, maxMs: 1_000, jitter: 0 } },
    },
  });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
  await receiver?.close();
});

async function api(method: string, path: string, options: { key?: string; body?: unknown; headers?: Record<string, string> } = {}) {
  const response = await fetch(`${cluster.baseUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${options.key ?? TENANT_KEY}`,
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...options.headers,
    },
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, json: (text === '' ? undefined : JSON.parse(text)) as Record<string, unknown> };
}

const chat = (content: string) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] });

async function submit(body: unknown, options: { key?: string; headers?: Record<string, string> } = {}) {
  return api('POST', '/v1/jobs', { ...options, body });
}

async function finished(id: string, key = TENANT_KEY): Promise<JobJson> {
  return waitFor(
    async () => {
      const job = (await api('GET', `/v1/jobs/${id}`, { key })).json as unknown as JobJson;
      return ['succeeded', 'failed', 'cancelled', 'expired'].includes(job.status) ? job : undefined;
    },
    { timeoutMs: 15_000, what: `job ${id} to finish` },
  );
}

describe('submitting and reading an async job', () => {
  it('answers 202 with Location, runs the job, returns the exact body with usage, and pushes a signed event', async () => {
    const submitted = await submit(
      { endpoint: '/v1/chat/completions', body: chat('hello'), webhook: { url: receiver.url, metadata: { order: 'A-1' } } },
      { headers: { 'x-mock-tag': 'async-basic', 'x-mock-chunks': '3' } },
    );
    expect(submitted.status).toBe(202);
    const id = submitted.json.id as string;
    expect(id).toMatch(/^job_[0-9a-f]{32}$/);
    expect(submitted.headers.get('location')).toBe(`/v1/jobs/${id}`);
    expect(submitted.json).toMatchObject({ object: 'job', status: 'queued', endpoint: '/v1/chat/completions', model: 'gpt-4o-mini' });

    const job = await finished(id);
    expect(job).toMatchObject({ status: 'succeeded', status_code: 200, attempts: 1, error: null, queue_position: null });
    expect((job.result as { object: string; choices: Array<{ message: { content: string } }> }).choices[0]!.message.content).toBe('tok1 tok2 tok3');
    expect(job.result).toMatchObject({ object: 'chat.completion' });
    expect(job.usage).toEqual((job.result as { usage: unknown }).usage);
    expect(job.started_at).not.toBeNull();
    expect(job.finished_at! >= job.started_at! && job.started_at! >= job.created_at).toBe(true);

    const event = await waitFor(() => receiver.received.find((r) => r.unwrapped?.data.id === id), { what: 'the job.succeeded webhook' });
    expect(event.verifiedByStandardWebhooks).toBe(true);
    expect(event.unwrapped).toMatchObject({ object: 'event', type: 'job.succeeded', data: { id, status: 'succeeded', metadata: { order: 'A-1' } } });
    expect(event.unwrapped!.id).toBe(event.id);
    expect(event.unwrapped!.data.job).toMatchObject({ id, status: 'succeeded', result: job.result });
    await waitFor(async () => ((await api('GET', `/v1/jobs/${id}`)).json.webhook as { status: string }).status === 'delivered', { what: 'webhook status delivered' });
    const deliveries = await api('GET', `/v1/jobs/${id}/deliveries`);
    expect(deliveries.json.data).toEqual([expect.objectContaining({ event_id: event.id, type: 'job.succeeded', attempt: 1, status_code: 200, outcome: 'delivered' })]);
  });

  it('turns a completion request with Prefer: respond-async into a job', async () => {
    const response = await api('POST', '/v1/embeddings', { body: { model: 'text-embedding-3-small', input: 'x' }, headers: { prefer: 'respond-async, wait=5' } });
    expect(response.status).toBe(202);
    expect(response.headers.get('preference-applied')).toBe('respond-async');
    const job = await finished(response.json.id as string);
    expect(job).toMatchObject({ status: 'succeeded', endpoint: '/v1/embeddings' });
    expect(job.result).toMatchObject({ object: 'list' });
  });

  it('refuses bad submissions with OpenAI-shaped 400s', async () => {
    const cases: Array<[unknown, string | null]> = [
      [{ endpoint: '/v1/images/generations', body: chat('x') }, 'endpoint'],
      [{ endpoint: '/v1/chat/completions' }, 'body'],
      [{ endpoint: '/v1/chat/completions', body: { model: 'gpt-4o-mini' } }, 'messages'],
      [{ endpoint: '/v1/chat/completions', body: { ...chat('x'), stream: true } }, 'stream'],
      [{ endpoint: '/v1/chat/completions', body: chat('x'), extra: 1 }, 'extra'],
    ];
    for (const [body, param] of cases) {
      const response = await submit(body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(response.json.error).toMatchObject({ type: 'invalid_request_error', param });
    }
    const malformed = await fetch(`${cluster.baseUrl}/v1/jobs`, { method: 'POST', headers: { authorization: `Bearer ${TENANT_KEY}`, 'content-type': 'application/json' }, body: '{"endpoint":' });
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { error: { code: string } }).error.code).toBe('invalid_json');
  });

  it('refuses webhook URLs that point at metadata, private or non-https hosts with a 400 at submission', async () => {
    const before = ((await api('GET', '/v1/jobs?limit=100')).json.data as JobJson[]).length;
    for (const url of ['http://169.254.169.254/latest/meta-data/', 'https://10.0.0.1/hook', 'https://[::1]/hook', 'https://localhost/hook', 'ftp://example.com/hook']) {
      const response = await submit({ endpoint: '/v1/chat/completions', body: chat('x'), webhook: { url } });
      expect(response.status, url).toBe(400);
      expect(response.json.error).toMatchObject({ type: 'invalid_request_error', param: 'webhook.url', code: 'invalid_webhook_url' });
    }
    // Nothing was recorded for the refused submissions.
    expect(((await api('GET', '/v1/jobs?limit=100')).json.data as JobJson[]).length).toBe(before);
  });

  it('lists only the tenant\'s own jobs, newest first, with cursor pagination and a status filter', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await submit({ endpoint: '/v1/chat/completions', body: chat(`other ${i}`) }, { key: OTHER_KEY })).json.id as string);
    for (const id of ids) await finished(id, OTHER_KEY);
    const first = await api('GET', '/v1/jobs?limit=2', { key: OTHER_KEY });
    expect(first.json).toMatchObject({ object: 'list', has_more: true, first_id: ids[2], last_id: ids[1] });
    const second = await api('GET', `/v1/jobs?limit=2&after=${ids[1]}`, { key: OTHER_KEY });
    expect(second.json).toMatchObject({ has_more: false, first_id: ids[0], last_id: ids[0] });
    const succeeded = await api('GET', '/v1/jobs?status=succeeded&limit=100', { key: OTHER_KEY });
    expect((succeeded.json.data as JobJson[]).map((j) => j.id)).toEqual([...ids].reverse());
    const acme = await api('GET', '/v1/jobs?limit=100');
    expect((acme.json.data as JobJson[]).some((j) => ids.includes(j.id))).toBe(false);
    expect((await api('GET', '/v1/jobs?status=done')).status).toBe(400);
    expect((await api('GET', '/v1/jobs?limit=1000')).status).toBe(400);
  });
});

describe('tenant isolation', () => {
  it('answers 404 (never 403) to another tenant reading, cancelling or retrying a job', async () => {
    const id = (await submit({ endpoint: '/v1/chat/completions', body: chat('mine') })).json.id as string;
    for (const [method, path] of [
      ['GET', `/v1/jobs/${id}`],
      ['DELETE', `/v1/jobs/${id}`],
      ['POST', `/v1/jobs/${id}/cancel`],
      ['GET', `/v1/jobs/${id}/deliveries`],
      ['POST', `/v1/jobs/${id}/deliveries/retry`],
    ] as const) {
      const response = await api(method, path, { key: OTHER_KEY });
      expect(response.status, `${method} ${path}`).toBe(404);
      expect(response.json.error).toMatchObject({ type: 'invalid_request_error', code: 'job_not_found' });
    }
    // The owner's job was left alone.
    expect((await finished(id)).status).toBe('succeeded');
    expect((await api('GET', '/v1/jobs/job_0123', { key: OTHER_KEY })).status).toBe(404);
  });
});

describe('Idempotency-Key', () => {
  it('returns the same job for the same key and body (one upstream call), and 409 for another body', async () => {
    const headers = { 'idempotency-key': 'order-42', 'x-mock-tag': 'idem-async' };
    const body = { endpoint: '/v1/chat/completions', body: chat('once') };
    const [a, b] = await Promise.all([submit(body, { headers }), submit(body, { headers })]);
    expect([a.status, b.status].sort()).toEqual([202, 202]);
    expect(a.json.id).toBe(b.json.id);
    await finished(a.json.id as string);
    const again = await submit(body, { headers });
    expect(again.json.id).toBe(a.json.id);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(cluster.mock.stats().byTag['idem-async']?.received).toBe(1);

    const other = await submit({ endpoint: '/v1/chat/completions', body: chat('twice') }, { headers });
    expect(other.status).toBe(409);
    expect(other.json.error).toMatchObject({ type: 'invalid_request_error', code: 'idempotency_key_reused' });
    // The same key is another tenant's own: no clash.
    expect((await submit(body, { key: OTHER_KEY, headers })).status).toBe(202);
  });

  it('lets a retried synchronous request join the one in flight instead of calling upstream twice', async () => {
    const client = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0 });
    const headers = { 'idempotency-key': 'sync-7', 'x-mock-tag': 'idem-sync', 'x-mock-gate': 'idem-sync', 'x-mock-chunks': '2' };
    const first = client.chat.completions.create(chat('join me') as OpenAI.ChatCompletionCreateParamsNonStreaming, { headers });
    await waitFor(() => cluster.mock.stats().byTag['idem-sync']?.received === 1, { what: 'the first call upstream' });
    const retry = client.chat.completions.create(chat('join me') as OpenAI.ChatCompletionCreateParamsNonStreaming, { headers });
    const conflict = api('POST', '/v1/chat/completions', { body: chat('something else'), headers: { 'idempotency-key': 'sync-7' } });
    expect((await conflict).status).toBe(409);
    cluster.mock.openGate('idem-sync');
    const [a, b] = await Promise.all([first, retry]);
    expect(b.id).toBe(a.id);
    expect(b.choices[0]!.message.content).toBe('tok1 tok2');
    expect(cluster.mock.stats().byTag['idem-sync']?.received).toBe(1);
  });
});

describe('Idempotency-Key: after the retention', () => {
  it("a key whose job's record has expired is free again: the same request is a new job, not a 503", async () => {
    const headers = { 'idempotency-key': 'expired-key', 'x-mock-tag': 'idem-expired' };
    const body = { endpoint: '/v1/chat/completions', body: chat('again later') };
    const first = await submit(body, { headers });
    await finished(first.json.id as string);
    // The record's retention ends before its claim's does (the claim was sized for a job that could have waited hours).
    await cluster.redis.del(`{${hashTagName(cluster.prefix)}:tenant:acme}:job:${String(first.json.id)}`);
    const second = await submit(body, { headers });
    expect(second.status).toBe(202);
    expect(second.json.id).not.toBe(first.json.id);
    expect(second.headers.get('idempotent-replayed')).toBeNull();
    // From then on the key names the new job.
    const third = await submit(body, { headers });
    expect(third.json.id).toBe(second.json.id);
    expect(third.headers.get('idempotent-replayed')).toBe('true');
  });
});

describe('Idempotency-Key: retries racing', () => {
  it('of six stream retries sent at once after the first stream ended, exactly one runs upstream; the others get 409', async () => {
    // Each upstream call takes a second: a retry that comes late still finds the winner's stream running (409 too).
    const headers = { 'idempotency-key': 'stream-race', 'x-mock-tag': 'idem-race', 'x-mock-chunks': '2', 'x-mock-latency-ms': '1000' };
    const stream = async () => {
      const response = await fetch(`${cluster.baseUrl}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TENANT_KEY}`, 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ ...chat('race'), stream: true }),
      });
      return { status: response.status, text: await response.text() };
    };
    expect((await stream()).status).toBe(200);
    const retries = await Promise.all(Array.from({ length: 6 }, stream));
    expect(retries.map((r) => r.status).sort()).toEqual([200, 409, 409, 409, 409, 409]);
    for (const refused of retries.filter((r) => r.status === 409)) {
      expect(JSON.parse(refused.text)).toMatchObject({ error: { type: 'invalid_request_error' } });
    }
    expect(cluster.mock.stats().byTag['idem-race']?.received).toBe(2);
  });
});

describe('cancelling', () => {
  it('removes a queued job before it is ever sent upstream, and pushes job.cancelled', async () => {
    // slowpoke's one request a minute goes to this first job; the second waits for budget, queued.
    const warm = await submit({ endpoint: '/v1/chat/completions', body: chat('first') }, { key: SLOW_KEY });
    await finished(warm.json.id as string, SLOW_KEY);
    const queued = await submit({ endpoint: '/v1/chat/completions', body: chat('second') }, { key: SLOW_KEY, headers: { 'x-mock-tag': 'cancel-queued' } });
    const id = queued.json.id as string;
    await waitFor(async () => (await cluster.queue.getJob(id))?.delay !== undefined && (await cluster.queue.getJob(id))!.attemptsStarted > 0, { what: 'a worker to have looked at the job and delayed it' });
    expect((await api('GET', `/v1/jobs/${id}`, { key: SLOW_KEY })).json.status).toBe('queued');

    const cancelled = await api('DELETE', `/v1/jobs/${id}`, { key: SLOW_KEY });
    expect(cancelled.status).toBe(200);
    expect(cancelled.json).toMatchObject({ id, status: 'cancelled', error: { code: 'job_cancelled' } });
    expect(await cluster.queue.getJob(id)).toBeUndefined();
    const event = await waitFor(() => receiver.received.find((r) => r.unwrapped?.data.id === id), { what: 'the job.cancelled webhook' });
    expect(event.unwrapped).toMatchObject({ type: 'job.cancelled', data: { status: 'cancelled' } });
    expect(cluster.mock.stats().byTag['cancel-queued']).toBeUndefined();
    // Cancelling again changes nothing.
    expect((await api('POST', `/v1/jobs/${id}/cancel`, { key: SLOW_KEY })).json.status).toBe('cancelled');
  });

  it('aborts a running job upstream', async () => {
    const submitted = await submit({ endpoint: '/v1/chat/completions', body: chat('long') }, { headers: { 'x-mock-tag': 'cancel-running', 'x-mock-gate': 'never' } });
    const id = submitted.json.id as string;
    await waitFor(() => cluster.mock.stats().byTag['cancel-running']?.received === 1, { what: 'the upstream call' });
    expect((await api('GET', `/v1/jobs/${id}`)).json.status).toBe('running');
    expect((await api('DELETE', `/v1/jobs/${id}`)).json.status).toBe('cancelled');
    await waitFor(() => cluster.mock.stats().byTag['cancel-running']?.aborted === 1, { what: 'the mock to see the abort' });
    expect(cluster.mock.stats().byTag['cancel-running']?.completed).toBe(0);
    expect((await api('GET', `/v1/jobs/${id}`)).json.status).toBe('cancelled');
  });
});

describe('the synchronous hot path', () => {
  it('pays no Redis command for idempotency or jobs unless the request carries Idempotency-Key', async () => {
    const monitor = await cluster.redis.monitor();
    const commands: string[] = [];
    monitor.on('monitor', (_time: string, args: string[]) => commands.push(args.join(' ')));
    try {
      const tag = `{${hashTagName(cluster.prefix)}:tenant:acme}`;
      const plain = await api('POST', '/v1/chat/completions', { body: chat('plain'), headers: { 'x-mock-tag': 'hot-plain' } });
      expect(plain.status).toBe(200);
      const keyed = await api('POST', '/v1/chat/completions', { body: chat('keyed'), headers: { 'idempotency-key': 'hot-keyed' } });
      expect(keyed.status).toBe(200);
      await waitFor(() => commands.some((c) => c.includes(`${tag}:idempotency:`)), { what: 'the keyed request\'s claim in MONITOR' });
      const plainCommands = commands.slice(0, commands.findIndex((c) => c.includes(`${tag}:idempotency:`)));
      expect(plainCommands.filter((c) => /:(idempotency|job|jobs)(:|\s|$)/.test(c))).toEqual([]);
      expect(plainCommands.some((c) => /completions/.test(c))).toBe(true); // the plain request did go through Redis (its job)
    } finally {
      monitor.disconnect();
    }
  });
});

describe('Redis keys', () => {
  it('gives every key of async jobs and idempotency a TTL', async () => {
    const name = hashTagName(cluster.prefix);
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await cluster.redis.scan(cursor, 'MATCH', `{${name}:tenant:*`, 'COUNT', 1000);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    const jobKeys = keys.filter((k) => /:(job|jobs|idempotency)(:|$)/.test(k));
    expect(jobKeys.some((k) => k.endsWith(':jobs'))).toBe(true);
    expect(jobKeys.some((k) => k.includes(':idempotency:'))).toBe(true);
    expect(jobKeys.some((k) => k.endsWith(':deliveries'))).toBe(true);
    for (const key of jobKeys) expect(await cluster.redis.pttl(key), key).toBeGreaterThan(0);
  });
});
