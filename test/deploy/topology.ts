// docker-compose.yml's topology without Docker: Redis started with compose's own command, the mock upstream, two
// ingresses and two workers as `bin/spillway.js` processes on deploy/compose/spillway.yaml, compose's certificate
// script, and nginx rendered from the project's template in front. Loopback addresses only; every file in one temp dir.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import { parse, stringify } from 'yaml';
import { freePort } from '../support/ports.ts';
import { spawnSpillway, waitForLog, waitForReady, type SpillwayProcess } from '../support/processes.ts';
import { StopWaiting, waitFor } from '../support/wait.ts';
import { startEdge, type Edge } from './edge.ts';

const ROOT = resolve(import.meta.dirname, '../..');

interface ComposeService {
  command?: string[];
  environment?: Record<string, string>;
}

export function composeServices(): Record<string, ComposeService> {
  return (parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, ComposeService> }).services;
}

/** The parts of deploy/compose/spillway.yaml rewritten for loopback. */
interface ComposeSpillwayConfig {
  server: Record<string, unknown>;
  worker: Record<string, unknown>;
  providers: Record<string, unknown>[];
}

export interface TopologyOptions {
  /** SPILLWAY_CORS_ORIGINS: read by the Spillway config and by nginx, as in compose. */
  corsOrigins: string;
  /** nginx's per-IP limit (EDGE_RATE_LIMIT, EDGE_RATE_BURST). */
  rateLimit: string;
  rateBurst: number;
  /** server.shutdownGraceMs of the ingresses. */
  drainGraceMs: number;
}

export interface Topology {
  /** https://127.0.0.1:<port> of nginx. */
  edgeUrl: string;
  /** The certificate nginx serves (self-signed: the client's only CA). */
  cert: string;
  /** http://127.0.0.1:<port> of the mock upstream (its counters: GET /_mock/stats). */
  mockUrl: string;
  redis: Redis;
  ingresses: { proc: SpillwayProcess; port: number; instanceId: string }[];
  workers: SpillwayProcess[];
  edge: Edge;
  close(): Promise<void>;
}

