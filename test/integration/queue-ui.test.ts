// The queue UI (Bull Board at /admin/queues) on an in-process Spillway (ingress + worker + mock upstream, real Redis):
// who gets in (the admin key as the HTTP Basic password, nobody else), that it is read-only and hides tenants' bodies,
// and that an ingress without an admin key does not serve it at all.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { newInstanceId } from '../../src/roles/context.ts';
import { startWorker } from '../../src/roles/worker.ts';
import { startIngress } from '../../src/roles/ingress.ts';
import { runShutdown, type ShutdownStep } from '../../src/roles/shutdown.ts';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { TENANT_KEY, testConfig } from '../support/spillway-cluster.ts';
import { uniquePrefix } from '../support/redis.ts';

const ADMIN_KEY = 'sk-admin-0123456789abcdef';
const ADMIN_KEY_HASH = `sha256:${createHash('sha256').update(ADMIN_KEY).digest('hex')}`;
const PROMPT = 'a prompt only the tenant may read';

const logger = pino({ level: 'silent' });
const steps: ShutdownStep[] = [];
let mock: MockUpstream;
/** An ingress with an admin key (and a worker behind it). */
let withAdmin: string;
/** An ingress of the same deployment without one. */
let withoutAdmin: string;
/** An ingress with an admin key, of a deployment whose queue has three shards. */
let sharded: string;

/** An ingress (and, with `worker`, a worker) of the deployment under `prefix`; resolves with the ingress's URL. */
async function start(prefix: string, overrides: Record<string, unknown>, worker: boolean): Promise<string> {
  // Completed jobs are removed at once by default; kept a minute here so the board can list them.
  const config = parseConfig(testConfig(inject('redisUrl'), prefix, 0, mock.url, { jobs: { keepCompletedSeconds: 60 }, ...overrides }));
  const ctx = { config, logger, metrics: createMetrics({ defaultMetrics: false }), instanceId: newInstanceId() };
  if (worker) steps.push(...(await startWorker(ctx)).steps);
  const ingress = await startIngress(ctx);
  steps.unshift(...ingress.steps);
  return ingress.url;
}

beforeAll(async () => {
  mock = await startMockUpstream();
  const prefix = uniquePrefix('queue-ui');
  withAdmin = await start(prefix, { admin: { keys: [ADMIN_KEY_HASH] } }, true);
  withoutAdmin = await start(prefix, {}, false);
  sharded = await start(uniquePrefix('queue-ui-sharded'), { admin: { keys: [ADMIN_KEY_HASH] }, queue: { shards: 3 } }, true);
});

afterAll(async () => {
  await runShutdown(steps, logger);
  await mock?.close();
});

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

function get(base: string, path: string, authorization?: string): Promise<Response> {
  return fetch(`${base}${path}`, { headers: authorization === undefined ? {} : { authorization } });
}

async function expectAdminChallenge(response: Response): Promise<void> {
  expect(response.status).toBe(401);
  expect(response.headers.get('www-authenticate')).toMatch(/^Basic realm="Spillway admin"/);
  expect(await response.json()).toEqual({
    error: { message: expect.any(String), type: 'invalid_request_error', param: null, code: 'invalid_admin_key' },
  });
}

interface BoardQueue {
  name: string;
  readOnlyMode: boolean;
  counts: Record<string, number>;
  jobs: { data: { tenant?: string; body?: unknown }; returnValue: { body?: unknown } | null }[];
}

async function boardQueues(query = '', base = withAdmin): Promise<BoardQueue[]> {
  const response = await get(base, `/admin/queues/api/queues${query}`, basic('ops', ADMIN_KEY));
  expect(response.status).toBe(200);
  return ((await response.json()) as { queues: BoardQueue[] }).queues;
}

