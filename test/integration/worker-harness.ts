// The worker role in-process against real Redis and real mock upstreams: a test enqueues jobs directly and reads
// the worker's replies from the reply channel with a connection of its own, and its warn/error log lines. Also pool
// members: several workers' upstream layers (breakers, health checks) in one process, sharing one Redis.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { newInstanceId } from '../../src/roles/context.ts';
import { startWorker } from '../../src/roles/worker.ts';
import { runShutdown, type ShutdownStep } from '../../src/roles/shutdown.ts';
import { CompletionQueue } from '../../src/queue/completion-queue.ts';
import { createRedisKeys } from '../../src/queue/keys.ts';
import { decodeReply } from '../../src/queue/replies.ts';
import { JOB_SCHEMA_VERSION, type CompletionJob, type CompletionResult } from '../../src/queue/jobs.ts';
import { ReplyPublisher } from '../../src/queue/reply-publisher.ts';
import { closeProviderRuntimes, createProviderRuntime } from '../../src/upstream/dispatcher.ts';
import { createRouter } from '../../src/catalogue/catalogue.ts';
import { callUpstream, type UpstreamDeps } from '../../src/upstream/call.ts';
import { createUpstreamResilience } from '../../src/upstream/resilience.ts';
import type { BreakerRegistry } from '../../src/upstream/breakers.ts';
import type { HealthCheckRunner } from '../../src/upstream/health-checks.ts';
import { testConfig, type ClusterOptions } from '../support/spillway-cluster.ts';
import { uniquePrefix } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';

/** A message as it travels on the reply channel. */
export type Reply = NonNullable<ReturnType<typeof decodeReply>>;
export type ErrorReply = Extract<Reply, { k: 'error' }>;
export type ChunkReply = Extract<Reply, { k: 'chunk' }>;
export type DoneReply = Extract<Reply, { k: 'done' }>;

export interface WorkerHarness {
  queue: CompletionQueue;
  /** Every reply message on the test's channel, in arrival order. */
  replies: Reply[];
  /** The worker's log lines at warn and above, parsed. */
  logs: Array<Record<string, unknown>>;
  chatJob(overrides?: Partial<CompletionJob>): CompletionJob;
  /** A streaming chat job (body and flag) with these forwarded headers. */
  streamJob(headers: Record<string, string>, overrides?: Partial<CompletionJob>): CompletionJob;
  enqueue(job: CompletionJob): Promise<string>;
  /** The replies of one job, once its final message (done or error) has arrived. */
  finalReplies(jobId: string, timeoutMs?: number): Promise<Reply[]>;
  finishedJob(jobId: string): Promise<NonNullable<Awaited<ReturnType<CompletionQueue['queue']['getJob']>>>>;
  close(): Promise<void>;
}

/** `config` is deep-merged one level over the test defaults (e.g. `{ providers: [...], models: [...] }`); `mockUrl` fills the default provider. */
export async function startWorkerHarness(redisUrl: string, mockUrl: string, config: ClusterOptions['config'] = {}): Promise<WorkerHarness> {
  const prefix = uniquePrefix('worker');
  const keys = createRedisKeys(prefix);
  const logs: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const parsed = parseConfig(testConfig(redisUrl, prefix, 0, mockUrl, { logging: { level: 'warn' }, ...config }));
  const worker = await startWorker({ config: parsed, logger, metrics: createMetrics({ defaultMetrics: false }), instanceId: newInstanceId() });
  const steps: ShutdownStep[] = worker.steps;

  const queueRedis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new CompletionQueue({ connection: queueRedis, keys, keepCompletedSeconds: 60, keepFailedSeconds: 60 });
  const replyTo = `test-ingress-${randomUUID()}`;
  const replies: Reply[] = [];
  const subscriber = new Redis(redisUrl);
  subscriber.on('message', (_channel: string, raw: string) => {
    const message = decodeReply(raw);
    if (message === undefined) throw new Error(`undecodable reply: ${raw}`);
    replies.push(message);
  });
  await subscriber.subscribe(keys.replyChannel(replyTo));

  const chatJob = (overrides: Partial<CompletionJob> = {}): CompletionJob => {
    const now = Date.now();
    return {
      v: JOB_SCHEMA_VERSION,
      endpoint: 'chat.completions',
      requestId: `req-${randomUUID()}`,
      tenant: 'acme',
      model: 'gpt-4o-mini',
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] },
      stream: false,
      replyTo,
      headers: {},
      enqueuedAt: now,
      deadline: now + 30_000,
      ...overrides,
    };
  };
  return {
    queue,
    replies,
    logs,
    chatJob,
    streamJob: (headers, overrides = {}) =>
      chatJob({ stream: true, body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true }, headers, ...overrides }),
    enqueue: async (job) => {
      const jobId = randomUUID();
      await queue.enqueue(jobId, job);
      return jobId;
    },
    finalReplies: async (jobId, timeoutMs = 10_000) => {
      await waitFor(() => replies.some((m) => m.j === jobId && (m.k === 'done' || m.k === 'error')), { timeoutMs, what: `the final reply of ${jobId}` });
      return replies.filter((m) => m.j === jobId);
    },
    finishedJob: (jobId) =>
      waitFor(async () => {
        const job = await queue.queue.getJob(jobId);
        return job?.finishedOn !== undefined ? job : undefined;
      }, { what: `job ${jobId} to finish` }),
    close: async () => {
      await runShutdown(steps, logger);
      await queue.close();
      queueRedis.disconnect();
      subscriber.disconnect();
    },
  };
}

