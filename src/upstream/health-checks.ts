// Active health checks: for each provider with `healthCheck`, one worker of the pool at a time (a Redis lease) GETs
// the provider's probe path every intervalMs; a dead answer opens that provider's breakers in every worker, so
// traffic goes around it before a user request fails on it. Never closes a breaker: the half-open probe does that.
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { BreakerKeys } from '../queue/keys.ts';
import type { ProviderRuntime } from './dispatcher.ts';
import type { BreakerRegistry } from './breakers.ts';
import { holdHealthLease } from './lease-scripts.ts';

export interface HealthCheckOptions {
  /** Commands (the lease); owned by the caller. */
  redis: Redis | Cluster;
  keys: BreakerKeys;
  instanceId: string;
  logger: Logger;
  providers: ReadonlyMap<string, ProviderRuntime>;
  breakers: BreakerRegistry;
  /** Every route target: a provider that fails its probe has all of its deployments opened. */
  deployments: Iterable<{ provider: string; model: string }>;
}

/** `unhealthy` carries why, for the log line and the breaker. */
export type ProbeVerdict = { healthy: true; status: number } | { healthy: false; reason: string };

export class HealthCheckRunner {
  private readonly o: HealthCheckOptions;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly running = new Map<string, Promise<void>>();
  private readonly stop = new AbortController();
  private readonly models = new Map<string, Set<string>>();
  private sent = 0;

  constructor(options: HealthCheckOptions) {
    this.o = options;
    for (const { provider, model } of options.deployments) {
      let set = this.models.get(provider);
      if (set === undefined) this.models.set(provider, (set = new Set()));
      set.add(model);
    }
  }

  /** Starts one timer per provider that has a health check (and breakers to feed); the first check runs at once. */
  start(): void {
    for (const provider of this.o.providers.values()) {
      const check = provider.healthCheck;
      if (check === undefined) continue;
      if (!provider.circuitBreaker.enabled) {
        this.o.logger.warn({ provider: provider.id }, 'health check ignored: the provider has circuitBreaker.enabled false');
        continue;
      }
      const tick = () => this.tick(provider, check.intervalMs, check.path);
      const timer = setInterval(tick, check.intervalMs);
      timer.unref();
      this.timers.push(timer);
      tick();
    }
  }

  /** Probes this worker has sent (it holds the lease while it sends them). */
  get probesSent(): number {
    return this.sent;
  }

  /** Idempotent: stops the timers and aborts the probes in flight. */
  async close(): Promise<void> {
    for (const timer of this.timers.splice(0)) clearInterval(timer);
    this.stop.abort();
    await Promise.all(this.running.values());
  }

  private tick(provider: ProviderRuntime, intervalMs: number, path: string | undefined): void {
    if (this.stop.signal.aborted || this.running.has(provider.id)) return;
    const run = this.checkOnce(provider, intervalMs, path)
      .catch((err: unknown) => this.o.logger.warn({ err: String(err), provider: provider.id }, 'health check failed to run'))
      .finally(() => this.running.delete(provider.id));
    this.running.set(provider.id, run);
  }

  private async checkOnce(provider: ProviderRuntime, intervalMs: number, path: string | undefined): Promise<void> {
    // Three intervals: a holder whose ticks run late (a busy event loop) keeps its lease; a dead one loses it soon.
    if (!(await holdHealthLease(this.o.redis, this.o.keys.healthLease(provider.id), this.o.instanceId, 3 * intervalMs))) return;
    this.sent++;
    const verdict = await probeProvider(provider, path, Math.min(provider.timeoutMs, intervalMs), this.stop.signal);
    if (this.stop.signal.aborted) return;
    if (verdict.healthy) {
      this.o.logger.debug({ provider: provider.id, status: verdict.status }, 'health check passed');
      return;
    }
    this.o.logger.warn({ provider: provider.id, reason: verdict.reason }, 'health check failed');
    for (const model of this.models.get(provider.id) ?? []) {
      this.o.breakers.openPoolWide(provider.id, model, provider.circuitBreaker.resetTimeoutMs, `health check: ${verdict.reason}`);
    }
  }
}

/**
 * One GET of the provider's probe path. Dead: no answer within `timeoutMs`, a failed connection, or a 5xx. Any
 * other answer (a 4xx included) proves the deployment is there; what it thinks of the request is not the question.
 */
export async function probeProvider(provider: ProviderRuntime, path: string | undefined, timeoutMs: number, signal: AbortSignal): Promise<ProbeVerdict> {
  const request = provider.adapter.healthProbe(provider, path);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error('health probe timed out')), timeoutMs);
  const onStop = () => controller.abort(signal.reason);
  signal.addEventListener('abort', onStop, { once: true });
  try {
    const response = await provider.pool.request({ method: 'GET', path: request.path, headers: request.headers, signal: controller.signal, headersTimeout: timeoutMs });
    await response.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
    if (response.statusCode >= 500) return { healthy: false, reason: `probe answered ${response.statusCode}` };
    return { healthy: true, status: response.statusCode };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return { healthy: false, reason: controller.signal.aborted ? `no answer within ${timeoutMs} ms` : `probe failed${typeof code === 'string' ? ` (${code})` : ''}` };
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onStop);
  }
}
