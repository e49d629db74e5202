// The system under test: Redis, two mock upstreams (open, and limited to 100 concurrent calls), Spillway in split
// mode (one ingress, N workers). Starts everything, waits until ready, exposes probes; close() stops it all in order.
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { QUEUE_NAMES, createRedisKeys } from '../../src/queue/keys.ts';
import type { MockStats } from '../../src/mock-upstream/index.ts';
import { freePort, httpOk, readCpuSeconds, readRss, spawnChild, waitUntil, type Child } from './processes.ts';
import { connect, startRedis, type RedisServer } from './redis.ts';
import { redisSnapshot, type RedisSnapshot } from './redis-cost.ts';
import type { Target } from './targets.ts';

export const REPO_ROOT = resolve(import.meta.dirname, '..', '..');
const SPILLWAY_BIN = join(REPO_ROOT, 'bin', 'spillway.js');
export const API_KEY = 'sk-bench-key';
/** Tenants of the admission and fairness scenarios. */
export const LIMITED_TENANT_KEY = 'sk-bench-limited-key';
export const TENANT_A_KEY = 'sk-bench-tenant-a';
export const TENANT_B_KEY = 'sk-bench-tenant-b';
export const PREFIX = '{bench}';
/** The spike scenario's upstream accepts this many concurrent calls and answers 429 beyond. */
export const LIMITED_UPSTREAM_CONCURRENCY = 100;

export interface StackOptions {
  workers: number;
  logDir: string;
  /** When set, the ingress and workers run with --cpu-prof and write their profiles here on exit. */
  cpuProfDir: string | undefined;
  log: (line: string) => void;
}

export interface MockProcess {
  readonly origin: string;
  readonly child: Child;
  stats(): Promise<MockStats>;
  reset(): Promise<void>;
}

export interface CpuTimes {
  ingress: number;
  workers: number;
  redis: number;
  mock: number;
}

export interface Stack {
  redis: RedisServer;
  mock: MockProcess;
  limitedMock: MockProcess;
  /** The benchmark's own handle on Spillway's completions queue (pause/resume, counts). */
  queue: Queue;
  targets(upstream: 'open' | 'limited'): { direct: Target; spillway: Target };
  /** The ingress's unlabelled /metrics samples (e.g. spillway_ingress_pending_requests, heap sizes). */
  ingressMetrics(): Promise<Record<string, number>>;
  /** RSS of the ingress, of each worker and of the open mock upstream, in bytes. */
  rss(): { ingress: number; workers: number[]; mock: number };
  /** CPU seconds used so far by the ingress, all workers, Redis and the mock upstreams. */
  cpu(): CpuTimes;
  /** Redis's own counters so far (INFO commandstats, INFO cpu): diff two with redisCost(). */
  redisStats(): Promise<RedisSnapshot>;
  /** Stops and starts the open mock, the workers and the ingress (same ports): a scenario that needs fresh processes. */
  restart(): Promise<void>;
  /**
   * Restarts the ingress and workers with config sections merged over the bench's own (one level deep); `{}` restores
   * it. For a scenario that needs another setting (fair share on, fewer worker slots).
   */
  reconfigure(patch: Record<string, Record<string, unknown>>): Promise<void>;
  /** Throws when a process of the stack has died (its log file is named). */
  assertAlive(): void;
  close(): Promise<void>;
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const { logDir, log } = options;
  const processes = new Set<Child>();
  const track = (child: Child) => {
    processes.add(child);
    return child;
  };
  const alive = () => {
    for (const child of processes) if (!child.alive()) throw new Error(`${child.name} exited: see ${child.logFile}`);
  };
  const stopAll = () => Promise.all([...processes].map((c) => c.stop(2_000)));