/** The data items of a job's chunk replies, in order. */
export function chunkData(messages: readonly Reply[]): string[] {
  return messages.filter((m): m is ChunkReply => m.k === 'chunk').flatMap((c) => c.data);
}

/**
 * One "worker" of a pool, in this process: its own provider pools, breakers and health checks on Redis connections
 * of its own, sharing one real Redis (and one prefix) with the other members. Calls go straight through the call loop,
 * so a test decides which member makes which call. Until roles/worker.ts wires the breakers, this is how the
 * pool-wide behaviour is exercised.
 */
export interface PoolMember {
  readonly breakers: BreakerRegistry;
  readonly health: HealthCheckRunner;
  /** The member's log lines at info and above, parsed. */
  readonly logs: Array<Record<string, unknown>>;
  /** One JSON chat call of `model` with these forwarded headers (x-mock-*), as a job would make it; `signal` cancels it. */
  call(model: string, headers?: Record<string, string>, signal?: AbortSignal): Promise<CompletionResult>;
  close(): Promise<void>;
}

/** `config` is merged over the test defaults like startWorkerHarness's; every member of one pool gets the same `prefix`. */
export async function startPoolMember(redisUrl: string, prefix: string, mockUrl: string, config: ClusterOptions['config'] = {}): Promise<PoolMember> {
  const parsed = parseConfig(testConfig(redisUrl, prefix, 0, mockUrl, { logging: { level: 'info' }, ...config }));
  const logs: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const providers = new Map(parsed.providers.map((p) => [p.id, createProviderRuntime(p, p.baseUrl ?? mockUrl)]));
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const subscriber = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const keys = createRedisKeys(prefix);
  const resilience = createUpstreamResilience({ redis, subscriber, keys: keys.breakers, instanceId: newInstanceId(), logger, providers, models: parsed.models });
  await resilience.start();
  const deps: UpstreamDeps = { providers, metrics: createMetrics({ defaultMetrics: false }), logger, maxAttempts: parsed.worker.maxAttempts, breakers: resilience.breakers };
  const router = createRouter(parsed);
  const publisher = new ReplyPublisher(redis, keys);
  return {
    breakers: resilience.breakers,
    health: resilience.health,
    logs,
    call: (model, headers = {}, signal = new AbortController().signal) => {
      const now = Date.now();
      const job: CompletionJob = {
        v: JOB_SCHEMA_VERSION,
        endpoint: 'chat.completions',
        requestId: `req-${randomUUID()}`,
        tenant: 'acme',
        model,
        body: { model, messages: [{ role: 'user', content: 'hello' }] },
        stream: false,
        replyTo: null,
        headers,
        enqueuedAt: now,
        deadline: now + 20_000,
      };
      // replyTo null: the replies go nowhere; the result is what the call returns.
      return callUpstream(deps, job, router.targets(model), publisher.forJob(job.requestId, 1, null), signal);
    },
    close: async () => {
      await resilience.close();
      await closeProviderRuntimes(providers.values());
      redis.disconnect();
      subscriber.disconnect();
    },
  };
}
