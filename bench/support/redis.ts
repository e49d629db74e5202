// The benchmark's own redis-server: a child on a free loopback port, no persistence, killed with the rest.
// Never touches a Redis it did not start.
import { Redis } from 'ioredis';
import { freePort, spawnChild, waitUntil, type Child } from './processes.ts';

export interface RedisServer {
  url: string;
  child: Child;
  version: string;
}

export async function startRedis(logDir: string): Promise<RedisServer> {
  const port = await freePort();
  const child = spawnChild('redis', 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { logDir });
  const url = `redis://127.0.0.1:${port}`;
  const version = await waitUntil(() => (child.alive() ? serverVersion(url) : Promise.reject(new Error('redis-server exited'))), `redis-server on port ${port}`, 10_000);
  return { url, child, version };
}

/** A connection for the benchmark's own use (queue pause/resume, counts). */
export function connect(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, connectionName: 'spillway-bench' });
}

async function serverVersion(url: string): Promise<string | undefined> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const info = await client.info('server');
    return /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
  } catch {
    return undefined;
  } finally {
    client.disconnect();
  }
}
