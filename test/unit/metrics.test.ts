// The metrics registry: Node's default metrics under their standard names, and each role exporting only its own.
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/observability/metrics.ts';
import { createRoleMetrics } from '../../src/roles/context.ts';
import type { Metrics } from '../../src/observability/metrics.ts';

const INGRESS = ['spillway_admission_decisions_total', 'spillway_http_request_duration_seconds', 'spillway_ingress_pending_requests', 'spillway_queue_depth'];
const WORKER = ['spillway_jobs_processed_total', 'spillway_queue_wait_seconds', 'spillway_upstream_duration_seconds', 'spillway_upstream_requests_total'];

const names = (metrics: Metrics): string[] => metrics.registry.getMetricsAsArray().map((m) => m.name);
const spillwayNames = (metrics: Metrics): string[] => names(metrics).filter((n) => n.startsWith('spillway_')).sort();

describe('metrics registry', () => {
  it('exports Node.js process metrics under their standard names, as stock dashboards query them', () => {
    const all = names(createMetrics({ roles: ['ingress'] }));
    expect(all).toEqual(expect.arrayContaining(['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds']));
    expect(all.filter((n) => n.startsWith('spillway_process_'))).toEqual([]);
  });

  it('an ingress process registers the HTTP, pending-request, admission and queue-depth metrics only', () => {
    expect(spillwayNames(createRoleMetrics('ingress'))).toEqual(INGRESS);
  });

  it('a worker process registers the queue, upstream and job metrics only', () => {
    expect(spillwayNames(createRoleMetrics('worker'))).toEqual(WORKER);
  });

  it('`spillway start` runs both roles and registers both sets', () => {
    expect(spillwayNames(createRoleMetrics('start'))).toEqual([...INGRESS, ...WORKER].sort());
  });

  it("a metric of a role the process does not run can be recorded, but is never exported", async () => {
    const ingress = createMetrics({ roles: ['ingress'], defaultMetrics: false });
    ingress.queueWait.observe({ model: 'm', tenant: 't' }, 0.5);
    ingress.jobsProcessed.inc({ outcome: 'ok' });
    const text = await ingress.registry.metrics();
    expect(text).not.toContain('spillway_queue_wait_seconds');
    expect(text).not.toContain('spillway_jobs_processed_total');
    expect(text).toContain('spillway_http_request_duration_seconds');
  });
});
