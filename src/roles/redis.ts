// Redis connections by role. The ingress's command connection fails fast (no offline queue) so a request gets
// a 503 instead of hanging; BullMQ worker and subscriber connections retry forever (maxRetriesPerRequest: null).
import { Redis } from 'ioredis';

// No auto-pipelining here: measured (npm run bench, hold) it added ~60 MB of garbage during a 10,000-request
// burst without enqueueing it any faster.
export function createFailFastConnection(url: string, name: string): Redis {
  return new Redis(url, { connectionName: name, enableOfflineQueue: false, maxRetriesPerRequest: 1, retryStrategy: reconnectDelay });
}

export function createPatientConnection(url: string, name: string, options: { autoPipelining?: boolean } = {}): Redis {
  return new Redis(url, {
    connectionName: name,
    maxRetriesPerRequest: null,
    enableAutoPipelining: options.autoPipelining ?? false,
    retryStrategy: reconnectDelay,
  });
}

/** Reconnect quickly at first, then every 2 s at most: a Redis restart should cost seconds, not minutes. */
function reconnectDelay(times: number): number {
  return Math.min(50 * 2 ** times, 2_000);
}

/** Resolves when the connection is ready; rejects after `timeoutMs` with a clear message. */
export function waitForRedis(redis: Redis, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      reject(new Error(`Redis not reachable after ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    redis.once('ready', onReady);
  });
}
