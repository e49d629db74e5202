// Makes the upstream call for one job: its model's route in the model's strategy order, then its model fallbacks (and a
// context-window fallback on a context-length 400), each walked by route-walk.ts; stores a cacheable answer, answers
// from the stale cache when every deployment failed, and says when the job should wait instead (UpstreamBusyError).
// The only retry layer for completion jobs (BullMQ attempts = 1).
import type { Logger } from 'pino';
import type { CompletionJob, CompletionResult } from '../queue/jobs.ts';
import type { JobReplies } from '../queue/reply-publisher.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { ProviderRuntime } from './dispatcher.ts';
import type { RouteTarget } from '../catalogue/catalogue.ts';
import type { BreakerRegistry } from './breakers.ts';
import type { DeploymentPauses } from './pauses.ts';
import type { PoolLimits } from './pool-limits.ts';
import type { RouteStage, RoutingState } from './routing-state.ts';
import type { ResponseCache } from '../cache/response-cache.ts';
import type { UpstreamFailure } from './providers/openai/errors.ts';
import { withResponsesContext } from '../responses/context.ts';
import { deploymentName, walkStage, type CallTrace } from './route-walk.ts';
import { allOpenResult, errorResult, finalError } from './final-error.ts';
import { replayCached, storeAnswer } from './cached-answers.ts';

export { CallCancelledError } from './attempt.ts';

export interface UpstreamDeps {
  providers: ReadonlyMap<string, ProviderRuntime>;
  metrics: Metrics;
  logger: Logger;
  maxAttempts: number;
  /** Pool-wide circuit breakers. Absent: every route target is always tried (a worker built without Redis state). */
  breakers?: BreakerRegistry;
  /** Pool-wide 429 pauses. Absent: a 429's Retry-After delays only this job's next call to that provider. */
  pauses?: DeploymentPauses;
  /** Pool-wide provider limits (rpm, tpm, calls at once). Absent: none are enforced. */
  limits?: PoolLimits;
  /** Strategies and model fallbacks. Absent: the route in its configured order, no model fallbacks. */
  routing?: RoutingState;
  /** The response cache (jobs with a cache directive). Absent: nothing stored, no stale fallback. */
  cache?: ResponseCache;
}

/**
 * Thrown when nothing can be called now but something will be soon enough (a deployment paused by a 429, a provider at
 * its pool-wide limits): the processor puts the job back, delayed, instead of holding a worker slot while it waits.
 */
export class UpstreamBusyError extends Error {
  readonly retryInMs: number;
  constructor(retryInMs: number) {
    super(`every usable deployment is rate limited for ${retryInMs} ms`);
    this.name = 'UpstreamBusyError';
    this.retryInMs = retryInMs;
  }
}

/** A wait is worth it only if the call can still run afterwards. */
const MIN_CALL_MS = 250;

