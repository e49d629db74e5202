// A worker killed with SIGKILL while it holds a job: BullMQ's stalled-job recovery hands the job to the other
// worker. A JSON request is still answered; a stream that already sent chunks ends with an SSE error, never replays.
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import type { Job } from 'bullmq';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';
import { waitFor } from '../support/wait.ts';

let cluster: Cluster;
let client: OpenAI;

beforeEach(async () => {
  // Short locks so that a dead worker's job is taken over in seconds (the default is 10 s lock, 5 s check).
  cluster = await startCluster({ redisUrl: inject('redisUrl'), workers: 2, config: { worker: { concurrency: 4, lockDurationMs: 1_500, stalledIntervalMs: 500 } } });
  client = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0 });
}, 60_000);

afterEach(async () => {
  await cluster?.close();
});

/** Finds the active job with this tag and SIGKILLs the worker process that holds it. */
async function killHolder(tag: string): Promise<Job> {
  const job = await waitFor(async () => (await cluster.queue.getActive()).find((j) => j.data.headers?.['x-mock-tag'] === tag && j.processedBy), {
    what: `the active job tagged ${tag}`,
  });
  const pid = Number(String(job.processedBy).split('-').at(-2));
  const holder = cluster.workers.find((w) => w.child.pid === pid);
  expect(holder, `a worker with pid ${pid} holds the job`).toBeDefined();
  await holder!.kill('SIGKILL');
  return job;
}

describe('a worker dies holding a job', () => {
  it('answers a JSON request through the surviving worker', async () => {
    const answer = client.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
      { headers: { 'x-mock-tag': 'crash-json', 'x-mock-latency-ms': '1000', 'x-mock-chunks': '3' } },
    );
    await waitFor(() => cluster.mock.stats().byTag['crash-json']?.received === 1, { what: 'the first upstream call' });
    await killHolder('crash-json');

    const completion = await answer;
    expect(completion.choices[0]?.message.content).toBe('tok1 tok2 tok3');
    // Called twice: once by the dead worker (cut off), once by the survivor.
    expect(cluster.mock.stats().byTag['crash-json']).toMatchObject({ received: 2, completed: 1 });
  });

  it('ends a stream that already reached the client with an SSE error, without duplicating tokens', async () => {
    const stream = await client.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], stream: true },
      { headers: { 'x-mock-tag': 'crash-stream', 'x-mock-chunks': '100', 'x-mock-chunk-delay-ms': '50' } },
    );
    const pieces: string[] = [];
    let failure: unknown;
    try {
      for await (const chunk of stream) {
        const piece = chunk.choices[0]?.delta.content;
        if (piece) pieces.push(piece.trim());
        if (pieces.length === 3) await killHolder('crash-stream');
      }
    } catch (err) {
      failure = err;
    }
    expect(failure).toBeInstanceOf(OpenAI.APIError);
    expect((failure as InstanceType<typeof OpenAI.APIError>).code).toBe('stream_interrupted');
    // What the client got is an exact prefix of the answer: no token twice, none out of order.
    expect(pieces.length).toBeGreaterThanOrEqual(3);
    expect(pieces).toEqual(Array.from({ length: pieces.length }, (_, i) => `tok${i + 1}`));
    // The survivor's re-run is cancelled once the ingress refuses it: nothing keeps generating for nobody.
    await waitFor(() => {
      const stats = cluster.mock.stats().byTag['crash-stream'];
      return stats !== undefined && stats.completed === 0 && stats.aborted === stats.received;
    }, { what: 'every upstream call of the broken stream to be aborted' });
  });
});
