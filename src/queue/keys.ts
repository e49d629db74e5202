// Every Redis key and channel name Spillway uses, derived from the one configured prefix.
// Nothing else in the codebase may build a key by hand: KEDA manifests and tests read the names from here.
import { CLUSTER_SLOTS, keySlot } from './key-slot.ts';

/**
 * Queue names. `completions` carries LLM calls (sync and async, batch lines included); `webhooks` carries deliveries;
 * `batches` carries one long-running driver job per batch (src/batches/runner.ts), never a line.
 */
export const QUEUE_NAMES = { completions: 'completions', webhooks: 'webhooks', batches: 'batches' } as const;
export type QueueName = (typeof QUEUE_NAMES)[keyof typeof QUEUE_NAMES];

export interface RedisKeys {
  /** BullMQ's `prefix` option of queue shard 0 (today's names): BullMQ appends `:<queue>:<suffix>` itself. */
  readonly bullPrefix: string;
  /** Redis Cluster mode: reply channels (and what is parked for them) get a hash tag per ingress, see replyChannel. */
  readonly cluster: boolean;
  /**
   * The queue shards, each under its own hash tag (its BullMQ prefix). Shard 0 is `bullPrefix`; see shardPrefixes for
   * how the others are named. One shard (the default) is today's single queue.
   */
  readonly shards: readonly QueueShard[];
  /** The shard a job lives in: a hash of its id, so every process finds a job without asking Redis where it is. */
  shardOf(jobId: string): QueueShard;
  /**
   * The one channel an ingress instance subscribes to for replies to the jobs it enqueued. Single Redis: plain pub/sub
   * on `<prefix>:reply:<id>` (as before). Cluster: sharded pub/sub on `{<name>:reply:<id>}`, a hash tag of its own, so
   * each ingress's chunk traffic lands on the master owning that slot instead of crossing the cluster bus.
   */
  replyChannel(instanceId: string): string;
  /** Broadcast channel on which ingresses ask workers to abort an active job (plain PUBLISH in both modes: rare). */
  readonly cancelChannel: string;
  /**
   * A reply body too large for pub/sub (over `redis.inlineReplyBytes`), stored by the worker with a short TTL; the
   * `done` message and the job's return value carry only this key. Single Redis: under the prefix's hash tag. Cluster
   * (when the waiting ingress is known): under that ingress's reply tag, on the master its channel lives on.
   */
  storedReply(jobId: string, replyTo?: string | null): string;
  /**
   * The final message (`done` or `error`) of a job whose PUBLISH reached no subscriber, parked by the worker with a
   * TTL: completed jobs are removed at once, so this is what the ingress reads when it reconciles after a reconnect.
   */
  parkedReply(instanceId: string, jobId: string): string;
  /** The BullMQ keys KEDA and the metrics read to measure queue depth, of one shard (default: shard 0). */
  queueDepthKeys(queue: QueueName, shard?: number): { wait: string; prioritized: string; delayed: string; active: string };
  /**
   * A hash of what a queue's workers did during one epoch second: jobs ended, the time they held their slots, the
   * slot time offered (load shedding's capacity, src/admission/shed.ts). In the queue's own slot,
   * next to BullMQ's keys; the ':' keeps it clear of job ids (BullMQ refuses custom ids with ':'). Written with a TTL.
   */
  drainKey(queue: QueueName, epochSecond: number): string;
  /**
   * A tenant's admission and limiter state, under the tenant's own hash tag (`{<name>:tenant:<id>}`): every
   * admission script touches keys of one slot only, and on Redis Cluster tenants spread over the masters.
   */
  tenantKeys(tenantId: string): TenantKeys;
  /**
   * The pool-wide circuit breaker state, under a hash tag of its own (`{<name>:breakers}`): the probe-lease script
   * reads a deployment's open key and writes its probe lease in one slot, away from the queue's busy slot.
   */
  readonly breakers: BreakerKeys;
  /**
   * A provider's pool-wide limits and its deployments' 429 pauses, under the provider's own hash tag
   * (`{<name>:upstream:<provider>}`): the acquire script reads a pause and takes the budgets and a lease in one slot.
   */
  upstreamKeys(provider: string): UpstreamKeys;
  /** Broadcast: a deployment was paused by a 429 (every worker holds the pauses in memory). */
  readonly pauseChannel: string;
  /** least-busy routing: every worker's calls in flight per deployment, a hash of `<deployment>\t<instance>` → count (TTL). */
  readonly busyCounts: string;
  /** A response-cache entry and its single-flight lock, under a hash tag of their own per request hash (TTLs). */
  responseCache(requestHash: string): ResponseCacheKeys;
  /**
   * Every stored file by expiry (a sorted set of `<tenant>\t<fileId>`, scored by epoch ms), in the queue's tag: the
   * worker's sweeper deletes the bytes of expired files, whose metadata Redis expires by itself. TTL renewed by each add.
   */
  readonly fileExpiry: string;
}