export async function callUpstream(
  deps: UpstreamDeps,
  job: CompletionJob,
  targets: readonly RouteTarget[],
  replies: JobReplies,
  signal: AbortSignal,
): Promise<CompletionResult> {
  // A Responses job's context (its id, the conversation) rides on its body out of JSON's sight: src/responses/context.ts.
  if (job.responses !== undefined) job = { ...job, body: withResponsesContext(job.body, job.responses) };
  // A target whose provider this worker does not know (config drift between roles) is skipped, not fatal; so is one
  // whose provider lacks the endpoint (no embeddings at Anthropic).
  const known = targets.filter((t) => deps.providers.has(t.provider));
  if (known.length > 0 && !known.some((t) => deps.providers.get(t.provider)!.adapter.serves(job.endpoint))) {
    return errorResult(400, {}, `The model '${job.model}' cannot serve this endpoint: its upstream does not offer it.`, 'invalid_request_error', 'unsupported_endpoint');
  }
  const stages: RouteStage[] = deps.routing?.plan(job, known) ?? [{ model: job.model, targets: known }];
  const cache = job.cache;
  const trace: CallTrace = {
    calls: 0,
    queueWaitMs: Math.max(0, Date.now() - job.enqueuedAt),
    tried: [],
    capture: cache !== undefined && deps.cache !== undefined && job.stream ? { maxBytes: cache.maxEntryBytes, chunks: [], bytes: 0, overflow: false } : undefined,
  };
  let failure: UpstreamFailure | undefined;
  let openMs: number | undefined;
  let widened = false;
  for (let i = 0; i < stages.length; i++) {
    if (i > 0) deps.metrics.upstreamFallbacks.inc({ model: job.model, kind: 'model' });
    const end = await walkStage(deps, job, stages[i]!, replies, signal, trace);
    if (end.answered !== undefined) {
      const { result, target } = end.answered;
      const headers = { 'x-spillway-deployment': deploymentName(target), 'x-spillway-attempts': String(trace.calls), 'x-spillway-queue-wait-ms': String(trace.queueWaitMs) };
      const answered: CompletionResult = result.kind === 'body' ? { ...result, headers: { ...result.headers, ...headers } } : result;
      if (cache !== undefined && deps.cache !== undefined) await storeAnswer(deps.cache, deps.logger, cache, answered, trace.capture);
      return answered;
    }
    failure = end.failure ?? failure;
    if (end.openMs !== undefined) openMs = Math.min(openMs ?? end.openMs, end.openMs);
    if (end.final) {
      // A request too long for this model's context window may fit a wider one, once.
      const wider = !widened && isContextLengthError(end.failure) ? deps.routing?.contextWindowFallback(stages[i]!.model) : undefined;
      const stage = wider === undefined ? undefined : deps.routing?.stage(wider, job.tenant, job.endpoint);
      if (stage === undefined) break;
      widened = true;
      stages.splice(i + 1, 0, stage);
      continue;
    }
    // Flow control is waited out, not fled from: the job comes back when the deployment may be called again, unless
    // that is too late for its deadline (then the model fallbacks get their turn).
    if (end.waitMs !== undefined && replies.chunkCount === 0 && Date.now() + end.waitMs + MIN_CALL_MS < job.deadline) {
      // A little jitter, always later, never sooner: the jobs a pause held back do not all come back in the same ms.
      throw new UpstreamBusyError(end.waitMs + Math.floor(Math.random() * Math.min(250, 10 + end.waitMs / 10)));
    }
  }
  const streamStarted = replies.chunkCount > 0;
  if (cache !== undefined && deps.cache !== undefined) {
    // Identical requests waiting for this one run their own now (a stale answer is this request's alone).
    await deps.cache.release(cache).catch((err: unknown) => deps.logger.warn({ err: String(err) }, 'releasing a cache flight failed'));
    if (!streamStarted && servedByStale(failure)) {
      const stale = await deps.cache.readStale(cache).catch((err: unknown) => {
        deps.logger.warn({ err: String(err) }, 'reading the stale cache failed');
        return undefined;
      });
      if (stale !== undefined) {
        deps.logger.warn({ model: job.model, tried: trace.tried.length }, 'every deployment failed: answered from the stale cache');
        deps.metrics.cacheHits.inc({ kind: 'stale' });
        return replayCached(stale, replies, { 'x-spillway-cache': 'stale', 'x-spillway-attempts': String(trace.calls) });
      }
    }
  }
  // An error names what was tried in its message; its headers stay what a client SDK reads (Retry-After).
  return failure === undefined && openMs !== undefined ? allOpenResult(openMs, trace.tried) : finalError(failure, streamStarted, trace.tried);
}

/**
 * In memory only: when every target of the job's model and of its fallbacks is paused by a 429, how long until the
 * first frees; undefined otherwise. Lets the processor put such a job back before taking any of its tenant's budgets.
 */
export function pausedForMs(deps: Pick<UpstreamDeps, 'pauses' | 'routing'>, job: CompletionJob, targets: readonly RouteTarget[]): number | undefined {
  const pauses = deps.pauses;
  if (pauses === undefined || !pauses.active || targets.length === 0) return undefined;
  let earliest: number | undefined;
  const now = Date.now();
  const stages = deps.routing?.plan(job, targets) ?? [{ model: job.model, targets }];
  for (const stage of stages) {
    for (const target of stage.targets) {
      const ms = pauses.remainingMs(target.provider, target.model, now);
      if (ms === 0) return undefined;
      earliest = Math.min(earliest ?? ms, ms);
    }
  }
  return earliest;
}

/** OpenAI's and Azure's `context_length_exceeded`, Anthropic's "prompt is too long": a 400 a wider model may not give. */
function isContextLengthError(failure: UpstreamFailure | undefined): boolean {
  if (failure?.status !== 400 || failure.clientError === undefined) return false;
  const { code, message } = failure.clientError;
  return code === 'context_length_exceeded' || /context length|context window|maximum context|prompt is too long|too many tokens/i.test(message);
}

/** The stale cache answers for the upstreams' failures, never for the client's own (4xx) or a deadline nobody waits for. */
function servedByStale(failure: UpstreamFailure | undefined): boolean {
  if (failure === undefined) return true;
  return failure.clientError === undefined && failure.kind !== 'deadline';
}
