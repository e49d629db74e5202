// A real Redis Cluster for tests: 3 masters + 3 replicas, each a redis-server child on a free port in a temp dir of its
// own, joined by `redis-cli --cluster create`. No mock anywhere; close() kills every process and removes every dir.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Cluster, Redis, type ClusterOptions } from 'ioredis';
import { freePort } from './ports.ts';
import { StopWaiting, waitFor } from './wait.ts';

const MASTERS = 3;
const NODES = MASTERS * 2;
/** A node's cluster bus listens on its port + 10000 (Redis's fixed offset): both must be free. */
const BUS_OFFSET = 10_000;
const SLOTS = 16_384;
const OUTPUT_TAIL = 4_096;

export interface RedisClusterOptions {
  /** cluster-node-timeout: how long a master may be unreachable before its replica is elected (default 2000). */
  nodeTimeoutMs?: number;
}

export interface ClusterNode {
  /** Position in `nodes`; stays the same across kills and restarts. */
  index: number;
  port: number;
  url: string;
  /** CLUSTER MYID; kept across restarts (it lives in the node's nodes-<port>.conf). */
  id: string;
  alive(): boolean;
  /** The redis-server's recent output, for failure messages. */
  output(): string;
}

/** One node as a live node's CLUSTER NODES describes it. */
export interface NodeView {
  index: number;
  role: 'master' | 'replica';
  /** For a replica: the index of its master. */
  masterIndex: number | undefined;
  /** Flagged `fail` (or `fail?`) by the node asked. */
  failing: boolean;
  connected: boolean;
  /** Slot ranges served (masters only), inclusive. */
  slots: [number, number][];
}

export interface RedisCluster {
  nodes: readonly ClusterNode[];
  /** Every node's URL (any of them is a valid seed). */
  urls: string[];
  /** An ioredis Cluster seeded with every node; disconnected by close() if the test has not done it. */
  connect(options?: ClusterOptions): Cluster;
  /** A plain connection to one node (no redirection, no reconnection): to see which node really holds a key. */
  node(index: number): Redis;
  /** The cluster as the first live node (or `asker`) sees it. */
  topology(asker?: number): Promise<NodeView[]>;
  /** Indexes of the masters serving slots, alive or not, as the live nodes see them. */
  masters(): Promise<number[]>;
  /** Index of the master serving `key`'s slot (CLUSTER KEYSLOT). */
  masterOf(key: string): Promise<number>;
  /** SIGKILLs master `index`; resolves with the index of the replica elected in its place, once the cluster is ok. */
  killMaster(index: number): Promise<number>;
  /** Starts a killed node again (same port, same nodes.conf); resolves once it has rejoined and the cluster is ok. */
  restartNode(index: number): Promise<void>;
  /** CLUSTER FAILOVER on a replica of master `replicaOf`; resolves with the replica's index once the roles swapped. */
  failover(replicaOf: number): Promise<number>;
  close(): Promise<void>;
}

interface Process {
  child: ChildProcess;
  exited: Promise<void>;
  output: string;
}

const run = promisify(execFile);

