// Walks one model's targets for a job: skips a target whose breaker is open, that a 429 paused or that is over its
// pool-wide limits, retries retryable failures with backoff within the deadline, and reports how the model's route
// ended. Checks memory first: only an open breaker's probe and a provider with limits ask Redis.
import type { Logger } from 'pino';
import type { CompletionJob, CompletionResult } from '../queue/jobs.ts';
import type { JobReplies } from '../queue/reply-publisher.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { ProviderRuntime } from './dispatcher.ts';
import type { RouteTarget } from '../catalogue/catalogue.ts';
import type { RouteStage, RoutingState } from './routing-state.ts';
import type { DeploymentPauses } from './pauses.ts';
import type { LimitPermit, PoolLimits } from './pool-limits.ts';
import { ProviderCooldowns } from './retry-policy.ts';
import { BREAKER_OPEN, countsAgainstDeployment, type BreakerRegistry } from './breakers.ts';
import { attemptOnce, CallCancelledError, type Outcome, type StreamCapture } from './attempt.ts';
import { describeFailure, type Tried } from './final-error.ts';
import type { UpstreamFailure } from './providers/openai/errors.ts';
import { totalTokens } from '../admission/worker-budgets.ts';

export interface WalkDeps {
  providers: ReadonlyMap<string, ProviderRuntime>;
  metrics: Metrics;
  logger: Logger;
  maxAttempts: number;
  breakers?: BreakerRegistry | undefined;
  pauses?: DeploymentPauses | undefined;
  limits?: PoolLimits | undefined;
  routing?: RoutingState | undefined;
}

/** What the walks of one job share: calls made so far (x-spillway-attempts) and every deployment tried or skipped. */
export interface CallTrace {
  calls: number;
  /** Time the job waited before its call began (admission delay, queue, waits for a paused deployment): a header. */
  queueWaitMs: number;
  tried: Tried[];
  capture: StreamCapture | undefined;
}

export interface StageEnd {
  answered?: { result: CompletionResult; target: RouteTarget };
  /** The stage's last failure, when a call failed or an adapter refused. */
  failure: UpstreamFailure | undefined;
  /** No other model can help: the client's own request was refused, or a stream already reached the client. */
  final: boolean;
  /** Earliest time a flow-controlled target (paused by a 429, over its pool-wide limits) frees, ms from now. */
  waitMs: number | undefined;
  /** Earliest time an open breaker may be probed, ms from now. */
  openMs: number | undefined;
}

type Choice = { kind: 'call'; index: number; target: RouteTarget; provider: ProviderRuntime } | { kind: 'none' };

export function deploymentName(target: RouteTarget): string {
  return `${target.provider}/${target.model}`;
}

const failureOf = (outcome: Outcome): UpstreamFailure | undefined => (outcome.ok ? undefined : outcome.failure);
const min = (a: number | undefined, b: number): number => (a === undefined ? b : Math.min(a, b));

