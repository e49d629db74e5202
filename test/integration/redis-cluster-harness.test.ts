// The Redis Cluster test harness (test/support/redis-cluster.ts) against real redis-server processes: the cluster forms,
// hash tags spread keys over the masters, sharded pub/sub and BullMQ work through ioredis Cluster, and survive failovers.
import { randomUUID } from 'node:crypto';
import { Queue, Worker, type Job } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisCluster, type RedisCluster } from '../support/redis-cluster.ts';
import { waitFor } from '../support/wait.ts';

/** The shard tags item 4 of issue 18 names: `{spillway:0}` … */
const SHARD_TAGS = Array.from({ length: 6 }, (_, i) => `{spillway:${i}}`);

let cluster: RedisCluster;

beforeAll(async () => {
  cluster = await startRedisCluster({ nodeTimeoutMs: 2_000 });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
});

/** A Queue and a Worker on one ioredis Cluster each, under a hash-tagged prefix: every key of the queue in one slot. */
function bullOnCluster(prefix: string) {
  // BullMQ needs maxRetriesPerRequest: null on the worker's connections; a short runRetryDelay makes the worker
  // retry soon after a connection error (its default waits 15 s), as a failover causes.
  const clusterOptions = { redisOptions: { maxRetriesPerRequest: null } };
  const queue = new Queue('completions', { connection: cluster.connect(clusterOptions), prefix });
  const processed: string[] = [];
  const worker = new Worker(
    'completions',
    async (job: Job<{ n: number }>) => {
      processed.push(job.id!);
      return { doubled: job.data.n * 2 };
    },
    { connection: cluster.connect(clusterOptions), prefix, concurrency: 4, runRetryDelay: 200 },
  );
  worker.on('error', () => undefined); // connection errors while a master is down are expected; the round trip tells
  /** Queue.add → Worker → completed with its return value, read back from Redis. */
  const roundTrip = async (n: number) => {
    const job = await queue.add('completion', { n }, { jobId: randomUUID(), removeOnComplete: { age: 60 } });
    return waitFor(async () => {
      const state = await queue.getJobState(job.id!);
      if (state !== 'completed') return undefined;
      return (await queue.getJob(job.id!))?.returnvalue as { doubled: number } | undefined;
    }, { timeoutMs: 20_000, what: `job ${job.id} to complete` });
  };
  const close = async () => {
    await worker.close();
    await queue.close();
  };
  return { queue, worker, processed, roundTrip, close };
}

describe('Redis Cluster test harness', () => {
  it('forms a cluster of 3 masters with one replica each, serving all 16384 slots', async () => {
    const view = await cluster.topology();
    const masters = view.filter((n) => n.role === 'master');
    const replicas = view.filter((n) => n.role === 'replica');
    expect(masters).toHaveLength(3);
    expect(replicas).toHaveLength(3);
    expect(new Set(replicas.map((r) => r.masterIndex))).toEqual(new Set(masters.map((m) => m.index)));
    expect(masters.reduce((sum, m) => sum + m.slots.reduce((s, [a, b]) => s + b - a + 1, 0), 0)).toBe(16_384);
    for (const node of cluster.nodes) {
      const client = cluster.node(node.index);
      const info = await client.cluster('INFO');
      client.disconnect();
      expect(info).toMatch(/^cluster_state:ok/m);
      expect(info).toMatch(/^cluster_known_nodes:6/m);
    }
  });

  it('puts keys with different hash tags on different masters, where a plain connection finds them', async () => {
    const client = cluster.connect();
    const owners = new Map<string, number>();
    for (const tag of SHARD_TAGS) {
      await client.set(`${tag}:probe`, tag);
      owners.set(tag, await cluster.masterOf(`${tag}:probe`));
    }
    // CRC16 slots 11022, 15151, 2892, 7021, 11146, 15275: all 3 masters of an evenly split cluster, though not evenly.
    expect(new Set(owners.values()).size).toBe(3);
    const masters = await cluster.masters();
    const direct = new Map(masters.map((m) => [m, cluster.node(m)]));
    for (const [tag, owner] of owners) {
      expect(await direct.get(owner)!.get(`${tag}:probe`)).toBe(tag);
      const other = masters.find((m) => m !== owner)!;
      await expect(direct.get(other)!.get(`${tag}:probe`)).rejects.toThrow(/^MOVED/);
    }
    for (const c of [client, ...direct.values()]) c.disconnect();
  });

  it('delivers SPUBLISH messages to SSUBSCRIBE subscribers through ioredis Cluster, on channels of different masters', async () => {
    const channels = [`${SHARD_TAGS[0]}:reply:a`, `${SHARD_TAGS[2]}:reply:b`];
    expect(await cluster.masterOf(channels[0]!)).not.toBe(await cluster.masterOf(channels[1]!));
    const subscriber = cluster.connect({ shardedSubscribers: true });
    const publisher = cluster.connect();
    const received: string[] = [];
    subscriber.on('smessage', (channel: string, message: string) => received.push(`${channel} ${message}`));
    for (const channel of channels) await subscriber.ssubscribe(channel);
    for (const channel of channels) {
      // SPUBLISH answers how many subscribers of the shard got it: wait until the subscription is in place.
      await waitFor(async () => (await publisher.spublish(channel, 'hello')) === 1, { what: `a subscriber on ${channel}` });
    }
    await waitFor(() => channels.every((c) => received.includes(`${c} hello`)), { what: 'both messages' });
    subscriber.disconnect();
    publisher.disconnect();
  });

  it('runs a BullMQ Queue + Worker round trip under a hash-tagged prefix', async () => {
    const bull = bullOnCluster(`{bull-${randomUUID().slice(0, 8)}}`);
    try {
      expect(await bull.roundTrip(21)).toEqual({ doubled: 42 });
      expect(bull.processed).toHaveLength(1);
    } finally {
      await bull.close();
    }
  });

  it('after its master is killed, a replica takes over and the same Queue and Worker round-trip again; the old master rejoins as a replica', async () => {
    const prefix = `{bull-${randomUUID().slice(0, 8)}}`;
    const bull = bullOnCluster(prefix);
    try {
      expect(await bull.roundTrip(1)).toEqual({ doubled: 2 });
      const master = await cluster.masterOf(`${prefix}:completions:wait`);
      const promoted = await cluster.killMaster(master);
      expect(await cluster.masterOf(`${prefix}:completions:wait`)).toBe(promoted);
      // Same clients, not recreated: they follow the slot to its new master.
      expect(await bull.roundTrip(2)).toEqual({ doubled: 4 });

      await cluster.restartNode(master);
      const view = await cluster.topology();
      expect(view.find((n) => n.index === master)).toMatchObject({ role: 'replica', masterIndex: promoted });
      expect(await bull.roundTrip(3)).toEqual({ doubled: 6 });
    } finally {
      await bull.close();
    }
  });

  it('CLUSTER FAILOVER on a replica swaps it with its master, and the same Queue and Worker keep working', async () => {
    const prefix = `{bull-${randomUUID().slice(0, 8)}}`;
    const bull = bullOnCluster(prefix);
    try {
      expect(await bull.roundTrip(5)).toEqual({ doubled: 10 });
      const master = await cluster.masterOf(`${prefix}:completions:wait`);
      const promoted = await cluster.failover(master);
      expect(await cluster.masterOf(`${prefix}:completions:wait`)).toBe(promoted);
      expect((await cluster.topology()).find((n) => n.index === master)).toMatchObject({ role: 'replica', masterIndex: promoted });
      expect(await bull.roundTrip(6)).toEqual({ doubled: 12 });
    } finally {
      await bull.close();
    }
  });
});