export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const nodeTimeoutMs = options.nodeTimeoutMs ?? 2_000;
  const dirs: string[] = [];
  const processes: (Process | undefined)[] = [];
  const clients = new Set<Redis | Cluster>();
  const nodes: ClusterNode[] = [];

  const launch = (index: number, port: number, dir: string) => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'];
    args.push('--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', String(nodeTimeoutMs));
    // A replica syncs at once (diskless), not after the default 5 s wait for more replicas to share the transfer.
    args.push('--repl-diskless-sync-delay', '0');
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const proc: Process = { child, output: '', exited: new Promise((resolve) => child.once('exit', () => resolve())) };
    const keep = (chunk: Buffer) => (proc.output = (proc.output + chunk.toString()).slice(-OUTPUT_TAIL));
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    child.once('error', (err) => (proc.output += `\ncannot start redis-server (is it installed?): ${err.message}`));
    processes[index] = proc;
    return proc;
  };
  /** Probes a node; a node that has exited ends the wait at once, with its output. */
  const probe = (index: number, ...args: [string, ...string[]]) => {
    if (!alive(index)) throw new StopWaiting(`redis-server on port ${nodes[index]!.port} exited:\n${nodes[index]!.output()}`);
    return command(nodes[index]!.port, ...args);
  };
  const alive = (index: number) => {
    const child = processes[index]?.child;
    return child !== undefined && child.exitCode === null && child.signalCode === null && child.pid !== undefined;
  };
  const killAll = async () => {
    await Promise.all(processes.map(async (p) => {
      if (p && p.child.exitCode === null && p.child.signalCode === null) {
        p.child.kill('SIGKILL');
        await p.exited;
      }
    }));
  };
  const close = async () => {
    for (const client of clients) client.disconnect();
    clients.clear();
    await killAll();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  };

  try {
    const ports = await clusterPorts(NODES);
    for (const [index, port] of ports.entries()) {
      const dir = mkdtempSync(join(tmpdir(), `spillway-cluster-${port}-`));
      dirs.push(dir);
      launch(index, port, dir);
      nodes.push({ index, port, url: `redis://127.0.0.1:${port}`, id: '', alive: () => alive(index), output: () => processes[index]?.output ?? '' });
    }
    for (const node of nodes) {
      node.id = String(await waitFor(() => probe(node.index, 'CLUSTER', 'MYID'), { timeoutMs: 10_000, what: `redis-server (cluster mode) on port ${node.port}` }));
    }
    await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'], { timeout: 30_000 });
  } catch (err) {
    await close();
    throw err;
  }

  const indexOfAddress = (address: string) => nodes.findIndex((n) => address.startsWith(`127.0.0.1:${n.port}@`) || address === `127.0.0.1:${n.port}`);
  const topology = async (asker?: number): Promise<NodeView[]> => {
    const from = asker ?? nodes.findIndex((n) => n.alive());
    const text = String(await command(nodes[from]!.port, 'CLUSTER', 'NODES'));
    return parseClusterNodes(text, (id) => nodes.findIndex((n) => n.id === id), indexOfAddress);
  };
  const live = () => nodes.filter((n) => n.alive());
  /** Every live node says cluster_state:ok, knows every node, and agrees with `check` on what it sees. */
  const settled = async (what: string, check: (view: NodeView[]) => boolean, timeoutMs = 15_000 + 5 * nodeTimeoutMs) => {
    await waitFor(
      async () => {
        for (const node of live()) {
          if (!/^cluster_state:ok/m.test(String(await command(node.port, 'CLUSTER', 'INFO')))) return false;
          const view = await topology(node.index);
          if (view.length !== NODES || !check(view)) return false;
        }
        return true;
      },
      { timeoutMs, intervalMs: 100, what },
    );
  };
  /** Every live replica has its replication link up: it has the data, and may be elected. */
  const replicasInSync = async (view: NodeView[]) => {
    for (const v of view.filter((n) => n.role === 'replica' && nodes[n.index]!.alive())) {
      if (!/^master_link_status:up/m.test(String(await command(nodes[v.index]!.port, 'INFO', 'replication')))) return false;
    }
    return true;
  };
  const coverage = (view: NodeView[]) => view.filter((n) => n.role === 'master').reduce((sum, n) => sum + n.slots.reduce((s, [a, b]) => s + b - a + 1, 0), 0);
  /** Every slot served; every live node a master serving slots or the replica of one; every dead node flagged failing. */
  const healthy = (view: NodeView[]) => {
    const serving = (index: number | undefined) => view.some((m) => m.index === index && m.role === 'master' && m.slots.length > 0 && alive(m.index));
    return (
      coverage(view) === SLOTS &&
      view.every((n) => (alive(n.index) ? !n.failing && (n.role === 'master' ? serving(n.index) : serving(n.masterIndex)) : n.failing))
    );
  };
  const waitHealthy = async (what: string) => {
    await settled(what, healthy);
    await waitFor(async () => replicasInSync(await topology()), { timeoutMs: 15_000, intervalMs: 100, what: `replicas of ${what} in sync` });
  };

  try {
    await waitHealthy('the cluster to form');
  } catch (err) {
    await close();
    throw err;
  }

  const masters = async () => (await topology()).filter((n) => n.role === 'master' && n.slots.length > 0).map((n) => n.index);
  const track = <T extends Redis | Cluster>(client: T): T => {
    clients.add(client);
    client.once('end', () => clients.delete(client));
    return client;
  };

  return {
    nodes,
    urls: nodes.map((n) => n.url),
    connect: (clusterOptions = {}) => track(new Cluster(nodes.map((n) => ({ host: '127.0.0.1', port: n.port })), clusterOptions)),
    node: (index) => {
      // Never reconnects: a probe of a node a test has killed fails its commands instead of retrying in the background.
      const client = track(new Redis(nodes[index]!.port, '127.0.0.1', { maxRetriesPerRequest: 0, retryStrategy: () => null }));
      client.on('error', () => undefined);
      return client;
    },
    topology,
    masters,
    masterOf: async (key) => {
      const slot = Number(await command(live()[0]!.port, 'CLUSTER', 'KEYSLOT', key));
      const owner = (await topology()).find((n) => n.role === 'master' && n.slots.some(([a, b]) => slot >= a && slot <= b));
      if (owner === undefined) throw new Error(`no master serves slot ${slot} (key ${key})`);
      return owner.index;
    },
    killMaster: async (index) => {
      const before = await topology();
      const replicas = before.filter((n) => n.role === 'replica' && n.masterIndex === index).map((n) => n.index);
      if (before.find((n) => n.index === index)?.role !== 'master' || !alive(index)) throw new Error(`node ${index} is not a live master`);
      if (replicas.length === 0) throw new Error(`master ${index} has no replica to take over`);
      processes[index]!.child.kill('SIGKILL');
      await processes[index]!.exited;
      await settled(`a replica of node ${index} to take over its slots`, (view) => healthy(view) && replicas.some((r) => at(view, r).role === 'master'));
      const view = await topology();
      return replicas.find((r) => at(view, r).role === 'master')!;
    },
    restartNode: async (index) => {
      if (alive(index)) throw new Error(`node ${index} is still running`);
      const node = nodes[index]!;
      launch(index, node.port, dirs[index]!);
      await waitFor(() => probe(index, 'PING'), { timeoutMs: 10_000, what: `node ${index} to restart` });
      await waitHealthy(`node ${index} to rejoin`);
    },
    failover: async (replicaOf) => {
      const view = await topology();
      const replica = view.find((n) => n.role === 'replica' && n.masterIndex === replicaOf && alive(n.index));
      if (replica === undefined) throw new Error(`master ${replicaOf} has no live replica`);
      await command(nodes[replica.index]!.port, 'CLUSTER', 'FAILOVER');
      await settled(`node ${replica.index} to take over from node ${replicaOf}`, (v) =>
        healthy(v) && at(v, replica.index).role === 'master' && at(v, replica.index).slots.length > 0 && (!alive(replicaOf) || at(v, replicaOf).masterIndex === replica.index));
      await waitFor(async () => replicasInSync(await topology()), { timeoutMs: 15_000, intervalMs: 100, what: `node ${replicaOf} to sync from node ${replica.index}` });
      return replica.index;
    },
    close,
  };
}