export async function walkStage(deps: WalkDeps, job: CompletionJob, stage: RouteStage, replies: JobReplies, signal: AbortSignal, trace: CallTrace): Promise<StageEnd> {
  const usable = stage.targets.filter((t) => deps.providers.get(t.provider)?.adapter.serves(job.endpoint) === true);
  const end: StageEnd = { failure: undefined, final: false, waitMs: undefined, openMs: undefined };
  const cooldowns = new ProviderCooldowns();
  /** Route positions never chosen again in this walk: refused by their adapter (nothing sent), or flow-controlled. */
  const skipped = new Set<number>();
  /** The deployment whose failure this walk is moving on from (a retry, or a fallback to another target). */
  let failed: { target: RouteTarget; failure: UpstreamFailure } | undefined;
  let position = 0;
  let attempt = 0;
  let breakerSkips = 0;
  while (attempt < deps.maxAttempts) {
    const picked = pick(deps, usable, position, skipped, end, trace);
    const choice = picked instanceof Promise ? await picked : picked;
    if (choice.kind === 'none') break;
    const { target, provider, index } = choice;
    position = index + 1;
    const request = provider.adapter.buildRequest(provider, job.endpoint, job.body, target.model, { ...job.headers, 'x-request-id': job.requestId });
    if (!('path' in request)) {
      // This provider cannot carry the request out as asked; another target may.
      end.failure = request;
      skipped.add(index % usable.length);
      trace.tried.push({ deployment: deploymentName(target), outcome: describeFailure(request) });
      continue;
    }
    if (attempt > 0) {
      // The failed provider's Retry-After delays only a call to that provider: a fallback goes out at once.
      const delay = cooldowns.delayBefore(provider.id, attempt - 1, job.deadline - Date.now());
      if (delay === undefined) break;
      if (delay > 0) await sleep(delay, signal);
    }
    let permit: LimitPermit | undefined;
    if (deps.limits?.has(target.provider) === true) {
      const answer = await deps.limits.acquire(target.provider, target.model, { jobId: job.requestId, endpoint: job.endpoint, body: job.body, tokens: job.tokens });
      if (!answer.granted) {
        skipped.add(index % usable.length);
        end.waitMs = min(end.waitMs, answer.retryInMs);
        trace.tried.push({ deployment: deploymentName(target), outcome: answer.reason === 'paused' ? 'rate limited' : 'at its pool-wide limit' });
        continue;
      }
      permit = answer.permit;
    }
    if (failed !== undefined) countMoveOn(deps, job, failed, target);
    failed = undefined;
    trace.calls++;
    const headHeaders = { 'x-spillway-deployment': deploymentName(target), 'x-spillway-attempts': String(trace.calls), 'x-spillway-queue-wait-ms': String(trace.queueWaitMs) };
    const call = () => attemptOnce({ metrics: deps.metrics, headHeaders, capture: trace.capture }, job, target, provider, request, replies, signal);
    deps.routing?.callStarted(target);
    const started = performance.now();
    let outcome: Outcome | typeof BREAKER_OPEN | undefined;
    try {
      outcome = deps.breakers === undefined ? await call() : await deps.breakers.run(target.provider, target.model, call, failureOf);
    } finally {
      settle(deps, target, outcome, performance.now() - started, permit);
    }
    if (outcome === BREAKER_OPEN) {
      // Opened between the choice and the call (another request's failure): skip it like any open target.
      trace.calls--;
      if (++breakerSkips > 2 * usable.length) break;
      continue;
    }
    if (outcome.ok) return { ...end, answered: { result: outcome.result, target } };
    const failure = outcome.failure;
    end.failure = failure;
    failed = { target, failure };
    trace.tried.push({ deployment: deploymentName(target), outcome: describeFailure(failure) });
    deps.logger.warn({ provider: provider.id, model: target.model, attempt, status: failure.status, kind: failure.kind, detail: failure.detail }, 'upstream attempt failed');
    // Once a chunk reached the client, a retry would duplicate tokens: the stream ends with an error instead.
    if (replies.chunkCount > 0) return { ...end, final: true };
    if (failure.status === 429 && failure.retryAfterMs !== undefined && failure.retryAfterMs > 0 && deps.pauses !== undefined) {
      // Flow control, not a failure of the deployment: the whole pool leaves it alone for that long, and this job
      // goes on to another target or waits (the caller delays it) instead of using up its attempts on it.
      deps.pauses.pause(target.provider, target.model, failure.retryAfterMs);
      deps.metrics.upstreamRateLimitsAbsorbed.inc({ provider: target.provider, deployment: deploymentName(target) });
      skipped.add(index % usable.length);
      end.waitMs = min(end.waitMs, failure.retryAfterMs);
      continue;
    }
    attempt++;
    if (!failure.retryable) return { ...end, final: failure.clientError !== undefined && failure.kind !== 'refused' };
    if (attempt >= deps.maxAttempts) break;
    cooldowns.failed(provider.id, failure.retryAfterMs);
  }
  return end;
}

