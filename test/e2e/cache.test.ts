// The response cache with real processes and the official openai client: identical requests make one upstream call
// and get identical answers (the repeat marked `x-spillway-cache: hit`); a cached stream arrives as a stream;
// concurrent identical misses wait for one call (single flight); Cache-Control no-cache and no-store; tenants never
// share an entry; a request opts in with max-age on a model that does not cache.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';
import { waitFor } from '../support/wait.ts';

const OTHER_KEY = 'sk-test-globex-9876543210';
let cluster: Cluster;
let acme: OpenAI;
let globex: OpenAI;

beforeAll(async () => {
  cluster = await startCluster({
    redisUrl: inject('redisUrl'),
    workers: 2,
    mock: { chunks: 4 },
    config: {
      // debug: the ingress logs each request that waits for an identical one (single flight).
      logging: { level: 'debug' },
      models: [
        { name: 'gpt-4o-mini', route: [{ provider: 'mock', model: 'mock-chat' }], cache: { enabled: true, ttlMs: 600_000 } },
        { name: 'plain', route: [{ provider: 'mock', model: 'mock-plain' }] },
      ],
      tenants: [
        { id: 'acme', keys: [`sha256:${createHash('sha256').update(TENANT_KEY).digest('hex')}`] },
        { id: 'globex', keys: [`sha256:${createHash('sha256').update(OTHER_KEY).digest('hex')}`] },
      ],
    },
  });
  acme = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0 });
  globex = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: OTHER_KEY, maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
});

const received = (tag: string) => cluster.mock.stats().byTag[tag]?.received ?? 0;

async function ask(client: OpenAI, content: string, headers: Record<string, string>, model = 'gpt-4o-mini') {
  const { data, response } = await client.chat.completions.create({ model, messages: [{ role: 'user', content }], temperature: 0 }, { headers }).withResponse();
  return { body: data, cache: response.headers.get('x-spillway-cache') };
}

describe('the response cache', () => {
  it('identical requests make one upstream call and get identical answers, the repeat marked as a hit', async () => {
    const headers = { 'x-mock-tag': 'json' };
    const first = await ask(acme, 'What is 2 + 2?', headers);
    const second = await ask(acme, 'What is 2 + 2?', headers);
    expect(received('json')).toBe(1);
    expect(second.body).toEqual(first.body);
    expect([first.cache, second.cache]).toEqual([null, 'hit']);
  });

  it('a cached stream arrives as a stream: the same chunks, in order, from one upstream call', async () => {
    const streamed = async () => {
      const { data, response } = await acme.chat.completions
        .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Stream me a story' }], stream: true }, { headers: { 'x-mock-tag': 'stream' } })
        .withResponse();
      const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
      for await (const chunk of data) chunks.push(chunk);
      return { chunks, cache: response.headers.get('x-spillway-cache'), type: response.headers.get('content-type') };
    };
    const first = await streamed();
    const second = await streamed();
    expect(received('stream')).toBe(1);
    expect(second.cache).toBe('hit');
    expect(second.type).toContain('text/event-stream');
    expect(second.chunks.length).toBeGreaterThan(2);
    expect(second.chunks).toEqual(first.chunks);
  });

  it('concurrent identical misses wait for one upstream call and all get its answer', async () => {
    const headers = { 'x-mock-tag': 'flight', 'x-mock-gate': 'flight' };
    const waitingLines = () => cluster.ingress.output().split('"msg":"response cache: waiting for an identical request in flight"').length - 1;
    const before = waitingLines();
    const answers = Array.from({ length: 5 }, () => ask(acme, 'Everyone asks this at once', headers));
    // One call held at the mock, four requests waiting for it at the ingress: only then is the call let through.
    await waitFor(() => cluster.mock.stats().inFlight === 1 && waitingLines() - before === 4, { what: 'one call in flight and four requests waiting for it' });
    cluster.mock.openGate('flight');
    const bodies = (await Promise.all(answers)).map((a) => a.body);
    expect(received('flight')).toBe(1);
    for (const body of bodies) expect(body).toEqual(bodies[0]);
  });

  it('no-cache calls upstream and refreshes the entry; no-store calls upstream and stores nothing', async () => {
    const tag = { 'x-mock-tag': 'control' };
    const prompt = 'Cache-Control, please';
    const original = await ask(acme, prompt, tag);
    const refreshed = await ask(acme, prompt, { ...tag, 'cache-control': 'no-cache' });
    expect(received('control')).toBe(2);
    expect(refreshed.body.id).not.toBe(original.body.id);
    expect(await ask(acme, prompt, tag)).toEqual({ body: refreshed.body, cache: 'hit' });
    const unstored = await ask(acme, prompt, { ...tag, 'cache-control': 'no-store' });
    expect(received('control')).toBe(3);
    expect(unstored.cache).toBeNull();
    expect((await ask(acme, prompt, tag)).body).toEqual(refreshed.body);
  });

  it('never serves one tenant the answer cached for another', async () => {
    await ask(acme, 'Tenant-private question', { 'x-mock-tag': 'tenants' });
    const other = await ask(globex, 'Tenant-private question', { 'x-mock-tag': 'tenants' });
    expect(received('tenants')).toBe(2);
    expect(other.cache).toBeNull();
  });

  it('a request opts in with max-age on a model that does not cache; without it every request calls upstream', async () => {
    await ask(acme, 'Opt me in', { 'x-mock-tag': 'opt-in', 'cache-control': 'max-age=60' }, 'plain');
    expect((await ask(acme, 'Opt me in', { 'x-mock-tag': 'opt-in', 'cache-control': 'max-age=60' }, 'plain')).cache).toBe('hit');
    expect(received('opt-in')).toBe(1);
    await ask(acme, 'Not cached', { 'x-mock-tag': 'opt-out' }, 'plain');
    await ask(acme, 'Not cached', { 'x-mock-tag': 'opt-out' }, 'plain');
    expect(received('opt-out')).toBe(2);
  });
});
