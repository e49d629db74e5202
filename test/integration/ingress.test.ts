// The ingress side against real Redis: the reply bus (delivery, and reconciliation of jobs that finished while its
// subscriber was reconnecting), and the in-process ingress + worker answering 503 while Redis is down.
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { Worker } from 'bullmq';
import { parseConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { newInstanceId } from '../../src/roles/context.ts';
import { startWorker } from '../../src/roles/worker.ts';
import { startIngress, type RunningIngress } from '../../src/roles/ingress.ts';
import { runShutdown, type ShutdownStep } from '../../src/roles/shutdown.ts';
import { createPatientConnection, waitForRedis } from '../../src/roles/redis.ts';
import { CompletionQueue } from '../../src/queue/completion-queue.ts';
import { ReplyBus, type ReplySink } from '../../src/queue/reply-bus.ts';
import { createRedisKeys, QUEUE_NAMES } from '../../src/queue/keys.ts';
import { encodeReply, type ReplyMessage } from '../../src/queue/replies.ts';
import { JOB_SCHEMA_VERSION, type CompletionJob, type CompletionResult } from '../../src/queue/jobs.ts';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { TENANT_KEY, testConfig } from '../support/spillway-cluster.ts';
import { startRedisServer, uniquePrefix, type RedisServer } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';

const logger = createLogger('silent');

interface Unseen {
  result: CompletionResult | undefined;
  attempt: number;
  reason: string | undefined;
}

function recordingSink(): ReplySink & { messages: ReplyMessage[]; unseen: Unseen[]; lost: string[] } {
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

function job(instanceId: string): CompletionJob {
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

describe('reply bus', () => {
  const redisUrl = inject('redisUrl');
  const instanceId = 'bus-test-instance';
  let keys: ReturnType<typeof createRedisKeys>;
  let subscriber: Redis;
  let commands: Redis;
  let queue: CompletionQueue;
  let bus: ReplyBus;
  let workers: Worker[];

  beforeEach(async () => {
    keys = createRedisKeys(uniquePrefix('bus'));
    subscriber = createPatientConnection(redisUrl, 'test-bus-subscriber');
    commands = new Redis(redisUrl, { maxRetriesPerRequest: null });
    queue = new CompletionQueue({ connection: commands, keys, keepCompletedSeconds: 60, keepFailedSeconds: 60 });
    await waitForRedis(subscriber, 10_000);
    bus = new ReplyBus({ subscriber, channel: keys.replyChannel(instanceId), queue: queue.queue, logger });
    await bus.start();
    workers = [];
  });

  afterEach(async () => {
    await Promise.all(workers.map((w) => w.close()));
    await bus.close();
    await queue.close();
    subscriber.disconnect();
    commands.disconnect();
  });

  /** A real BullMQ worker on the bus's queue that completes (or fails) jobs without publishing any reply. */
  function silentWorker(process: (jobId: string) => CompletionResult): Worker {
    const worker = new Worker<CompletionJob, CompletionResult>(QUEUE_NAMES.completions, async (j) => process(j.id!), {
      connection: commands,
      prefix: keys.bullPrefix,
    });
    worker.on('error', () => undefined);
    workers.push(worker);
    return worker;
  }

  async function finished(jobId: string): Promise<void> {
    await waitFor(async () => (await queue.queue.getJob(jobId))?.finishedOn !== undefined, { what: `job ${jobId} to finish` });
  }

  it('delivers each reply to the sink of its job, dropping malformed and foreign messages', async () => {
    const sink = recordingSink();
    bus.register('job-a', sink);
    const done: ReplyMessage = { k: 'done', j: 'job-a', a: 1, result: { kind: 'body', status: 200, body: '{}' } };
    // One connection publishes in order: once the last message arrived, the earlier ones were handled.
    await commands.publish(keys.replyChannel(instanceId), 'not json');
    await commands.publish(keys.replyChannel(instanceId), encodeReply({ ...done, j: 'someone-else' }));
    await commands.publish(keys.replyChannel('another-instance'), encodeReply(done));
    await commands.publish(keys.replyChannel(instanceId), encodeReply(done));
    await waitFor(() => sink.messages.length > 0, { what: 'the reply' });
    expect(sink.messages).toEqual([done]);
  });

  it('after unregister, replies of that job are no longer delivered', async () => {
    const gone = recordingSink();
    const kept = recordingSink();
    bus.register('gone', gone);
    bus.register('kept', kept);
    bus.unregister('gone');
    expect(bus.size).toBe(1);
    const reply = (j: string): string => encodeReply({ k: 'done', j, a: 1, result: { kind: 'stream', chunks: 0 } });
    await commands.publish(keys.replyChannel(instanceId), reply('gone'));
    await commands.publish(keys.replyChannel(instanceId), reply('kept'));
    await waitFor(() => kept.messages.length === 1, { what: 'the kept reply' });
    expect(gone.messages).toEqual([]);
  });

  it('a job that completed while its done message was lost is finished from its return value after a reconnect', async () => {
    const result: CompletionResult = { kind: 'body', status: 200, body: '{"object":"chat.completion"}' };
    const jobId = randomUUID();
    const sink = recordingSink();
    bus.register(jobId, sink);
    await queue.enqueue(jobId, job(instanceId));
    silentWorker(() => result);
    await finished(jobId);
    expect(sink.unseen).toEqual([]);

    subscriber.disconnect(true); // drop the connection; ioredis reconnects and re-subscribes
    await waitFor(() => sink.unseen.length > 0, { what: 'reconciliation after the reconnect' });
    expect(sink.unseen).toEqual([{ result, attempt: 1, reason: undefined }]);
    expect(sink.messages).toEqual([]);
    // The bus is usable again after the reconnect.
    const next = recordingSink();
    bus.register('after-reconnect', next);
    await commands.publish(keys.replyChannel(instanceId), encodeReply({ k: 'done', j: 'after-reconnect', a: 1, result }));
    await waitFor(() => next.messages.length === 1, { what: 'a reply after the reconnect' });
  });

  it('a job that failed while replies were lost is reported with its failure reason', async () => {
    const jobId = randomUUID();
    const sink = recordingSink();
    bus.register(jobId, sink);
    await queue.enqueue(jobId, job(instanceId));
    silentWorker(() => {
      throw new Error('worker blew up');
    });
    await finished(jobId);
    subscriber.disconnect(true);
    await waitFor(() => sink.unseen.length > 0, { what: 'reconciliation after the reconnect' });
    expect(sink.unseen).toEqual([{ result: undefined, attempt: 1, reason: 'worker blew up' }]);
  });

  it('reconciliation leaves a job that has not finished alone, and reports one that vanished', async () => {
    const waitingId = randomUUID();
    const waiting = recordingSink();
    const vanished = recordingSink();
    bus.register(waitingId, waiting);
    bus.register('never-enqueued', vanished);
    await queue.enqueue(waitingId, job(instanceId), { delayMs: 60_000 });
    await bus.reconcile();
    expect(waiting.unseen).toEqual([]);
    expect(vanished.unseen).toEqual([{ result: undefined, attempt: 0, reason: 'the job disappeared from the queue' }]);
    await queue.queue.remove(waitingId);
  });

  it('a closed bus leaves its channel', async () => {
    expect(await commands.publish(keys.replyChannel(instanceId), 'ping')).toBe(1);
    await bus.close();
    expect(await commands.publish(keys.replyChannel(instanceId), 'ping')).toBe(0);
  });
});

describe('ingress while Redis is down', () => {
  let redis: RedisServer;
  let mock: MockUpstream;
  let ingress: RunningIngress;
  const steps: ShutdownStep[] = [];

  beforeAll(async () => {
    redis = await startRedisServer();
    mock = await startMockUpstream();
    const config = parseConfig(testConfig(redis.url, uniquePrefix('ingress'), 0, mock.url, { logging: { level: 'silent' } }));
    const ctx = { config, logger, metrics: createMetrics({ defaultMetrics: false }), instanceId: newInstanceId() };
    steps.push(...(await startWorker(ctx)).steps);
    ingress = await startIngress(ctx);
    steps.unshift(...ingress.steps);
  });

  afterAll(async () => {
    await runShutdown(steps, logger);
    await mock?.close();
    await redis?.close();
  });

  const chat = (): Promise<Response> =>
    fetch(`${ingress.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TENANT_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
    });

  it('answers 503 with Retry-After and reports not ready while Redis is down, and recovers once it is back', async () => {
    expect((await chat()).status).toBe(200);

    await redis.stop();
    // The request must complete (no hang until its deadline): a 503 the client may retry.
    const down = await chat();
    expect(down.status).toBe(503);
    expect(down.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(await down.json()).toMatchObject({ error: { type: 'server_error', code: 'service_unavailable' } });
    const ready = await waitFor(async () => {
      const response = await fetch(`${ingress.url}/ready`);
      return response.status === 503 ? response : undefined;
    }, { what: '/ready to answer 503' });
    expect(await ready.json()).toMatchObject({ status: 'not_ready', reason: expect.stringMatching(/redis|reply channel/) });

    await redis.restart();
    await waitFor(async () => (await chat()).status === 200, { timeoutMs: 20_000, what: 'requests to succeed after Redis is back' });
    expect((await fetch(`${ingress.url}/ready`)).status).toBe(200);
  });
});