/** A call made after a failed one: a retry (by the failure's reason), and a fallback when it goes to another deployment. */
function countMoveOn(deps: WalkDeps, job: CompletionJob, failed: { target: RouteTarget; failure: UpstreamFailure }, next: RouteTarget): void {
  const { target, failure } = failed;
  deps.metrics.upstreamRetries.inc({ provider: target.provider, deployment: deploymentName(target), reason: retryReason(failure) });
  if (next.provider !== target.provider || next.model !== target.model) deps.metrics.upstreamFallbacks.inc({ model: job.model, kind: 'deployment' });
}

function retryReason(failure: UpstreamFailure): string {
  if (failure.kind === 'status') return failure.status === 429 ? 'rate_limited' : failure.status >= 500 ? 'server_error' : 'client_error';
  return failure.kind === 'idle' ? 'timeout' : failure.kind;
}

/** After a call: its slot back and its tokens settled, its latency and calls-in-flight recorded. */
function settle(deps: WalkDeps, target: RouteTarget, outcome: Outcome | typeof BREAKER_OPEN | undefined, elapsedMs: number, permit: LimitPermit | undefined): void {
  if (outcome === undefined || outcome === BREAKER_OPEN) {
    deps.routing?.callEnded(target, undefined);
    permit?.release(outcome === BREAKER_OPEN ? 0 : undefined);
    return;
  }
  if (outcome.ok) {
    deps.routing?.callEnded(target, { headMs: outcome.headMs });
    const { result } = outcome;
    permit?.release(result.kind === 'error' ? 0 : totalTokens(result.kind === 'stream' ? result.usage : undefined, result.kind === 'body' ? result.body : undefined));
    return;
  }
  deps.routing?.callEnded(target, countsAgainstDeployment(outcome.failure) ? { failedAfterMs: elapsedMs } : undefined);
  // A refused or failed call is billed nothing.
  permit?.release(0);
}

/**
 * The next target from `position` (wrapping around), skipping those skipped in this walk, those a 429 paused and those
 * whose breaker is open. Paused and closed-breaker targets are known from memory, so the usual answer comes back
 * without a promise; only a breaker that is not closed asks Redis (half-open: does this worker send the probe?).
 */
function pick(deps: WalkDeps, usable: readonly RouteTarget[], position: number, skipped: Set<number>, end: StageEnd, trace: CallTrace): Choice | Promise<Choice> {
  for (let i = 0; i < usable.length; i++) {
    const index = position + i;
    if (skipped.has(index % usable.length)) continue;
    const target = usable[index % usable.length]!;
    const paused = deps.pauses?.remainingMs(target.provider, target.model) ?? 0;
    if (paused > 0) {
      skipped.add(index % usable.length);
      end.waitMs = min(end.waitMs, paused);
      trace.tried.push({ deployment: deploymentName(target), outcome: 'rate limited' });
      continue;
    }
    if (deps.breakers === undefined || deps.breakers.isClosed(target.provider, target.model)) {
      return { kind: 'call', index, target, provider: deps.providers.get(target.provider)! };
    }
    return pickGated(deps, deps.breakers, usable, index, position + usable.length, skipped, end, trace);
  }
  return { kind: 'none' };
}

async function pickGated(
  deps: WalkDeps,
  breakers: BreakerRegistry,
  usable: readonly RouteTarget[],
  from: number,
  to: number,
  skipped: Set<number>,
  end: StageEnd,
  trace: CallTrace,
): Promise<Choice> {
  for (let index = from; index < to; index++) {
    if (skipped.has(index % usable.length)) continue;
    const target = usable[index % usable.length]!;
    const paused = deps.pauses?.remainingMs(target.provider, target.model) ?? 0;
    if (paused > 0) {
      skipped.add(index % usable.length);
      end.waitMs = min(end.waitMs, paused);
      trace.tried.push({ deployment: deploymentName(target), outcome: 'rate limited' });
      continue;
    }
    const gate = await breakers.admit(target.provider, target.model);
    if (gate.kind !== 'open') return { kind: 'call', index, target, provider: deps.providers.get(target.provider)! };
    skipped.add(index % usable.length);
    end.openMs = min(end.openMs, gate.retryAfterMs);
    trace.tried.push({ deployment: deploymentName(target), outcome: 'circuit open' });
  }
  return { kind: 'none' };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new CallCancelledError());
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new CallCancelledError());
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
