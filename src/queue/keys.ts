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
  /** The BullMQ keys KEDA and the metrics read to measure queue depth. */
  queueDepthKeys(queue: QueueName): { wait: string; prioritized: string; delayed: string; active: string };
}

/**
 * The default prefix carries a hash tag so that every key of a deployment lands in one Redis Cluster slot
 * (BullMQ's Lua scripts touch several keys of one queue at once).
 */
export const DEFAULT_PREFIX = '{spillway}';

export function createRedisKeys(prefix: string = DEFAULT_PREFIX): RedisKeys {
  return {
    bullPrefix: prefix,
    replyChannel: (instanceId) => `${prefix}:reply:${instanceId}`,
    cancelChannel: `${prefix}:cancel`,
    queueDepthKeys: (queue) => ({
      wait: `${prefix}:${queue}:wait`,
      prioritized: `${prefix}:${queue}:prioritized`,
      delayed: `${prefix}:${queue}:delayed`,
      active: `${prefix}:${queue}:active`,
    }),
  };
}