  let redis: RedisServer | undefined;
  let queueRedis: Redis | undefined;
  let queue: Queue | undefined;
  try {
    redis = await startRedis(logDir);
    track(redis.child);
    log(`redis ${redis.version} at ${redis.url}`);
    const mockPort = await freePort();
    const limitedPort = await freePort();
    const ingressPort = await freePort();
    const configFile = join(logDir, 'spillway.yaml');
    const baseConfig = spillwayConfig(options.workers, ingressPort, redis.url, mockPort, limitedPort);
    writeFileSync(configFile, JSON.stringify(baseConfig, null, 2));

    let mockChild = track(await startMock('mock', mockPort, [], logDir));
    const limitedChild = track(await startMock('mock-limited', limitedPort, ['--max-concurrency', String(LIMITED_UPSTREAM_CONCURRENCY)], logDir));
    queueRedis = connect(redis.url);
    // skipMetasUpdate: a handle of ours must not reset the queue settings Spillway's ingress wrote (its event-stream cap).
    const q = new Queue(QUEUE_NAMES.completions, { connection: queueRedis, prefix: createRedisKeys(PREFIX).bullPrefix, skipMetasUpdate: true });
    queue = q;
    const ingressOrigin = `http://127.0.0.1:${ingressPort}`;

    let generation = 0;
    const role = (name: string, args: string[]) => {
      const flags = options.cpuProfDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', options.cpuProfDir, '--cpu-prof-name', `${name}.${generation}.cpuprofile`];
      return track(spawnChild(name, process.execPath, [...flags, SPILLWAY_BIN, ...args, '--config', configFile], { logDir }));
    };
    let ingress: Child | undefined;
    let workers: Child[] = [];
    const startSpillway = async () => {
      generation++;
      workers = Array.from({ length: options.workers }, (_, i) => role(`worker-${i + 1}`, ['worker']));
      ingress = role('ingress', ['ingress']);
      await waitUntil(async () => {
        alive();
        return httpOk(`${ingressOrigin}/ready`);
      }, 'the ingress to be ready', 30_000);
      // BullMQ names each worker's blocking connection after the queue: CLIENT LIST counts the workers listening.
      await waitUntil(async () => {
        alive();
        return (await q.getWorkersCount()) >= options.workers;
      }, `${options.workers} worker(s) to be ready`, 30_000);
      log(`spillway: ingress ${ingressOrigin} (pid ${ingress.pid}), ${workers.length} worker(s) (pids ${workers.map((w) => w.pid).join(', ')})`);
    };
    const stopSpillway = async () => {
      // Ingress first (stop accepting), then the workers; --cpu-prof profiles are written on these exits.
      await ingress?.stop(10_000);
      await Promise.all(workers.map((w) => w.stop(10_000)));
      for (const child of [ingress, ...workers]) if (child) processes.delete(child);
    };
    await startSpillway();

    const r = redis;
    const qr = queueRedis;
    const mockProcess = (origin: string, child: () => Child): MockProcess => ({
      origin,
      get child() {
        return child();
      },
      stats: async () => (await (await fetch(`${origin}/_mock/stats`, { signal: AbortSignal.timeout(5_000) })).json()) as MockStats,
      reset: async () => {
        await (await fetch(`${origin}/_mock/reset`, { method: 'POST', signal: AbortSignal.timeout(5_000) })).arrayBuffer();
      },
    });
    const mock = mockProcess(`http://127.0.0.1:${mockPort}`, () => mockChild);
    const limitedMock = mockProcess(`http://127.0.0.1:${limitedPort}`, () => limitedChild);
    return {
      redis: r,
      mock,
      limitedMock,
      queue: q,
      targets: (upstream) => ({
        direct: { name: 'direct', origin: upstream === 'open' ? mock.origin : limitedMock.origin, model: 'gpt-4o-mini', headers: {} },
        spillway: {
          name: 'spillway',
          origin: ingressOrigin,
          model: upstream === 'open' ? 'gpt-4o-mini' : 'gpt-4o-mini-limited',
          headers: { authorization: `Bearer ${API_KEY}` },
        },
      }),
      ingressMetrics: async () => {
        const res = await fetch(`${ingressOrigin}/metrics`, { signal: AbortSignal.timeout(5_000) });
        const samples: Record<string, number> = {};
        for (const match of (await res.text()).matchAll(/^([a-z_:][a-z0-9_:]*) (\S+)$/gm)) samples[match[1]!] = Number(match[2]);
        return samples;
      },
      rss: () => ({ ingress: readRss(ingress?.pid ?? 0), workers: workers.map((w) => readRss(w.pid)), mock: readRss(mockChild.pid) }),
      cpu: () => ({
        ingress: readCpuSeconds(ingress?.pid ?? 0),
        workers: workers.reduce((sum, w) => sum + readCpuSeconds(w.pid), 0),
        redis: readCpuSeconds(r.child.pid),
        mock: readCpuSeconds(mockChild.pid) + readCpuSeconds(limitedChild.pid),
      }),
      redisStats: () => redisSnapshot(qr),
      reconfigure: async (patch) => {
        const merged: Record<string, unknown> = { ...baseConfig };
        for (const [section, values] of Object.entries(patch)) merged[section] = { ...(baseConfig[section] as Record<string, unknown>), ...values };
        writeFileSync(configFile, JSON.stringify(merged, null, 2));
        await stopSpillway();
        await startSpillway();
      },
      restart: async () => {
        await stopSpillway();
        await mockChild.stop();
        processes.delete(mockChild);
        mockChild = track(await startMock('mock', mockPort, [], logDir));
        await startSpillway();
      },
      assertAlive: alive,
      close: async () => {
        await q.close().catch(() => undefined);
        qr.disconnect();
        await stopSpillway();
        await stopAll();
      },
    };
  } catch (err) {
    await queue?.close().catch(() => undefined);
    queueRedis?.disconnect();
    await stopAll();
    throw err;
  }
}

