// The breaker, health-check and pool-limit Lua scripts (*.lua beside this file), defined once per connection with defineCommand
// and each wrapped by one typed function, the only caller of its command. Never builds Lua at run time.
import { readFileSync } from 'node:fs';
import type { Cluster, Redis } from 'ioredis';

interface LeaseCommands {
  spillwayBreakerProbe(openKey: string, probeKey: string, leaseMs: string, owner: string): Promise<unknown>;
  spillwayHealthLease(key: string, owner: string, ttlMs: string): Promise<unknown>;
  spillwayUpstreamAcquire(pause: string, requests: string, tokens: string, leases: string, ...argv: string[]): Promise<unknown>;
}

const SCRIPTS: ReadonlyArray<[keyof LeaseCommands, string, number]> = [
  ['spillwayBreakerProbe', 'breaker-probe.lua', 2],
  ['spillwayHealthLease', 'health-lease.lua', 1],
  ['spillwayUpstreamAcquire', 'upstream-acquire.lua', 4],
];

let sources: Map<string, string> | undefined;
const defined = new WeakSet<Redis | Cluster>();

function commands(redis: Redis | Cluster): LeaseCommands {
  if (!defined.has(redis)) {
    // Read on first use, not at import: `npm run build` copies the .lua files next to the compiled module.
    sources ??= new Map(SCRIPTS.map(([, file]) => [file, readFileSync(new URL(`./${file}`, import.meta.url), 'utf8')]));
    for (const [name, file, numberOfKeys] of SCRIPTS) redis.defineCommand(name, { numberOfKeys, lua: sources.get(file)! });
    defined.add(redis);
  }
  return redis as unknown as LeaseCommands;
}

/**
 * Defines the scripts on a connection now. Call it when a component is built, before traffic: ioredis's
 * auto-pipelining copies custom commands into a pipeline when it creates it, so a command defined while an
 * auto-pipeline is pending would be missing from that pipeline (a TypeError thrown inside ioredis).
 */
export function defineUpstreamScripts(redis: Redis | Cluster): void {
  commands(redis);
}

/** The half-open probe decision (breaker-probe.lua): `probe`, or how long the pool holds it `open` / another worker is `probing`. */
export type ProbeLease = { kind: 'probe' } | { kind: 'open'; ms: number } | { kind: 'probing'; ms: number };

export async function acquireProbeLease(redis: Redis | Cluster, openKey: string, probeKey: string, leaseMs: number, owner: string): Promise<ProbeLease> {
  const reply = await commands(redis).spillwayBreakerProbe(openKey, probeKey, String(leaseMs), owner);
  if (!Array.isArray(reply) || reply.length !== 2 || !reply.every((n) => typeof n === 'number')) {
    throw new Error(`unexpected reply from breaker-probe.lua: ${JSON.stringify(reply)}`);
  }
  const [code, ms] = reply as [number, number];
  if (code === 0) return { kind: 'probe' };
  return code === 1 ? { kind: 'open', ms } : { kind: 'probing', ms };
}

/** Takes or renews a provider's health-check lease (health-lease.lua): true when this worker holds it. */
export async function holdHealthLease(redis: Redis | Cluster, key: string, owner: string, ttlMs: number): Promise<boolean> {
  return (await commands(redis).spillwayHealthLease(key, owner, String(ttlMs))) === 1;
}

/** What upstream-acquire.lua answers: granted, or why not and for how long (ms). */
export type UpstreamAcquire = { kind: 'granted' } | { kind: 'paused' | 'busy' | 'budget'; ms: number };

export interface UpstreamAcquireKeys {
  pause: string;
  requests: string;
  tokens: string;
  leases: string;
}

/** ARGV of upstream-acquire.lua, in order (see its header). */
export interface UpstreamAcquireArgs {
  requestIntervalMs: number;
  requestBurst: number;
  tokenIntervalMs: number;
  tokenBurst: number;
  tokens: number;
  slots: number;
  leaseId: string;
  leaseTtlMs: number;
  maxWaitHintMs: number;
}

export async function acquireUpstream(redis: Redis | Cluster, keys: UpstreamAcquireKeys, args: UpstreamAcquireArgs): Promise<UpstreamAcquire> {
  const reply = await commands(redis).spillwayUpstreamAcquire(
    keys.pause,
    keys.requests,
    keys.tokens,
    keys.leases,
    String(args.requestIntervalMs),
    String(args.requestBurst),
    String(args.tokenIntervalMs),
    String(args.tokenBurst),
    String(Math.max(0, Math.ceil(args.tokens))),
    String(args.slots),
    args.leaseId,
    String(Math.max(1, Math.ceil(args.leaseTtlMs))),
    String(Math.max(1, Math.ceil(args.maxWaitHintMs))),
  );
  if (!Array.isArray(reply) || reply.length !== 2 || !reply.every((n) => typeof n === 'number')) {
    throw new Error(`unexpected reply from upstream-acquire.lua: ${JSON.stringify(reply)}`);
  }
  const [code, ms] = reply as [number, number];
  if (code === 0) return { kind: 'granted' };
  return { kind: code === 1 ? 'paused' : code === 2 ? 'busy' : 'budget', ms: Math.max(1, ms) };
}
