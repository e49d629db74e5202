// What a finished completion job leaves behind in the worker: its one log line (request id, tenant, model, deployment,
// attempts, queue wait, time taken, tokens, status), its token and cost metrics, and its tenant's daily usage counters.
// Never throws and never delays the job: no I/O here (the usage counters are added up in memory and written apart).
import type { Logger } from 'pino';
import type { Config, ModelPrice, PriorityClass } from '../config/schema.ts';
import type { CompletionJob, CompletionResult } from '../queue/jobs.ts';
import type { Metrics } from '../observability/metrics.ts';
import { costUsd, tokensOfResult } from './token-usage.ts';
import type { UsageRecorder } from './usage-counters.ts';

export type JobOutcome = 'ok' | 'error' | 'expired' | 'cancelled';

export interface JobReporter {
  /** A worker took the job: observes its queue wait (by model, tenant and priority class); returns it in ms. */
  taken(job: CompletionJob, takenAt: number): number;
  /** The job is over (whatever the outcome): its line, and for an answer its tokens, cost and usage. */
  finished(job: CompletionJob, jobId: string, outcome: JobOutcome, result: CompletionResult | undefined, context: FinishContext): void;
}

export interface FinishContext {
  /** When the worker took the job (epoch ms): the `now` passed to taken(). */
  takenAt: number;
  /** The head a stream's client got (its x-spillway-deployment and -attempts), which a stream's result does not carry. */
  headHeaders?: Record<string, string> | undefined;
}

export interface JobReporterDeps {
  config: Pick<Config, 'models' | 'tenants' | 'tenantDefaults' | 'jobs'>;
  metrics: Metrics;
  logger: Logger;
  /** Absent: no usage counters (GET /v1/usage shows nothing), metrics and the log line only. */
  usage?: UsageRecorder;
}

export function createJobReporter(deps: JobReporterDeps): JobReporter {
  const prices = new Map<string, ModelPrice | undefined>(deps.config.models.map((m) => [m.name, m.price]));
  const priorities = new Map<string, PriorityClass>(deps.config.tenants.map((t) => [t.id, t.priority ?? deps.config.tenantDefaults.priority ?? 'normal']));
  const { metrics, logger } = deps;
  const priorityOf = (job: CompletionJob): string => (job.replyTo === null ? deps.config.jobs.asyncPriority : (priorities.get(job.tenant) ?? 'normal'));
  return {
    taken(job, at) {
      const waitMs = Math.max(0, at - job.enqueuedAt);
      metrics.queueWait.observe({ model: job.model, tenant: job.tenant, priority: priorityOf(job) }, waitMs / 1000);
      return waitMs;
    },
    finished(job, jobId, outcome, result, { takenAt, headHeaders }) {
      const now = Date.now();
      const headers = { ...headHeaders, ...(result !== undefined && result.kind !== 'stream' ? result.headers : undefined) };
      // A cached answer (stale fallback) cost nothing upstream: no tokens, no cost, no usage.
      const fromCache = headers['x-spillway-cache'] !== undefined;
      const tokens = result === undefined || fromCache ? undefined : tokensOfResult(result);
      const cost = tokens === undefined ? 0 : costUsd(tokens, prices.get(job.model));
      if (tokens !== undefined) {
        const labels = { tenant: job.tenant, model: job.model };
        metrics.tokens.inc({ ...labels, kind: 'prompt' }, tokens.prompt);
        metrics.tokens.inc({ ...labels, kind: 'completion' }, tokens.completion);
        metrics.tokens.inc({ ...labels, kind: 'cached' }, tokens.cached);
        metrics.costUsd.inc(labels, cost);
      }
      const answered = outcome === 'ok' && result !== undefined && result.kind !== 'error' && !fromCache;
      if (answered) deps.usage?.record(job.tenant, job.model, now, tokens, cost);
      const status = result === undefined ? undefined : result.kind === 'stream' ? 200 : result.status;
      const attempts = headers['x-spillway-attempts'];
      const line = {
        reqId: job.requestId,
        jobId,
        tenant: job.tenant,
        model: job.model,
        endpoint: job.endpoint,
        stream: job.stream,
        async: job.replyTo === null,
        outcome,
        status,
        deployment: headers['x-spillway-deployment'],
        attempts: attempts === undefined ? undefined : Number(attempts),
        cache: headers['x-spillway-cache'],
        error: result?.kind === 'error' ? (result.error.code ?? result.error.type) : undefined,
        queueWaitMs: Math.max(0, takenAt - job.enqueuedAt),
        // From the worker taking the job to its end: upstream calls, retries and the waits between them.
        upstreamMs: Math.max(0, now - takenAt),
        tokens,
        costUsd: tokens === undefined ? undefined : cost,
      };
      if (outcome === 'ok' || outcome === 'cancelled') logger.info(line, 'job finished');
      else logger.warn(line, 'job finished');
    },
  };
}
