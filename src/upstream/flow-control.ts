// Builds the worker's pool-wide flow control and routing state from the config, as one unit the composition root starts
// and closes: 429 pauses (pauses.ts), provider limits (pool-limits.ts), the route plan with its signals
// (routing-state.ts) and the shared calls-in-flight counts (busy-counts.ts). Never closes the connections it is given.
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { RedisKeys } from '../queue/keys.ts';
import type { ProviderRuntime } from './dispatcher.ts';
import { deploymentId } from './breakers.ts';
import { BusyCounts } from './busy-counts.ts';
import { DeploymentPauses } from './pauses.ts';
import { PoolLimits } from './pool-limits.ts';
import { RoutingState } from './routing-state.ts';

export interface FlowControlDeps {
  /** Commands (pause keys, nudges, limits, busy counts). */
  redis: Redis | Cluster;
  /** A subscriber for the pause nudges (it may carry other channels). */
  subscriber: Redis | Cluster;
  keys: RedisKeys;
  instanceId: string;
  logger: Logger;
  providers: ReadonlyMap<string, ProviderRuntime>;
  config: Pick<Config, 'models' | 'tenants'>;
  /** TTL of a provider concurrency lease (the worker's lock duration). */
  leaseTtlMs: number;
  /** How often calls in flight are shared (least-busy); default 200 ms. */
  busyIntervalMs?: number;
}

export interface FlowControl {
  readonly pauses: DeploymentPauses;
  readonly limits: PoolLimits;
  readonly routing: RoutingState;
  /** Present when a model routes least-busy. */
  readonly busy: BusyCounts | undefined;
  /** Subscribes to pauses and reads the pool's; starts sharing calls in flight. */
  start(): Promise<void>;
  /** Idempotent. */
  close(): Promise<void>;
}

export function createFlowControl(deps: FlowControlDeps): FlowControl {
  const { redis, keys, instanceId, logger } = deps;
  const deployments = deps.config.models.flatMap((model) => model.route);
  const leastBusy = deps.config.models.filter((model) => model.strategy === 'least-busy').flatMap((model) => model.route.map((t) => deploymentId(t.provider, t.model)));
  const busy =
    leastBusy.length === 0
      ? undefined
      : new BusyCounts({ redis, keys, instanceId, logger, deployments: leastBusy, ...(deps.busyIntervalMs === undefined ? {} : { intervalMs: deps.busyIntervalMs }) });
  const pauses = new DeploymentPauses({ redis, subscriber: deps.subscriber, keys, instanceId, logger, deployments });
  const limits = new PoolLimits({ redis, keys, providers: deps.providers, leaseTtlMs: deps.leaseTtlMs, logger });
  const routing = new RoutingState({ config: deps.config, ...(busy === undefined ? {} : { busy }) });
  let closed = false;
  return {
    pauses,
    limits,
    routing,
    busy,
    start: async () => {
      await pauses.start();
      busy?.start();
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await busy?.close();
      await pauses.close();
    },
  };
}