export interface BatchLineKeys {
  /** Bitmap: bit n set once line n's result is recorded (a line is never recorded, nor run, twice). */
  readonly done: string;
  /** Hash: line number → byte offset of the line in the input file, for lines handed to the queue and not finished. */
  readonly inFlight: string;
  /** List: finished lines' output lines (`o` or `e` and the JSON), waiting to be flushed into a file segment. */
  readonly results: string;
  /** List: the segments flushed so far, in order (JSON: kind, storage key, bytes, lines). */
  readonly segments: string;
  /** List: the batch webhook's delivery attempts (capped). */
  readonly deliveries: string;
  /** String with a TTL: the token of the one run of line `line` going on now (renewed while it runs). */
  running(line: number): string;
}

export interface UpstreamKeys {
  /** Present while a 429 pauses the deployment pool-wide; its TTL is the time left. */
  pause(model: string): string;
  /** The budget of the provider (`model` undefined: scope `provider`) or of one deployment (scope `deployment`). */
  budget(model: string | undefined): { requests: string; tokens: string; leases: string };
}

export interface ResponseCacheKeys {
  /** The cached answer (a hash: created-at, TTL, the answer), kept for ttlMs + maxStaleMs. */
  readonly entry: string;
  /** Single flight: the job computing this answer (SET NX with the request's deadline as TTL). */
  readonly flight: string;
}

export interface BreakerKeys {
  /** Present while a deployment's breaker is open pool-wide; its TTL is the time left until a probe may go out. */
  open(deployment: string): string;
  /** The half-open probe lease (SET NX with a TTL): one worker of the pool probes a deployment at a time. */
  probe(deployment: string): string;
  /** The health-check lease of a provider: one worker of the pool probes it per interval. */
  healthLease(provider: string): string;
  /** Broadcast: a breaker opened or closed somewhere in the pool (workers hold the state in memory). */
  readonly channel: string;
}

export interface TenantKeys {
  /** GCRA theoretical arrival time of the request budget (rpm). */
  readonly requests: string;
  /** GCRA theoretical arrival time of the token budget (tpm). */
  readonly tokens: string;
  /** Concurrency leases: a sorted set of job ids scored by lease expiry (maxConcurrent). */
  readonly leases: string;
  /** Fair share: the tenant's virtual finish time. */
  readonly fairShare: string;
  /**
   * Fair share of the tenant's async jobs: a virtual clock of their own, so a flood of batch work never pushes the
   * tenant's synchronous requests back behind other tenants'.
   */
  readonly asyncFairShare: string;
  /** Async jobs (src/queue/job-store.ts; every key has a TTL): one job's record, a hash. */
  job(jobId: string): string;
  /** One job's webhook delivery attempts: a capped list, oldest first. */
  jobDeliveries(jobId: string): string;
  /** The tenant's async jobs scored by creation time (epoch ms): listing and cursor pagination. */
  readonly jobs: string;
  /** An `Idempotency-Key` (by its SHA-256) → the job it created. */
  idempotency(keyHash: string): string;
  /** The answer of a synchronous request sent with an `Idempotency-Key`, kept a while for its retries (TTL). */
  idempotencyResult(keyHash: string): string;
  /** A stored response of the Responses API (src/responses/store.ts; TTL): the response, its input, its chain. */
  response(responseId: string): string;
  /** A stored response's output item id → the response's id (for `item_reference`; TTL). */
  responseItem(itemId: string): string;
  /** An uploaded or produced file's metadata (src/files/file-records.ts; TTL: the file's expiry). */
  file(fileId: string): string;
  /** The tenant's files scored by creation time (listing, cursor pagination; TTL renewed by each creation). */
  readonly files: string;
  /** A batch (src/batches/batch-store.ts; hash: the Batch object's fields and the runner's cursor; TTL). */
  batch(batchId: string): string;
  /** The tenant's batches scored by creation time (listing; TTL renewed by each creation). */
  readonly batches: string;
  /** A running batch's line state, all with the batch's TTL and deleted when it ends: see BatchLineKeys. */
  batchLines(batchId: string): BatchLineKeys;
  /** The tenant's usage of one UTC day (YYYY-MM-DD): a hash of `<model>|<counter>` → total, with a TTL (src/usage). */
  usage(day: string): string;
}

