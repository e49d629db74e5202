// The compose deployment, run for real without Docker (test/deploy/topology.ts): clients talk HTTPS to the project's
// nginx, rendered from its template, in front of two ingresses and two workers. Each scenario sends from its own
// loopback address (127.0.0.x), so nginx's per-IP limit counts each one apart.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { Queue } from 'bullmq';
import { Agent, fetch as undiciFetch, type Response as UndiciResponse } from 'undici';
import { parse } from 'yaml';
import { CORS_EXPOSED_HEADERS, CORS_METHODS } from '../../src/http/plugins/cors.ts';
import { createRedisKeys, QUEUE_NAMES } from '../../src/queue/keys.ts';
import { waitFor } from '../support/wait.ts';
import { startTopology, type Topology } from './topology.ts';

const ORIGIN = 'https://app.example.com';
const RATE_BURST = 10;
/** Short, so the drain scenario fits in seconds; the stream it cuts is longer than that. */
const DRAIN_GRACE_MS = 2_000;
/** The dev tenant's plain key from deploy/compose/spillway.yaml. */
const DEV_KEY = (parse(readFileSync(resolve(import.meta.dirname, '../../deploy/compose/spillway.yaml'), 'utf8')) as { tenants: { keys: string[] }[] })
  .tenants[0]?.keys[0] ?? '';
const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'hello' }] };

let topo: Topology;
let queue: Queue<{ replyTo: string | null; requestId: string }>;
const agents: Agent[] = [];

beforeAll(async () => {
  // 60 requests a minute per address: a scenario's few requests pass, a quick loop of RATE_BURST + 1 does not.
  topo = await startTopology({ corsOrigins: ORIGIN, rateLimit: '60r/m', rateBurst: RATE_BURST, drainGraceMs: DRAIN_GRACE_MS });
  queue = new Queue(QUEUE_NAMES.completions, { connection: topo.redis, prefix: createRedisKeys().bullPrefix });
}, 90_000);

afterAll(async () => {
  await Promise.all(agents.map((a) => a.close()));
  await queue?.close();
  await topo?.close();
}, 30_000);

/**
 * A TLS client trusting only the test's certificate, connecting from `ip`. HTTP/1.1 like the SDKs' default fetch
 * unless `h2` (browsers): undici's HTTP/2 client drops a response whose stream nginx closes before the body is sent.
 */
function agentFrom(ip: string, h2 = false): Agent {
  const agent = new Agent({ connect: { ca: topo.cert }, localAddress: ip, allowH2: h2 });
  agents.push(agent);
  return agent;
}

function openaiFrom(ip: string): OpenAI {
  return new OpenAI({
    apiKey: DEV_KEY,
    baseURL: `${topo.edgeUrl}/v1`,
    maxRetries: 0,
    fetch: undiciFetch as unknown as typeof fetch,
    fetchOptions: { dispatcher: agentFrom(ip) } as Record<string, unknown>,
  });
}

async function expectOpenAIError(response: UndiciResponse, status: number, code: string): Promise<void> {
  expect(response.status).toBe(status);
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  expect(await response.json()).toEqual({ error: { message: expect.any(String), type: expect.any(String), param: null, code } });
}

