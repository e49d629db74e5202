// The mock upstream on a real ephemeral port, driven by the official openai client and by undici for faults.
// Talks to loopback only; every server, agent and request a test opens is closed or aborted by that test.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthenticationError, NotFoundError, OpenAI } from 'openai';
import { Agent, request } from 'undici';
import { startMockUpstream } from '../../src/mock-upstream/index.ts';
import type { MockUpstream } from '../../src/mock-upstream/index.ts';
import { waitFor } from '../support/wait.ts';

const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'hello there' }] };
const WORDS = 'tok1 tok2 tok3 tok4 tok5 tok6 tok7 tok8';


function tagStats(mock: MockUpstream, tag: string): { received: number; completed: number; aborted: number } {
  return mock.stats().byTag[tag] ?? { received: 0, completed: 0, aborted: 0 };
}

describe('mock upstream, through the official openai client', () => {
  let mock: MockUpstream;
  let client: OpenAI;
  beforeAll(async () => {
    mock = await startMockUpstream();
    client = new OpenAI({ baseURL: mock.url, apiKey: 'x', maxRetries: 0 });
  });
  afterAll(() => mock.close());

  it('a chat completion answers the configured number of words and echoes the model', async () => {
    const completion = await client.chat.completions.create(CHAT);
    expect(completion.object).toBe('chat.completion');
    expect(completion.id).toMatch(/^chatcmpl-/);
    expect(completion.model).toBe('gpt-4o-mini');
    expect(completion.choices).toEqual([
      { index: 0, message: { role: 'assistant', content: WORDS, refusal: null, annotations: [] }, logprobs: null, finish_reason: 'stop' },
    ]);
    const usage = completion.usage;
    expect(usage?.completion_tokens).toBe(8);
    expect(usage?.total_tokens).toBe((usage?.prompt_tokens ?? 0) + 8);
  });

  it('n gives that many choices and max_tokens cuts them short with finish_reason length', async () => {
    const completion = await client.chat.completions.create({ ...CHAT, n: 2, max_tokens: 3 });
    expect(completion.choices.map((c) => [c.index, c.message.content, c.finish_reason])).toEqual([
      [0, 'tok1 tok2 tok3', 'length'],
      [1, 'tok1 tok2 tok3', 'length'],
    ]);
    expect(completion.usage?.completion_tokens).toBe(6);
  });

  it('a chat stream opens with the assistant role, sends a chunk per word and ends with a finish reason', async () => {
    const stream = await client.chat.completions.create({ ...CHAT, stream: true });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0]?.choices[0]?.delta).toMatchObject({ role: 'assistant', content: '' });
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(WORDS);
    expect(chunks).toHaveLength(1 + 8 + 1);
    expect(chunks.at(-1)?.choices[0]).toMatchObject({ delta: {}, finish_reason: 'stop' });
    const first = chunks[0];
    for (const chunk of chunks) {
      expect(chunk).toMatchObject({ object: 'chat.completion.chunk', id: first?.id, created: first?.created, model: 'gpt-4o-mini' });
      expect(chunk).not.toHaveProperty('usage');
    }
  });

  it('with include_usage, chunks carry usage null and a last chunk with no choices carries the usage', async () => {
    const stream = await client.chat.completions.create({ ...CHAT, stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const last = chunks.at(-1);
    expect(last?.choices).toEqual([]);
    expect(last?.usage).toMatchObject({ completion_tokens: 8 });
    for (const chunk of chunks.slice(0, -1)) expect(chunk.usage).toBeNull();
  });

  it('a streaming client sees the first chunk while the rest is pending, and leaving the stream counts as aborted', async () => {
    const tag = 'leaves-early';
    // A minute between chunks: the first chunk can only arrive if it is flushed on its own.
    const stream = await client.chat.completions.create(
      { ...CHAT, stream: true },
      { headers: { 'x-mock-chunk-delay-ms': '60000', 'x-mock-tag': tag } },
    );
    for await (const chunk of stream) {
      expect(chunk.choices[0]?.delta.role).toBe('assistant');
      break; // aborts the request
    }
    await waitFor(() => tagStats(mock, tag).aborted === 1, { what: 'the abort to be counted' });
    expect(tagStats(mock, tag)).toEqual({ received: 1, completed: 0, aborted: 1 });
  });

  it('text completions answer text_completion objects, streamed or not', async () => {
    const completion = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'Say hi' });
    expect(completion).toMatchObject({ object: 'text_completion', model: 'gpt-3.5-turbo-instruct' });
    expect(completion.choices).toEqual([{ text: WORDS, index: 0, logprobs: null, finish_reason: 'stop' }]);

    const stream = await client.completions.create({
      model: 'gpt-3.5-turbo-instruct',
      prompt: 'Say hi',
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.every((c) => c.object === 'text_completion')).toBe(true);
    expect(chunks.map((c) => c.choices[0]?.text ?? '').join('')).toBe(WORDS);
    expect(chunks.at(-2)?.choices[0]?.finish_reason).toBe('stop');
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { completion_tokens: 8 } });
  });

  it('embeddings fetched with the client default (base64) decode to vectors equal to the float encoding', async () => {
    const input = ['first text', 'second text'];
    const viaBase64 = await client.embeddings.create({ model: 'text-embedding-3-small', input });
    const viaFloat = await client.embeddings.create({ model: 'text-embedding-3-small', input, encoding_format: 'float' });
    expect(viaBase64.object).toBe('list');
    expect(viaBase64.data.map((d) => [d.object, d.index, d.embedding.length])).toEqual([
      ['embedding', 0, 16],
      ['embedding', 1, 16],
    ]);
    expect(viaBase64.data).toEqual(viaFloat.data);
    expect(viaBase64.data[0]?.embedding).not.toEqual(viaBase64.data[1]?.embedding);
    expect(viaBase64.usage.total_tokens).toBeGreaterThan(0);

    const sized = await client.embeddings.create({ model: 'text-embedding-3-small', input: [[1, 2, 3]], dimensions: 48 });
    expect(sized.data[0]?.embedding).toHaveLength(48);
    expect(sized.usage.prompt_tokens).toBe(3);
  });

  it('serves the largest embeddings batch: 2048 inputs of 4096 dimensions in base64, about 45 MB', async () => {
    const input = Array.from({ length: 2048 }, (_, i) => `text ${i}`);
    const res = await request(`${mock.url}/embeddings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'text-embedding-3-large', input, dimensions: 4096, encoding_format: 'base64' }),
    });
    expect(res.statusCode).toBe(200);
    expect(Number(res.headers['content-length'])).toBeGreaterThan(44_000_000);
    const body = (await res.body.json()) as { data: Array<{ index: number; embedding: string }> };
    expect(body.data).toHaveLength(2048);
    expect(body.data[2047]?.index).toBe(2047);
    expect(Buffer.from(body.data[0]?.embedding ?? '', 'base64')).toHaveLength(4096 * 4);
  });

  it('models are listed and retrieved, and an unknown model is a 404', async () => {
    const page = await client.models.list();
    expect(page.data.length).toBeGreaterThan(0);
    expect(page.data[0]).toMatchObject({ object: 'model', owned_by: 'spillway-mock' });
    const id = page.data[0]?.id ?? '';
    await expect(client.models.retrieve(id)).resolves.toMatchObject({ id, object: 'model' });
    await expect(client.models.retrieve('no-such-model')).rejects.toBeInstanceOf(NotFoundError);
  });
});

describe('mock upstream fault injection', () => {
  let mock: MockUpstream;
  const agent = new Agent();
  const post = (path: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal) =>
    request(`${mock.url}${path}`, {
      method: 'POST',
      body: typeof body === 'string' ? body : JSON.stringify(body),
      headers: { 'content-type': 'application/json', ...headers },
      dispatcher: agent,
      signal,
    });
  beforeAll(async () => {
    mock = await startMockUpstream();
  });
  afterAll(async () => {
    await mock.close();
    await agent.close();
  });

  it.each([
    [400, 'invalid_request_error', null],
    [401, 'authentication_error', 'invalid_api_key'],
    [429, 'requests', 'rate_limit_exceeded'],
    [500, 'server_error', null],
    [503, 'server_error', null],
  ])('x-mock-status %i answers an OpenAI error of type %s', async (status, type, code) => {
    const res = await post('/chat/completions', CHAT, { 'x-mock-status': String(status), 'x-mock-retry-after': '7' });
    expect(res.statusCode).toBe(status);
    expect(res.headers['retry-after']).toBe('7');
    expect(await res.body.json()).toEqual({ error: { message: expect.any(String), type, param: null, code } });
  });

  it('x-mock-fail-times fails the first N requests of its tag, then succeeds', async () => {
    const headers = { 'x-mock-fail-times': '2', 'x-mock-tag': 'flaky' };
    const statuses = [];
    for (let i = 0; i < 3; i++) {
      const res = await post('/chat/completions', CHAT, headers);
      await res.body.dump();
      statuses.push(res.statusCode);
    }
    expect(statuses).toEqual([500, 500, 200]);
    const res = await post('/chat/completions', CHAT, { ...headers, 'x-mock-tag': 'other-flaky', 'x-mock-status': '502' });
    await res.body.dump();
    expect(res.statusCode).toBe(502);
    expect(tagStats(mock, 'flaky')).toEqual({ received: 3, completed: 3, aborted: 0 });
  });

  it('reset destroys the connection without an answer', async () => {
    await expect(post('/chat/completions', CHAT, { 'x-mock-fault': 'reset', 'x-mock-tag': 'reset' })).rejects.toThrow();
    await waitFor(() => tagStats(mock, 'reset').aborted === 1, { what: 'the reset to be counted' });
  });

  it('reset-mid-stream sends the start of a stream, then drops the connection', async () => {
    const res = await post('/chat/completions', { ...CHAT, stream: true }, { 'x-mock-fault': 'reset-mid-stream' });
    expect(res.statusCode).toBe(200);
    let text = '';
    const read = (async () => {
      for await (const part of res.body) text += String(part);
    })();
    await expect(read).rejects.toThrow();
    expect(text).toContain('"content":"tok1"');
    expect(text).not.toContain('[DONE]');
  });

  it('slow-stream still delivers the whole stream', async () => {
    const res = await post('/chat/completions', { ...CHAT, stream: true }, { 'x-mock-fault': 'slow-stream', 'x-mock-chunks': '1' });
    const text = await res.body.text();
    expect(text).toContain('"finish_reason":"stop"');
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
  });

  it('stall-mid-stream sends half a stream, then stays silent until the client leaves', async () => {
    const controller = new AbortController();
    const res = await post('/chat/completions', { ...CHAT, stream: true }, { 'x-mock-fault': 'stall-mid-stream', 'x-mock-tag': 'stall' }, controller.signal);
    expect(res.statusCode).toBe(200);
    let text = '';
    // Without the stall, all ten frames leave in one write: the first read would hold tok5 and [DONE] too.
    for await (const part of res.body) {
      text += String(part);
      if (text.includes('"content":" tok4"')) break;
    }
    expect(text).not.toContain('tok5');
    expect(text).not.toContain('[DONE]');
    controller.abort();
    await waitFor(() => tagStats(mock, 'stall').aborted === 1, { what: 'the stalled stream to be counted as aborted' });
  });

  it('stall-mid-stream with x-mock-stall-ms pauses, then finishes the stream', async () => {
    const res = await post('/chat/completions', { ...CHAT, stream: true }, { 'x-mock-fault': 'stall-mid-stream', 'x-mock-stall-ms': '50' });
    const text = await res.body.text();
    expect(text).toContain('"content":" tok8"');
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
  });

  it('no-done ends a stream cleanly without [DONE]', async () => {
    const res = await post('/chat/completions', { ...CHAT, stream: true }, { 'x-mock-fault': 'no-done', 'x-mock-tag': 'no-done' });
    const text = await res.body.text();
    expect(text).toContain('"finish_reason":"stop"');
    expect(text).not.toContain('[DONE]');
    await waitFor(() => tagStats(mock, 'no-done').completed === 1, { what: 'the stream to be counted as completed' });
  });

  it('huge-error answers the x-mock-status error with an OpenAI error body of x-mock-body-bytes, its size unannounced', async () => {
    const res = await post('/chat/completions', CHAT, { 'x-mock-fault': 'huge-error', 'x-mock-status': '503', 'x-mock-retry-after': '2', 'x-mock-body-bytes': '300000' });
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('2');
    expect(res.headers['content-length']).toBeUndefined();
    const text = await res.body.text();
    expect(text).toHaveLength(300_000);
    expect(JSON.parse(text)).toEqual({ error: { message: expect.stringMatching(/^Mock upstream error 503, padded: x+$/), type: 'server_error', param: null, code: null } });
    // Without x-mock-status: a 500.
    const plain = await post('/chat/completions', CHAT, { 'x-mock-fault': 'huge-error', 'x-mock-body-bytes': '10' });
    expect(plain.statusCode).toBe(500);
    expect(await plain.body.json()).toMatchObject({ error: { type: 'server_error' } });
  });

  it('non-json answers 200 with a text/html body of x-mock-body-bytes', async () => {
    const res = await post('/chat/completions', CHAT, { 'x-mock-fault': 'non-json', 'x-mock-body-bytes': '200000' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    const text = await res.body.text();
    expect(text).toHaveLength(200_000);
    expect(text.startsWith('<html><body>')).toBe(true);
  });

  it('huge-event streams one event of x-mock-body-bytes, then [DONE]', async () => {
    const res = await post('/chat/completions', { ...CHAT, stream: true }, { 'x-mock-fault': 'huge-event', 'x-mock-body-bytes': '500000' });
    expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
    const text = await res.body.text();
    const [event, done, rest] = text.split('\n\n');
    expect(event).toHaveLength(500_000 - 2);
    expect((JSON.parse(event!.slice('data: '.length)) as { pad: string }).pad).toMatch(/^x+$/);
    expect([done, rest]).toEqual(['data: [DONE]', '']);
  });

  it('a hanging request is aborted by its client and counted as aborted', async () => {
    const tag = 'hang';
    const controller = new AbortController();
    const pending = post('/chat/completions', CHAT, { 'x-mock-fault': 'hang', 'x-mock-tag': tag }, controller.signal);
    await waitFor(() => tagStats(mock, tag).received === 1, { what: 'the request to arrive' });
    controller.abort();
    await expect(pending).rejects.toThrow();
    await waitFor(() => tagStats(mock, tag).aborted === 1, { what: 'the abort to be counted' });
    expect(tagStats(mock, tag).completed).toBe(0);
  });

  it('malformed JSON, a missing model and a bad x-mock header are OpenAI-shaped 400s', async () => {
    const malformed = await post('/chat/completions', '{"model":');
    expect(malformed.statusCode).toBe(400);
    expect(await malformed.body.json()).toEqual({
      error: { message: expect.any(String), type: 'invalid_request_error', param: null, code: null },
    });
    const noModel = await post('/embeddings', { input: 'x' });
    expect(noModel.statusCode).toBe(400);
    expect(await noModel.body.json()).toMatchObject({ error: { type: 'invalid_request_error', param: 'model' } });
    const badHeaders: Array<Record<string, string>> = [{ 'x-mock-latency-ms': 'soon' }, { 'x-mock-stall-ms': '-1' }, { 'x-mock-body-bytes': '1e6' }, { 'x-mock-fault': 'stall' }];
    for (const bad of badHeaders) {
      const badHeader = await post('/chat/completions', CHAT, bad);
      expect(badHeader.statusCode).toBe(400);
      expect(await badHeader.body.json()).toMatchObject({ error: { type: 'invalid_request_error' } });
    }
  });

  it('unknown paths are OpenAI-shaped 404s', async () => {
    const res = await request(`${mock.url}/assistants`, { dispatcher: agent });
    expect(res.statusCode).toBe(404);
    expect(await res.body.json()).toMatchObject({ error: { type: 'invalid_request_error', param: null, code: null } });
  });
});

describe('mock upstream limits, auth, stats and close', () => {
  const agent = new Agent();
  afterAll(() => agent.close());

  it('requests beyond maxConcurrency get a 429 with Retry-After and count as rejected', async () => {
    const mock = await startMockUpstream({ maxConcurrency: 1, retryAfterSeconds: 3 });
    try {
      const controller = new AbortController();
      const hanging = request(`${mock.url}/chat/completions`, {
        method: 'POST',
        body: JSON.stringify(CHAT),
        headers: { 'x-mock-fault': 'hang' },
        dispatcher: agent,
        signal: controller.signal,
      });
      await waitFor(() => mock.stats().inFlight === 1, { what: 'the first request to be in flight' });
      const res = await request(`${mock.url}/chat/completions`, { method: 'POST', body: JSON.stringify(CHAT), dispatcher: agent });
      expect(res.statusCode).toBe(429);
      expect(res.headers['retry-after']).toBe('3');
      expect(await res.body.json()).toMatchObject({ error: { type: 'requests', code: 'rate_limit_exceeded' } });
      controller.abort();
      await expect(hanging).rejects.toThrow();
      await waitFor(() => mock.stats().inFlight === 0, { what: 'the hanging request to end' });
      expect(mock.stats()).toMatchObject({ received: 2, completed: 0, aborted: 1, rejected: 1, maxInFlight: 1 });
    } finally {
      await mock.close();
    }
  });

  it('with an apiKey, only requests bearing it are answered', async () => {
    const mock = await startMockUpstream({ apiKey: 'sk-mock' });
    try {
      const good = new OpenAI({ baseURL: mock.url, apiKey: 'sk-mock', maxRetries: 0 });
      const bad = new OpenAI({ baseURL: mock.url, apiKey: 'sk-wrong', maxRetries: 0 });
      await expect(good.chat.completions.create(CHAT)).resolves.toMatchObject({ object: 'chat.completion' });
      await expect(bad.chat.completions.create(CHAT)).rejects.toBeInstanceOf(AuthenticationError);
      await expect(bad.models.list()).rejects.toBeInstanceOf(AuthenticationError);
      const bare = await request(`${mock.url}/chat/completions`, { method: 'POST', body: JSON.stringify(CHAT), dispatcher: agent });
      expect(bare.statusCode).toBe(401);
      expect(await bare.body.json()).toMatchObject({ error: { type: 'authentication_error', code: 'invalid_api_key' } });
    } finally {
      await mock.close();
    }
  });

  it('/_mock/stats reports the counters of the LLM endpoints and the model-listing probes, and /_mock/reset zeroes them', async () => {
    const mock = await startMockUpstream({ chunks: 2 });
    const origin = new URL(mock.url).origin;
    try {
      const client = new OpenAI({ baseURL: mock.url, apiKey: 'x', maxRetries: 0 });
      await client.chat.completions.create(CHAT, { headers: { 'x-mock-tag': 't' } });
      await client.embeddings.create({ model: 'text-embedding-3-small', input: 'x' });
      await client.models.list();
      const stats = await request(`${origin}/_mock/stats`, { dispatcher: agent });
      expect(await stats.body.json()).toEqual({
        received: 2,
        completed: 2,
        aborted: 0,
        rejected: 0,
        inFlight: 0,
        maxInFlight: 1,
        probes: 1,
        byTag: { t: { received: 1, completed: 1, aborted: 0 } },
      });
      const reset = await request(`${origin}/_mock/reset`, { method: 'POST', dispatcher: agent });
      expect(reset.statusCode).toBe(204);
      await reset.body.dump();
      expect(mock.stats()).toMatchObject({ received: 0, completed: 0, probes: 0, byTag: {} });
    } finally {
      await mock.close();
    }
  });

  it('close ends a hanging response and can be called again', async () => {
    const mock = await startMockUpstream();
    const hanging = request(`${mock.url}/chat/completions`, {
      method: 'POST',
      body: JSON.stringify(CHAT),
      headers: { 'x-mock-fault': 'hang' },
      dispatcher: agent,
    });
    await waitFor(() => mock.stats().inFlight === 1, { what: 'the request to be in flight' });
    await mock.close();
    await expect(hanging).rejects.toThrow();
    await expect(mock.close()).resolves.toBeUndefined();
  });
});
