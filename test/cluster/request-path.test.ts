// The core request path on a real Redis Cluster (3 masters + 3 replicas), Spillway in split mode with 6 queue shards:
// chat JSON, streams and a stored (too large for pub/sub) answer through the official openai client, cancellation, and
// where the work lands (every shard, every master; admission in the tenant's slot; each ingress's replies on sharded
// pub/sub in a slot of its own).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { startRedisCluster, type RedisCluster } from '../support/redis-cluster.ts';
import { startSpillwayOnCluster, type SpillwayOnCluster } from '../support/spillway-on-redis-cluster.ts';
import { TENANT_KEY } from '../support/spillway-cluster.ts';
import { keySlot } from '../../src/queue/key-slot.ts';
import { waitFor } from '../support/wait.ts';

const SHARDS = 6;
let cluster: RedisCluster;
let spillway: SpillwayOnCluster;
let client: OpenAI;

beforeAll(async () => {
  cluster = await startRedisCluster();
  spillway = await startSpillwayOnCluster({
    cluster,
    shards: SHARDS,
    workers: 2,
    // Budgets far above what the tests send, and fair share: every request runs the admission script and the
    // concurrency lease scripts, each of which must touch one slot only (the tenant's).
    config: {
      tenantDefaults: { rpm: 600_000, tpm: 100_000_000, maxConcurrent: 64 },
      server: { fairShare: 'on' },
      // Small, so that an embeddings answer travels as a stored body (a key beside the reply channel) and a pointer.
      redis: { inlineReplyBytes: 4_096 },
    },
  });
  client = new OpenAI({ baseURL: `${spillway.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0 });
}, 90_000);

afterAll(async () => {
  await spillway?.close();
  await cluster?.close();
});

/** The instance id of the ingress, from its start-up log line. */
function ingressInstanceId(): string {
  const match = /"instanceId":"([^"]+)"/.exec(spillway.ingress.output());
  if (match === null) throw new Error(`no instanceId in the ingress log:\n${spillway.ingress.output()}`);
  return match[1]!;
}

describe('on a Redis Cluster', () => {
  it('answers a chat completion (JSON) through the official client', async () => {
    const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] }, { headers: { 'x-mock-chunks': '3' } });
    expect(completion.object).toBe('chat.completion');
    expect(completion.choices[0]?.message.content).toBe('tok1 tok2 tok3');
  });

  it('streams a chat completion whole and in order', async () => {
    const stream = await client.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], stream: true },
      { headers: { 'x-mock-chunks': '40', 'x-mock-chunk-delay-ms': '2' } },
    );
    const pieces: string[] = [];
    for await (const chunk of stream) {
      const piece = chunk.choices[0]?.delta.content;
      if (piece) pieces.push(piece.trim());
    }
    expect(pieces).toEqual(Array.from({ length: 40 }, (_, i) => `tok${i + 1}`));
  });

  it('delivers an answer too large for pub/sub through a key in the slot of the ingress reply channel', async () => {
    // Keyspace notifications of the master that owns the ingress's reply channel: the stored body is written there.
    const channel = spillway.keys.replyChannel(ingressInstanceId());
    const owner = await cluster.masterOf(channel);
    const admin = cluster.node(owner);
    const watcher = cluster.node(owner);
    const events: string[] = [];
    try {
      await admin.config('SET', 'notify-keyspace-events', 'K$g');
      watcher.on('pmessage', (_pattern: string, key: string, event: string) => events.push(`${event} ${key.replace(/^__keyspace@0__:/, '')}`));
      await watcher.psubscribe(`__keyspace@0__:${channel}:stored:*`);
      const input = Array.from({ length: 20 }, (_, i) => `text ${i}`);
      const embeddings = await client.embeddings.create({ model: 'text-embedding-3-small', input, dimensions: 512, encoding_format: 'base64' });
      expect(embeddings.data).toHaveLength(20);
      // Written by the worker, then read by the ingress and freed at once.
      await waitFor(() => events.some((e) => e.startsWith('del ')), { what: 'the stored body to be freed' });
      expect(events.map((e) => e.split(' ')[0])).toEqual(['set', 'expire', 'del']);
      expect(events.every((e) => e.split(' ')[1]!.startsWith(`${channel}:stored:`))).toBe(true);
    } finally {
      await admin.config('SET', 'notify-keyspace-events', '');
      admin.disconnect();
      watcher.disconnect();
    }
  });

  it('a client that leaves a running stream gets its upstream call aborted', async () => {
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], stream: true },
      { headers: { 'x-mock-tag': 'cluster-cancel', 'x-mock-chunks': '500', 'x-mock-chunk-delay-ms': '20' }, signal: controller.signal },
    );
    let seen = 0;
    // The SDK either ends the iteration or throws an abort error, depending on where the abort lands.
    try {
      for await (const _chunk of stream) {
        if (++seen === 3) controller.abort();
      }
    } catch (err) {
      expect(err).toBeInstanceOf(OpenAI.APIUserAbortError);
    }
    expect(seen).toBe(3);
    await waitFor(() => spillway.mock.stats().byTag['cluster-cancel']?.aborted === 1, { what: 'the upstream call to be aborted' });
    expect(spillway.mock.stats().byTag['cluster-cancel']).toMatchObject({ received: 1, completed: 0 });
  });

  it('spreads jobs over all 6 shards, whose hash tags lie on all 3 masters (2 each)', async () => {
    const owners = await Promise.all(spillway.keys.shards.map((s) => cluster.masterOf(`${s.bullPrefix}:completions:wait`)));
    const perMaster = new Map<number, number>();
    for (const owner of owners) perMaster.set(owner, (perMaster.get(owner) ?? 0) + 1);
    expect([...perMaster.values()]).toEqual([2, 2, 2]);
    // Each shard's tag is where keys.ts says it is (its CRC16 slot, as the cluster computes it).
    const node = cluster.node((await cluster.masters())[0]!);
    for (const shard of spillway.keys.shards) expect(await node.cluster('KEYSLOT', `${shard.bullPrefix}:completions:wait`)).toBe(shard.slot);
    node.disconnect();

    const tags = Array.from({ length: 60 }, (_, i) => `spread-${i}`);
    await Promise.all(tags.map((tag) => client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: tag }] }, { headers: { 'x-mock-tag': tag } })));
    // Completed jobs are removed at once; the event stream's tail says which shard ran something.
    const ran = await Promise.all(spillway.queues.map(async (q) => (await spillway.redis.xlen(`${q.opts.prefix}:completions:events`)) > 0));
    expect(ran).toEqual(Array(SHARDS).fill(true));
  });

  it("keeps a tenant's admission state in the tenant's own slot, on that slot's master", async () => {
    const response = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'budget' }] })
      .withResponse();
    expect(response.response.headers.get('x-ratelimit-limit-requests')).toBe('600000');
    const tenant = spillway.keys.tenantKeys('acme');
    expect(new Set([tenant.requests, tenant.tokens, tenant.leases, tenant.fairShare].map(keySlot)).size).toBe(1);
    const node = cluster.node(await cluster.masterOf(tenant.requests));
    try {
      // Written by admit.lua on that master (a budget's key expires as soon as the budget is whole again: with budgets
      // this large, within a millisecond; the fair-share clock stays). A key of another slot would have failed the
      // script with CROSSSLOT, and the request with it.
      expect(await node.exists(tenant.requests, tenant.tokens, tenant.fairShare)).toBeGreaterThan(0);
    } finally {
      node.disconnect();
    }
  });

  it("puts the ingress's reply channel in a slot of its own and relays replies on sharded pub/sub", async () => {
    const channel = spillway.keys.replyChannel(ingressInstanceId());
    expect(channel).toMatch(/^\{t-cluster-[0-9a-f]+:reply:.+\}$/);
    const owner = await cluster.masterOf(channel);
    const node = cluster.node(owner);
    try {
      // Sharded subscriptions are counted by the master that owns the channel's slot, and nowhere else.
      expect(await node.call('PUBSUB', 'SHARDNUMSUB', channel)).toEqual([channel, 1]);
      expect(await node.call('PUBSUB', 'NUMSUB', channel)).toEqual([channel, 0]);
    } finally {
      node.disconnect();
    }
    expect(keySlot(channel)).toBe(Number(await spillway.redis.cluster('KEYSLOT', channel)));
  });
});
