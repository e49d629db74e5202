// Composition root of the ingress role: Redis connections, queue producer, reply bus, Fastify app, listening.
// Shutdown: not ready → let in-flight requests finish (grace) → end the rest with a drain error → close bus, queue, Redis.
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from '../http/app.ts';
import { createRedisKeys, QUEUE_NAMES } from '../queue/keys.ts';
import { AdmissionGate } from '../admission/gate.ts';
import { CompletionQueue } from '../queue/completion-queue.ts';
import { ReplyBus } from '../queue/reply-bus.ts';
import { JobStore } from '../queue/job-store.ts';
import { SyncIdempotency } from '../queue/idempotency.ts';
import { WebhookQueue } from '../webhooks/webhook-queue.ts';
import { ResponseCache } from '../cache/response-cache.ts';
import { createFailFastConnection, createPatientConnection, probeRedis, waitForRedis } from './redis.ts';
import { checkRedisDurability } from './redis-policy.ts';
import { createFileStorage } from '../files/storage.ts';
import { FileRecords } from '../files/file-records.ts';
import { BatchStore } from '../batches/batch-store.ts';
import { BatchQueue } from '../batches/runner.ts';
import { UsageCounters } from '../usage/usage-counters.ts';
import type { RoleContext, RunningRole } from './context.ts';

export interface RunningIngress extends RunningRole {
  app: FastifyInstance;
  /** http://host:port the server listens on. */
  url: string;
}

/** How often /ready's PING goes out. */
const REDIS_PROBE_INTERVAL_MS = 1_000;

