// Every Redis key and channel name Spillway uses, derived from the one configured prefix.
// Nothing else in the codebase may build a key by hand: KEDA manifests and tests read the names from here.

/** Queue names. `completions` carries LLM calls (sync and async); `webhooks` carries deliveries. */
export const QUEUE_NAMES = { completions: 'completions', webhooks: 'webhooks' } as const;
export type QueueName = (typeof QUEUE_NAMES)[keyof typeof QUEUE_NAMES];

export interface RedisKeys {
  /** BullMQ's `prefix` option: BullMQ appends `:<queue>:<suffix>` itself. */
  readonly bullPrefix: string;
  /** The one channel an ingress instance subscribes to for replies to the jobs it enqueued. */
  replyChannel(instanceId: string): string;
  /** Broadcast channel on which ingresses ask workers to abort an active job. */
  readonly cancelChannel: string;
  /**
   * A reply body too large for pub/sub (over `redis.inlineReplyBytes`), stored by the worker with a short TTL; the
   * `done` message and the job's return value carry only this key. Under the queue's hash tag.
   */
  storedReply(jobId: string): string;
  /** The BullMQ keys KEDA and the metrics read to measure queue depth. */
  queueDepthKeys(queue: QueueName): { wait: string; prioritized: string; delayed: string; active: string };
  /**
   * Jobs a queue's workers finished during one epoch second (load shedding's drain rate). In the queue's own slot,
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

export function createRedisKeys(prefix: string = DEFAULT_PREFIX): RedisKeys {
  const name = hashTagName(prefix);
  return {
    tenantKeys: (tenantId) => {
      const tag = `{${name}:tenant:${tenantId}}`;
      return { requests: `${tag}:requests`, tokens: `${tag}:tokens`, leases: `${tag}:leases`, fairShare: `${tag}:fair` };
    },
    breakers: {
      open: (deployment) => `{${name}:breakers}:open:${deployment}`,
      probe: (deployment) => `{${name}:breakers}:probe:${deployment}`,
      healthLease: (provider) => `{${name}:breakers}:health:${provider}`,
      channel: `{${name}:breakers}:events`,
    },
    bullPrefix: prefix,
    replyChannel: (instanceId) => `${prefix}:reply:${instanceId}`,
    cancelChannel: `${prefix}:cancel`,
    storedReply: (jobId) => `${prefix}:stored-reply:${jobId}`,
    drainKey: (queue, epochSecond) => `${prefix}:${queue}:drain:${epochSecond}`,
    queueDepthKeys: (queue) => ({
      wait: `${prefix}:${queue}:wait`,
      prioritized: `${prefix}:${queue}:prioritized`,
      delayed: `${prefix}:${queue}:delayed`,
      active: `${prefix}:${queue}:active`,
    }),
  };
}
