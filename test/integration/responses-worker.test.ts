// `responses` jobs in the worker role (real Redis, real mock upstream), enqueued directly: the same processor and call
// loop as chat jobs, the job's context (its id, the earlier turns) honoured, and the usage of a Response (JSON or the
// stream's terminal event) reported in the job's result, where the tenant's token budget is settled from.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { totalTokens } from '../../src/admission/worker-budgets.ts';
import { chunkData, startWorkerHarness, type DoneReply, type WorkerHarness } from './worker-harness.ts';

let mock: MockUpstream;
let harness: WorkerHarness;

beforeAll(async () => {
  mock = await startMockUpstream();
  harness = await startWorkerHarness(inject('redisUrl'), mock.url, {
    providers: [
      { id: 'native', type: 'openai', baseUrl: mock.url, timeoutMs: 30_000 },
      { id: 'bridge', type: 'openai', baseUrl: mock.url, timeoutMs: 30_000, responses: 'bridged' },
    ],
    models: [
      { name: 'native-model', route: [{ provider: 'native', model: 'mock-native' }] },
      { name: 'bridged-model', route: [{ provider: 'bridge', model: 'mock-chat' }] },
    ],
  });
});

afterAll(async () => {
  await harness?.close();
  await mock?.close();
});

const responsesJob = (model: string, stream: boolean, extra: Record<string, unknown> = {}) =>
  harness.chatJob({
    endpoint: 'responses',
    model,
    body: { model, input: 'hello', stream, ...extra },
    stream,
    headers: { 'x-mock-chunks': '3' },
    responses: { id: 'resp_00112233445566778899aabbccddeeff', createdAt: 1_700_000_000 },
  });

describe.each(['native-model', 'bridged-model'])('%s', (model) => {
  it('a JSON answer is a Response whose total_tokens the budget settles from', async () => {
    const jobId = await harness.enqueue(responsesJob(model, false));
    const done = (await harness.finalReplies(jobId)).find((m): m is DoneReply => m.k === 'done')!;
    expect(done.result.kind).toBe('body');
    const body = (done.result as { body: string }).body;
    expect(JSON.parse(body)).toMatchObject({ object: 'response', status: 'completed' });
    expect(totalTokens(undefined, body)).toBeGreaterThan(3);
  });

  it("a stream's result carries the terminal event's usage, and its chunks are Responses events", async () => {
    const jobId = await harness.enqueue(responsesJob(model, true));
    const replies = await harness.finalReplies(jobId);
    const done = replies.find((m): m is DoneReply => m.k === 'done')!;
    expect(done.result).toMatchObject({ kind: 'stream', usage: { output_tokens: 3 } });
    expect(totalTokens((done.result as { usage?: unknown }).usage)).toBeGreaterThan(3);
    const types = chunkData(replies).map((data) => (JSON.parse(data) as { type: string }).type);
    expect(types[0]).toBe('response.created');
    expect(types.at(-1)).toBe('response.completed');
  });
});

it('a bridged job answers under the id the ingress gave it, and sends the earlier turns upstream', async () => {
  const job = responsesJob('bridged-model', false);
  const jobId = await harness.enqueue({
    ...job,
    responses: { ...job.responses!, previous: { id: 'resp_prev', native: false, items: [{ role: 'user', content: 'one two three four five six seven eight' }] } },
  });
  const done = (await harness.finalReplies(jobId)).find((m): m is DoneReply => m.k === 'done')!;
  const response = JSON.parse((done.result as { body: string }).body) as { id: string; usage: { input_tokens: number } };
  expect(response.id).toBe('resp_00112233445566778899aabbccddeeff');
  // The mock counts prompt tokens from every message's text (4 characters a token): the earlier turn is in the prompt.
  expect(response.usage.input_tokens).toBeGreaterThan(Math.ceil('hello'.length / 4) + 5);
});
