// The response cache in Redis: a lookup that claims the single flight on a miss (one round trip), a wait for the answer
// another request is computing, the store (which releases the flight), and the stale read of the last fallback.
// Every entry and lock carries a TTL; nothing here runs for a request that has no cache directive.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RedisKeys } from '../queue/keys.ts';
import type { CacheDirective, CachePlan } from './directive.ts';

/** An answer as the cache holds it: a JSON body, or the data payloads of a stream (replayed as a stream). */
export type CachedAnswer = { kind: 'body'; status: number; body: string } | { kind: 'stream'; status: number; chunks: string[] };

/**
 * `hit`: answer with it. `run`: call upstream; `directive` is what goes into the job (with the flight token when this
 * request holds the single flight). `wait`: an identical request is being computed: waitForAnswer.
 */
export type LookupOutcome = { kind: 'hit'; answer: CachedAnswer } | { kind: 'run'; directive: CacheDirective } | { kind: 'wait'; directive: CacheDirective };

/** The ingress's outcome: an answer (`joined`: the one an identical request in flight computed), or the job's directive. */
export type ResolvedRequest = { kind: 'hit'; answer: CachedAnswer; joined: boolean } | { kind: 'run'; directive: CacheDirective };

interface CacheCommands {
  spillwayCacheLookup(entry: string, flight: string, freshMs: string, token: string, lockTtlMs: string): Promise<unknown>;
  spillwayCacheStore(entry: string, flight: string, ...argv: string[]): Promise<unknown>;
  spillwayCacheRelease(flight: string, token: string): Promise<unknown>;
}

const SCRIPTS: ReadonlyArray<[keyof CacheCommands, string, number]> = [
  ['spillwayCacheLookup', 'cache-lookup.lua', 2],
  ['spillwayCacheStore', 'cache-store.lua', 2],
  ['spillwayCacheRelease', 'cache-release.lua', 1],
];

let sources: Map<string, string> | undefined;
const defined = new WeakSet<Redis | Cluster>();

function commands(redis: Redis | Cluster): CacheCommands {
  if (!defined.has(redis)) {
    // Read on first use, not at import: `npm run build` copies the .lua files next to the compiled module.
    sources ??= new Map(SCRIPTS.map(([, file]) => [file, readFileSync(new URL(`./${file}`, import.meta.url), 'utf8')]));
    for (const [name, file, numberOfKeys] of SCRIPTS) redis.defineCommand(name, { numberOfKeys, lua: sources.get(file)! });
    defined.add(redis);
  }
  return redis as unknown as CacheCommands;
}

/** The first poll of a waiting request comes soon (a short answer is often ready), later ones further apart. */
const FIRST_POLL_MS = 20;
const MAX_POLL_MS = 250;

export class ResponseCache {
  private readonly redis: Redis | Cluster;
  private readonly keys: RedisKeys;
  private readonly logger: Logger | undefined;

  constructor(redis: Redis | Cluster, keys: RedisKeys, logger?: Logger) {
    this.redis = redis;
    this.keys = keys;
    this.logger = logger;
    // Defined now, before any traffic: ioredis's auto-pipelining copies custom commands into a pipeline when it creates
    // it, so a command defined while one is pending would be missing from it (a TypeError thrown in ioredis).
    commands(redis);
  }

  /**
   * One round trip: a fresh entry is a hit; otherwise the request claims the single flight (its lock lives until
   * `deadline`) or, when another request holds it, waits. A plan without lookup (`no-cache`) runs without any call.
   */
  async lookup(plan: CachePlan, deadline: number): Promise<LookupOutcome> {
    if (!plan.lookup) return { kind: 'run', directive: plan.directive };
    const token = randomUUID();
    const { entry, flight } = this.keys.responseCache(plan.directive.key);
    const reply = await commands(this.redis).spillwayCacheLookup(entry, flight, String(plan.directive.ttlMs), token, String(Math.max(1, deadline - Date.now())));
    const answer = decodeHit(reply);
    if (answer !== undefined) return { kind: 'hit', answer };
    const state = Array.isArray(reply) ? reply[1] : undefined;
    if (state === 'claimed') return { kind: 'run', directive: { ...plan.directive, flight: token } };
    return { kind: 'wait', directive: plan.directive };
  }

