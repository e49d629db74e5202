// Per-request admission against a tenant's budgets: admit.lua (GCRA on rpm and tpm, fair share), one EVALSHA for the
// requests of a tenant that arrive together, none at all for a tenant without budgets or fair share. Never enqueues:
// the caller adds the job with the answer.
import type { RedisKeys } from '../queue/keys.ts';
import type { TenantLimits } from './limits.ts';
import { admissionCommands, integers, type AdmissionRedis } from './scripts.ts';
import { fairShareIncrementMs, fairSharePriority, DEFAULT_FAIR_SHARE_UNIT_MS, FAIR_SHARE_CAP_MS, type FairShareOptions } from './fair-share.ts';

/** One budget's state for OpenAI's x-ratelimit-* headers. */
export interface BudgetState {
  /** Per minute. */
  limit: number;
  /** Whole units of the minute's budget not yet spoken for (after this request, when admitted). */
  remaining: number;
  /** Time until the budget is whole again, ms. */
  resetMs: number;
}

export interface RateLimitState {
  requests?: BudgetState;
  tokens?: BudgetState;
}

interface Common {
  /** BullMQ priority for the job: class first, then fair share (see fair-share.ts). */
  priority: number;
  /** Budgets of the tenant; empty when it has none (then no x-ratelimit-* headers). */
  rateLimit: RateLimitState;
}

export type AdmissionResult =
  | (Common & { decision: 'now' })
  /** Add the job with BullMQ `delay: delayMs`: its budgets are reserved at that time. */
  | (Common & { decision: 'delay'; delayMs: number })
  /** Its slot is beyond maxQueueWaitMs: answer 429; nothing was reserved. */
  | (Common & { decision: 'reject'; retryAfterMs: number; binding: 'requests' | 'tokens' });

export interface AdmitOptions {
  /** The request's estimated tokens (estimateTokens), charged to tpm. */
  tokens: number;
  /** Longest wait the request accepts, ms: a later slot is refused. */
  maxQueueWaitMs: number;
  /** Keep the tenant's virtual finish time (costs the round trip even without budgets); omit: class priority only. */
  fairShare?: FairShareOptions | boolean;
}

/** Whether admitRequest will call Redis for this tenant (budgets or fair share): for metrics and tests. */
export function needsRedis(limits: Pick<TenantLimits, 'rpm' | 'tpm'>, fairShare: AdmitOptions['fairShare']): boolean {
  return limits.rpm !== undefined || limits.tpm !== undefined || (fairShare !== undefined && fairShare !== false);
}

export async function admitRequest(redis: AdmissionRedis, keys: RedisKeys, limits: TenantLimits, options: AdmitOptions): Promise<AdmissionResult> {
  const fairShare = options.fairShare === true ? {} : options.fairShare || undefined;
  if (!needsRedis(limits, fairShare)) {
    return { decision: 'now', priority: fairSharePriority(limits.priority, undefined), rateLimit: {} };
  }
  const unitMs = fairShare?.unitMs ?? DEFAULT_FAIR_SHARE_UNIT_MS;
  const tenant = keys.tenantKeys(limits.tenantId);
  const tokens = Math.max(0, Math.ceil(options.tokens));
  const [decision, ms, reqRemaining, reqReset, tokRemaining, tokReset, leadUs] = (await admitTogether(
    redis,
    [tenant.requests, tenant.tokens, tenant.fairShare],
    [
      String(limits.rpm === undefined ? 0 : 60_000 / limits.rpm),
      String(limits.burst),
      String(limits.tpm === undefined ? 0 : 60_000 / limits.tpm),
      String(limits.tokenBurst),
      String(FAIR_SHARE_CAP_MS),
    ],
    [String(tokens), String(Math.max(0, options.maxQueueWaitMs)), String(fairShare === undefined ? 0 : fairShareIncrementMs(limits.weight, unitMs))],
  )) as [number, number, number, number, number, number, number];
  const rateLimit: RateLimitState = {};
  if (limits.rpm !== undefined) rateLimit.requests = { limit: limits.rpm, remaining: reqRemaining, resetMs: reqReset };
  if (limits.tpm !== undefined) rateLimit.tokens = { limit: limits.tpm, remaining: tokRemaining, resetMs: tokReset };
  const priority = fairSharePriority(limits.priority, leadUs < 0 ? undefined : leadUs / 1000);
  if (decision === 0) return { decision: 'now', priority, rateLimit };
  if (decision === 1) return { decision: 'delay', delayMs: ms, priority, rateLimit };
  return { decision: 'reject', retryAfterMs: ms, binding: bindingBudget(limits, tokens, rateLimit), priority, rateLimit };
}

