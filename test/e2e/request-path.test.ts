// End to end through real processes (1 ingress, 2 workers, real Redis, mock upstream), driven by the official
// openai client: JSON and SSE answers, OpenAI-shaped errors, and cancellation when a client goes away.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';
import { waitFor } from '../support/wait.ts';

let cluster: Cluster;
let client: OpenAI;

beforeAll(async () => {
  // Two jobs per worker, so a test can fill every slot and make the next job wait.
  cluster = await startCluster({ redisUrl: inject('redisUrl'), workers: 2, config: { worker: { concurrency: 2, lockDurationMs: 2_000, stalledIntervalMs: 1_000 } } });
  client = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
});

const tagged = (tag: string, extra: Record<string, string> = {}) => ({ headers: { 'x-mock-tag': tag, ...extra } });

describe('answers', () => {
  it('answers a chat completion as JSON', async () => {
    const completion = await client.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] },
      tagged('chat-json', { 'x-mock-chunks': '5' }),
    );
    expect(completion.object).toBe('chat.completion');
    expect(completion.choices[0]?.message.content).toBe('tok1 tok2 tok3 tok4 tok5');
    expect(completion.usage?.completion_tokens).toBe(5);
    expect(cluster.mock.stats().byTag['chat-json']).toMatchObject({ received: 1, completed: 1 });
  });

  it('streams a chat completion, the first chunk reaching the client before the upstream has finished', async () => {
    const stream = await client.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], stream: true, stream_options: { include_usage: true } },
      tagged('chat-stream', { 'x-mock-chunks': '12', 'x-mock-chunk-delay-ms': '60' }),
    );
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    let upstreamCompletedAtFirstChunk: number | undefined;
    for await (const chunk of stream) {
      upstreamCompletedAtFirstChunk ??= cluster.mock.stats().byTag['chat-stream']?.completed ?? 0;
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(upstreamCompletedAtFirstChunk).toBe(0);
    expect(text).toBe(Array.from({ length: 12 }, (_, i) => `tok${i + 1}`).join(' '));
    expect(usage?.completion_tokens).toBe(12);
    expect(cluster.mock.stats().byTag['chat-stream']).toMatchObject({ received: 1, completed: 1 });
  });

  it('answers a legacy completion, streaming and not', async () => {
    const completion = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'Say this', max_tokens: 3 });
    expect(completion.object).toBe('text_completion');
    expect(completion.choices[0]?.text).toBe('tok1 tok2 tok3');
    const stream = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'Say this', stream: true }, tagged('legacy-stream', { 'x-mock-chunks': '4' }));
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
    expect(text).toBe('tok1 tok2 tok3 tok4');
  });

  it('answers embeddings in the SDK default base64 encoding and as floats', async () => {
    const embeddings = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['one', 'two'], dimensions: 32 });
    expect(embeddings.data).toHaveLength(2);
    expect(embeddings.data[0]?.embedding).toHaveLength(32);
    const floats = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'one', dimensions: 32, encoding_format: 'float' });
    expect(floats.data[0]?.embedding).toEqual(embeddings.data[0]?.embedding.map((x) => expect.closeTo(x, 5)));
  });

  it('lists the configured public model names', async () => {
    const ids = [];
    for await (const model of client.models.list()) ids.push(model.id);
    expect(ids.sort()).toEqual(['gpt-3.5-turbo-instruct', 'gpt-4o-mini', 'text-embedding-3-small']);
  });

  it('never hands the upstream key or the tenant key to the client or the upstream logs', async () => {
    const response = await fetch(`${cluster.baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TENANT_KEY}`, 'content-type': 'application/json', 'x-mock-status': '401' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
    });
    const text = await response.text();
    // The upstream refused the broker's own key: that is a gateway failure, not the client's bad key.
    expect(response.status).toBe(502);
    expect(text).not.toContain('sk-upstream-secret-value');
    for (const proc of [cluster.ingress, ...cluster.workers]) {
      expect(proc.output()).not.toContain('sk-upstream-secret-value');
      expect(proc.output()).not.toContain(TENANT_KEY);
    }
  });
});

