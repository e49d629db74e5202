// The admission Lua scripts (*.lua beside this file), defined once per ioredis connection with defineCommand, which
// sends EVALSHA and falls back to EVAL only when the server lacks the script. Never builds Lua at run time.
import { readFileSync } from 'node:fs';
import type { Cluster, Redis } from 'ioredis';

/** A connection the admission functions accept: a single Redis or a Cluster (every script touches one slot). */
export type AdmissionRedis = Redis | Cluster;

type Reply = Promise<unknown>;

/** The commands defineCommand adds; each wrapper in admit.ts / leases.ts is the only caller of its command. */
export interface AdmissionCommands {
  spillwayAdmit(requests: string, tokens: string, fairShare: string, ...argv: string[]): Reply;
  spillwaySettleTokens(tokens: string, ...argv: string[]): Reply;
  spillwayLeaseAcquire(leases: string, ...argv: string[]): Reply;
  spillwayLeaseRenew(leases: string, ...argv: string[]): Reply;
}

const SCRIPTS: ReadonlyArray<[keyof AdmissionCommands, string, number]> = [
  ['spillwayAdmit', 'admit.lua', 3],
  ['spillwaySettleTokens', 'settle.lua', 1],
  ['spillwayLeaseAcquire', 'lease-acquire.lua', 1],
  ['spillwayLeaseRenew', 'lease-renew.lua', 1],
];

let sources: Map<string, string> | undefined;
const defined = new WeakSet<AdmissionRedis>();

/** The connection with the admission commands defined (the first call per connection defines them). */
export function admissionCommands(redis: AdmissionRedis): AdmissionCommands {
  if (!defined.has(redis)) {
    // Read on first use, not at import: `npm run build` copies the .lua files next to the compiled module.
    sources ??= new Map(SCRIPTS.map(([, file]) => [file, readFileSync(new URL(`./${file}`, import.meta.url), 'utf8')]));
    for (const [name, file, numberOfKeys] of SCRIPTS) redis.defineCommand(name, { numberOfKeys, lua: sources.get(file)! });
    defined.add(redis);
  }
  return redis as unknown as AdmissionCommands;
}

/** Script replies are arrays of integers; anything else means a script and its wrapper disagree. */
export function integers(reply: unknown, length: number, script: string): number[] {
  if (!Array.isArray(reply) || reply.length !== length || !reply.every((n) => typeof n === 'number')) {
    throw new Error(`unexpected reply from ${script}: ${JSON.stringify(reply)}`);
  }
  return reply as number[];
}
