// A split-mode Spillway for end-to-end tests: one `spillway ingress` and N `spillway worker` processes against a
// real Redis, with the mock upstream in the test process (so tests can read its counters directly).
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { Queue } from 'bullmq';
import { startMockUpstream, type MockUpstream, type MockUpstreamOptions } from '../../src/mock-upstream/index.ts';
import { createRedisKeys, QUEUE_NAMES } from '../../src/queue/keys.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { freePort } from './ports.ts';
import { uniquePrefix } from './redis.ts';
import { spawnSpillway, waitForLog, waitForReady, writeConfigFile, type SpillwayProcess } from './processes.ts';
import { configuredSecrets, findLeaks } from './log-secrets.ts';

export const TENANT_KEY = 'sk-test-acme-0123456789';

export interface Cluster {
  baseUrl: string;
  mock: MockUpstream;
  ingress: SpillwayProcess;
  workers: SpillwayProcess[];
  prefix: string;
  queue: Queue;
  redis: Redis;
  configFile: string;
  close(): Promise<void>;
}

export interface ClusterOptions {
  redisUrl: string;
  workers?: number;
  mock?: MockUpstreamOptions;
  /** Fields merged into the `mock` provider's config (e.g. a longer timeoutMs). */
  provider?: Record<string, unknown>;
  /** Deep-merged over the defaults below (top-level sections are merged one level deep). */
  config?: Partial<Record<keyof ConfigInput, unknown>>;
  /** Raw keys behind the config's hashes (tenants, admin): close() fails if any process printed one. */
  secrets?: readonly string[];
}

export function testConfig(
  redisUrl: string,
  prefix: string,
  port: number,
  mockUrl: string,
  overrides: ClusterOptions['config'] = {},
  provider: ClusterOptions['provider'] = {},
): ConfigInput {
  const base: Record<string, unknown> = {
    server: { host: '127.0.0.1', port, forwardHeaders: ['x-mock-*'], bodyLimitBytes: 256 * 1024, shutdownGraceMs: 10_000 },
    redis: { url: redisUrl, prefix },
    worker: { concurrency: 8, lockDurationMs: 2_000, stalledIntervalMs: 1_000 },
    logging: { level: 'info' },
    providers: [{ id: 'mock', type: 'openai', baseUrl: mockUrl, apiKey: 'sk-upstream-secret-value', timeoutMs: 30_000, ...provider }],
    models: [
      { name: 'gpt-4o-mini', route: [{ provider: 'mock', model: 'mock-chat' }] },
      { name: 'gpt-3.5-turbo-instruct', route: [{ provider: 'mock', model: 'mock-instruct' }], endpoints: ['completions'] },
      { name: 'text-embedding-3-small', route: [{ provider: 'mock', model: 'mock-embed' }], endpoints: ['embeddings'] },
    ],
    tenants: [{ id: 'acme', keys: [`sha256:${createHash('sha256').update(TENANT_KEY).digest('hex')}`] }],
  };
  for (const [section, value] of Object.entries(overrides)) {
    const current = base[section];
    base[section] = isPlainObject(current) && isPlainObject(value) ? { ...current, ...value } : value;
  }
  return base as ConfigInput;
}

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const mock = await startMockUpstream(options.mock);
  const port = await freePort();
  const prefix = uniquePrefix('e2e');
  const config = testConfig(options.redisUrl, prefix, port, mock.url, options.config, options.provider);
  const configFile = writeConfigFile(config);
  const workers = Array.from({ length: options.workers ?? 2 }, () => spawnSpillway(['worker', '--config', configFile]));
  const ingress = spawnSpillway(['ingress', '--config', configFile]);
  const baseUrl = `http://127.0.0.1:${port}`;
  const redis = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue(QUEUE_NAMES.completions, { connection: redis, prefix: createRedisKeys(prefix).bullPrefix });
  const close = async () => {
    if (process.env.E2E_LOGS) for (const p of [ingress, ...workers]) console.log(p.output());
    await Promise.all([ingress, ...workers].map((p) => p.kill('SIGKILL')));
    await queue.close();
    redis.disconnect();
    await mock.close();
    // No configured secret may reach a log line (DESIGN.md "Errors"): checked on every e2e file's processes.
    const outputs = [ingress, ...workers].map((p, i) => ({ name: i === 0 ? 'the ingress' : `worker ${i}`, text: p.output() }));
    const leaks = findLeaks(outputs, configuredSecrets(config, options.secrets));
    if (leaks.length > 0) throw new Error(`a configured secret appeared in process output: ${leaks.join('; ')}`);
  };
  try {
    await Promise.all([waitForReady(baseUrl, ingress), ...workers.map((w) => waitForLog(w, 'worker started'))]);
  } catch (err) {
    const logs = [ingress, ...workers].map((p) => p.output()).join('\n---\n');
    await close();
    throw new Error(`${(err as Error).message}\n${logs}`, { cause: err });
  }
  return { baseUrl, mock, ingress, workers, prefix, queue, redis, configFile, close };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
