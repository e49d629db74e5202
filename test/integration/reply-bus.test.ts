// The reply bus against real Redis, on the connections the ingress uses in production (a fail-fast command connection
// with a command timeout, a patient subscriber): delivery, stored bodies, replies larger than Redis's pub/sub output
// buffer, and reconciliation after a reconnect: only a job Redis confirms missing is lost, a failed read is retried.
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { pino, type Logger } from 'pino';
import { Redis } from 'ioredis';
import { Worker } from 'bullmq';
import { createFailFastConnection, createPatientConnection, waitForRedis } from '../../src/roles/redis.ts';
import { CompletionQueue } from '../../src/queue/completion-queue.ts';
import { ReplyBus, type ReplySink } from '../../src/queue/reply-bus.ts';
import { ReplyPublisher } from '../../src/queue/reply-publisher.ts';
import { createRedisKeys, QUEUE_NAMES, type RedisKeys } from '../../src/queue/keys.ts';
import { encodeReply, type ReplyMessage } from '../../src/queue/replies.ts';
import { JOB_SCHEMA_VERSION, type CompletionJob, type CompletionResult, type JobResult } from '../../src/queue/jobs.ts';
import { startRedisServer, uniquePrefix, type RedisServer } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';

interface Unseen {
  result: CompletionResult | undefined;
  attempt: number;
  reason: string | undefined;
}

type RecordingSink = ReplySink & { messages: ReplyMessage[]; unseen: Unseen[]; lost: string[] };

function recordingSink(): RecordingSink {
  const messages: ReplyMessage[] = [];
  const unseen: Unseen[] = [];
  const lost: string[] = [];
  return {
    messages,
    unseen,
    lost,
    onMessage: (message) => messages.push(message),
    onFinishedUnseen: (result, attempt, reason) => unseen.push({ result, attempt, reason }),
    onLost: (reason) => lost.push(reason),
  };
}

/** Registers a recording sink that leaves the bus once its request is over, as PendingRequest does. */
function track(bus: ReplyBus, jobId: string): RecordingSink {
  const sink = recordingSink();
  const over = () => bus.unregister(jobId);
  bus.register(jobId, {
    ...sink,
    onMessage: (message) => {
      sink.onMessage(message);
      if (message.k === 'done' || message.k === 'error') over();
    },
    onFinishedUnseen: (result, attempt, reason) => {
      sink.onFinishedUnseen(result, attempt, reason);
      over();
    },
    onLost: (reason) => {
      sink.onLost(reason);
      over();
    },
  });
  return sink;
}

function chatJob(instanceId: string): CompletionJob {
  const now = Date.now();
  return {
    v: JOB_SCHEMA_VERSION,
    endpoint: 'chat.completions',
    requestId: randomUUID(),
    tenant: 'acme',
    model: 'gpt-4o-mini',
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
    stream: false,
    replyTo: instanceId,
    headers: {},
    enqueuedAt: now,
    deadline: now + 30_000,
  };
}

/** A logger whose lines the test can read. */
function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) }), lines };
}

interface Fixture {
  keys: RedisKeys;
  instanceId: string;
  subscriber: Redis;
  commands: Redis;
  queue: CompletionQueue;
  bus: ReplyBus;
  lines: string[];
  /** Publishes raw text on the bus's channel from a connection of the test's own. */
  publish(raw: string): Promise<number>;
  /** A real BullMQ worker on the bus's queue that completes (or fails) jobs without publishing any reply. */
  silentWorker(process: (jobId: string) => JobResult): Worker;
  finished(jobId: string): Promise<void>;
  close(): Promise<void>;
}

