// A stream far longer than the provider's timeoutMs, end to end: official openai client → ingress → Redis → worker
// → mock upstream, in real processes; and one whose upstream goes silent. Short by default (about 6 s);
// SPILLWAY_LONG_TESTS=1 runs the 3-minute form.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';
import { waitFor } from '../support/wait.ts';

const LONG = process.env.SPILLWAY_LONG_TESTS === '1';
// Long form: 180 words a second apart (3 minutes) against timeoutMs 10 s. Short form: 40 words 100 ms apart
// (4 s) against timeoutMs 1 s. Either way the stream lasts four times timeoutMs or more.
const SHAPE = LONG ? { timeoutMs: 10_000, words: 180, delayMs: 1_000 } : { timeoutMs: 1_000, words: 40, delayMs: 100 };
const STREAM_MS = (SHAPE.words + 2) * SHAPE.delayMs;

let upstream: MockUpstream;
let cluster: Cluster;

beforeAll(async () => {
  // The provider needs its own timeout, so it points at a mock of this file's own (the cluster's stays idle).
  upstream = await startMockUpstream();
  cluster = await startCluster({
    redisUrl: inject('redisUrl'),
    workers: 1,
    config: {
      server: { requestTimeoutMs: STREAM_MS + 60_000, maxDeadlineMs: STREAM_MS + 120_000 },
      providers: [{ id: 'slow', type: 'openai', baseUrl: upstream.url, timeoutMs: SHAPE.timeoutMs, streamIdleTimeoutMs: SHAPE.delayMs * 5 }],
      models: [{ name: 'gpt-4o-mini', route: [{ provider: 'slow', model: 'slow-chat' }] }],
    },
  });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
  await upstream?.close();
});

describe('a stream longer than the provider timeout', () => {
  it(
    `completes end to end: ${SHAPE.words} chunks ${SHAPE.delayMs} ms apart against timeoutMs ${SHAPE.timeoutMs}`,
    async () => {
      const client = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0, timeout: STREAM_MS + 60_000 });
      const stream = await client.chat.completions.create(
        { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'take your time' }], stream: true },
        { headers: { 'x-mock-chunks': String(SHAPE.words), 'x-mock-chunk-delay-ms': String(SHAPE.delayMs), 'x-mock-tag': 'long' } },
      );
      let text = '';
      let finish: string | null | undefined;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta.content ?? '';
        finish ??= chunk.choices[0]?.finish_reason;
      }
      expect(text).toBe(Array.from({ length: SHAPE.words }, (_, i) => `tok${i + 1}`).join(' '));
      expect(finish).toBe('stop');
      expect(upstream.stats().byTag.long).toEqual({ received: 1, completed: 1, aborted: 0 });
    },
    STREAM_MS + 90_000,
  );
});

describe('a stream whose upstream goes silent', () => {
  it('ends with an SSE error event after the chunks already relayed, and the upstream call is dropped', async () => {
    const client = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0 });
    // Half the content, then silence (until the worker leaves) longer than streamIdleTimeoutMs.
    const stream = await client.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'then stop' }], stream: true },
      { headers: { 'x-mock-chunks': '8', 'x-mock-fault': 'stall-mid-stream', 'x-mock-tag': 'silent' } },
    );
    let text = '';
    let failure: unknown;
    try {
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    } catch (err) {
      failure = err;
    }
    expect(text).toBe('tok1 tok2 tok3 tok4');
    expect(failure).toBeInstanceOf(OpenAI.APIError);
    expect((failure as InstanceType<typeof OpenAI.APIError>).code).toBe('stream_interrupted');
    await waitFor(() => upstream.stats().byTag.silent?.aborted === 1, { what: 'the silent upstream call to be dropped' });
  });
});
