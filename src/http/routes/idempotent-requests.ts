// Idempotency-Key on the synchronous completion routes: the first request claims the key while it is in flight; a
// retry with the same body joins its job (no second upstream call), one with another body gets 409. Only requests
// that carry the header come here: the plain hot path pays nothing.
import type { Endpoint } from '../../config/schema.ts';
import { deadlineExceeded, idempotencyKeyReused, idempotentRequestInProgress, invalidRequest, serviceUnavailable, SpillwayError } from '../../errors.ts';
import { idempotencyKeyHash, MAX_IDEMPOTENCY_KEY_LENGTH, requestHash, type SyncIdempotency } from '../../queue/idempotency.ts';

/** How long a synchronous request's claim and answer outlive it, for its retries. */
export const IDEMPOTENT_ANSWER_TTL_MS = 10 * 60_000;

export type IdempotentStart =
  /** Run the request: its job now holds the key (`keyHash`, for keeping its answer; `claim`, for marking it ended). */
  | { kind: 'run'; keyHash: string; claim: { raw: string } }
  /** The first request's answer, for the retry. */
  | { kind: 'answer'; status: number; body: string };

export interface IdempotentRequest {
  tenantId: string;
  /** The Idempotency-Key header as sent. */
  key: string;
  endpoint: Endpoint;
  body: Record<string, unknown>;
  stream: boolean;
  /** The job this request will run under if it is the first. */
  jobId: string;
  deadline: number;
  /** How long the claim outlives the request (the first job's result stays readable that long). */
  lingerMs: number;
  /** Aborted when the retrying client leaves. */
  signal?: AbortSignal;
}

/** Checks an Idempotency-Key header's value: 1 to 255 visible ASCII characters. */
export function validIdempotencyKey(value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_IDEMPOTENCY_KEY_LENGTH || !/^[\x21-\x7e]+$/.test(value)) {
    throw invalidRequest(`Invalid Idempotency-Key: 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} visible ASCII characters are expected.`, 'Idempotency-Key', 'invalid_idempotency_key');
  }
  return value;
}

/** Claims the key or joins the request that holds it; Redis unavailable: 503, like every step of the request path. */
export async function startIdempotentRequest(idempotency: SyncIdempotency, request: IdempotentRequest): Promise<IdempotentStart> {
  try {
    return await claimOrJoin(idempotency, request);
  } catch (err) {
    if (err instanceof SpillwayError) throw err;
    throw serviceUnavailable('The request queue is unavailable; try again shortly.');
  }
}

async function claimOrJoin(idempotency: SyncIdempotency, request: IdempotentRequest): Promise<IdempotentStart> {
  const keyHash = idempotencyKeyHash(request.key);
  const bodyHash = requestHash({ mode: 'sync', endpoint: request.endpoint, body: request.body });
  const ttlMs = () => request.deadline - Date.now() + request.lingerMs;
  let claim = await idempotency.claim(request.tenantId, keyHash, request.jobId, bodyHash, ttlMs());
  // Each turn either runs, answers, or finds the key taken over by another retry (which it then treats like the
  // first): a bounded number of turns, since every takeover starts a job that the next turn waits for.
  for (let turn = 0; ; turn++) {
    if (claim.kind === 'claimed') return { kind: 'run', keyHash, claim };
    if (claim.bodyHash !== bodyHash) throw idempotencyKeyReused();
    if (request.stream) {
      // A stream cannot be joined half way: refused while the first runs, run anew once it has ended.
      if (await idempotency.inFlight(claim)) throw idempotentRequestInProgress();
    } else {
      const joined = await idempotency.join(request.tenantId, keyHash, claim.jobId, request.deadline, request.signal);
      if (joined.kind === 'answer') return { kind: 'answer', status: joined.answer.status, body: joined.answer.body };
      if (joined.kind === 'timeout') throw deadlineExceeded();
      // Gone: nothing to join (the job failed, never made it into the queue, or its answer expired): run anew.
    }
    // Only one of the retries racing here takes the key over; the others see its claim.
    const ended = claim;
    claim = await idempotency.reclaim(request.tenantId, keyHash, ended, request.jobId, bodyHash, ttlMs());
    if (claim.kind === 'taken' && request.stream) throw idempotentRequestInProgress();
    if (turn >= 3 && claim.kind === 'taken') throw idempotentRequestInProgress();
  }
}
