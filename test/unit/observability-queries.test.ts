// The Grafana dashboard and the Prometheus rules against the code: every metric a PromQL expression names is one the
// code registers (createMetrics, with Node's standard process_/nodejs_ metrics) or a recording rule of ours, and every
// label a selector matches on is one that metric has. A renamed metric or label fails here, not on a dark dashboard.
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/observability/metrics.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const RULES_DIR = join(ROOT, 'deploy/prometheus/rules');
const DASHBOARD = join(ROOT, 'deploy/grafana/dashboards/spillway.json');

interface Rule {
  record?: string;
  alert?: string;
  expr: string;
  labels?: Record<string, string>;
}
interface Panel {
  type: string;
  title: string;
  targets?: { expr: string }[];
  panels?: Panel[];
}
interface Dashboard {
  panels: Panel[];
  templating: { list: { type: string; definition?: string; query?: unknown }[] };
}

const rules: Rule[] = readdirSync(RULES_DIR)
  .filter((f) => f.endsWith('.yml'))
  .flatMap((f) => (parse(readFileSync(join(RULES_DIR, f), 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules));
const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== 'row');
const panelExprs = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: `panel "${p.title}"`, expr: t.expr })));
const variableExprs = dashboard.templating.list.filter((v) => v.type === 'query').map((v) => ({ where: 'a dashboard variable', expr: v.definition ?? '' }));
const ruleExprs = rules.map((r) => ({ where: `rule ${r.record ?? r.alert}`, expr: r.expr }));
const recorded = new Set(rules.flatMap((r) => (r.record === undefined ? [] : [r.record])));

/** Metric name → its label names (histograms under their _bucket, _sum and _count series too), from the real registry. */
async function registeredSeries(): Promise<Map<string, Set<string>>> {
  const metrics = createMetrics({ roles: ['ingress', 'worker'] });
  const series = new Map<string, Set<string>>();
  const types = new Map((await metrics.registry.getMetricsAsJSON()).map((m) => [m.name, String(m.type)]));
  for (const metric of metrics.registry.getMetricsAsArray()) {
    // prom-client keeps each metric's label names on the metric object.
    const { name, labelNames } = metric as unknown as { name: string; labelNames: string[] };
    const type = types.get(name);
    // Prometheus adds job and instance to every scraped series.
    const labels = new Set([...labelNames, 'job', 'instance']);
    if (type === 'histogram') {
      series.set(`${name}_bucket`, new Set([...labels, 'le']));
      series.set(`${name}_sum`, labels);
      series.set(`${name}_count`, labels);
    } else {
      series.set(name, labels);
    }
  }
  return series;
}

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan']);

/**
 * The metric selectors of a PromQL expression: each metric name with the label names its `{…}` matches on. Strings,
 * range and subquery brackets, grouping clauses and Grafana variables are set aside first; a name followed by `(` is
 * a function or an aggregation, not a metric.
 */
