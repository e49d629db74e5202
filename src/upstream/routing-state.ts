// The route plan of one job — its model's targets in that model's strategy order, then each model fallback's — and the
// signals the strategies read: latency to the response head (an EWMA per deployment, this worker's own measurements)
// and calls in flight (busy-counts.ts, shared by the pool). Memory only: planning a route never calls Redis.
import type { Config, Endpoint, ModelConfig } from '../config/schema.ts';
import type { RouteTarget } from '../catalogue/catalogue.ts';
import { deploymentId } from './breakers.ts';
import type { BusyCounts } from './busy-counts.ts';
import { orderTargets, type RouteSignals } from './strategies.ts';

/** Weight of the newest latency sample in the EWMA. */
export const LATENCY_ALPHA = 0.3;
/** A failed call counts as at least this slow: a deployment failing fast must not look like the fastest. */
export const FAILURE_LATENCY_MS = 5_000;

/** One model of the plan and its targets in the order they are tried. */
export interface RouteStage {
  model: string;
  targets: readonly RouteTarget[];
}

export interface RoutingStateOptions {
  config: Pick<Config, 'models' | 'tenants'>;
  /** Pool-wide calls in flight (least-busy); absent: this worker's own calls only. */
  busy?: BusyCounts;
  random?: () => number;
}

export class RoutingState implements RouteSignals {
  private readonly models: ReadonlyMap<string, ModelConfig>;
  private readonly allowed: ReadonlyMap<string, ReadonlySet<string> | undefined>;
  private readonly busyCounts: BusyCounts | undefined;
  private readonly random: () => number;
  private readonly latencies = new Map<string, number>();
  /** This worker's calls in flight, for deployments the pool does not count. */
  private readonly inFlight = new Map<string, number>();

  constructor(options: RoutingStateOptions) {
    this.models = new Map(options.config.models.map((m) => [m.name, m]));
    this.allowed = new Map(options.config.tenants.map((t) => [t.id, t.models === undefined ? undefined : new Set(t.models)]));
    this.busyCounts = options.busy;
    this.random = options.random ?? Math.random;
  }

  /**
   * The stages of a job: its model (with `targets`, the route the caller resolved) first, then the model's `fallbacks`
   * that the tenant may use and that serve the endpoint.
   */
  plan(job: { model: string; tenant: string; endpoint: Endpoint }, targets: readonly RouteTarget[]): RouteStage[] {
    const model = this.models.get(job.model);
    const stages: RouteStage[] = [{ model: job.model, targets: orderTargets(model?.strategy ?? 'fallback', targets, this, this.random) }];
    for (const name of model?.fallbacks ?? []) {
      const stage = this.stage(name, job.tenant, job.endpoint);
      if (stage !== undefined) stages.push(stage);
    }
    return stages;
  }

  /** One model as a stage (a fallback, the context-window fallback), or undefined when the tenant or endpoint rules it out. */
  stage(name: string, tenant: string, endpoint: Endpoint): RouteStage | undefined {
    const model = this.models.get(name);
    if (model === undefined) return undefined;
    const allowed = this.allowed.get(tenant);
    if (allowed !== undefined && !allowed.has(name)) return undefined;
    if (model.endpoints !== undefined && !model.endpoints.includes(endpoint)) return undefined;
    return { model: name, targets: orderTargets(model.strategy, model.route, this, this.random) };
  }

  /** The model a context-length refusal moves the request to, if its model names one. */
  contextWindowFallback(name: string): string | undefined {
    return this.models.get(name)?.contextWindowFallback;
  }

  busy(target: RouteTarget): number {
    const id = deploymentId(target.provider, target.model);
    if (this.busyCounts?.tracks(id) === true) return this.busyCounts.busy(id);
    return this.inFlight.get(id) ?? 0;
  }

  latency(target: RouteTarget): number | undefined {
    return this.latencies.get(deploymentId(target.provider, target.model));
  }

  callStarted(target: RouteTarget): void {
    const id = deploymentId(target.provider, target.model);
    this.inFlight.set(id, (this.inFlight.get(id) ?? 0) + 1);
    this.busyCounts?.callStarted(id);
  }

  /**
   * `headMs`: time to the response head of a call that succeeded; `failed`: the call failed in a way that speaks
   * against the deployment (counted as FAILURE_LATENCY_MS at least). Neither (a client's 4xx, a cancel): no sample.
   */
  callEnded(target: RouteTarget, sample: { headMs: number } | { failedAfterMs: number } | undefined): void {
    const id = deploymentId(target.provider, target.model);
    this.inFlight.set(id, Math.max(0, (this.inFlight.get(id) ?? 1) - 1));
    this.busyCounts?.callEnded(id);
    if (sample === undefined) return;
    const ms = 'headMs' in sample ? sample.headMs : Math.max(FAILURE_LATENCY_MS, sample.failedAfterMs);
    const previous = this.latencies.get(id);
    this.latencies.set(id, previous === undefined ? ms : previous + LATENCY_ALPHA * (ms - previous));
  }
}
