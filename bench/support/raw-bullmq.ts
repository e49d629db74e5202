// The floor under the broker: a bare BullMQ round trip (Queue.add → Worker → PUBLISH → subscriber resolves the waiter),
// no HTTP, no validation, no upstream. Run as child processes; `producer` exits by itself, `worker` serves until SIGTERM.
//   node bench/support/raw-bullmq.ts worker   --redis URL --prefix P --concurrency 512
//   node bench/support/raw-bullmq.ts producer --redis URL --prefix P --concurrency 200 --duration-ms 8000 --warmup-ms 1500 --workers 2 --out FILE
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { summarize } from './stats.ts';
import { redisCost, redisSnapshot } from './redis-cost.ts';

const QUEUE = 'completions';
/** About the size of the mock's chat completion: the reply carries what Spillway's `done` message carries. */
const BODY = JSON.stringify({
  id: 'chatcmpl-raw',
  object: 'chat.completion',
  created: 0,
  model: 'mock-chat',
  choices: [{ index: 0, message: { role: 'assistant', content: 'tok1 tok2 tok3 tok4 tok5 tok6 tok7 tok8', refusal: null, annotations: [] }, logprobs: null, finish_reason: 'stop' }],
  usage: { prompt_tokens: 12, completion_tokens: 8, total_tokens: 20 },
  service_tier: 'default',
  system_fingerprint: 'fp_spillway_mock',
});
/** If a reply never comes, the waiter gives up rather than hang the loop. */
const REPLY_TIMEOUT_MS = 10_000;

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    redis: { type: 'string' },
    prefix: { type: 'string', default: '{bench-raw}' },
    concurrency: { type: 'string', default: '200' },
    'duration-ms': { type: 'string', default: '8000' },
    'warmup-ms': { type: 'string', default: '1500' },
    workers: { type: 'string', default: '1' },
    out: { type: 'string' },
  },
});
const url = values.redis ?? 'redis://127.0.0.1:6379';
const prefix = values.prefix;
const concurrency = Number(values.concurrency);

if (positionals[0] === 'worker') await serve();
else if (positionals[0] === 'producer') await produce();
else throw new Error('usage: raw-bullmq.ts worker|producer --redis URL ...');

async function serve(): Promise<void> {
  const publisher = new Redis(url, { maxRetriesPerRequest: null, enableAutoPipelining: true });
  const connection = new Redis(url, { maxRetriesPerRequest: null });
  const worker = new Worker(
    QUEUE,
    async (job) => {
      const reply = { k: 'done', j: job.id, a: job.attemptsStarted, result: { kind: 'body', status: 200, body: BODY } };
      await publisher.publish((job.data as { replyTo: string }).replyTo, JSON.stringify(reply));
      return reply.result;
    },
    { connection, prefix, concurrency },
  );
  worker.on('error', (err) => process.stderr.write(`worker error: ${err.message}\n`));
  const stop = () => {
    void worker.close().finally(() => {
      publisher.disconnect();
      connection.disconnect();
      process.exit(0);
    });
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

async function produce(): Promise<void> {
  const channel = `${prefix}:reply:raw-${process.pid}`;
  const connection = new Redis(url, { maxRetriesPerRequest: null });
  const subscriber = new Redis(url, { maxRetriesPerRequest: null });
  const queue = new Queue(QUEUE, { connection, prefix });
  const waiters = new Map<string, () => void>();
  subscriber.on('message', (_channel: string, raw: string) => {
    const message = JSON.parse(raw) as { j: string };
    waiters.get(message.j)?.();
  });
  await subscriber.subscribe(channel);
  const workersWanted = Number(values.workers);
  const readyBy = Date.now() + 20_000;
  while ((await queue.getWorkersCount()) < workersWanted) {
    if (Date.now() > readyBy) throw new Error(`only ${await queue.getWorkersCount()} of ${workersWanted} raw workers connected`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }

  const roundTrip = async (): Promise<boolean> => {
    const id = randomUUID();
    const now = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const replied = new Promise<boolean>((resolve) => {
      waiters.set(id, () => resolve(true));
      timer = setTimeout(() => resolve(false), REPLY_TIMEOUT_MS);
    });
    const data = {
      v: 1,
      endpoint: 'chat.completions',
      requestId: id,
      tenant: 'bench',
      model: 'gpt-4o-mini',
      body: { model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'You are a terse assistant.' }, { role: 'user', content: 'Say hello to the benchmark in a few words.' }] },
      stream: false,
      replyTo: channel,
      headers: {},
      enqueuedAt: now,
      deadline: now + 180_000,
    };
    // The job options Spillway's ingress uses: one attempt, results kept a while for reconciliation.
    await queue.add('completion', data, { jobId: id, attempts: 1, removeOnComplete: { age: 300 }, removeOnFail: { age: 3600 } });
    const ok = await replied;
    clearTimeout(timer);
    waiters.delete(id);
    return ok;
  };

  const phase = async (ms: number) => {
    const latencies: number[] = [];
    let lost = 0;
    const started = performance.now();
    const stopAt = started + ms;
    const loop = async () => {
      while (performance.now() < stopAt) {
        const t0 = performance.now();
        if (await roundTrip()) latencies.push(performance.now() - t0);
        else lost++;
      }
    };
    await Promise.all(Array.from({ length: concurrency }, loop));
    const durationS = (performance.now() - started) / 1000;
    return { completed: latencies.length, lost, durationS, rps: latencies.length / durationS, latency: summarize(latencies) };
  };

  await phase(Number(values['warmup-ms']));
  // Redis's counters around the measured phase only: what these round trips cost, beside Spillway's in the same run.
  const before = await redisSnapshot(connection);
  const measured = await phase(Number(values['duration-ms']));
  const result = { ...measured, redis: redisCost(before, await redisSnapshot(connection)) };
  if (values.out !== undefined) writeFileSync(values.out, JSON.stringify(result));
  else process.stdout.write(`${JSON.stringify(result)}\n`);
  await queue.close();
  subscriber.disconnect();
  connection.disconnect();
}
