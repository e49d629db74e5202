// Composition root of the worker role: provider pools (and the built-in mock), the BullMQ Worker for completions,
// the cancel listener, an optional /metrics port. Shutdown: stop taking jobs, finish active ones, close.
import { createServer, type Server } from 'node:http';
import { QUEUE_NAMES, createRedisKeys } from '../queue/keys.ts';
import { CompletionWorkers, processSlots } from '../queue/completion-workers.ts';
import { ReplyPublisher } from '../queue/reply-publisher.ts';
import { RecentCancels, listenForCancels } from '../queue/cancel.ts';
import { CompletionJobSchema, type CompletionResult } from '../queue/jobs.ts';
import { createProviderRuntime, closeProviderRuntimes, type ProviderRuntime } from '../upstream/dispatcher.ts';
import { createRouter } from '../catalogue/catalogue.ts';
import { createCompletionProcessor } from '../worker/completion-processor.ts';
import { createUpstreamResilience } from '../upstream/resilience.ts';
import { createFlowControl } from '../upstream/flow-control.ts';
import { ResponseCache } from '../cache/response-cache.ts';
import { startMockUpstream, type MockUpstream } from '../mock-upstream/index.ts';
import { WorkerBudgets } from '../admission/worker-budgets.ts';
import { createDrainMeter } from '../admission/shed.ts';
import { JobStore } from '../queue/job-store.ts';
import { WebhookQueue } from '../webhooks/webhook-queue.ts';
import { startWebhookWorker } from '../webhooks/delivery-worker.ts';
import { AsyncJobs } from '../worker/async-jobs.ts';
import { createFileStorage } from '../files/storage.ts';
import { FileRecords } from '../files/file-records.ts';
import { startFileSweeper } from '../files/sweeper.ts';
import { BatchStore } from '../batches/batch-store.ts';
import { BatchLines } from '../batches/batch-lines.ts';
import { startBatchRunner } from '../batches/runner.ts';
import { batchWebhookSource } from '../batches/webhook-source.ts';
import { CompletionQueue } from '../queue/completion-queue.ts';
import { AdmissionGate } from '../admission/gate.ts';
import { createPatientConnection, waitForRedis } from './redis.ts';
import { checkRedisDurability } from './redis-policy.ts';
import { UsageCounters, UsageRecorder } from '../usage/usage-counters.ts';
import { createJobReporter } from '../usage/job-report.ts';
import type { RoleContext, RunningRole } from './context.ts';

export interface RunningWorker extends RunningRole {
  /** One BullMQ Worker per queue shard this process consumes. */
  worker: CompletionWorkers;
}

