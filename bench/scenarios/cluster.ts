// Scenario "cluster": the throughput scenario's load (200 clients, non-streaming, upstream latency 0) through a second
// Spillway (1 ingress + the same number of workers) on a 3-master Redis Cluster with 6 queue shards: requests/s, Redis
// commands and CPU per request over all masters, and how evenly the work spreads over the masters.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runFixedLoad, warmUp } from '../support/fixed-load.ts';
import { freePort, httpOk, spawnChild, waitUntil, type Child } from '../support/processes.ts';
import { startBenchCluster } from '../support/redis-cluster.ts';
import { redisCost, redisMetrics, type RedisCost } from '../support/redis-cost.ts';
import { flatten } from '../support/stats.ts';
import { API_KEY, PREFIX, REPO_ROOT } from '../support/stack.ts';
import { chatRequest } from '../support/targets.ts';
import type { Row, Scenario } from '../support/scenario.ts';

const CONNECTIONS = 200;
const MASTERS = 3;
const SHARDS = 6;

const perMasterRows: Row[] = Array.from({ length: MASTERS }, (_, i) => ({
  label: `master ${i + 1}: Redis commands per request`,
  unit: 'calls',
  spillway: `master${i + 1}_redis_cmds_per_req`,
}));

export const cluster: Scenario = {
  name: 'cluster',
  summary: `${MASTERS}-master Redis Cluster, ${SHARDS} queue shards, ${CONNECTIONS} concurrent clients, non-streaming, upstream latency 0 ms: requests/s and the spread of Redis work over the masters`,
  rows: [
    { label: 'requests/s', unit: 'req/s', spillway: 'spillway_rps' },
    { label: 'latency p50', unit: 'ms', spillway: 'spillway_latency_p50' },
    { label: 'latency p99', unit: 'ms', spillway: 'spillway_latency_p99' },
    { label: 'Redis commands per request, all masters', unit: 'calls', spillway: 'spillway_redis_cmds_per_req' },
    { label: 'Redis CPU per request, all masters', unit: 'µs', spillway: 'spillway_redis_cpu_us_per_req' },
    ...perMasterRows,
    { label: "largest gap between a master's commands and the mean", unit: '%', spillway: 'master_cmds_spread_pct' },
    { label: "largest gap between a master's Redis CPU and the mean", unit: '%', spillway: 'master_cpu_spread_pct' },
    { label: 'failed requests', unit: 'count', spillway: 'spillway_failed' },
  ],
  targets: [{ label: 'commands per master, largest gap from the mean', metric: 'master_cmds_spread_pct', op: '<=', limit: 25, unit: '%' }],
  async run(ctx) {
    const redis = await startBenchCluster(ctx.logDir, MASTERS);
    const processes: Child[] = [];
    try {
      const port = await freePort();
      const configFile = join(ctx.logDir, 'spillway-cluster.yaml');
      writeFileSync(configFile, JSON.stringify(clusterConfig(port, redis.urls, ctx.stack.mock.origin), null, 2));
      const bin = join(REPO_ROOT, 'bin', 'spillway.js');
      const role = (name: string, args: string[]) => {
        const child = spawnChild(name, process.execPath, [bin, ...args, '--config', configFile], { logDir: ctx.logDir });
        processes.push(child);
        return child;
      };
      for (let i = 1; i <= ctx.workers; i++) role(`cluster-worker-${i}`, ['worker']);
      role('cluster-ingress', ['ingress']);
      const origin = `http://127.0.0.1:${port}`;
      await waitUntil(async () => {
        for (const child of processes) if (!child.alive()) throw new Error(`${child.name} exited: see ${child.logFile}`);
        return httpOk(`${origin}/ready`);
      }, 'the cluster ingress to be ready', 30_000);

      const request = chatRequest({ name: 'spillway', origin, model: 'gpt-4o-mini', headers: { authorization: `Bearer ${API_KEY}` } }, { stream: false, mock: { latencyMs: 0 } });
      const amount = await warmUp(request, CONNECTIONS, ctx.durationMs);
      const before = await redis.stats();
      const load = await runFixedLoad(request, CONNECTIONS, amount);
      const after = await redis.stats();
      for (const child of processes) if (!child.alive()) throw new Error(`${child.name} exited: see ${child.logFile}`);

      const perMaster = after.map((snapshot, i) => redisCost(before[i]!, snapshot));
      const total = sumCosts(perMaster);
      const spread = (values: number[]) => {
        const mean = values.reduce((a, b) => a + b, 0) / values.length;
        return (100 * Math.max(...values.map((v) => Math.abs(v - mean)))) / mean;
      };
      return {
        metrics: {
          ...redisMetrics('spillway', total, load.ok),
          ...Object.fromEntries(perMaster.map((cost, i) => [`master${i + 1}_redis_cmds_per_req`, cost.commands / load.ok])),
          ...Object.fromEntries(perMaster.map((cost, i) => [`master${i + 1}_redis_cpu_us_per_req`, cost.cpuUs / load.ok])),
          master_cmds_spread_pct: spread(perMaster.map((c) => c.commands)),
          master_cpu_spread_pct: spread(perMaster.map((c) => c.cpuUs)),
          spillway_rps: load.rps,
          ...flatten('spillway_latency', load.latency),
          spillway_failed: load.failed,
        },
        details: { statuses: load.statuses, ok: load.ok, durationS: load.durationS, masters: redis.urls, shards: SHARDS },
      };
    } finally {
      await Promise.all(processes.map((p) => p.stop(10_000)));
      await redis.close();
    }
  },
};

function sumCosts(costs: RedisCost[]): RedisCost {
  const byCommand: RedisCost['byCommand'] = {};
  for (const cost of costs) {
    for (const [name, stat] of Object.entries(cost.byCommand)) {
      const sum = (byCommand[name] ??= { calls: 0, usec: 0 });
      sum.calls += stat.calls;
      sum.usec += stat.usec;
    }
  }
  const add = (pick: (c: RedisCost) => number) => costs.reduce((sum, c) => sum + pick(c), 0);
  return { commands: add((c) => c.commands), scripts: add((c) => c.scripts), cpuUs: add((c) => c.cpuUs), mainThreadCpuUs: add((c) => c.mainThreadCpuUs), byCommand };
}

/** The bench's deployment (stack.ts) on the cluster: same mock, same tenant, fair share off; 6 queue shards. */
function clusterConfig(port: number, nodes: string[], mockOrigin: string): unknown {
  return {
    server: { host: '127.0.0.1', port, forwardHeaders: ['x-mock-*'], maxQueueWaitMs: 120_000, requestTimeoutMs: 60_000, shutdownGraceMs: 5_000, fairShare: 'off' },
    redis: { url: nodes[0], nodes, prefix: PREFIX },
    queue: { shards: SHARDS },
    worker: { concurrency: 512 },
    logging: { level: 'warn' },
    providers: [{ id: 'mock', type: 'openai', baseUrl: `${mockOrigin}/v1`, maxConcurrency: 256 }],
    models: [{ name: 'gpt-4o-mini', route: [{ provider: 'mock', model: 'mock-chat' }] }],
    tenants: [{ id: 'bench', dev: true, keys: [API_KEY] }],
  };
}