describe('the compose topology behind nginx over TLS', () => {
  it('runs Redis as compose starts it: noeviction, append-only file, maxmemory', async () => {
    expect(await topo.redis.config('GET', 'maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);
    expect(await topo.redis.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
    expect(await topo.redis.config('GET', 'maxmemory')).toEqual(['maxmemory', String(400 * 1024 * 1024)]);
  });

  it('answers a JSON completion through nginx, with HSTS and the client’s own request id', async () => {
    const { data, response } = await openaiFrom('127.0.0.2')
      .chat.completions.create(CHAT, { headers: { 'x-request-id': 'compose-json-1' } })
      .withResponse();
    expect(data.object).toBe('chat.completion');
    expect(data.choices[0]?.message.content).toBeTruthy();
    expect(response.headers.get('strict-transport-security')).toBe('max-age=31536000');
    expect(response.headers.get('x-request-id')).toBe('compose-json-1');
    // Logged once the answer is sent: wait for the line rather than race it.
    await waitFor(() => topo.ingresses.some((i) => i.proc.output().includes('"reqId":"compose-json-1"')), { what: 'the request id in an ingress log' });
  });

  it('relays SSE incrementally: chunks arrive while the upstream still holds the stream open; leaving ends the call', async () => {
    // stall-mid-stream: the mock sends half its chunks, then nothing until the client leaves. A buffering hop
    // anywhere (nginx included) would hold those chunks back for as long as the stream stays open: for ever.
    const stream = await openaiFrom('127.0.0.3').chat.completions.create(
      { ...CHAT, stream: true },
      { headers: { 'x-mock-fault': 'stall-mid-stream', 'x-mock-chunks': '8', 'x-mock-tag': 'compose-stall' } },
    );
    let content = '';
    for await (const chunk of stream) {
      content += chunk.choices[0]?.delta.content ?? '';
      if (content !== '') break;
    }
    expect(content).not.toBe('');
    // The client left (break): through nginx, the ingress and the worker, the upstream call is cancelled too.
    await waitFor(async () => {
      const stats = (await (await fetch(`${topo.mockUrl}/_mock/stats`)).json()) as { byTag: Record<string, { aborted: number }> };
      return stats.byTag['compose-stall']?.aborted === 1;
    }, { what: 'the upstream call to be cancelled' });
  });

  it('answers a CORS preflight for a listed origin, and one Allow-Origin on the answer itself (HTTP/2, as browsers)', async () => {
    const dispatcher = agentFrom('127.0.0.4', true);
    const preflight = await undiciFetch(`${topo.edgeUrl}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
      dispatcher,
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    expect(preflight.headers.get('access-control-allow-methods')).toBe(CORS_METHODS.join(', '));
    expect(preflight.headers.get('access-control-allow-headers')).toBe('authorization, content-type');
    expect(preflight.headers.get('access-control-max-age')).toBe('600');
    // Both nginx and the ingress know the origin; nginx hides the ingress's headers, so each appears once.
    const models = await undiciFetch(`${topo.edgeUrl}/v1/models`, { headers: { origin: ORIGIN, authorization: `Bearer ${DEV_KEY}` }, dispatcher });
    expect(models.status).toBe(200);
    expect(models.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    expect(models.headers.get('access-control-expose-headers')).toBe(CORS_EXPOSED_HEADERS.join(', '));
    const other = await undiciFetch(`${topo.edgeUrl}/v1/models`, { headers: { origin: 'https://evil.example.net', authorization: `Bearer ${DEV_KEY}` }, dispatcher });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('limits requests per client address with an OpenAI-shaped 429 that a browser may read, other addresses unaffected', async () => {
    const dispatcher = agentFrom('127.0.0.5');
    const get = () => undiciFetch(`${topo.edgeUrl}/v1/models`, { headers: { origin: ORIGIN, authorization: `Bearer ${DEV_KEY}` }, dispatcher });
    let passed = 0;
    let refused: UndiciResponse | undefined;
    while (refused === undefined && passed < 1_000) {
      const response = await get();
      if (response.status === 429) refused = response;
      else {
        expect(response.status).toBe(200);
        await response.arrayBuffer();
        passed += 1;
      }
    }
    // The first request and the burst always pass; refills during the loop can only add to them.
    expect(passed).toBeGreaterThanOrEqual(RATE_BURST + 1);
    expect(refused?.headers.get('retry-after')).toBe('1');
    expect(refused?.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    await expectOpenAIError(refused as UndiciResponse, 429, 'rate_limit_exceeded');
    const neighbour = await undiciFetch(`${topo.edgeUrl}/v1/models`, { headers: { authorization: `Bearer ${DEV_KEY}` }, dispatcher: agentFrom('127.0.0.6') });
    expect(neighbour.status).toBe(200);
  });

  it('refuses a body over the limit at nginx with an OpenAI-shaped 413', async () => {
    const body = JSON.stringify({ ...CHAT, messages: [{ role: 'user', content: 'x'.repeat(11 * 1024 * 1024) }] });
    const response = await undiciFetch(`${topo.edgeUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${DEV_KEY}`, 'content-type': 'application/json' },
      body,
      dispatcher: agentFrom('127.0.0.7'),
    });
    await expectOpenAIError(response, 413, 'request_too_large');
  });

  it('drains an ingress mid-stream: the stream ends whole or with a clean SSE error, new requests go to the other', async () => {
    const stream = await openaiFrom('127.0.0.8').chat.completions.create(
      { ...CHAT, stream: true },
      // Four seconds of stream, twice the drain grace: it may be ended by the drain rather than finish.
      { headers: { 'x-mock-chunks': '40', 'x-mock-chunk-delay-ms': '100', 'x-request-id': 'drain-stream' } },
    );
    const chunks = stream[Symbol.asyncIterator]();
    expect((await chunks.next()).done).toBe(false);
    const job = await waitFor(async () => (await queue.getActive()).find((j) => j.data.requestId === 'drain-stream'), { what: 'the stream’s job' });
    const holder = topo.ingresses.find((i) => i.instanceId === job?.data.replyTo);
    const other = topo.ingresses.find((i) => i !== holder);
    if (holder === undefined || other === undefined) throw new Error(`no ingress holds job ${job?.id} (replyTo ${job?.data.replyTo})`);

    holder.proc.child.kill('SIGTERM');
    // Draining: the holder no longer accepts connections (nginx's connect fails over to the other ingress).
    await waitFor(async () => {
      try {
        await fetch(`http://127.0.0.1:${holder.port}/health`);
        return false;
      } catch {
        return true;
      }
    }, { what: 'the draining ingress to stop accepting connections' });
    const client = openaiFrom('127.0.0.9');
    const ids = ['after-drain-1', 'after-drain-2', 'after-drain-3', 'after-drain-4'];
    const answers = await Promise.all(ids.map((id) => client.chat.completions.create(CHAT, { headers: { 'x-request-id': id } }).withResponse()));
    for (const { response } of answers) expect(response.status).toBe(200);
    for (const id of ids) {
      await waitFor(() => other.proc.output().includes(`"reqId":"${id}"`), { what: `${id} in the other ingress's log` });
      expect(holder.proc.output()).not.toContain(`"reqId":"${id}"`);
    }

    let outcome: string;
    let last: OpenAI.Chat.Completions.ChatCompletionChunk | undefined;
    try {
      for (let next = await chunks.next(); !next.done; next = await chunks.next()) last = next.value;
      outcome = `complete (${last?.choices[0]?.finish_reason})`;
    } catch (err) {
      // A clean end: an SSE `error` event the SDK turns into an APIError, not a connection cut mid-event.
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect(err).not.toBeInstanceOf(OpenAI.APIConnectionError);
      outcome = `error (${(err as InstanceType<typeof OpenAI.APIError>).code})`;
    }
    if (process.env.DEPLOY_TEST_LOG) console.log(`drained stream: ${outcome}`);
    expect(['complete (stop)', 'error (server_shutting_down)']).toContain(outcome);
    expect(await holder.proc.exited).toBe(0);
  });

  it('with every ingress gone, nginx still answers: an OpenAI-shaped 502, and CORS preflights', async () => {
    await Promise.all(topo.ingresses.map((i) => i.proc.kill('SIGTERM')));
    const dispatcher = agentFrom('127.0.0.10');
    const response = await undiciFetch(`${topo.edgeUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${DEV_KEY}`, 'content-type': 'application/json', origin: ORIGIN },
      body: JSON.stringify(CHAT),
      dispatcher,
    });
    expect(response.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    await expectOpenAIError(response, 502, 'service_unavailable');
    const preflight = await undiciFetch(`${topo.edgeUrl}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: { origin: ORIGIN, 'access-control-request-method': 'POST' },
      dispatcher,
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(ORIGIN);
  });
});