export async function startIngress(ctx: RoleContext): Promise<RunningIngress> {
  const { config, logger } = ctx;
  // Redis Cluster when redis.nodes is set: the factories return an ioredis Cluster, the reply channel is sharded.
  const keys = createRedisKeys(config.redis.prefix, { shards: config.queue.shards, cluster: config.redis.nodes.length > 0 });
  const command = createFailFastConnection(config.redis, 'spillway-ingress', { commandTimeoutMs: config.redis.commandTimeoutMs });
  const subscriber = createPatientConnection(config.redis, 'spillway-ingress-replies');
  command.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
  subscriber.on('error', (err) => logger.warn({ err: err.message }, 'redis subscriber error'));
  ctx.metrics.trackRedis('ingress', command);
  ctx.metrics.trackRedis('ingress-replies', subscriber);
  // Subscribe only once ready: a SUBSCRIBE racing ioredis's ready check (INFO) breaks the connection.
  await Promise.all([waitForRedis(command, 30_000), waitForRedis(subscriber, 30_000)]);

  const queue = new CompletionQueue({
    connection: command,
    keys,
    keepCompletedSeconds: config.jobs.keepCompletedSeconds,
    keepFailedSeconds: config.jobs.keepFailedSeconds,
    // Called only by enqueue, once requests flow: `bus` is set by then.
    onEnqueued: (jobId) => bus.markEnqueued(jobId),
  });
  const bus = new ReplyBus({
    subscriber,
    commands: command,
    channel: keys.replyChannel(ctx.instanceId),
    sharded: keys.cluster,
    parkedReply: (jobId) => keys.parkedReply(ctx.instanceId, jobId),
    queue,
    logger,
    // An enqueue ends (added, or rejected by the command timeout) within commandTimeoutMs.
    enqueueWindowMs: config.redis.commandTimeoutMs + 1_000,
    onReconcile: () => ctx.metrics.replyReconciliations.inc(),
  });
  await bus.start();
  const probe = probeRedis(command, { intervalMs: REDIS_PROBE_INTERVAL_MS, timeoutMs: config.redis.commandTimeoutMs });

  const admission = new AdmissionGate({
    redis: command,
    keys,
    config,
    logger,
    onOutcome: (tenant, outcome) => ctx.metrics.admissionDecisions.inc({ tenant, outcome }),
  });
  admission.start();
  // Queue depth for dashboards and KEDA's Prometheus trigger: read when scraped, never on the request path.
  // The webhooks queue's `failed` state holds its dead letters.
  ctx.metrics.queueDepthSource.read = async () => [
    { queue: QUEUE_NAMES.completions, counts: await queue.getJobCounts('waiting', 'prioritized', 'delayed', 'active') },
    { queue: QUEUE_NAMES.webhooks, counts: await webhooks.queue.getJobCounts('waiting', 'prioritized', 'delayed', 'active', 'failed') },
  ];

  await checkRedisDurability(command, logger);
  // Async jobs: records and Idempotency-Keys on the request connection; cancels enqueue their webhook events.
  const webhooks = new WebhookQueue({ connection: command, keys, maxAttempts: config.webhooks.maxAttempts, keepSeconds: config.jobs.asyncRetentionSeconds });
  const jobs = {
    store: new JobStore(command, keys, { retentionSeconds: config.jobs.asyncRetentionSeconds }),
    webhooks,
    idempotency: new SyncIdempotency(command, keys, queue),
  };
  // Files and batches: metadata in Redis, bytes in the file storage (a shared directory or S3); batches run in workers.
  const fileStorage = await createFileStorage(config.files);
  const fileRecords = new FileRecords(command, keys);
  const batchQueue = new BatchQueue(command, keys);
  const filesAndBatches = {
    files: { storage: fileStorage, records: fileRecords, maxBytes: config.files.maxBytes, ttlSeconds: config.files.ttlSeconds },
    batches: { store: new BatchStore(command, keys, { retentionSeconds: config.batches.retentionSeconds }), queue: batchQueue, files: fileRecords },
  };

  let draining = false;
  // The response cache: looked up here (fresh hits, single flight), written by the workers.
  const cache = new ResponseCache(command, keys, logger);
  const app = await buildApp({
    ...ctx,
    bus,
    queue,
    admission,
    jobs,
    ...filesAndBatches,
    cache,
    usage: new UsageCounters(command, keys, { retentionDays: config.usage.retentionDays }),
    notReadyReason: () => {
      if (draining) return 'draining';
      if (command.status !== 'ready') return 'redis unavailable';
      if (subscriber.status !== 'ready') return 'reply channel unavailable';
      return probe.reason();
    },
  });
  const address = await app.listen({ host: config.server.host, port: config.server.port, backlog: config.server.listenBacklog });
  logger.info({ address, instanceId: ctx.instanceId }, 'ingress listening');

  const grace = config.server.shutdownGraceMs;
  return {
    app,
    url: address,
    steps: [
      {
        name: 'http server (in-flight requests)',
        close: () => {
          draining = true;
          return drainHttp(app, bus, grace, logger);
        },
        timeoutMs: grace,
        force: () => app.server.closeAllConnections(),
      },
      {
        name: 'reply bus',
        close: () => {
          probe.stop();
          return bus.close();
        },
        timeoutMs: 2_000,
      },
      { name: 'admission', close: async () => admission.close(), timeoutMs: 1_000 },
      { name: 'queue', close: () => queue.close(), timeoutMs: 2_000 },
      { name: 'webhook queue', close: () => webhooks.close(), timeoutMs: 2_000 },
      { name: 'batch queue', close: () => batchQueue.close(), timeoutMs: 2_000 },
      { name: 'file storage', close: () => fileStorage.close(), timeoutMs: 1_000 },
      { name: 'redis', close: () => Promise.all([command.quit(), subscriber.quit()]), timeoutMs: 2_000, force: () => { command.disconnect(); subscriber.disconnect(); } },
    ],
  };
}

/**
 * Lets in-flight requests finish within the grace period. Those still open near its end are ended by the broker
 * (a stream gets an SSE error event, a JSON request a 503, each logged as cut by the drain) rather than cut
 * silently by the force-close; their last writes get a moment to flush before connections are closed.
 */
async function drainHttp(app: FastifyInstance, bus: ReplyBus, graceMs: number, logger: Logger): Promise<void> {
  const flushMs = Math.min(1_000, Math.floor(graceMs / 4));
  const marginMs = Math.min(500, Math.floor(graceMs / 10));
  // Keep-alive connections whose last response finished during the drain would hold close() open
  // until their idle timeout: close them as soon as they go idle.
  const reaper = setInterval(() => app.server.closeIdleConnections(), 200);
  try {
    const closed = app.close();
    if (await settlesWithin(closed, graceMs - flushMs - marginMs)) return await closed;
    const ended = bus.abandonAll('draining');
    logger.warn({ requests: ended }, 'grace period over: ending the requests still open');
    if (await settlesWithin(closed, flushMs)) return await closed;
    app.server.closeAllConnections();
    await closed;
  } finally {
    clearInterval(reaper);
  }
}

/** Whether `promise` settles within `ms` (its rejection counts: the caller only needs to know it is over). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, ms));
  });
  try {
    return await Promise.race([promise.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