/**
 * The key scheme. `prefix` names the deployment; its hash tag is `{<name>}` where name is the prefix without braces
 * (`{spillway}` and `spillway` are the same deployment). Queue keys stay under `{<name>}` (BullMQ's scripts touch
 * several keys of one queue); each tenant's state is under `{<name>:tenant:<id>}`.
 */
export function hashTagName(prefix: string): string {
  const inner = /^\{(.+)\}$/.exec(prefix);
  return inner ? inner[1]! : prefix;
}

/**
 * The default prefix carries a hash tag so that every key of a deployment lands in one Redis Cluster slot
 * (BullMQ's Lua scripts touch several keys of one queue at once).
 */
export const DEFAULT_PREFIX = '{spillway}';

/** A queue shard: the BullMQ prefix of its queues (a hash tag of its own) and that tag's Redis Cluster slot. */
export interface QueueShard {
  readonly index: number;
  readonly bullPrefix: string;
  readonly slot: number;
}

export interface RedisKeyOptions {
  /** Queue shards (`queue.shards`); default 1. */
  shards?: number;
  /** Redis Cluster mode (`redis.nodes` set); default false. */
  cluster?: boolean;
}

/**
 * The BullMQ prefixes of `count` queue shards. Shard 0 is the configured prefix (today's key names). Shard i ≥ 1 is
 * `{<name>:<i>.<k>}` with the smallest k ≥ 0 whose slot lies in the range assigned to shard i: the 16,384 slots are
 * cut into `count` equal ranges, shard 0 keeps the range its own slot falls in, and shards 1… take the other ranges
 * in ascending order. A cluster whose masters split the slots evenly (as `redis-cli --cluster create` does) thus gets
 * the same number of shards on each master when `count` is a multiple of the number of masters. Deterministic: every
 * ingress, worker and dashboard computes the same names from the prefix and the count.
 */
export function shardPrefixes(prefix: string, count: number): string[] {
  const name = hashTagName(prefix);
  const rangeOf = (slot: number) => Math.floor((slot * count) / CLUSTER_SLOTS);
  const first = rangeOf(keySlot(`{${name}}`));
  const others = Array.from({ length: count }, (_, range) => range).filter((range) => range !== first);
  return [
    prefix,
    ...others.map((range, i) => {
      for (let k = 0; ; k++) {
        const candidate = `{${name}:${i + 1}.${k}}`;
        if (rangeOf(keySlot(candidate)) === range) return candidate;
      }
    }),
  ];
}

/** FNV-1a over the id's UTF-16 code units: cheap, and uniform enough to spread random job ids over the shards. */
function shardIndex(jobId: string, count: number): number {
  if (count === 1) return 0;
  let hash = 0x811c9dc5;
  for (let i = 0; i < jobId.length; i++) hash = Math.imul(hash ^ jobId.charCodeAt(i), 0x01000193);
  return (hash >>> 0) % count;
}