export function selectorsOf(expr: string): { metric: string; labels: string[] }[] {
  const text = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\{?\w+\}?/g, ' ');
  const out: { metric: string; labels: string[] }[] = [];
  const token = /([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*(\()?|\{[^}]*\}/g;
  for (const match of text.matchAll(token)) {
    const [, name, matchers, call] = match;
    if (name === undefined) continue; // a bare {…} selector (none in ours)
    if (call !== undefined || KEYWORDS.has(name.toLowerCase())) continue;
    if (/^\d/.test(name)) continue;
    const labels = [...(matchers ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((m) => m[1]!);
    out.push({ metric: name, labels });
  }
  return out;
}

describe('the PromQL extractor this test relies on', () => {
  it('finds metrics and their matcher labels, and skips functions, grouping labels, strings, ranges and variables', () => {
    expect(selectorsOf('histogram_quantile(0.95, sum by (le, tenant) (rate(spillway_queue_wait_seconds_bucket{tenant=~"$tenant"}[$__rate_interval])))')).toEqual([
      { metric: 'spillway_queue_wait_seconds_bucket', labels: ['tenant'] },
    ]);
    expect(selectorsOf('sum(rate(a_total{x="by (y)", z!~"q"}[5m])) / on (job) group_left (k) b_gauge > 0.2 and c')).toEqual([
      { metric: 'a_total', labels: ['x', 'z'] },
      { metric: 'b_gauge', labels: [] },
      { metric: 'c', labels: [] },
    ]);
    expect(selectorsOf('label_values(spillway_tokens_total, tenant)')).toEqual([{ metric: 'spillway_tokens_total', labels: [] }, { metric: 'tenant', labels: [] }]);
  });
});

describe('dashboard and alert queries', () => {
  it('the dashboard and the rules have queries to check (the files were found and parsed)', () => {
    expect(panels.length).toBeGreaterThan(15);
    expect(panels.filter((p) => (p.targets ?? []).length === 0).map((p) => p.title)).toEqual([]);
    expect(ruleExprs.length).toBeGreaterThan(5);
  });

  it('every metric a dashboard panel or a rule names is registered by the code, or recorded by a rule', async () => {
    const series = await registeredSeries();
    const unknown: string[] = [];
    for (const { where, expr } of [...panelExprs, ...ruleExprs]) {
      for (const { metric } of selectorsOf(expr)) {
        if (!series.has(metric) && !recorded.has(metric)) unknown.push(`${where}: ${metric}`);
      }
    }
    expect(unknown).toEqual([]);
  });

  it("every label a selector matches on is one of its metric's labels", async () => {
    const series = await registeredSeries();
    const wrong: string[] = [];
    for (const { where, expr } of [...panelExprs, ...ruleExprs]) {
      for (const { metric, labels } of selectorsOf(expr)) {
        const known = series.get(metric);
        for (const label of labels) if (known !== undefined && !known.has(label)) wrong.push(`${where}: ${metric}{${label}}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it("the dashboard's variables read metrics the code registers, by one of their labels", async () => {
    const series = await registeredSeries();
    expect(variableExprs.length).toBeGreaterThan(0);
    for (const { expr } of variableExprs) {
      const match = /^label_values\((\w+),\s*(\w+)\)$/.exec(expr);
      expect(match, expr).not.toBeNull();
      expect(series.get(match![1]!)?.has(match![2]!), expr).toBe(true);
    }
  });

  it('a query naming a metric the code does not register is caught', async () => {
    const series = await registeredSeries();
    const names = selectorsOf('sum(rate(spillway_upstream_request_total{outcome="error"}[5m]))').map((s) => s.metric);
    expect(names.filter((n) => !series.has(n))).toEqual(['spillway_upstream_request_total']);
  });
});

describe('what the operator was promised', () => {
  it('alerts on queue-wait SLO burn, upstream error rate, an open breaker, Redis down and webhook dead letters', () => {
    const alerts = rules.filter((r) => r.alert !== undefined);
    const named = (pattern: RegExp) => alerts.filter((r) => pattern.test(r.expr)).map((r) => r.alert);
    expect(named(/queue_wait_over_10s/).length).toBeGreaterThanOrEqual(2);
    expect(named(/spillway_upstream_requests_total\{outcome="error"\}/)).toHaveLength(1);
    expect(named(/spillway_upstream_breaker_state\{state="open"\}/)).toHaveLength(1);
    expect(named(/spillway_redis_connection_up/)).toHaveLength(1);
    expect(named(/spillway_webhook_deliveries_total\{outcome="failed"\}/)).toHaveLength(1);
    for (const alert of alerts) expect(alert.labels?.severity, alert.alert).toMatch(/^(page|ticket|warning)$/);
  });

  it('charts latency percentiles, TTFT, queue depth and wait by tenant, admissions, upstream errors, breakers, tokens and cost per tenant per day', () => {
    const uses = (pattern: RegExp) => panelExprs.filter((e) => pattern.test(e.expr)).map((e) => e.where);
    expect(uses(/histogram_quantile\(0\.99, .*spillway_http_request_duration_seconds_bucket/).length).toBeGreaterThan(0);
    expect(uses(/histogram_quantile\(0\.95, .*spillway_time_to_first_token_seconds_bucket/).length).toBeGreaterThan(0);
    expect(uses(/spillway_queue_depth/).length).toBeGreaterThan(0);
    expect(uses(/by \(le, tenant\) \(rate\(spillway_queue_wait_seconds_bucket/).length).toBeGreaterThan(0);
    expect(uses(/spillway_admission_decisions_total/).length).toBeGreaterThan(0);
    expect(uses(/by \(deployment\) \(rate\(spillway_upstream_requests_total\{outcome="error"\}/).length).toBeGreaterThan(0);
    expect(uses(/spillway_upstream_breaker_state/).length).toBeGreaterThan(0);
    expect(uses(/sum by \(tenant, kind\) \(increase\(spillway_tokens_total\{.*\}\[1d\]\)\)/).length).toBeGreaterThan(0);
    expect(uses(/sum by \(tenant\) \(increase\(spillway_cost_usd_total\{.*\}\[1d\]\)\)/).length).toBeGreaterThan(0);
  });
});
