// What each job and each chunk costs Redis, against real Redis and BullMQ: completed jobs leave at once (their answer
// travelled over pub/sub), an answer nobody heard is parked for reconciliation instead, the event stream nobody reads
// is trimmed hard, and a fast stream's chunks share PUBLISHes without delaying its first one.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { pino } from 'pino';
import { Redis } from 'ioredis';
import { Worker } from 'bullmq';
import { createFailFastConnection, createPatientConnection, waitForRedis } from '../../src/roles/redis.ts';
import { CompletionQueue } from '../../src/queue/completion-queue.ts';
import { ReplyBus, type ReplySink } from '../../src/queue/reply-bus.ts';
import { ReplyPublisher } from '../../src/queue/reply-publisher.ts';
import { createRedisKeys, QUEUE_NAMES, type RedisKeys } from '../../src/queue/keys.ts';
import { decodeReply, type ReplyMessage, type WireReplyMessage } from '../../src/queue/replies.ts';
import { JOB_SCHEMA_VERSION, type CompletionJob, type CompletionResult, type JobResult } from '../../src/queue/jobs.ts';
import { startRedisServer, uniquePrefix, type RedisServer } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';

const BODY: CompletionResult = { kind: 'body', status: 200, body: '{"object":"chat.completion"}' };

function chatJob(replyTo: string | null): CompletionJob {
  const now = Date.now();
  return {
    v: JOB_SCHEMA_VERSION,
    endpoint: 'chat.completions',
    requestId: randomUUID(),
    tenant: 'acme',
    model: 'gpt-4o-mini',
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
    stream: false,
    replyTo,
    headers: {},
    enqueuedAt: now,
    deadline: now + 30_000,
  };
}

let redis: Redis;
const workers: Worker[] = [];
const queues: CompletionQueue[] = [];

beforeAll(() => {
  redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
});

afterAll(async () => {
  await Promise.all(workers.map((w) => w.close()));
  await Promise.all(queues.map((q) => q.close()));
  redis?.disconnect();
});

/** A queue (`keepCompletedSeconds` as given) and a BullMQ worker running `process` on it. */
function queueWithWorker(
  keepCompletedSeconds: number,
  process: (jobId: string, data: CompletionJob, keys: RedisKeys) => Promise<JobResult> = async () => BODY,
  connection: Redis = redis,
) {
  const keys = createRedisKeys(uniquePrefix('cost'));
  const queue = new CompletionQueue({ connection, keys, keepCompletedSeconds, keepFailedSeconds: 60 });
  const worker = new Worker<CompletionJob, JobResult>(QUEUE_NAMES.completions, (job) => process(job.id!, job.data, keys), {
    connection,
    prefix: keys.bullPrefix,
    concurrency: 16,
  });
  worker.on('error', () => undefined);
  const completed: string[] = [];
  worker.on('completed', (job) => completed.push(job.id!));
  workers.push(worker);
  queues.push(queue);
  return { keys, queue, worker, completed };
}