export async function startWorker(ctx: RoleContext): Promise<RunningWorker> {
  const { config, logger, metrics } = ctx;
  // Redis Cluster when redis.nodes is set: replies go out on SPUBLISH, the queue is read from every shard consumed.
  const keys = createRedisKeys(config.redis.prefix, { shards: config.queue.shards, cluster: config.redis.nodes.length > 0 });

  // `mock` providers get an in-process mock upstream on loopback, called through the same HTTP path as real ones.
  const mocks: MockUpstream[] = [];
  const providers = new Map<string, ProviderRuntime>();
  for (const provider of config.providers) {
    let baseUrl = provider.baseUrl;
    if (provider.type === 'mock') {
      const mock = await startMockUpstream({ host: '127.0.0.1', port: 0, ...provider.mock });
      mocks.push(mock);
      baseUrl = mock.url;
    }
    providers.set(provider.id, createProviderRuntime(provider, baseUrl!));
  }

  const connection = createPatientConnection(config.redis, 'spillway-worker');
  const publisherRedis = createPatientConnection(config.redis, 'spillway-worker-replies', { autoPipelining: true });
  const cancelSubscriber = createPatientConnection(config.redis, 'spillway-worker-cancels');
  for (const redis of [connection, publisherRedis, cancelSubscriber]) {
    redis.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
  }
  metrics.trackRedis('worker', connection);
  metrics.trackRedis('worker-replies', publisherRedis);
  metrics.trackRedis('worker-cancels', cancelSubscriber);
  const publisher = new ReplyPublisher(publisherRedis, keys, {
    inlineReplyBytes: config.redis.inlineReplyBytes,
    // A stored body or a parked final answer waits this long for the ingress to read it (reconciliation included).
    storedReplyTtlSeconds: config.jobs.replyTtlSeconds,
  });
  const recentCancels = new RecentCancels();
  // A lease lives as long as a job's lock: a SIGKILLed worker's tenant slots come back as soon as its jobs do.
  const budgets = new WorkerBudgets({ redis: connection, keys, config, leaseTtlMs: config.worker.lockDurationMs });
  // Pool-wide breakers and health checks: their state is shared through Redis, checked in memory on each call.
  const resilience = createUpstreamResilience({
    redis: publisherRedis,
    // Shared with the cancel listener: each handles only its own channel's messages.
    subscriber: cancelSubscriber,
    keys: keys.breakers,
    instanceId: ctx.instanceId,
    logger,
    providers,
    models: config.models,
  });
  // Pool-wide 429 pauses, provider limits and the routing state (strategies, model fallbacks), shared through Redis
  // where they must be, checked in memory on each call.
  const flow = createFlowControl({
    redis: publisherRedis,
    subscriber: cancelSubscriber,
    keys,
    instanceId: ctx.instanceId,
    logger,
    providers,
    config,
    leaseTtlMs: config.worker.lockDurationMs,
  });
  // Async jobs: their records, and the `webhooks` queue that carries their events (produced and consumed here).
  const jobStore = new JobStore(connection, keys, { retentionSeconds: config.jobs.asyncRetentionSeconds });
  const webhookQueue = new WebhookQueue({ connection, keys, maxAttempts: config.webhooks.maxAttempts, keepSeconds: config.jobs.asyncRetentionSeconds });
  // Batches: their lines' results are recorded into the batch (src/batches/batch-lines.ts), their bytes in the file storage.
  const fileStorage = await createFileStorage(config.files);
  const fileRecords = new FileRecords(connection, keys);
  const batchStore = new BatchStore(connection, keys, { retentionSeconds: config.batches.retentionSeconds });
  const asyncJobs = new AsyncJobs({ store: jobStore, webhooks: webhookQueue, redis: connection, keys, config, logger, leaseTtlMs: config.worker.lockDurationMs, batchLines: new BatchLines(batchStore, logger, Math.max(3 * config.worker.lockDurationMs, 5_000)) });
  // Answered jobs' usage, added up in memory and written to the daily counters once a second (GET /v1/usage).
  const usage = new UsageRecorder(new UsageCounters(connection, keys, { retentionDays: config.usage.retentionDays }), {
    onError: (err) => logger.warn({ err: String(err) }, 'writing usage counters failed; kept for the next write'),
  });
  const processor = createCompletionProcessor({
    providers,
    router: createRouter(config),
    publisher,
    recentCancels,
    metrics,
    logger,
    maxAttempts: config.worker.maxAttempts,
    breakers: resilience.breakers,
    pauses: flow.pauses,
    limits: flow.limits,
    routing: flow.routing,
    // Jobs carrying a cache directive store their answers and may fall back to a stale one.
    cache: new ResponseCache(publisherRedis, keys),
    budgets,
    asyncJobs,
    // Each job's log line, tokens and cost, and its tenant's daily usage counters (GET /v1/usage).
    report: createJobReporter({ config, metrics, logger, usage }),
  });
  // Read when /metrics is scraped: each deployment's breaker as this worker holds it, each provider's undici pool.
  const deployments = [...new Map(config.models.flatMap((m) => m.route).map((t) => [`${t.provider}/${t.model}`, t])).entries()];
  metrics.breakerSource.read = () => deployments.map(([deployment, t]) => ({ provider: t.provider, deployment, state: resilience.breakers.state(t.provider, t.model) }));
  metrics.poolSource.read = () => [...providers.values()].map((p) => ({ provider: p.id, stats: p.pool.stats }));
  // Jobs ended, the time they held their slots and the slots offered, per second across the pool: the ingresses' load
  // shedding reads the pool's capacity from them (one write a second, not per job).
  const drainMeter = createDrainMeter(connection, keys, QUEUE_NAMES.completions, processSlots(config.worker.concurrency, (config.worker.shards ?? keys.shards).length));

  const worker = new CompletionWorkers({
    connection,
    keys,
    processor: drainMeter.track(processor),
    shards: config.worker.shards,
    concurrency: config.worker.concurrency,
    lockDuration: config.worker.lockDurationMs,
    stalledInterval: config.worker.stalledIntervalMs,
    maxStalledCount: config.worker.maxStalledCount,
    // Stored on each job as processedBy: which worker holds or held it (queue UI, crash forensics).
    name: ctx.instanceId,
  });
  worker.on('error', (err) => logger.error({ err }, 'worker error'));
  // A job whose lock this worker can no longer renew is not this worker's any more: Redis lost it (a restart without
  // persistence; its client has been told) or another worker took it over after a stall. Stop paying for it.
  worker.on('lockRenewalFailed', (jobIds) => {
    for (const jobId of jobIds) {
      if (worker.cancelJob(jobId, 'job lock lost')) logger.warn({ jobId }, 'job lock lost: upstream call aborted');
    }
  });
  // A job that failed outside the processor's own replies (stalled too often, a bug): tell the waiting ingress.
  worker.on('failed', (job, err) => {
    if (job === undefined) return;
    logger.error({ jobId: job.id, reason: err.message }, 'completion job failed');
    const data = CompletionJobSchema.safeParse(job.data);
    if (!data.success || job.id === undefined) return;
    if (data.data.replyTo === null) {
      asyncJobs.failed(data.data, job.id).catch((recordErr: unknown) => logger.error({ err: recordErr, jobId: job.id }, 'recording a failed async job failed'));
      return;
    }
    const result: Extract<CompletionResult, { kind: 'error' }> = {
      kind: 'error',
      status: 502,
      headers: {},
      error: { message: 'The request failed in the broker before an answer was produced.', type: 'api_error', param: null, code: 'job_failed' },
    };
    publisher
      .forJob(job.id, job.attemptsStarted, data.data.replyTo)
      .error(result)
      .catch((publishErr: unknown) => logger.error({ err: publishErr }, 'publishing a failure reply failed'));
  });

  // The publisher too: a stream whose head finds it not connected is given up as unheard.
  await Promise.all([waitForRedis(cancelSubscriber, 30_000), waitForRedis(publisherRedis, 30_000)]);
  const stopListening = await listenForCancels(cancelSubscriber, keys, (jobId) => {
    if (!worker.cancelJob(jobId, 'client closed the request')) recentCancels.add(jobId);
  });
  // Before the first job: a worker that starts while a deployment is open in the pool must know it.
  await resilience.start();
  await flow.start();
  void worker.run().catch((err: unknown) => logger.error({ err }, 'worker loop stopped'));
  await worker.waitUntilReady();
  await checkRedisDurability(connection, logger);
  const webhookWorker = await startWebhookWorker({ connection, keys, store: jobStore, config, logger, name: ctx.instanceId, batches: batchWebhookSource(batchStore) });
  // The batch drivers feed lines to the completions queue with priorities from an admission gate of their own (the
  // `batch` class, the tenant's async fair-share clock), as the ingress does for async jobs.
  const lineQueue = new CompletionQueue({ connection, keys, keepCompletedSeconds: config.jobs.keepCompletedSeconds, keepFailedSeconds: config.jobs.keepFailedSeconds });
  const lineAdmission = new AdmissionGate({ redis: connection, keys, config, logger });
  lineAdmission.start();
  const batchRunner = await startBatchRunner({
    connection,
    keys,
    deps: { config, store: batchStore, storage: fileStorage, queue: lineQueue, admission: lineAdmission, router: createRouter(config), logger, webhooks: webhookQueue, files: fileRecords },
    logger,
    concurrency: config.batches.concurrency,
    lockDurationMs: config.worker.lockDurationMs,
    stalledIntervalMs: config.worker.stalledIntervalMs,
    name: ctx.instanceId,
  });
  const fileSweeper = startFileSweeper(fileRecords, fileStorage, config.files.sweepIntervalMs, logger);
  // BullMQ sets finishedOn only on a delivery's last failure (dead-lettered or stopped); earlier ones are retried.
  webhookWorker.worker.on('completed', (_job, outcome) => metrics.webhookDeliveries.inc({ outcome }));
  webhookWorker.worker.on('failed', (job) => metrics.webhookDeliveries.inc({ outcome: job?.finishedOn ? 'failed' : 'retrying' }));
  logger.info({ concurrency: config.worker.concurrency, providers: [...providers.keys()] }, 'worker started');

  const metricsServer = config.worker.metricsPort > 0 ? await serveMetrics(ctx, config.worker.metricsPort) : undefined;
  const grace = config.worker.shutdownGraceMs;
  return {
    worker,
    steps: [
      // First: a driver hands its batch back at once (another worker resumes it), then its lines finish with the rest.
      { name: 'batch drivers', close: () => batchRunner.close(), timeoutMs: 5_000, force: () => void batchRunner.worker.close(true) },
      { name: 'worker (active jobs)', close: () => worker.close(), timeoutMs: grace, force: () => void worker.close(true) },
      { name: 'usage counters', close: () => usage.close(), timeoutMs: 2_000 },
      { name: 'webhook deliveries', close: () => webhookWorker.close(), timeoutMs: config.webhooks.timeoutMs + 2_000, force: () => void webhookWorker.close(true) },
      { name: 'webhook queue', close: () => webhookQueue.close(), timeoutMs: 2_000 },
      { name: 'batch line queue', close: () => lineQueue.close(), timeoutMs: 2_000 },
      { name: 'batch admission', close: async () => lineAdmission.close(), timeoutMs: 1_000 },
      { name: 'file sweeper', close: () => fileSweeper.close(), timeoutMs: 5_000 },
      { name: 'file storage', close: () => fileStorage.close(), timeoutMs: 1_000 },
      { name: 'cancel listener', close: () => stopListening(), timeoutMs: 2_000 },
      { name: 'breakers and health checks', close: () => resilience.close(), timeoutMs: 2_000 },
      { name: 'pauses and routing state', close: () => flow.close(), timeoutMs: 2_000 },
      { name: 'drain meter', close: () => drainMeter.close(), timeoutMs: 1_000 },
      { name: 'token settlements', close: () => budgets.flush(), timeoutMs: 1_000 },
      { name: 'providers', close: () => closeProviderRuntimes(providers.values()), timeoutMs: 2_000 },
      { name: 'mock upstream', close: () => Promise.all(mocks.map((m) => m.close())), timeoutMs: 2_000 },
      {
        name: 'redis',
        close: () => Promise.all([connection.quit(), publisherRedis.quit(), cancelSubscriber.quit()]),
        timeoutMs: 2_000,
        force: () => [connection, publisherRedis, cancelSubscriber].forEach((r) => r.disconnect()),
      },
      ...(metricsServer ? [{ name: 'metrics server', close: () => closeServer(metricsServer), timeoutMs: 1_000 }] : []),
    ],
  };
}

/** The worker's own /metrics and /health (split mode: the ingress's /metrics only covers the ingress process). */
async function serveMetrics(ctx: RoleContext, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url === '/metrics') {
      ctx.metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': ctx.metrics.registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
    } else if (req.url === '/health') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(port, ctx.config.server.host, resolve));
  ctx.logger.info({ port }, 'worker metrics listening');
  return server;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
