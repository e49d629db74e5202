// One very large answer through a real split-mode cluster (1 ingress, 2 workers, the shared Redis with its default
// 32 MB pub/sub output buffer limit), driven by the official openai client: a 45 MB embeddings answer (2,048 inputs x
// 4,096 dimensions, base64) must reach its client without breaking the other answers on the same ingress's channel.
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { embeddingVector } from '../../src/mock-upstream/bodies.ts';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';
import { waitFor } from '../support/wait.ts';

let cluster: Cluster;
let client: OpenAI;

beforeAll(async () => {
  cluster = await startCluster({ redisUrl: inject('redisUrl'), workers: 2, config: { worker: { concurrency: 32 } } });
  client = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0, timeout: 60_000 });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
});

const STREAMS = 20;
const WORDS = 150;

it('a 45 MB embeddings answer reaches its client while 20 concurrent streams on the same ingress complete untouched', { timeout: 60_000 }, async () => {
  // Streams long enough (about 9 s) to be in flight when the large answer comes back.
  const streams = Array.from({ length: STREAMS }, async (_, i) => {
    const stream = await client.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], stream: true },
      { headers: { 'x-mock-tag': `stream-${i}`, 'x-mock-chunks': String(WORDS), 'x-mock-chunk-delay-ms': '60' } },
    );
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    return text;
  });
  const started = () => Array.from({ length: STREAMS }, (_, i) => cluster.mock.stats().byTag[`stream-${i}`]?.received ?? 0);
  await waitFor(() => started().every((n) => n === 1), { what: 'every stream to reach the upstream' });

  const inputs = Array.from({ length: 2048 }, (_, i) => `input number ${i}`);
  const embeddings = await client.embeddings.create({ model: 'text-embedding-3-small', input: inputs, dimensions: 4096 });
  // The scenario holds only if the streams were still running when the large answer went through the reply path.
  const streamsDoneBeforeAnswer = Array.from({ length: STREAMS }, (_, i) => cluster.mock.stats().byTag[`stream-${i}`]?.completed ?? 0);
  expect(streamsDoneBeforeAnswer.every((n) => n === 0), 'streams still in flight when the large answer arrived').toBe(true);

  expect(embeddings.data).toHaveLength(2048);
  for (const i of [0, 1024, 2047]) {
    expect(embeddings.data[i]?.index).toBe(i);
    expect(embeddings.data[i]?.embedding).toEqual(Array.from(embeddingVector(inputs[i]!, 4096)));
  }

  const expected = Array.from({ length: WORDS }, (_, i) => `tok${i + 1}`).join(' ');
  const texts = await Promise.all(streams);
  expect(texts.filter((t) => t !== expected)).toEqual([]);
  // The stored body is freed once delivered.
  const leftovers = await cluster.redis.keys(`${cluster.prefix}:stored-reply:*`);
  expect(leftovers).toEqual([]);
});