describe('who may open the queue UI', () => {
  it('a browser without credentials is challenged for HTTP Basic (401, WWW-Authenticate, OpenAI-shaped body)', async () => {
    await expectAdminChallenge(await get(withAdmin, '/admin/queues'));
  });

  it('a wrong password, an empty one and a tenant key are refused alike', async () => {
    await expectAdminChallenge(await get(withAdmin, '/admin/queues', basic('ops', 'sk-admin-wrong-key')));
    await expectAdminChallenge(await get(withAdmin, '/admin/queues', basic('ops', '')));
    await expectAdminChallenge(await get(withAdmin, '/admin/queues', basic('ops', TENANT_KEY)));
    await expectAdminChallenge(await get(withAdmin, '/admin/queues', `Bearer ${TENANT_KEY}`));
  });

  it("the board's API and static files are behind the same key as its page", async () => {
    await expectAdminChallenge(await get(withAdmin, '/admin/queues/api/queues'));
    await expectAdminChallenge(await get(withAdmin, '/admin/queues/static/images/logo.svg'));
  });

  it('the admin key as the Basic password (any user name) opens the board page', async () => {
    const response = await get(withAdmin, '/admin/queues', basic('anyone', ADMIN_KEY));
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await response.text()).toContain('Spillway queues');
    expect((await get(withAdmin, '/admin/queues/static/images/logo.svg', basic('ops', ADMIN_KEY))).status).toBe(200);
  });

  it('an ingress without an admin key does not serve the board at all (404, whatever the credentials)', async () => {
    for (const authorization of [undefined, basic('ops', ADMIN_KEY)]) {
      const response = await get(withoutAdmin, '/admin/queues', authorization);
      expect(response.status).toBe(404);
      expect(await response.json()).toMatchObject({ error: { type: 'invalid_request_error' } });
    }
  });
});

function chat(base: string): Promise<Response> {
  return fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TENANT_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }] }),
  });
}

describe('what the queue UI shows and allows', () => {
  beforeAll(async () => {
    expect((await chat(withAdmin)).status).toBe(200);
  });

  it('lists the completions queue with the completed job of that traffic', async () => {
    const [queue, ...others] = await boardQueues();
    expect(others).toEqual([]);
    expect(queue?.name).toBe('completions');
    expect(queue?.counts.completed).toBe(1);
  });

  it("shows a job's envelope but neither the tenant's prompt nor the answer", async () => {
    const [queue] = await boardQueues('?activeQueue=completions&status=completed&page=1&jobsPerPage=10');
    const job = queue?.jobs[0];
    expect(job?.data.tenant).toBe('acme');
    expect(job?.data.body).toMatch(/^\(hidden: \d+ bytes\)$/);
    expect(job?.returnValue?.body).toMatch(/^\(hidden: \d+ bytes\)$/);
    expect(JSON.stringify(queue)).not.toContain(PROMPT);
  });

  it('is read-only: clean, retry, pause and add are refused by the server, not only hidden in the page', async () => {
    const [queue] = await boardQueues();
    expect(queue?.readOnlyMode).toBe(true);
    const put = (path: string) =>
      fetch(`${withAdmin}/admin/queues/api/queues/completions/${path}`, { method: 'PUT', headers: { authorization: basic('ops', ADMIN_KEY) } });
    for (const path of ['clean/completed', 'retry/failed', 'pause', 'empty']) {
      expect((await put(path)).status, path).toBe(405);
    }
    const add = await fetch(`${withAdmin}/admin/queues/api/queues/completions/add`, {
      method: 'POST',
      headers: { authorization: basic('ops', ADMIN_KEY), 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'completion', data: {}, options: {} }),
    });
    expect(add.status).toBe(405);
    const [after] = await boardQueues();
    expect(after?.counts.completed).toBe(1);
  });
});

describe('a sharded queue in the queue UI', () => {
  it('lists every shard under a name of its own, together holding every job', async () => {
    for (let i = 0; i < 6; i += 1) expect((await chat(sharded)).status).toBe(200);
    const queues = await boardQueues('', sharded);
    expect(queues.map((q) => q.name).sort()).toEqual(['shard0-completions', 'shard1-completions', 'shard2-completions']);
    expect(queues.reduce((sum, q) => sum + (q.counts.completed ?? 0), 0)).toBe(6);
    for (const queue of queues) expect(queue.readOnlyMode).toBe(true);
  });
});
