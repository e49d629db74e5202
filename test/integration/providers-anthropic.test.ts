// The anthropic adapter through the real worker role, real Redis and the mock speaking the Messages API: JSON and
// streamed answers (tool calls included) arrive OpenAI-shaped, errors are normalised, retries and fallbacks hold.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type OpenAI from 'openai';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { chunkData, startWorkerHarness, type WorkerHarness } from './worker-harness.ts';

let mock: MockUpstream;
let h: WorkerHarness;

beforeAll(async () => {
  mock = await startMockUpstream({ chunks: 4, apiKey: 'sk-ant-mock' });
  h = await startWorkerHarness(inject('redisUrl'), mock.url, {
    providers: [
      { id: 'claude', type: 'anthropic', baseUrl: mock.url, apiKey: 'sk-ant-mock', defaultMaxTokens: 3 },
      { id: 'backup', type: 'openai', baseUrl: mock.url, apiKey: 'sk-ant-mock' },
    ],
    models: [
      { name: 'gpt-4o-mini', route: [{ provider: 'claude', model: 'claude-sonnet-4-5' }] },
      { name: 'with-fallback', route: [{ provider: 'claude', model: 'claude-sonnet-4-5' }, { provider: 'backup', model: 'gpt-4o-mini' }] },
      { name: 'text-embedding-3-small', route: [{ provider: 'claude', model: 'claude-sonnet-4-5' }] },
    ],
  });
}, 30_000);
afterAll(async () => {
  await h?.close();
  await mock?.close();
});

const TOOLS = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
const doneBody = (messages: readonly unknown[]) => JSON.parse((messages.at(-1) as { result: { body: string } }).result.body) as OpenAI.ChatCompletion;

describe('answers', () => {
  it('a JSON chat answer is an OpenAI chat.completion, cut at the configured default max_tokens', async () => {
    const messages = await h.finalReplies(await h.enqueue(h.chatJob()));
    expect(messages).toEqual([expect.objectContaining({ k: 'done', result: expect.objectContaining({ kind: 'body', status: 200 }) })]);
    const body = doneBody(messages);
    expect(body).toMatchObject({ object: 'chat.completion', model: 'claude-sonnet-4-5', choices: [{ message: { role: 'assistant', content: 'tok1 tok2 tok3' }, finish_reason: 'length' }] });
    expect(body.usage?.completion_tokens).toBe(3);
  });

  it('a tool call comes back as tool_calls with finish_reason tool_calls', async () => {
    const job = h.chatJob({ body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'weather?' }], tools: TOOLS, max_tokens: 10 } });
    const body = doneBody(await h.finalReplies(await h.enqueue(job)));
    expect(body.choices[0]).toMatchObject({
      finish_reason: 'tool_calls',
      message: { content: 'tok1 tok2 tok3 tok4', tool_calls: [{ type: 'function', id: expect.stringMatching(/^toolu_/), function: { name: 'get_weather', arguments: '{"city":"tok1"}' } }] },
    });
  });

  it('a stream arrives as chat.completion.chunk events: role, words, tool call pieces, finish, usage', async () => {
    const job = h.streamJob(
      {},
      { body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true }, tools: TOOLS, max_tokens: 10 } },
    );
    const messages = await h.finalReplies(await h.enqueue(job));
    expect(messages[0]).toMatchObject({ k: 'head', status: 200 });
    expect(messages.at(-1)).toMatchObject({ k: 'done', result: { kind: 'stream', usage: { completion_tokens: 4 } } });
    const chunks = chunkData(messages).map((d) => JSON.parse(d) as OpenAI.ChatCompletionChunk);
    expect(chunks[0]?.choices[0]?.delta).toEqual({ role: 'assistant', content: '' });
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('tok1 tok2 tok3 tok4');
    const args = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []).map((t) => t.function?.arguments);
    expect(args.join('')).toBe('{"city":"tok1"}');
    expect(chunks.at(-2)?.choices[0]).toMatchObject({ finish_reason: 'tool_calls' });
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { completion_tokens: 4 } });
  });
});

describe('errors, retries and fallbacks', () => {
  it('a 529 overloaded answer is retried, and after the retries is a 503 with Retry-After, never a 529', async () => {
    mock.reset();
    const messages = await h.finalReplies(await h.enqueue(h.chatJob({ headers: { 'x-mock-status': '529', 'x-mock-tag': 'overloaded' } })));
    expect(messages).toEqual([expect.objectContaining({ k: 'error', status: 503, headers: { 'retry-after': '1' }, error: expect.objectContaining({ code: 'upstream_overloaded' }) })]);
    expect(mock.stats().byTag['overloaded']?.received).toBe(3);
  });

  it("a 400 is the client's: relayed once in OpenAI's shape", async () => {
    mock.reset();
    const messages = await h.finalReplies(await h.enqueue(h.chatJob({ headers: { 'x-mock-status': '400', 'x-mock-tag': 'bad' } })));
    expect(messages).toEqual([expect.objectContaining({ k: 'error', status: 400, error: expect.objectContaining({ type: 'invalid_request_error', message: expect.stringContaining('Mock upstream error 400') }) })]);
    expect(mock.stats().byTag['bad']?.received).toBe(1);
  });

  it('an overload event mid-stream, after chunks reached the client, ends the stream with stream_interrupted and is not retried', async () => {
    mock.reset();
    // Three words (the default max_tokens): the error event comes after the first.
    const job = h.streamJob({ 'x-mock-fault': 'stream-error', 'x-mock-tag': 'mid-stream' }, { model: 'with-fallback' });
    const messages = await h.finalReplies(await h.enqueue(job));
    expect(chunkData(messages).map((d) => (JSON.parse(d) as { choices: Array<{ delta: { content?: string } }> }).choices[0]?.delta.content).join('')).toBe('tok1');
    expect(messages.at(-1)).toMatchObject({ k: 'error', error: { code: 'stream_interrupted' } });
    expect(mock.stats().byTag['mid-stream']?.received).toBe(1);
  });

  it('a request the Messages API cannot carry (n > 1) skips the anthropic target for the fallback, which answers', async () => {
    const job = h.chatJob({ model: 'with-fallback', body: { model: 'with-fallback', messages: [{ role: 'user', content: 'x' }], n: 2 } });
    const body = doneBody(await h.finalReplies(await h.enqueue(job)));
    expect(body.choices).toHaveLength(2);
    expect(body.model).toBe('gpt-4o-mini');
  });

  it('embeddings routed only to anthropic are a 400 unsupported_endpoint, with no upstream call', async () => {
    mock.reset();
    const job = h.chatJob({ endpoint: 'embeddings', model: 'text-embedding-3-small', body: { model: 'text-embedding-3-small', input: 'x' } });
    const messages = await h.finalReplies(await h.enqueue(job));
    expect(messages).toEqual([expect.objectContaining({ k: 'error', status: 400, error: expect.objectContaining({ code: 'unsupported_endpoint' }) })]);
    expect(mock.stats().received).toBe(0);
  });
});
