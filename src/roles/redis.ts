// Redis connections by role. The ingress's command connection fails fast (no offline queue, a timeout on every
// command) so a request gets a 503 instead of hanging; BullMQ worker and subscriber connections retry forever.
import { Redis } from 'ioredis';

// No auto-pipelining here: measured (npm run bench, hold) it added ~60 MB of garbage during a 10,000-request
// burst without enqueueing it any faster. `commandTimeoutMs`: a Redis that is up but does not answer (paused,
// swapping, a long script) must not hold a request past its deadline; the command rejects and the caller answers.
export function createFailFastConnection(url: string, name: string, options: { commandTimeoutMs?: number } = {}): Redis {
  return new Redis(url, {
    connectionName: name,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: reconnectDelay,
    ...(options.commandTimeoutMs === undefined ? {} : { commandTimeout: options.commandTimeoutMs }),
  });
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

export interface RedisProbe {
  /** Undefined while Redis answers; otherwise why it is considered unavailable. */
  reason(): string | undefined;
  stop(): void;
}

/**
 * PINGs `redis` every `intervalMs`: a connection can be 'ready' while Redis answers nothing (SIGSTOP, a stuck
 * script), and readiness must say so. Unanswered once the PING has waited `timeoutMs` (or failed), answering again
 * from the next PONG. One PING at a time; the timer does not keep the process alive.
 */
export function probeRedis(redis: Redis, options: { intervalMs: number; timeoutMs: number }): RedisProbe {
  let sentAt: number | undefined;
  let failing = false;
  const tick = () => {
    if (sentAt !== undefined || redis.status !== 'ready') return;
    const started = Date.now();
    sentAt = started;
    redis.ping().then(
      () => {
        failing = false;
      },
      () => {
        failing = true;
      },
    ).finally(() => {
      if (sentAt === started) sentAt = undefined;
    });
  };
  const timer = setInterval(tick, options.intervalMs);
  timer.unref();
  return {
    reason: () => {
      if (failing || (sentAt !== undefined && Date.now() - sentAt > options.timeoutMs)) return 'redis not answering';
      return undefined;
    },
    stop: () => clearInterval(timer),
  };
}
