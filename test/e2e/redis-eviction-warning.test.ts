// `spillway start` checks the Redis it finds: one that may evict keys (maxmemory-policy other than noeviction) can
// lose queued jobs and async job records, and is warned about at start; a noeviction Redis is not.
import { afterEach, describe, expect, it } from 'vitest';
import { startRedisServer, uniquePrefix, type RedisServer } from '../support/redis.ts';
import { spawnSpillway, waitForLog, writeConfigFile, type SpillwayProcess } from '../support/processes.ts';
import { testConfig } from '../support/spillway-cluster.ts';
import { freePort } from '../support/ports.ts';

const WARNING = 'Redis may evict keys (maxmemory-policy is not noeviction): queued jobs and async job records can be lost; set maxmemory-policy noeviction';

let redis: RedisServer | undefined;
let spillway: SpillwayProcess | undefined;

afterEach(async () => {
  await spillway?.kill('SIGKILL');
  await redis?.close();
});

async function start(policy: string): Promise<SpillwayProcess> {
  redis = await startRedisServer(['--maxmemory-policy', policy]);
  const config = testConfig(redis.url, uniquePrefix('evict'), await freePort(), 'http://127.0.0.1:9/v1');
  spillway = spawnSpillway(['start', '--config', writeConfigFile(config)]);
  await waitForLog(spillway, 'ingress listening');
  return spillway;
}

describe('spillway start', () => {
  it('warns when Redis may evict keys', async () => {
    const proc = await start('allkeys-lru');
    expect(proc.output()).toContain(WARNING);
    expect(proc.output()).toContain('"maxmemoryPolicy":"allkeys-lru"');
  });

  it('does not warn about a noeviction Redis', async () => {
    const proc = await start('noeviction');
    expect(proc.output()).not.toContain('Redis may evict keys');
  });
});