/** A bus wired as roles/ingress.ts wires it; `commandsUrl` may name another Redis user. */
async function busFixture(redisUrl: string, options: { commandsUrl?: string; enqueueWindowMs?: number } = {}): Promise<Fixture> {
  const keys = createRedisKeys(uniquePrefix('bus'));
  const instanceId = `bus-${randomUUID()}`;
  const { logger, lines } = capturingLogger();
  const subscriber = createPatientConnection(redisUrl, 'test-bus-replies');
  const commands = createFailFastConnection(options.commandsUrl ?? redisUrl, 'test-bus-commands', { commandTimeoutMs: 2_000 });
  const admin = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const workerConnection = createPatientConnection(redisUrl, 'test-bus-worker');
  for (const r of [subscriber, commands, admin, workerConnection]) r.on('error', () => undefined);
  await Promise.all([waitForRedis(subscriber, 10_000), waitForRedis(commands, 10_000)]);
  const queue = new CompletionQueue({ connection: commands, keys, keepCompletedSeconds: 60, keepFailedSeconds: 60, onEnqueued: (id) => bus.markEnqueued(id) });
  const bus = new ReplyBus({ subscriber, commands, channel: keys.replyChannel(instanceId), queue: queue.queue, logger, enqueueWindowMs: options.enqueueWindowMs ?? 300 });
  await bus.start();
  const workers: Worker[] = [];
  return {
    keys,
    instanceId,
    subscriber,
    commands,
    queue,
    bus,
    lines,
    publish: (raw) => admin.publish(keys.replyChannel(instanceId), raw),
    silentWorker: (process) => {
      const worker = new Worker<CompletionJob, JobResult>(QUEUE_NAMES.completions, async (j) => process(j.id!), { connection: workerConnection, prefix: keys.bullPrefix });
      worker.on('error', () => undefined);
      workers.push(worker);
      return worker;
    },
    finished: async (jobId) => {
      const reader = new Redis(redisUrl);
      try {
        await waitFor(async () => (await reader.hget(queue.queue.toKey(jobId), 'finishedOn')) !== null, { what: `job ${jobId} to finish` });
      } finally {
        reader.disconnect();
      }
    },
    close: async () => {
      await Promise.all(workers.map((w) => w.close()));
      await bus.close();
      await queue.close();
      for (const r of [subscriber, commands, admin, workerConnection]) r.disconnect();
    },
  };
}

describe('delivery', () => {
  let f: Fixture;
  beforeAll(async () => {
    f = await busFixture(inject('redisUrl'));
  });
  afterAll(async () => {
    await f?.close();
  });

  it('delivers each reply to the sink of its job, dropping malformed and foreign messages', async () => {
    const sink = recordingSink();
    f.bus.register('job-a', sink);
    const done: ReplyMessage = { k: 'done', j: 'job-a', a: 1, result: { kind: 'body', status: 200, body: '{}' } };
    // One connection publishes in order: once the last message arrived, the earlier ones were handled.
    await f.publish('not json');
    await f.publish(encodeReply({ ...done, j: 'someone-else' }));
    await f.publish(encodeReply(done));
    await waitFor(() => sink.messages.length > 0, { what: 'the reply' });
    expect(sink.messages).toEqual([done]);
    f.bus.unregister('job-a');
  });

  it('after unregister, replies of that job are no longer delivered', async () => {
    const gone = recordingSink();
    const kept = recordingSink();
    f.bus.register('gone', gone);
    f.bus.register('kept', kept);
    f.bus.unregister('gone');
    expect(f.bus.size).toBe(1);
    const reply = (j: string): string => encodeReply({ k: 'done', j, a: 1, result: { kind: 'stream', chunks: 0 } });
    await f.publish(reply('gone'));
    await f.publish(reply('kept'));
    await waitFor(() => kept.messages.length === 1, { what: 'the kept reply' });
    expect(gone.messages).toEqual([]);
    f.bus.unregister('kept');
  });

  it('a done pointing to a stored body reaches its sink as an ordinary body, and the key is freed', async () => {
    const publisher = new ReplyPublisher(f.commands, f.keys, { inlineReplyBytes: 1_000, storedReplyTtlSeconds: 60 });
    const sink = recordingSink();
    const body = JSON.stringify({ object: 'list', data: 'x'.repeat(10_000) });
    f.bus.register('stored-job', sink);
    const outcome = await publisher.forJob('stored-job', 1, f.instanceId).done({ kind: 'body', status: 200, body });
    expect(outcome.returnValue).toMatchObject({ kind: 'stored', key: f.keys.storedReply('stored-job') });
    await waitFor(() => sink.messages.length > 0, { what: 'the stored reply' });
    expect(sink.messages).toEqual([{ k: 'done', j: 'stored-job', a: 1, result: { kind: 'body', status: 200, body } }]);
    await waitFor(async () => (await f.commands.exists(f.keys.storedReply('stored-job'))) === 0, { what: 'the stored body to be freed' });
    f.bus.unregister('stored-job');
  });

  it('a pointer whose stored body is gone loses its request (job_missing) instead of leaving it waiting', async () => {
    const sink = recordingSink();
    f.bus.register('expired-body', sink);
    await f.publish(encodeReply({ k: 'done', j: 'expired-body', a: 1, result: { kind: 'stored', status: 200, key: f.keys.storedReply('expired-body'), bytes: 5 } }));
    await waitFor(() => sink.lost.length > 0, { what: 'the request to be lost' });
    expect(sink).toMatchObject({ lost: ['job_missing'], messages: [], unseen: [] });
    f.bus.unregister('expired-body');
  });

  it('abandonAll ends every waiting request with the reason given', async () => {
    const sinks = [recordingSink(), recordingSink(), recordingSink()];
    // Like PendingRequest, each sink leaves the bus when it is ended.
    sinks.forEach((sink, i) => {
      const onLost: ReplySink['onLost'] = (reason) => {
        sink.onLost(reason);
        f.bus.unregister(`drained-${i}`);
      };
      f.bus.register(`drained-${i}`, { ...sink, onLost });
    });
    expect(f.bus.abandonAll('draining')).toBe(3);
    expect(sinks.map((s) => s.lost)).toEqual([['draining'], ['draining'], ['draining']]);
    expect(f.bus.size).toBe(0);
  });

  it('a closed bus leaves its channel', async () => {
    const own = await busFixture(inject('redisUrl'));
    expect(await own.publish('ping')).toBe(1);
    await own.bus.close();
    expect(await own.publish('ping')).toBe(0);
    await own.close();
  });
});

