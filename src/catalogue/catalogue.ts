// The model catalogue: public model names → routes (ordered upstream targets), endpoints. Read by both roles: the
// ingress to validate a request, the worker to route it. Pure lookups over frozen config: no I/O, no state.
import type { Config, Endpoint, ModelConfig } from '../config/schema.ts';

export interface RouteTarget {
  provider: string;
  model: string;
  /** `strategy: weighted` only (default 1). */
  weight?: number | undefined;
}

export interface Router {
  model(name: string): ModelConfig | undefined;
  targets(name: string): readonly RouteTarget[];
  servesEndpoint(model: ModelConfig, endpoint: Endpoint): boolean;
}

export function createRouter(config: Config): Router {
  const models = new Map(config.models.map((m) => [m.name, m]));
  return {
    model: (name) => models.get(name),
    targets: (name) => models.get(name)?.route ?? [],
    servesEndpoint: (model, endpoint) => model.endpoints === undefined || model.endpoints.includes(endpoint),
  };
}

/** The target for the n-th attempt (0-based): walk the route in order, then wrap around. */
export function targetForAttempt(targets: readonly RouteTarget[], attempt: number): RouteTarget | undefined {
  return targets.length === 0 ? undefined : targets[attempt % targets.length];
}
