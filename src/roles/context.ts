// What every role is built from: the frozen config, the process logger and metrics registry, an instance id.
// Built once per process by the CLI (or a test) and passed down: no singletons.
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import { createMetrics, type Metrics } from '../observability/metrics.ts';
import type { ShutdownStep } from './shutdown.ts';

export interface RoleContext {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  /** Unique per process start: names the ingress's reply channel. */
  instanceId: string;
}

export interface RunningRole {
  /** Shutdown steps in order. */
  steps: ShutdownStep[];
}

export function newInstanceId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** The long-running roles of the CLI. */
export type RoleName = 'start' | 'ingress' | 'worker';

/** The process's metrics registry, exporting only what its role produces (`start` runs both roles: both). */
export function createRoleMetrics(role: RoleName): Metrics {
  return createMetrics({ roles: role === 'start' ? ['ingress', 'worker'] : [role] });
}