describe('errors', () => {
  const post = (body: string, headers: Record<string, string> = {}) =>
    fetch(`${cluster.baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TENANT_KEY}`, 'content-type': 'application/json', ...headers },
      body,
    });

  it('answers 401 to a wrong key', async () => {
    const bad = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
    const err = await bad.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('invalid_api_key');
  });

  it('accepts the key in an api-key header too (Azure OpenAI clients), and checks it the same way', async () => {
    const ok = await fetch(`${cluster.baseUrl}/v1/models`, { headers: { 'api-key': TENANT_KEY } });
    expect(ok.status).toBe(200);
    const wrong = await fetch(`${cluster.baseUrl}/v1/models`, { headers: { 'api-key': 'sk-wrong-key-123' } });
    expect(wrong.status).toBe(401);
  });

  it('answers 401 to a missing key', async () => {
    const response = await fetch(`${cluster.baseUrl}/v1/models`);
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ error: { type: 'invalid_request_error', code: 'missing_api_key' } });
  });

  it('answers 400 to malformed JSON', async () => {
    const response = await post('{"model": "gpt-4o-mini", "messages": [');
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ error: { message: expect.any(String), type: 'invalid_request_error', param: null, code: 'invalid_json' } });
  });

  it('answers 400 naming the field of a wrong type', async () => {
    const err = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], max_tokens: 'ten' as unknown as number })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.APIError>).param).toBe('max_tokens');
  });

  it('answers 404 to an unknown model', async () => {
    const err = await client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('model_not_found');
  });

  it('answers 413 to a body over the limit', async () => {
    const response = await post(JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x'.repeat(300 * 1024) }] }));
    expect(response.status).toBe(413);
    expect(await response.json()).toMatchObject({ error: { type: 'invalid_request_error', code: 'request_too_large' } });
  });

  it('relays a client-caused upstream 400 with its message', async () => {
    const response = await post(JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }), { 'x-mock-status': '400' });
    expect(response.status).toBe(400);
    // The upstream's own message helps the client fix its request: it is relayed, not replaced.
    expect(await response.json()).toEqual({
      error: { message: 'Mock upstream error 400 (injected by x-mock headers).', type: 'invalid_request_error', param: null, code: null },
    });
  });

  it('retries an upstream 500 and answers 200', async () => {
    const completion = await client.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
      tagged('flaky', { 'x-mock-fail-times': '1', 'x-mock-status': '500' }),
    );
    expect(completion.object).toBe('chat.completion');
    expect(cluster.mock.stats().byTag.flaky?.received).toBe(2);
  });
});

describe('cancellation', () => {
  it('aborts the upstream request when a streaming client disconnects', async () => {
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], stream: true },
      { ...tagged('stream-abort', { 'x-mock-chunks': '200', 'x-mock-chunk-delay-ms': '50' }), signal: controller.signal },
    );
    let chunks = 0;
    // The SDK either ends the iteration or throws an abort error, depending on where the abort lands.
    try {
      for await (const _chunk of stream) {
        if (++chunks === 3) controller.abort();
      }
    } catch (err) {
      expect(err).toBeInstanceOf(OpenAI.APIUserAbortError);
    }
    // Nothing reaches the client after it aborted at the third chunk.
    expect(chunks).toBe(3);
    await waitFor(() => cluster.mock.stats().byTag['stream-abort']?.aborted === 1, { what: 'the upstream stream to be aborted' });
    expect(cluster.mock.stats().byTag['stream-abort']?.completed).toBe(0);
  });

  it('removes a waiting job when its client disconnects, and the upstream never sees it', async () => {
    // Fill all four worker slots (2 workers × concurrency 2) with slow calls.
    const busy = Array.from({ length: 4 }, () =>
      client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }, tagged('busy', { 'x-mock-latency-ms': '1500' })),
    );
    await waitFor(() => cluster.mock.stats().byTag.busy?.received === 4, { what: 'four busy upstream calls' });

    const controller = new AbortController();
    const waiting = client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }, { ...tagged('waiting'), signal: controller.signal })
      .catch((e: unknown) => e);
    const job = await waitFor(async () => (await cluster.queue.getWaiting()).find((j) => j.data.headers?.['x-mock-tag'] === 'waiting'), {
      what: 'the waiting job',
    });
    controller.abort();
    expect(await waiting).toBeInstanceOf(OpenAI.APIUserAbortError);
    await waitFor(async () => (await cluster.queue.getJob(job.id!)) === undefined, { what: 'the waiting job to be removed' });

    await Promise.all(busy);
    // The workers are free again: a new call goes through, and the cancelled one never reached the upstream.
    await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }, tagged('after'));
    expect(cluster.mock.stats().byTag.waiting).toBeUndefined();
  });
});
