// Queue shards and Redis Cluster key names (src/queue/keys.ts, key-slot.ts): shard tags spread evenly over the slot
// ranges, shard 0 keeps today's names, job ids map to shards uniformly and stably, and cluster mode tags reply channels.
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createRedisKeys, shardPrefixes } from '../../src/queue/keys.ts';
import { CLUSTER_SLOTS, keySlot } from '../../src/queue/key-slot.ts';

describe('keySlot', () => {
  it('computes Redis Cluster slots (CRC16-XMODEM mod 16384), honouring only a non-empty first hash tag', () => {
    // Reference values: the CRC16 check value of "123456789" is 0x31C3; the others are what CLUSTER KEYSLOT answers.
    expect(keySlot('123456789')).toBe(0x31c3);
    expect(keySlot('{123456789}:anything')).toBe(0x31c3);
    expect(keySlot('foo')).toBe(12182);
    expect(keySlot('{user1000}.following')).toBe(keySlot('user1000'));
    // An empty first tag: the whole key counts (Redis's documented examples).
    expect(keySlot('foo{}{bar}')).not.toBe(keySlot('bar'));
    expect(keySlot('foo{{bar}}zap')).toBe(keySlot('{bar'));
  });
});

describe('queue shards', () => {
  it('shard 0 keeps the configured prefix, so one shard names every key as before', () => {
    const keys = createRedisKeys('{spillway}');
    expect(keys.shards).toEqual([{ index: 0, bullPrefix: '{spillway}', slot: keySlot('{spillway}') }]);
    expect(keys.queueDepthKeys('completions').wait).toBe('{spillway}:completions:wait');
    expect(keys.shardOf(randomUUID()).index).toBe(0);
    expect(keys.replyChannel('i-1')).toBe('{spillway}:reply:i-1');
  });

  it.each([2, 3, 6, 12, 64])('%i shards: one hash tag per equal slot range, shard 0 in the range of its own slot', (count) => {
    const prefixes = shardPrefixes('{spillway}', count);
    expect(prefixes).toHaveLength(count);
    expect(prefixes[0]).toBe('{spillway}');
    const ranges = prefixes.map((p) => Math.floor((keySlot(p) * count) / CLUSTER_SLOTS));
    expect(new Set(ranges).size).toBe(count);
    for (const p of prefixes.slice(1)) expect(p).toMatch(/^\{spillway:\d+\.\d+\}$/);
    // Deterministic: every process computes the same names.
    expect(shardPrefixes('{spillway}', count)).toEqual(prefixes);
  });

  it('6 shards on 3 masters splitting the slots evenly put 2 shards on each master', () => {
    const masterOf = (slot: number) => (slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2);
    const perMaster = [0, 0, 0];
    for (const p of shardPrefixes('{spillway}', 6)) perMaster[masterOf(keySlot(p))]!++;
    expect(perMaster).toEqual([2, 2, 2]);
  });

  it('spreads random job ids evenly over the shards, and always puts one id in the same shard', () => {
    const keys = createRedisKeys('{spillway}', { shards: 6 });
    const counts = [0, 0, 0, 0, 0, 0];
    for (let i = 0; i < 30_000; i++) counts[keys.shardOf(randomUUID()).index]!++;
    for (const n of counts) expect(Math.abs(n - 5_000)).toBeLessThan(500);
    const id = randomUUID();
    expect(createRedisKeys('{spillway}', { shards: 6 }).shardOf(id)).toEqual(keys.shardOf(id));
  });

  it('depth keys name each shard under its own tag', () => {
    const keys = createRedisKeys('{spillway}', { shards: 3 });
    const tags = keys.shards.map((s) => keys.queueDepthKeys('completions', s.index).wait.split(':completions:')[0]);
    expect(tags).toEqual(shardPrefixes('{spillway}', 3));
  });
});

describe('cluster mode names', () => {
  it('gives each ingress a reply hash tag of its own; its parked and stored replies live in that slot', () => {
    const keys = createRedisKeys('{spillway}', { cluster: true });
    const channel = keys.replyChannel('host-1-abc');
    expect(channel).toBe('{spillway:reply:host-1-abc}');
    expect(keySlot(keys.parkedReply('host-1-abc', 'job-1'))).toBe(keySlot(channel));
    expect(keySlot(keys.storedReply('job-1', 'host-1-abc'))).toBe(keySlot(channel));
    expect(keySlot(keys.replyChannel('host-2-def'))).not.toBe(keySlot(channel));
  });

  it('single Redis keeps the reply channel and stored body names of before (a rolling upgrade mixes versions)', () => {
    const keys = createRedisKeys('{spillway}');
    expect(keys.replyChannel('x')).toBe('{spillway}:reply:x');
    expect(keys.storedReply('job-1', 'x')).toBe('{spillway}:stored-reply:job-1');
  });
});
