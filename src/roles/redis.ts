// Redis connections by role. The ingress's command connection fails fast (no offline queue, a timeout on every
// command) so a request gets a 503 instead of hanging; BullMQ worker and subscriber connections retry forever.
// With `redis.nodes` each factory returns an ioredis Cluster with the same behaviour, so the roles stay the same.
import { Cluster, Redis, type ClusterNode, type ClusterOptions, type RedisOptions } from 'ioredis';

/** What the factories connect to: a single Redis (`url`), or a Redis Cluster when `nodes` (seed URLs) is not empty. */
export interface RedisEndpoint {
  url: string;
  nodes?: readonly string[] | undefined;
}

/** A command connection of either kind (every Spillway script and multi-key command touches one slot only). */
export type RedisConnection = Redis | Cluster;

// No auto-pipelining here: measured (npm run bench, hold) it added ~60 MB of garbage during a 10,000-request
// burst without enqueueing it any faster. `commandTimeoutMs`: a Redis that is up but does not answer (paused,
// swapping, a long script) must not hold a request past its deadline; the command rejects and the caller answers.
export function createFailFastConnection(url: string, name: string, options?: { commandTimeoutMs?: number }): Redis;
export function createFailFastConnection(endpoint: string | RedisEndpoint, name: string, options?: { commandTimeoutMs?: number }): RedisConnection;
export function createFailFastConnection(endpoint: string | RedisEndpoint, name: string, options: { commandTimeoutMs?: number } = {}): RedisConnection {
  const redisOptions: RedisOptions = {
    connectionName: name,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: reconnectDelay,
    ...(options.commandTimeoutMs === undefined ? {} : { commandTimeout: options.commandTimeoutMs }),
  };
  const nodes = clusterNodes(endpoint);
  if (nodes === undefined) return new Redis(urlOf(endpoint), redisOptions);
  // A command to a master that just died is retried (retryDelayOnFailover, up to maxRedirections) while the cluster
  // elects its replica; the command timeout still bounds each attempt, so a request answers 503 rather than hang.
  return new Cluster(nodes.seeds, clusterOptions(nodes, { ...redisOptions, retryStrategy: null }, { enableOfflineQueue: false, maxRedirections: 6 }));
}

/**
 * Patient connections (BullMQ workers, subscribers, the reply publisher). On a cluster, the ingress's reply bus opens
 * its SSUBSCRIBE connection itself (src/queue/reply-subscription.ts), with this one's credentials.
 */
export function createPatientConnection(url: string, name: string, options?: { autoPipelining?: boolean }): Redis;
export function createPatientConnection(endpoint: string | RedisEndpoint, name: string, options?: { autoPipelining?: boolean }): RedisConnection;
export function createPatientConnection(endpoint: string | RedisEndpoint, name: string, options: { autoPipelining?: boolean } = {}): RedisConnection {
  const redisOptions: RedisOptions = {
    connectionName: name,
    maxRetriesPerRequest: null,
    enableAutoPipelining: options.autoPipelining ?? false,
    retryStrategy: reconnectDelay,
  };
  const nodes = clusterNodes(endpoint);
  if (nodes === undefined) return new Redis(urlOf(endpoint), redisOptions);
  return new Cluster(
    nodes.seeds,
    clusterOptions(nodes, { connectionName: name, maxRetriesPerRequest: null }, { enableAutoPipelining: options.autoPipelining ?? false }),
  );
}

interface ClusterTarget {
  seeds: ClusterNode[];
  /** Credentials and TLS of the seed URLs, applied to every node the cluster reports. */
  auth: RedisOptions;
}

function urlOf(endpoint: string | RedisEndpoint): string {
  return typeof endpoint === 'string' ? endpoint : endpoint.url;
}

function clusterNodes(endpoint: string | RedisEndpoint): ClusterTarget | undefined {
  if (typeof endpoint === 'string' || endpoint.nodes === undefined || endpoint.nodes.length === 0) return undefined;
  const urls = endpoint.nodes.map((node) => new URL(node));
  const first = urls[0]!;
  const auth: RedisOptions = {
    ...(first.username ? { username: decodeURIComponent(first.username) } : {}),
    ...(first.password ? { password: decodeURIComponent(first.password) } : {}),
    ...(first.protocol === 'rediss:' ? { tls: {} } : {}),
  };
  return { seeds: urls.map((u) => ({ host: u.hostname, port: Number(u.port || 6379) })), auth };
}

function clusterOptions(target: ClusterTarget, redisOptions: RedisOptions, extra: ClusterOptions): ClusterOptions {
  return {
    redisOptions: { ...target.auth, ...redisOptions },
    // Reconnect to the cluster like a single Redis: quickly at first, then every 2 s, for ever.
    clusterRetryStrategy: reconnectDelay,
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 200,
    retryDelayOnTryAgain: 100,
    // A failover shows up as MOVED / connection errors at once; the periodic refresh catches a quiet one too.
    slotsRefreshInterval: 2_000,
    ...extra,
  };
}

/** Reconnect quickly at first, then every 2 s at most: a Redis restart should cost seconds, not minutes. */
function reconnectDelay(times: number): number {
  return Math.min(50 * 2 ** times, 2_000);
}

/** Resolves when the connection is ready; rejects after `timeoutMs` with a clear message. */
export function waitForRedis(redis: RedisConnection, timeoutMs: number): Promise<void> {
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
export function probeRedis(redis: RedisConnection, options: { intervalMs: number; timeoutMs: number }): RedisProbe {
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