describe('finished jobs', () => {
  it('a completed job is removed at once (keepCompletedSeconds 0), without the completed set ever holding it', async () => {
    // Its own Redis, so that INFO commandstats counts this job's commands only.
    const server = await startRedisServer();
    const own = new Redis(server.url, { maxRetriesPerRequest: null });
    const { keys, queue, worker, completed } = queueWithWorker(0, undefined, own);
    try {
      const jobId = randomUUID();
      await queue.enqueue(jobId, chatJob(null));
      await waitFor(() => completed.includes(jobId), { what: 'the job to complete' });
      expect(await queue.getJob(jobId)).toBeUndefined();
      expect(await own.keys(`${keys.bullPrefix}:${QUEUE_NAMES.completions}:${jobId}*`)).toEqual([]);
      // Keeping a job, even for 0 s, costs a ZADD to the completed set, an HSET of the answer and this range scan.
      expect(await own.info('commandstats')).not.toMatch(/^cmdstat_zrevrangebyscore:/m);
    } finally {
      await worker.close();
      await queue.close();
      workers.splice(workers.indexOf(worker), 1);
      queues.splice(queues.indexOf(queue), 1);
      own.disconnect();
      await server.close();
    }
  });

  it('with keepCompletedSeconds, a completed job stays with its return value', async () => {
    const { queue, completed } = queueWithWorker(60);
    const jobId = randomUUID();
    await queue.enqueue(jobId, chatJob(null));
    await waitFor(() => completed.includes(jobId), { what: 'the job to complete' });
    expect((await queue.getJob(jobId))?.returnvalue).toEqual(BODY);
  });

  it("BullMQ's event stream, which nothing reads, is trimmed to its last 100-odd events instead of 10,000", async () => {
    const { keys, queue, completed } = queueWithWorker(0);
    const ids = Array.from({ length: 300 }, () => randomUUID());
    await Promise.all(ids.map((id) => queue.enqueue(id, chatJob(null))));
    await waitFor(() => ids.every((id) => completed.includes(id)), { what: '300 jobs to complete' });
    // 4 events per job: 1,200 written; `MAXLEN ~ 100` keeps the newest stream node or two (100 entries each).
    expect(await redis.xlen(`${keys.bullPrefix}:${QUEUE_NAMES.completions}:events`)).toBeLessThan(200);
  });
});

describe('an answer nobody heard', () => {
  /** A bus as roles/ingress.ts wires it, the jobs' worker answering through a real ReplyPublisher. */
  async function fixture() {
    const instanceId = `cost-${randomUUID()}`;
    const subscriber = createPatientConnection(inject('redisUrl'), 'test-cost-replies');
    const commands = createFailFastConnection(inject('redisUrl'), 'test-cost-commands', { commandTimeoutMs: 2_000 });
    await Promise.all([waitForRedis(subscriber, 10_000), waitForRedis(commands, 10_000)]);
    // The worker's side: the processor answers through a ReplyPublisher, as completion-processor.ts does.
    const { keys, queue, completed } = queueWithWorker(0, async (jobId, data, jobKeys) => {
      const replies = new ReplyPublisher(redis, jobKeys, { storedReplyTtlSeconds: 30 }).forJob(jobId, 1, data.replyTo);
      return (await replies.done(BODY as Extract<CompletionResult, { kind: 'body' }>)).returnValue;
    });
    const bus = new ReplyBus({
      subscriber,
      commands,
      channel: keys.replyChannel(instanceId),
      parkedReply: (jobId) => keys.parkedReply(instanceId, jobId),
      queue,
      logger: pino({ level: 'silent' }),
      enqueueWindowMs: 100,
    });
    await bus.start();
    const close = async () => {
      await bus.close();
      subscriber.disconnect();
      commands.disconnect();
    };
    return { instanceId, keys, queue, completed, bus, subscriber, commands, close };
  }

  function sink() {
    const messages: ReplyMessage[] = [];
    const lost: string[] = [];
    const s: ReplySink = { onMessage: (m) => messages.push(m), onFinishedUnseen: () => undefined, onLost: (r) => lost.push(r) };
    return { s, messages, lost };
  }

  it('is parked by the worker and delivered by reconciliation once the job itself is gone; the key is then freed', async () => {
    const f = await fixture();
    try {
      const jobId = randomUUID();
      const waiting = sink();
      f.bus.register(jobId, waiting.s);
      // The ingress's reply subscription is gone (as during a reconnect): the worker's PUBLISH reaches nobody.
      await f.subscriber.unsubscribe(f.keys.replyChannel(f.instanceId));
      await f.queue.enqueue(jobId, chatJob(f.instanceId));
      f.bus.markEnqueued(jobId);
      await waitFor(() => f.completed.includes(jobId), { what: 'the job to complete' });
      expect(await f.queue.getJob(jobId)).toBeUndefined();
      const parkedKey = f.keys.parkedReply(f.instanceId, jobId);
      expect(decodeReply((await redis.get(parkedKey))!)).toEqual({ k: 'done', j: jobId, a: 1, result: BODY });
      expect(await redis.ttl(parkedKey)).toBeGreaterThan(0);
      expect(waiting.messages).toEqual([]);

      await f.bus.reconcile();
      expect(waiting.messages).toEqual([{ k: 'done', j: jobId, a: 1, result: BODY }]);
      expect(waiting.lost).toEqual([]);
      await waitFor(async () => (await redis.exists(parkedKey)) === 0, { what: 'the parked reply to be freed' });
    } finally {
      await f.close();
    }
  });

  it('a heard answer parks nothing, and a job gone with nothing parked is lost (job_missing)', async () => {
    const f = await fixture();
    try {
      const heardId = randomUUID();
      const heard = sink();
      f.bus.register(heardId, heard.s);
      await f.queue.enqueue(heardId, chatJob(f.instanceId));
      await waitFor(() => heard.messages.length === 1, { what: 'the answer' });
      expect(await redis.exists(f.keys.parkedReply(f.instanceId, heardId))).toBe(0);

      const goneId = randomUUID();
      const gone = sink();
      f.bus.register(goneId, gone.s);
      f.bus.markEnqueued(goneId);
      await f.bus.reconcile();
      expect(gone.lost).toEqual(['job_missing']);
    } finally {
      await f.close();
    }
  });
});

