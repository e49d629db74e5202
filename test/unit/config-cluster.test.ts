// The Redis Cluster settings of the configuration: redis.nodes (seed URLs, from a list or one ${VAR} string), the
// hash-tag prefix it requires, queue.shards and the worker's shard subset; a single Redis with one shard by default.
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.ts';

const base = {
  providers: [{ id: 'mock', type: 'mock' }],
  models: [{ name: 'm', route: [{ provider: 'mock', model: 'm' }] }],
  tenants: [{ id: 'acme', dev: true, keys: ['sk-dev-key-1'] }],
};

function errorsOf(raw: unknown): string[] {
  try {
    parseConfig(raw);
  } catch (err) {
    if (err instanceof ConfigError) return err.message.split('\n');
    throw err;
  }
  return [];
}

describe('Redis Cluster configuration', () => {
  it('defaults to a single Redis, one queue shard, completed jobs removed at once and a 60 s reply TTL', () => {
    const config = parseConfig(base);
    expect(config.redis.nodes).toEqual([]);
    expect(config.queue.shards).toBe(1);
    expect(config.worker.shards).toBeUndefined();
    expect(config.jobs.keepCompletedSeconds).toBe(0);
    expect(config.jobs.replyTtlSeconds).toBe(60);
  });

  it('takes seed nodes as a list or as one string of URLs separated by spaces or commas', () => {
    const nodes = ['redis://10.0.0.1:6379', 'rediss://user:secret@10.0.0.2:6380'];
    expect(parseConfig({ ...base, redis: { nodes } }).redis.nodes).toEqual(nodes);
    expect(parseConfig({ ...base, redis: { nodes: nodes.join(', ') } }).redis.nodes).toEqual(nodes);
  });

  it('refuses a seed without a port, and a prefix that is not a hash tag in cluster mode', () => {
    expect(errorsOf({ ...base, redis: { nodes: ['redis://10.0.0.1'] } }).join('\n')).toMatch(/redis\.nodes\[0\]: must be a redis:\/\/ or rediss:\/\/ URL with a host and a port/);
    expect(errorsOf({ ...base, redis: { nodes: ['redis://10.0.0.1:6379'], prefix: 'spillway' } }).join('\n')).toMatch(/redis\.prefix: must be a hash tag such as \{spillway\}/);
    // A single Redis takes any prefix.
    expect(errorsOf({ ...base, redis: { prefix: 'spillway' } })).toEqual([]);
  });

  it('takes queue.shards from 1 to 256, and a worker subset of existing shards, each once', () => {
    expect(parseConfig({ ...base, queue: { shards: '6' }, worker: { shards: [0, 5] } }).queue.shards).toBe(6);
    expect(errorsOf({ ...base, queue: { shards: 0 } }).join('\n')).toMatch(/queue\.shards/);
    const errors = errorsOf({ ...base, queue: { shards: 3 }, worker: { shards: [1, 3, 1] } }).join('\n');
    expect(errors).toMatch(/worker\.shards\[1\]: no shard 3: queue\.shards is 3/);
    expect(errors).toMatch(/worker\.shards\[2\]: shard 1 listed twice/);
  });
});
