// The azure-openai adapter through the real worker role, real Redis and the mock speaking Azure OpenAI: deployment
// paths and the api-key, answers relayed OpenAI-shaped (the filter-only chunk dropped), content-filter refusals as 400s.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type OpenAI from 'openai';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { chunkData, startWorkerHarness, type WorkerHarness } from './worker-harness.ts';

let mock: MockUpstream;
let h: WorkerHarness;

beforeAll(async () => {
  mock = await startMockUpstream({ chunks: 3, apiKey: 'azure-key' });
  h = await startWorkerHarness(inject('redisUrl'), mock.url, {
    providers: [{ id: 'azure', type: 'azure-openai', baseUrl: mock.origin, apiKey: 'azure-key', apiVersion: '2024-10-21' }],
    models: [
      { name: 'gpt-4o-mini', route: [{ provider: 'azure', model: 'gpt-4o-prod' }] },
      { name: 'text-embedding-3-small', route: [{ provider: 'azure', model: 'embed-prod' }], endpoints: ['embeddings'] },
    ],
  });
}, 30_000);
afterAll(async () => {
  await h?.close();
  await mock?.close();
});

/** The JSON answer of a job: a chat completion (with Azure's filter verdicts) or an embeddings list. */
type AzureAnswer = OpenAI.ChatCompletion & { prompt_filter_results?: unknown[]; data?: unknown[] };
const doneBody = (messages: readonly unknown[]) => JSON.parse((messages.at(-1) as { result: { body: string } }).result.body) as AzureAnswer;

describe('answers', () => {
  it('a chat answer comes from the deployment, with the content-filter verdicts kept', async () => {
    const body = doneBody(await h.finalReplies(await h.enqueue(h.chatJob())));
    expect(body).toMatchObject({ object: 'chat.completion', model: 'gpt-4o-prod', choices: [{ message: { content: 'tok1 tok2 tok3' }, content_filter_results: expect.any(Object) }] });
    expect(body.prompt_filter_results).toHaveLength(1);
  });

  it("a stream relays OpenAI's chunks only: Azure's filter-only first chunk is dropped", async () => {
    const messages = await h.finalReplies(await h.enqueue(h.streamJob({})));
    const chunks = chunkData(messages).map((d) => JSON.parse(d) as { id: string; choices: unknown[] });
    expect(chunks.every((c) => c.id.startsWith('chatcmpl-') && c.choices.length === 1)).toBe(true);
    expect(chunks).toHaveLength(1 + 3 + 1);
    expect(messages.at(-1)).toMatchObject({ k: 'done', result: { kind: 'stream', chunks: 5 } });
  });

  it('tool calls stream as OpenAI tool_call deltas', async () => {
    const tools = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: { id: { type: 'integer' } } } } }];
    const job = h.streamJob({}, { body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true, tools } });
    const chunks = chunkData(await h.finalReplies(await h.enqueue(job))).map((d) => JSON.parse(d) as OpenAI.ChatCompletionChunk);
    const calls = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    expect(calls[0]).toMatchObject({ index: 0, type: 'function', function: { name: 'lookup', arguments: '' } });
    expect(calls.map((c) => c.function?.arguments).join('')).toBe('{"id":1}');
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('tool_calls');
  });

  it('embeddings go to the embeddings deployment', async () => {
    const job = h.chatJob({ endpoint: 'embeddings', model: 'text-embedding-3-small', body: { model: 'text-embedding-3-small', input: ['a', 'b'] } });
    const body = doneBody(await h.finalReplies(await h.enqueue(job)));
    expect(body).toMatchObject({ object: 'list', model: 'embed-prod' });
    expect(body.data).toHaveLength(2);
  });
});

describe('errors', () => {
  it('a prompt refused by the content filter is relayed as a 400 content_filter, called once', async () => {
    mock.reset();
    const messages = await h.finalReplies(await h.enqueue(h.chatJob({ headers: { 'x-mock-fault': 'content-filter', 'x-mock-tag': 'filtered' } })));
    expect(messages).toEqual([
      expect.objectContaining({ k: 'error', status: 400, error: { message: expect.stringContaining('content management policy'), type: 'invalid_request_error', param: 'prompt', code: 'content_filter' } }),
    ]);
    expect(mock.stats().byTag['filtered']?.received).toBe(1);
  });

  it('a 429 with Retry-After is retried and answered', async () => {
    mock.reset();
    const messages = await h.finalReplies(await h.enqueue(h.chatJob({ headers: { 'x-mock-status': '429', 'x-mock-retry-after': '0', 'x-mock-fail-times': '1', 'x-mock-tag': 'limited' } })));
    expect(messages.at(-1)).toMatchObject({ k: 'done' });
    expect(mock.stats().byTag['limited']?.received).toBe(2);
  });
});