  /**
   * Waits for the answer an identical request is computing: the answer once stored, `run` when its flight ended
   * without one (the call failed or was not cacheable: this request makes its own), `timeout` at the deadline or
   * when `signal` aborts (the client left).
   */
  async waitForAnswer(directive: CacheDirective, deadline: number, signal?: AbortSignal): Promise<CachedAnswer | 'run' | 'timeout'> {
    const { entry, flight } = this.keys.responseCache(directive.key);
    let delayMs = FIRST_POLL_MS;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0 || signal?.aborted === true) return 'timeout';
      try {
        await sleep(Math.min(delayMs, left), undefined, { ref: false, ...(signal === undefined ? {} : { signal }) });
      } catch {
        return 'timeout';
      }
      delayMs = Math.min(delayMs * 2, MAX_POLL_MS);
      const reply = await commands(this.redis).spillwayCacheLookup(entry, flight, String(directive.ttlMs), '', '1');
      const answer = decodeHit(reply);
      if (answer !== undefined) return answer;
      if (Array.isArray(reply) && reply[1] !== 'taken') return 'run';
    }
  }

  /**
   * The ingress's whole cache step for one request: a fresh answer (`hit`), or `run` with the directive its job
   * carries. Waits while an identical request computes the answer (single flight) until it is stored, the flight ends
   * without one, the deadline, or `signal` (the client left). A Redis failure is not the request's: it runs uncached
   * by this step (its job may still store its answer).
   */
  async resolve(plan: CachePlan, deadline: number, signal?: AbortSignal): Promise<ResolvedRequest> {
    try {
      const looked = await this.lookup(plan, deadline);
      if (looked.kind === 'hit') return { ...looked, joined: false };
      if (looked.kind === 'run') return looked;
      this.logger?.debug({ cacheKey: plan.directive.key.slice(0, 16) }, 'response cache: waiting for an identical request in flight');
      const waited = await this.waitForAnswer(looked.directive, deadline, signal);
      return typeof waited === 'string' ? { kind: 'run', directive: looked.directive } : { kind: 'hit', answer: waited, joined: true };
    } catch (err) {
      this.logger?.warn({ err: String(err) }, 'response cache lookup failed: the request runs without it');
      return { kind: 'run', directive: plan.directive };
    }
  }

  /** Stores an answer (and releases the job's flight). False, and nothing stored, when it is over maxEntryBytes. */
  async store(directive: CacheDirective, answer: CachedAnswer): Promise<boolean> {
    const data = answer.kind === 'body' ? answer.body : JSON.stringify(answer.chunks);
    if (Buffer.byteLength(data) > directive.maxEntryBytes) {
      await this.release(directive);
      return false;
    }
    const { entry, flight } = this.keys.responseCache(directive.key);
    await commands(this.redis).spillwayCacheStore(
      entry,
      flight,
      String(directive.ttlMs),
      String(directive.ttlMs + directive.maxStaleMs),
      answer.kind,
      String(answer.status),
      data,
      directive.flight ?? '',
    );
    return true;
  }

  /** Releases the job's single flight without storing anything; a no-op without a flight. */
  async release(directive: CacheDirective): Promise<void> {
    if (directive.flight === undefined) return;
    await commands(this.redis).spillwayCacheRelease(this.keys.responseCache(directive.key).flight, directive.flight);
  }

  /**
   * The last fallback: the entry whatever its age, while Redis still keeps it (it expires ttlMs + maxStaleMs after it
   * was stored, so a present entry is within the stale window by Redis's clock).
   */
  async readStale(directive: CacheDirective): Promise<CachedAnswer | undefined> {
    if (!directive.stale || directive.maxStaleMs === 0) return undefined;
    const [kind, status, data] = await this.redis.hmget(this.keys.responseCache(directive.key).entry, 'kind', 'status', 'data');
    return decodeAnswer(kind, status, data);
  }
}

function decodeHit(reply: unknown): CachedAnswer | undefined {
  if (!Array.isArray(reply) || reply[0] !== 1) return undefined;
  return decodeAnswer(reply[1] as unknown, reply[2] as unknown, reply[3] as unknown);
}

/** An entry as stored, or undefined for anything else (a damaged entry is a miss, never a broken answer). */
function decodeAnswer(kind: unknown, statusText: unknown, data: unknown): CachedAnswer | undefined {
  const status = Number(statusText);
  if (typeof data !== 'string' || !Number.isInteger(status)) return undefined;
  if (kind === 'body') return { kind, status, body: data };
  if (kind !== 'stream') return undefined;
  try {
    const chunks = JSON.parse(data) as unknown;
    if (Array.isArray(chunks) && chunks.every((chunk) => typeof chunk === 'string')) return { kind, status, chunks };
  } catch {
    // a damaged entry: a miss
  }
  return undefined;
}