async function startMock(name: string, port: number, extra: string[], logDir: string): Promise<Child> {
  const child = spawnChild(name, process.execPath, [SPILLWAY_BIN, 'mock-upstream', '--port', String(port), ...extra], { logDir });
  await waitUntil(async () => {
    if (!child.alive()) throw new Error(`${name} exited: see ${child.logFile}`);
    return httpOk(`http://127.0.0.1:${port}/_mock/stats`);
  }, `${name} to listen`, 15_000);
  return child;
}

/** The deployment under test; validated by Spillway's own schema when the processes start. */
function spillwayConfig(workers: number, port: number, redisUrl: string, mockPort: number, limitedPort: number): Record<string, unknown> {
  return {
    // Fair share off: the scenarios measure the request path itself; the fairness scenario turns it on (reconfigure).
    server: { host: '127.0.0.1', port, forwardHeaders: ['x-mock-*'], maxQueueWaitMs: 120_000, requestTimeoutMs: 60_000, shutdownGraceMs: 5_000, fairShare: 'off' },
    redis: { url: redisUrl, prefix: PREFIX },
    worker: { concurrency: 512 },
    logging: { level: 'warn' },
    providers: [
      { id: 'mock', type: 'openai', baseUrl: `http://127.0.0.1:${mockPort}/v1`, maxConcurrency: 256 },
      // Per worker process: the fleet together never exceeds the upstream's limit.
      { id: 'limited', type: 'openai', baseUrl: `http://127.0.0.1:${limitedPort}/v1`, maxConcurrency: Math.max(1, Math.floor(LIMITED_UPSTREAM_CONCURRENCY / workers)) },
    ],
    models: [
      { name: 'gpt-4o-mini', route: [{ provider: 'mock', model: 'mock-chat' }] },
      { name: 'gpt-4o-mini-limited', route: [{ provider: 'limited', model: 'mock-chat' }] },
    ],
    tenants: [
      { id: 'bench', dev: true, keys: [API_KEY] },
      // Budgets far above what the bench sends: admission runs its script for every request but never delays one.
      { id: 'bench-limited', dev: true, keys: [LIMITED_TENANT_KEY], rpm: 1_000_000_000, tpm: 1_000_000_000_000 },
      { id: 'tenant-a', dev: true, keys: [TENANT_A_KEY] },
      { id: 'tenant-b', dev: true, keys: [TENANT_B_KEY] },
    ],
  };
}