/** CLUSTER NODES, one line per node: `<id> <ip:port@bus> <flags> <master id|-> <ping> <pong> <epoch> <link> <slot>…`. */
export function parseClusterNodes(text: string, indexOfId: (id: string) => number, indexOfAddress: (address: string) => number): NodeView[] {
  const views: NodeView[] = [];
  for (const line of text.trim().split('\n')) {
    const [id, address, flags, master, , , , link, ...slots] = line.trim().split(' ');
    const index = indexOfId(id!) >= 0 ? indexOfId(id!) : indexOfAddress(address!);
    if (index < 0) continue;
    const flagSet = new Set(flags!.split(','));
    views[index] = {
      index,
      role: flagSet.has('master') ? 'master' : 'replica',
      masterIndex: master === '-' ? undefined : indexOfId(master!),
      failing: flagSet.has('fail') || flagSet.has('fail?'),
      connected: link === 'connected',
      // Slots being migrated (`[slot->-id]`) are not served by a range: they never appear in this harness.
      slots: slots.filter((s) => !s.startsWith('[')).map((s) => {
        const [from, to] = s.split('-').map(Number);
        return [from!, to ?? from!] as [number, number];
      }),
    };
  }
  return views.filter((v) => v !== undefined);
}

/** The view of node `index` (settled() has checked that every node is in the view). */
function at(view: NodeView[], index: number): NodeView {
  const node = view.find((n) => n.index === index);
  if (node === undefined) throw new Error(`node ${index} is missing from CLUSTER NODES`);
  return node;
}

/** One command on one node over a connection of its own (no redirection, no retry). */
async function command(port: number, name: string, ...args: string[]): Promise<unknown> {
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return await client.call(name, ...args);
  } finally {
    client.disconnect();
  }
}

/** `count` distinct ports whose cluster bus port (+10000) is free as well. */
async function clusterPorts(count: number): Promise<number[]> {
  const taken = new Set<number>();
  const ports: number[] = [];
  for (let attempt = 0; ports.length < count; attempt++) {
    if (attempt > count * 50) throw new Error('no free port pairs for a Redis Cluster');
    const port = await freePort();
    const bus = port + BUS_OFFSET;
    if (bus > 65_535 || taken.has(port) || taken.has(bus) || !(await canListen(bus))) continue;
    taken.add(port).add(bus);
    ports.push(port);
  }
  return ports;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