export async function startTopology(options: TopologyOptions): Promise<Topology> {
  const dir = mkdtempSync(join(tmpdir(), 'spillway-compose-'));
  const services = composeServices();
  const cleanups: (() => Promise<void> | void)[] = [() => rmSync(dir, { recursive: true, force: true })];
  const close = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  };
  try {
    const redisPort = await freePort();
    const redisProc = await startRedis(services.redis?.command ?? [], redisPort, join(dir, 'redis'));
    cleanups.push(() => stopChild(redisProc, 'SIGKILL'));
    const redisUrl = `redis://127.0.0.1:${redisPort}`;
    const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
    cleanups.push(() => redis.disconnect());

    // The mock upstream as compose starts it, on a free port and on loopback rather than 0.0.0.0.
    const mockPort = await freePort();
    const mockArgs = (services.mock?.command ?? []).map((arg) => (arg === '9000' ? String(mockPort) : arg));
    const mock = spawnSpillway(mockArgs, { HOST: '127.0.0.1' });
    const processes: SpillwayProcess[] = [mock];
    cleanups.push(() => Promise.all(processes.map((p) => p.kill('SIGKILL'))).then(() => undefined));
    await waitFor(async () => (await fetch(`http://127.0.0.1:${mockPort}/v1/models`)).ok, { what: 'the mock upstream' });

    // deploy/compose/spillway.yaml, with the addresses compose's DNS would give; its ${VAR}s stay for Spillway to fill.
    const composeConfig = parse(readFileSync(join(ROOT, 'deploy/compose/spillway.yaml'), 'utf8')) as ComposeSpillwayConfig;
    const configFile = (name: string, worker: Record<string, unknown> = {}): string => {
      const doc = structuredClone(composeConfig);
      doc.server = { ...doc.server, host: '127.0.0.1', shutdownGraceMs: options.drainGraceMs };
      doc.worker = { ...doc.worker, ...worker };
      doc.providers = doc.providers.map((p) => ({ ...p, baseUrl: `http://127.0.0.1:${mockPort}/v1` }));
      const file = join(dir, `${name}.yaml`);
      writeFileSync(file, stringify(doc));
      return file;
    };
    const env = { REDIS_URL: redisUrl, SPILLWAY_CORS_ORIGINS: options.corsOrigins, SPILLWAY_ADMIN_KEYS: '', OPENAI_API_KEY: '' };

    const ingressConfig = configFile('ingress');
    const ingresses = await Promise.all(
      [0, 1].map(async () => {
        const port = await freePort();
        const proc = spawnSpillway(['ingress', '--config', ingressConfig], { ...env, PORT: String(port) });
        processes.push(proc);
        return { proc, port };
      }),
    );
    const workers = await Promise.all(
      [0, 1].map(async (i) => {
        const metricsPort = await freePort();
        const proc = spawnSpillway(['worker', '--config', configFile(`worker-${i}`, { metricsPort })], env);
        processes.push(proc);
        await waitForLog(proc, 'worker started');
        // compose's worker healthcheck: /health on worker.metricsPort.
        await waitFor(async () => (await fetch(`http://127.0.0.1:${metricsPort}/health`)).ok, { what: `worker ${i} /health` });
        return proc;
      }),
    );
    await Promise.all(ingresses.map(({ proc, port }) => waitForReady(`http://127.0.0.1:${port}`, proc)));
    const withIds = ingresses.map((ingress) => ({ ...ingress, instanceId: instanceIdOf(ingress.proc) }));

    const tlsDir = join(dir, 'certs');
    mkdirSync(tlsDir);
    await writeCertificate(services.certs?.command?.[0] ?? '', tlsDir);
    const edgeDir = join(dir, 'nginx');
    mkdirSync(edgeDir);
    const [httpPort, httpsPort] = [await freePort(), await freePort()];
    const edge = await startEdge({
      dir: edgeDir,
      httpPort,
      httpsPort,
      ingressPorts: ingresses.map((i) => i.port),
      tlsDir,
      corsOrigins: options.corsOrigins,
      rateLimit: options.rateLimit,
      rateBurst: options.rateBurst,
    });
    cleanups.push(() => edge.stop());
    const cert = readFileSync(join(tlsDir, 'tls.crt'), 'utf8');
    return { edgeUrl: `https://127.0.0.1:${httpsPort}`, cert, mockUrl: `http://127.0.0.1:${mockPort}`, redis, ingresses: withIds, workers, edge, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** redis-server with compose's arguments (AOF, noeviction, maxmemory), plus a loopback port and a data dir. */
async function startRedis(command: string[], port: number, dataDir: string): Promise<ChildProcess> {
  mkdirSync(dataDir);
  const [bin = 'redis-server', ...args] = command;
  const child = spawn(bin, [...args, '--port', String(port), '--bind', '127.0.0.1', '--dir', dataDir], { stdio: 'ignore' });
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new StopWaiting(`redis-server exited (${child.exitCode})`);
      const probe = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on('error', () => undefined); // not listening yet: connect() rejects, the wait tries again
      try {
        await probe.connect();
        return (await probe.ping()) === 'PONG';
      } finally {
        probe.disconnect();
      }
    },
    { what: `redis-server on ${port}` },
  );
  return child;
}

/** compose's `certs` service script, run with the volume's path replaced by a local directory. */
async function writeCertificate(script: string, tlsDir: string): Promise<void> {
  if (!script.includes('openssl req')) throw new Error('the compose certs service no longer runs `openssl req`');
  const child = spawn('sh', ['-c', script.replaceAll('/certs/', `${tlsDir}/`)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolveExit) => child.once('exit', resolveExit));
  if (code !== 0) throw new Error(`the compose certificate script failed (${code}):\n${stderr}`);
}

/** The instance id an ingress logged at start (the `replyTo` of the jobs it enqueues). */
function instanceIdOf(proc: SpillwayProcess): string {
  const line = proc.output().split('\n').find((l) => l.includes('"msg":"ingress listening"'));
  const id = line === undefined ? undefined : (JSON.parse(line) as { instanceId?: string }).instanceId;
  if (id === undefined) throw new Error(`no instance id in the ingress log:\n${proc.output()}`);
  return id;
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolveExit) => child.once('exit', resolveExit));
  child.kill(signal);
  await exited;
}