describe('reconciliation', () => {
  let f: Fixture;
  afterEach(async () => {
    await f?.close();
  });

  it('a job that completed while its done message was lost is finished from its return value after a reconnect', async () => {
    f = await busFixture(inject('redisUrl'));
    const result: CompletionResult = { kind: 'body', status: 200, body: '{"object":"chat.completion"}' };
    const jobId = randomUUID();
    const sink = track(f.bus, jobId);
    await f.queue.enqueue(jobId, chatJob(f.instanceId));
    f.silentWorker(() => result);
    await f.finished(jobId);
    expect(sink.unseen).toEqual([]);

    f.subscriber.disconnect(true); // drop the connection; ioredis reconnects and re-subscribes
    await waitFor(() => sink.unseen.length > 0, { what: 'reconciliation after the reconnect' });
    expect(sink.unseen).toEqual([{ result, attempt: 1, reason: undefined }]);
    expect(sink.messages).toEqual([]);
    // The bus is usable again after the reconnect.
    const next = track(f.bus, 'after-reconnect');
    await f.publish(encodeReply({ k: 'done', j: 'after-reconnect', a: 1, result }));
    await waitFor(() => next.messages.length === 1, { what: 'a reply after the reconnect' });
  });

  it('a job whose return value points to a stored body is finished with that body', async () => {
    f = await busFixture(inject('redisUrl'));
    const body = '{"object":"list","data":[]}';
    const jobId = randomUUID();
    const sink = track(f.bus, jobId);
    await f.commands.set(f.keys.storedReply(jobId), body, 'EX', 60);
    await f.queue.enqueue(jobId, chatJob(f.instanceId));
    f.silentWorker(() => ({ kind: 'stored', status: 200, key: f.keys.storedReply(jobId), bytes: body.length }));
    await f.finished(jobId);
    await f.bus.reconcile();
    expect(sink.unseen).toEqual([{ result: { kind: 'body', status: 200, body }, attempt: 1, reason: undefined }]);
  });

  it('a job that failed while replies were lost is reported with its failure reason', async () => {
    f = await busFixture(inject('redisUrl'));
    const jobId = randomUUID();
    const sink = track(f.bus, jobId);
    await f.queue.enqueue(jobId, chatJob(f.instanceId));
    f.silentWorker(() => {
      throw new Error('worker blew up');
    });
    await f.finished(jobId);
    f.subscriber.disconnect(true);
    await waitFor(() => sink.unseen.length > 0, { what: 'reconciliation after the reconnect' });
    expect(sink.unseen).toEqual([{ result: undefined, attempt: 1, reason: 'worker blew up' }]);
  });

  it('leaves a job that has not finished alone, and reports one Redis confirms missing as lost, not as failed', async () => {
    f = await busFixture(inject('redisUrl'));
    const waitingId = randomUUID();
    const waiting = track(f.bus, waitingId);
    const vanished = track(f.bus, 'enqueued-then-gone');
    const neverAdded = track(f.bus, 'never-enqueued');
    f.bus.markEnqueued('enqueued-then-gone');
    await f.queue.enqueue(waitingId, chatJob(f.instanceId), { delayMs: 60_000 });
    await f.bus.reconcile();
    expect(waiting).toMatchObject({ unseen: [], lost: [], messages: [] });
    expect(vanished).toMatchObject({ unseen: [], lost: ['job_missing'] });
    // Not confirmed enqueued: absent only once its enqueue can no longer be in flight (enqueueWindowMs).
    expect(neverAdded).toMatchObject({ unseen: [], lost: ['job_missing'] });
    await f.queue.queue.remove(waitingId);
  });

  it('waits for the command connection: a reconnect seen while it is down reports nothing until jobs can be read', async () => {
    f = await busFixture(inject('redisUrl'));
    const result: CompletionResult = { kind: 'body', status: 200, body: '{"object":"chat.completion"}' };
    const doneId = randomUUID();
    const waitingId = randomUUID();
    const done = track(f.bus, doneId);
    const waiting = track(f.bus, waitingId);
    await f.queue.enqueue(waitingId, chatJob(f.instanceId), { delayMs: 60_000 });
    await f.queue.enqueue(doneId, chatJob(f.instanceId));
    f.silentWorker((id) => (id === doneId ? result : { kind: 'stream', chunks: 0 }));
    await f.finished(doneId);

    // As after a Redis restart: the reply channel is back before the command connection.
    const commandsDown = once(f.commands, 'end');
    const subscriberBack = once(f.subscriber, 'ready');
    f.commands.disconnect();
    f.subscriber.disconnect(true);
    await commandsDown;
    await subscriberBack;
    expect([done.unseen, done.lost, waiting.unseen, waiting.lost]).toEqual([[], [], [], []]);

    await f.commands.connect();
    await f.bus.reconcile();
    expect(done).toMatchObject({ unseen: [{ result, attempt: 1, reason: undefined }], lost: [] });
    expect(waiting).toMatchObject({ unseen: [], lost: [] });
    await f.queue.queue.remove(waitingId);
  });
});