export function createRedisKeys(prefix: string = DEFAULT_PREFIX, options: RedisKeyOptions = {}): RedisKeys {
  const name = hashTagName(prefix);
  const cluster = options.cluster ?? false;
  const shards: QueueShard[] = shardPrefixes(prefix, options.shards ?? 1).map((bullPrefix, index) => ({ index, bullPrefix, slot: keySlot(bullPrefix) }));
  const replyTag = (instanceId: string) => `{${name}:reply:${instanceId}}`;
  const replyChannel = (instanceId: string) => (cluster ? replyTag(instanceId) : `${prefix}:reply:${instanceId}`);
  return {
    cluster,
    shards,
    shardOf: (jobId) => shards[shardIndex(jobId, shards.length)]!,
    parkedReply: (instanceId, jobId) => `${replyChannel(instanceId)}:parked:${jobId}`,
    tenantKeys: (tenantId) => {
      const tag = `{${name}:tenant:${tenantId}}`;
      return {
        requests: `${tag}:requests`,
        tokens: `${tag}:tokens`,
        leases: `${tag}:leases`,
        fairShare: `${tag}:fair`,
        asyncFairShare: `${tag}:fair:async`,
        job: (jobId) => `${tag}:job:${jobId}`,
        jobDeliveries: (jobId) => `${tag}:job:${jobId}:deliveries`,
        jobs: `${tag}:jobs`,
        idempotency: (keyHash) => `${tag}:idempotency:${keyHash}`,
        idempotencyResult: (keyHash) => `${tag}:idempotency:${keyHash}:result`,
        response: (responseId) => `${tag}:response:${responseId}`,
        responseItem: (itemId) => `${tag}:response-item:${itemId}`,
        file: (fileId) => `${tag}:file:${fileId}`,
        files: `${tag}:files`,
        batch: (batchId) => `${tag}:batch:${batchId}`,
        batches: `${tag}:batches`,
        batchLines: (batchId) => ({
          done: `${tag}:batch:${batchId}:done`,
          inFlight: `${tag}:batch:${batchId}:in-flight`,
          results: `${tag}:batch:${batchId}:results`,
          segments: `${tag}:batch:${batchId}:segments`,
          deliveries: `${tag}:batch:${batchId}:deliveries`,
          running: (line) => `${tag}:batch:${batchId}:run:${line}`,
        }),
        usage: (day) => `${tag}:usage:${day}`,
      };
    },
    breakers: {
      open: (deployment) => `{${name}:breakers}:open:${deployment}`,
      probe: (deployment) => `{${name}:breakers}:probe:${deployment}`,
      healthLease: (provider) => `{${name}:breakers}:health:${provider}`,
      channel: `{${name}:breakers}:events`,
    },
    upstreamKeys: (provider) => {
      const tag = `{${name}:upstream:${provider}}`;
      return {
        pause: (model) => `${tag}:pause:${model}`,
        budget: (model) => {
          const base = model === undefined ? tag : `${tag}:model:${model}`;
          return { requests: `${base}:requests`, tokens: `${base}:tokens`, leases: `${base}:leases` };
        },
      };
    },
    pauseChannel: `{${name}:upstream}:pauses`,
    busyCounts: `{${name}:upstream}:busy`,
    fileExpiry: `${prefix}:files:expiry`,
    responseCache: (requestHash) => ({ entry: `{${name}:cache:${requestHash}}:entry`, flight: `{${name}:cache:${requestHash}}:flight` }),
    bullPrefix: prefix,
    replyChannel,
    cancelChannel: `${prefix}:cancel`,
    storedReply: (jobId, replyTo) => (cluster && replyTo ? `${replyTag(replyTo)}:stored:${jobId}` : `${prefix}:stored-reply:${jobId}`),
    drainKey: (queue, epochSecond) => `${prefix}:${queue}:drain:${epochSecond}`,
    queueDepthKeys: (queue, shard = 0) => {
      const base = `${shards[shard]?.bullPrefix ?? prefix}:${queue}`;
      return { wait: `${base}:wait`, prioritized: `${base}:prioritized`, delayed: `${base}:delayed`, active: `${base}:active` };
    },
  };
}