describe('chunks', () => {
  let server: RedisServer;
  let publisherRedis: Redis;
  let listener: Redis;
  const received: WireReplyMessage[] = [];
  const keys = createRedisKeys(uniquePrefix('chunks'));
  const instanceId = 'chunk-test';

  beforeAll(async () => {
    // Its own Redis: the test stops it to hold a PUBLISH in flight.
    server = await startRedisServer();
    publisherRedis = createPatientConnection(server.url, 'test-chunk-publisher', { autoPipelining: true });
    listener = new Redis(server.url);
    listener.on('message', (_channel: string, raw: string) => received.push(decodeReply(raw)!));
    await Promise.all([waitForRedis(publisherRedis, 10_000), listener.subscribe(keys.replyChannel(instanceId))]);
  });

  afterAll(async () => {
    publisherRedis?.disconnect();
    listener?.disconnect();
    await server?.close();
  });

  const chunksOf = (jobId: string) => received.filter((m): m is Extract<WireReplyMessage, { k: 'chunk' }> => m.k === 'chunk' && m.j === jobId);

  it('the first chunk goes out alone at once; chunks arriving while its PUBLISH is in flight leave together after it', async () => {
    const replies = new ReplyPublisher(publisherRedis, keys).forJob('coalesce', 1, instanceId);
    replies.chunk('first');
    await waitFor(() => chunksOf('coalesce').length === 1, { what: 'the first chunk' });
    server.pause(); // Redis answers nothing: the next PUBLISH stays in flight
    try {
      replies.chunk('second');
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve)); // its flush has run and its PUBLISH is out
      for (const data of ['third', 'fourth', 'fifth']) {
        replies.chunk(data);
        await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      server.resume();
    }
    await replies.done({ kind: 'stream', chunks: 5 });
    await waitFor(() => received.some((m) => m.k === 'done' && m.j === 'coalesce'), { what: 'the end of the stream' });
    expect(chunksOf('coalesce').map((c) => [c.seq, c.data])).toEqual([
      [0, ['first']],
      [1, ['second']],
      [2, ['third', 'fourth', 'fifth']],
    ]);
  });

  it('a chunk that arrives after the previous PUBLISH was answered is sent at once, alone (a slow stream is not delayed)', async () => {
    const replies = new ReplyPublisher(publisherRedis, keys).forJob('slow', 1, instanceId);
    for (let i = 0; i < 3; i++) {
      replies.chunk(`t${i}`);
      await waitFor(() => chunksOf('slow').length === i + 1, { what: `chunk ${i}` });
    }
    expect(chunksOf('slow').map((c) => c.data)).toEqual([['t0'], ['t1'], ['t2']]);
  });
});