describe('against a Redis of its own', () => {
  let redis: RedisServer;
  let admin: Redis;
  let f: Fixture;
  beforeAll(async () => {
    redis = await startRedisServer();
    admin = new Redis(redis.url);
  });
  afterEach(async () => {
    await f?.close();
  });
  afterAll(async () => {
    admin?.disconnect();
    await redis?.close();
  });

  it('a job that cannot be read is retried with backoff, never reported lost, and finished once it can be read', async () => {
    const user = `bus-${randomUUID().slice(0, 8)}`;
    await admin.call('ACL', 'SETUSER', user, 'on', '>secret-pass', '~*', '&*', '+@all');
    f = await busFixture(redis.url, { commandsUrl: `redis://${user}:secret-pass@127.0.0.1:${redis.port}` });
    const result: CompletionResult = { kind: 'body', status: 200, body: '{"object":"chat.completion"}' };
    const doneId = randomUUID();
    const waitingId = randomUUID();
    const done = track(f.bus, doneId);
    const waiting = track(f.bus, waitingId);
    await f.queue.enqueue(waitingId, chatJob(f.instanceId), { delayMs: 60_000 });
    await f.queue.enqueue(doneId, chatJob(f.instanceId));
    f.silentWorker((id) => (id === doneId ? result : { kind: 'stream', chunks: 0 }));
    await f.finished(doneId);

    // Job reads (HGETALL) fail for a while: an error is not an answer about the job.
    await admin.call('ACL', 'SETUSER', user, '-hgetall');
    const reconciled = f.bus.reconcile();
    await waitFor(() => f.lines.some((l) => l.includes('reconciliation could not read some jobs; retrying')), { what: 'a failed read to be retried' });
    expect([done.unseen, done.lost, waiting.unseen, waiting.lost]).toEqual([[], [], [], []]);
    await admin.call('ACL', 'SETUSER', user, '+hgetall');
    await reconciled;
    expect(done).toMatchObject({ unseen: [{ result, attempt: 1, reason: undefined }], lost: [] });
    expect(waiting).toMatchObject({ unseen: [], lost: [] });
    await admin.call('ACL', 'DELUSER', user);
  });

  it('replies far larger than the pub/sub output buffer limit reach their sinks, and concurrent streams are untouched', async () => {
    await admin.config('SET', 'client-output-buffer-limit', 'pubsub 4mb 4mb 0');
    f = await busFixture(redis.url);
    let connectionsLost = 0;
    f.subscriber.on('close', () => connectionsLost++);
    const publisherRedis = createPatientConnection(redis.url, 'test-publisher', { autoPipelining: true });
    try {
      await waitForRedis(publisherRedis, 10_000);
      // Defaults, as the worker uses them: 1 MiB inline.
      const publisher = new ReplyPublisher(publisherRedis, f.keys);
      const big = recordingSink();
      const streams = [recordingSink(), recordingSink(), recordingSink()];
      f.bus.register('big', big);
      streams.forEach((s, i) => f.bus.register(`stream-${i}`, s));
      const body = JSON.stringify({ object: 'list', data: [{ embedding: 'A'.repeat(6 * 1024 * 1024) }] });
      // The first stream writes 2.5 MB of events in one turn of the event loop (one batch, were it not capped).
      const event = `{"choices":[{"delta":{"content":"${'t'.repeat(10_000)}"}}]}`;
      const counts = [250, 20, 20];
      const sent = streams.map((_, i) => {
        const replies = publisher.forJob(`stream-${i}`, 1, f.instanceId);
        replies.head(200, {});
        for (let n = 0; n < counts[i]!; n++) replies.chunk(event);
        return replies.done({ kind: 'stream', chunks: counts[i]! });
      });
      const outcome = await publisher.forJob('big', 1, f.instanceId).done({ kind: 'body', status: 200, body });
      await Promise.all(sent);
      expect(outcome.returnValue).toMatchObject({ kind: 'stored', bytes: body.length });

      await waitFor(() => big.messages.length > 0 || big.lost.length > 0, { what: 'the large reply' });
      expect(big.lost).toEqual([]);
      const delivered = big.messages[0];
      expect(delivered?.k === 'done' && delivered.result.kind === 'body' && delivered.result.body === body).toBe(true);
      await waitFor(() => streams.every((s) => s.messages.at(-1)?.k === 'done'), { what: 'every stream to finish' });
      streams.forEach((s, i) => {
        const chunks = s.messages.flatMap((m) => (m.k === 'chunk' ? [m] : []));
        expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, n) => chunks.slice(0, n).reduce((sum, c) => sum + c.data.length, 0)));
        expect(chunks.flatMap((c) => c.data)).toEqual(Array(counts[i]).fill(event));
        // No batch past the inline size (one event may complete it).
        for (const c of chunks) expect(c.data.join('').length).toBeLessThanOrEqual(1024 * 1024 + event.length);
      });
      expect(connectionsLost).toBe(0);
    } finally {
      publisherRedis.disconnect();
      await admin.config('SET', 'client-output-buffer-limit', 'pubsub 32mb 8mb 60');
    }
  });

  it('a reply connection closed by Redis for output buffer overflow reconnects at once and finishes jobs done meanwhile', async () => {
    await admin.config('SET', 'client-output-buffer-limit', 'pubsub 1mb 1mb 0');
    try {
      f = await busFixture(redis.url);
      const result: CompletionResult = { kind: 'body', status: 200, body: '{"object":"chat.completion"}' };
      const jobId = randomUUID();
      const sink = track(f.bus, jobId);
      await f.queue.enqueue(jobId, chatJob(f.instanceId));
      f.silentWorker(() => result);
      await f.finished(jobId);
      let connectionsLost = 0;
      f.subscriber.on('close', () => connectionsLost++);
      // Someone else's oversized message: Redis drops the subscriber, and the done of the finished job is lost.
      await f.publish('x'.repeat(3 * 1024 * 1024));
      await waitFor(() => sink.unseen.length > 0, { what: 'reconciliation after the reconnect' });
      expect(connectionsLost).toBeGreaterThan(0);
      expect(sink.unseen).toEqual([{ result, attempt: 1, reason: undefined }]);
    } finally {
      await admin.config('SET', 'client-output-buffer-limit', 'pubsub 32mb 8mb 60');
    }
  });
});