/** The most requests one admit.lua call decides. */
const MAX_BATCH = 64;

interface Batch {
  keys: [string, string, string];
  shared: string[];
  requests: { args: string[]; resolve: (answer: number[]) => void; reject: (err: unknown) => void }[];
  sent: boolean;
}

/** Batches still open for more requests, per connection and per tenant budget (keys and limits). */
const openBatches = new WeakMap<AdmissionRedis, Map<string, Batch>>();

/**
 * One request's admit.lua answer. The requests of one tenant that arrive within one turn of the event loop go to
 * Redis as one call (admit.lua decides them one after the other, exactly as if each had been sent alone): under load
 * admission costs one script call per tenant per turn, not one per request; alone, a request waits one turn.
 */
function admitTogether(redis: AdmissionRedis, keys: [string, string, string], shared: string[], args: string[]): Promise<number[]> {
  let open = openBatches.get(redis);
  if (open === undefined) {
    open = new Map();
    openBatches.set(redis, open);
  }
  const id = `${keys.join('\n')}\n${shared.join('\n')}`;
  let batch = open.get(id);
  if (batch === undefined) {
    const created: Batch = { keys, shared, requests: [], sent: false };
    open.set(id, created);
    setImmediate(() => sendBatch(redis, open, id, created));
    batch = created;
  }
  const answer = new Promise<number[]>((resolve, reject) => batch.requests.push({ args, resolve, reject }));
  if (batch.requests.length >= MAX_BATCH) sendBatch(redis, open, id, batch);
  return answer;
}

function sendBatch(redis: AdmissionRedis, open: Map<string, Batch>, id: string, batch: Batch): void {
  if (batch.sent) return;
  batch.sent = true;
  if (open.get(id) === batch) open.delete(id);
  const { requests } = batch;
  admissionCommands(redis)
    .spillwayAdmit(...batch.keys, ...batch.shared, ...requests.flatMap((r) => r.args))
    .then((reply) => {
      const answers = integers(reply, 7 * requests.length, 'admit.lua');
      requests.forEach((r, i) => r.resolve(answers.slice(7 * i, 7 * i + 7)));
    })
    .catch((err: unknown) => {
      for (const r of requests) r.reject(err);
    });
}

/** Which budget refused the request, for the 429's message: the one whose reset is further away. */
function bindingBudget(limits: TenantLimits, tokens: number, state: RateLimitState): 'requests' | 'tokens' {
  if (state.tokens === undefined) return 'requests';
  if (state.requests === undefined) return 'tokens';
  const requestWait = state.requests.resetMs - (limits.burst - 1) * (60_000 / state.requests.limit);
  const tokenWait = state.tokens.resetMs - (limits.tokenBurst - Math.min(tokens, limits.tokenBurst)) * (60_000 / state.tokens.limit);
  return tokenWait > requestWait ? 'tokens' : 'requests';
}

export interface SettleOptions {
  /** Tokens admitRequest charged. */
  estimated: number;
  /** Tokens the upstream reported (usage.total_tokens); for a failed call, what it billed (often 0). */
  actual: number;
}

/**
 * Corrects the tenant's token budget by actual - estimated after the call: a refund never moves it before now.
 * No Redis call when the tenant has no tpm or the estimate was exact. Returns the token budget's state (headers).
 */
export async function settleTokens(redis: AdmissionRedis, keys: RedisKeys, limits: TenantLimits, usage: SettleOptions): Promise<BudgetState | undefined> {
  const delta = Math.ceil(usage.actual) - Math.max(0, Math.ceil(usage.estimated));
  if (limits.tpm === undefined || delta === 0 || !Number.isFinite(delta)) return undefined;
  const reply = await admissionCommands(redis).spillwaySettleTokens(keys.tenantKeys(limits.tenantId).tokens, String(60_000 / limits.tpm), String(delta));
  const [remaining, resetMs] = integers(reply, 2, 'settle.lua') as [number, number];
  return { limit: limits.tpm, remaining, resetMs };
}
