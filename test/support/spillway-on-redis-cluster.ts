// A split-mode Spillway on a real Redis Cluster for the cluster suite: `spillway ingress` and N `spillway worker`
// processes configured with `redis.nodes` and `queue.shards`, the mock upstream in the test process, and the test's
// own BullMQ handles on every shard. close() kills the processes; the cluster belongs to the caller.
import { Queue } from 'bullmq';
import type { Cluster } from 'ioredis';
import { startMockUpstream, type MockUpstream, type MockUpstreamOptions } from '../../src/mock-upstream/index.ts';
import { createRedisKeys, QUEUE_NAMES, type RedisKeys } from '../../src/queue/keys.ts';
import { testConfig, type ClusterOptions } from './spillway-cluster.ts';
import { freePort } from './ports.ts';
import { uniquePrefix } from './redis.ts';
import { spawnSpillway, waitForLog, waitForReady, writeConfigFile, type SpillwayProcess } from './processes.ts';
import type { RedisCluster } from './redis-cluster.ts';

export interface SpillwayOnCluster {
  baseUrl: string;
  mock: MockUpstream;
  ingress: SpillwayProcess;
  workers: SpillwayProcess[];
  prefix: string;
  keys: RedisKeys;
  /** The test's own connection to the cluster. */
  redis: Cluster;
  /** One BullMQ Queue per shard, in shard order (the test's handles, not Spillway's). */
  queues: Queue[];
  configFile: string;
  /** Starts one more worker process with the same configuration. */
  addWorker(): Promise<SpillwayProcess>;
  close(): Promise<void>;
}

export interface SpillwayOnClusterOptions {
  cluster: RedisCluster;
  shards: number;
  workers?: number;
  mock?: MockUpstreamOptions;
  /** Deep-merged one level over the defaults (as in spillway-cluster.ts). */
  config?: ClusterOptions['config'];
}

export async function startSpillwayOnCluster(options: SpillwayOnClusterOptions): Promise<SpillwayOnCluster> {
  const mock = await startMockUpstream(options.mock);
  const port = await freePort();
  const prefix = uniquePrefix('cluster');
  const keys = createRedisKeys(prefix, { shards: options.shards, cluster: true });
  const overrides = options.config ?? {};
  const config = testConfig(options.cluster.urls[0]!, prefix, port, mock.url, {
    ...overrides,
    redis: { url: options.cluster.urls[0]!, prefix, nodes: options.cluster.urls, ...(overrides.redis as object | undefined) },
    queue: { shards: options.shards, ...(overrides.queue as object | undefined) },
  });
  const configFile = writeConfigFile(config);
  const startWorker = () => spawnSpillway(['worker', '--config', configFile]);
  const workers = Array.from({ length: options.workers ?? 2 }, startWorker);
  const ingress = spawnSpillway(['ingress', '--config', configFile]);
  const baseUrl = `http://127.0.0.1:${port}`;
  const redis = options.cluster.connect({ redisOptions: { maxRetriesPerRequest: null } });
  redis.on('error', () => undefined);
  const queues = keys.shards.map((shard) => new Queue(QUEUE_NAMES.completions, { connection: redis, prefix: shard.bullPrefix, skipMetasUpdate: true }));
  const close = async () => {
    if (process.env.E2E_LOGS) for (const p of [ingress, ...workers]) console.log(p.output());
    await Promise.all([ingress, ...workers].map((p) => p.kill('SIGKILL')));
    await Promise.all(queues.map((q) => q.close()));
    redis.disconnect();
    await mock.close();
  };
  try {
    await Promise.all([waitForReady(baseUrl, ingress, 30_000), ...workers.map((w) => waitForLog(w, 'worker started', 30_000))]);
  } catch (err) {
    const logs = [ingress, ...workers].map((p) => p.output()).join('\n---\n');
    await close();
    throw new Error(`${(err as Error).message}\n${logs}`, { cause: err });
  }
  return {
    baseUrl,
    mock,
    ingress,
    workers,
    prefix,
    keys,
    redis,
    queues,
    configFile,
    addWorker: async () => {
      const worker = startWorker();
      workers.push(worker);
      await waitForLog(worker, 'worker started', 30_000);
      return worker;
    },
    close,
  };
}
