// The benchmark's own Redis Cluster: 3 masters (no replicas: the bench measures load, test/cluster tests failover),
// redis-server children on free loopback ports joined by `redis-cli --cluster create`. Never touches a Redis it did not start.
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort, spawnChild, waitUntil, type Child } from './processes.ts';
import { redisSnapshot, type RedisSnapshot } from './redis-cost.ts';

export interface BenchCluster {
  /** One URL per master, in port order. */
  urls: string[];
  children: Child[];
  /** Each master's counters (INFO commandstats, INFO cpu), in the order of `urls`. */
  stats(): Promise<RedisSnapshot[]>;
  close(): Promise<void>;
}

const run = promisify(execFile);

export async function startBenchCluster(logDir: string, masters = 3): Promise<BenchCluster> {
  const ports: number[] = [];
  while (ports.length < masters) {
    const port = await freePort();
    // The cluster bus listens on port + 10000: both must be free.
    if (port + 10_000 <= 65_535 && !ports.includes(port) && (await canListen(port + 10_000))) ports.push(port);
  }
  const children = ports.map((port) => {
    const dir = mkdtempSync(join(logDir, `cluster-${port}-`));
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
    args.push('--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf'));
    return spawnChild(`redis-cluster-${port}`, 'redis-server', args, { logDir });
  });
  const clients = ports.map((port) => new Redis(port, '127.0.0.1', { maxRetriesPerRequest: null, lazyConnect: true }));
  for (const client of clients) client.on('error', () => undefined);
  const close = async () => {
    for (const client of clients) client.disconnect();
    await Promise.all(children.map((c) => c.stop(2_000)));
  };
  try {
    await Promise.all(ports.map((port, i) => waitUntil(() => (children[i]!.alive() ? ping(port) : Promise.reject(new Error('redis-server exited'))), `redis-server on port ${port}`, 10_000)));
    await Promise.all(clients.map((client) => client.connect()));
    await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 });
    await waitUntil(async () => {
      const infos = await Promise.all(clients.map((c) => c.cluster('INFO') as Promise<string>));
      return infos.every((info) => /^cluster_state:ok/m.test(info));
    }, 'the cluster to form', 30_000);
  } catch (err) {
    await close();
    throw err;
  }
  return {
    urls: ports.map((port) => `redis://127.0.0.1:${port}`),
    children,
    stats: () => Promise.all(clients.map((client) => redisSnapshot(client))),
    close,
  };
}

async function ping(port: number): Promise<boolean> {
  const client = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
