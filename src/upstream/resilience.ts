// Builds the worker's pool-wide breakers and health checks from the config, as one unit the composition root starts
// and closes. Takes its Redis connections from the caller and never closes them.
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ModelConfig } from '../config/schema.ts';
import type { BreakerKeys } from '../queue/keys.ts';
import type { ProviderRuntime } from './dispatcher.ts';
import { BreakerRegistry } from './breakers.ts';
import { HealthCheckRunner } from './health-checks.ts';
import { defineUpstreamScripts } from './lease-scripts.ts';

export interface UpstreamResilienceDeps {
  /** A command connection (probe and health leases, open keys, nudges). */
  redis: Redis | Cluster;
  /** A subscriber connection of its own for the breaker nudges. */
  subscriber: Redis | Cluster;
  keys: BreakerKeys;
  instanceId: string;
  logger: Logger;
  providers: ReadonlyMap<string, ProviderRuntime>;
  models: readonly ModelConfig[];
}

export interface UpstreamResilience {
  /** Goes into the processor's deps (`UpstreamDeps.breakers`). */
  readonly breakers: BreakerRegistry;
  readonly health: HealthCheckRunner;
  /** Subscribes, reads the pool's open breakers, starts the health checks. */
  start(): Promise<void>;
  /** Stops the health checks, then the breakers. Idempotent. */
  close(): Promise<void>;
}

export function createUpstreamResilience(deps: UpstreamResilienceDeps): UpstreamResilience {
  // The probe and health-lease scripts are defined before traffic (see defineUpstreamScripts).
  defineUpstreamScripts(deps.redis);
  const deployments = deps.models.flatMap((model) => model.route);
  const common = { redis: deps.redis, keys: deps.keys, instanceId: deps.instanceId, logger: deps.logger };
  const breakers = new BreakerRegistry({ ...common, subscriber: deps.subscriber, deployments, settings: (id) => deps.providers.get(id)?.circuitBreaker });
  const health = new HealthCheckRunner({ ...common, providers: deps.providers, breakers, deployments });
  return {
    breakers,
    health,
    start: async () => {
      await breakers.start();
      health.start();
    },
    close: async () => {
      await health.close();
      await breakers.close();
    },
  };
}
