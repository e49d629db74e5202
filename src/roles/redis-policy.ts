// The start-up check of the Redis a role finds: queued jobs and async job records survive only a Redis that never
// evicts keys (and, across restarts, one with AOF). Warns; never refuses to start (managed Redis may hide its config).
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';

/** Reads `maxmemory_policy` and `aof_enabled` from INFO (CONFIG GET is often disabled on managed Redis). */
export async function checkRedisDurability(redis: Redis | Cluster, logger: Logger): Promise<{ maxmemoryPolicy?: string; aofEnabled?: boolean }> {
  let info: string;
  try {
    info = await redis.info();
  } catch (err) {
    logger.warn({ err: (err as Error).message }, 'could not read the Redis settings (INFO)');
    return {};
  }
  const field = (name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
  const maxmemoryPolicy = field('maxmemory_policy');
  const aof = field('aof_enabled');
  if (maxmemoryPolicy !== undefined && maxmemoryPolicy !== 'noeviction') {
    logger.warn(
      { maxmemoryPolicy },
      'Redis may evict keys (maxmemory-policy is not noeviction): queued jobs and async job records can be lost; set maxmemory-policy noeviction',
    );
  }
  if (aof === '0') logger.info('Redis runs without AOF (appendonly no): jobs accepted since its last snapshot are lost if it restarts');
  return { ...(maxmemoryPolicy === undefined ? {} : { maxmemoryPolicy }), ...(aof === undefined ? {} : { aofEnabled: aof === '1' }) };
}
