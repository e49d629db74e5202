// Static checks of the deployment files (docker-compose, deploy/k8s, nginx, Prometheus) against the app's own
// contracts: the values that, when wrong, apply cleanly and fail only in production. Reads files only.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { parseConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';
import { createRedisKeys } from '../../src/queue/keys.ts';
import { createMetrics } from '../../src/observability/metrics.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const K8S_DIR = join(ROOT, 'deploy/k8s');

/** The roles `node bin/spillway.js <role>` accepts. */
const CLI_ROLES = new Set(['start', 'ingress', 'worker', 'mock-upstream', 'check-config']);
/** HTTP paths each long-running role serves for probes (the worker on worker.metricsPort). */
const PROBE_PATHS: Record<string, readonly string[]> = { ingress: ['/health', '/ready'], worker: ['/health'] };

/** BullMQ keeps these job states in lists (`prioritized` and `delayed` are sorted sets). */
const BULLMQ_LIST_STATES = ['wait', 'active'] as const;

// ---- the slices of the manifests these tests read -------------------------------------------------

type Labels = Record<string, string>;

interface Probe {
  httpGet?: { path: string; port: number | string };
}

interface Container {
  name: string;
  args?: string[];
  env?: { name: string; value?: string }[];
  envFrom?: { secretRef?: { name: string } }[];
  ports?: { name?: string; containerPort: number }[];
  startupProbe?: Probe;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  lifecycle?: { preStop?: { exec?: { command: string[] }; sleep?: { seconds: number } } };
  volumeMounts?: { name: string; mountPath: string }[];
}

interface PodTemplate {
  metadata: { labels: Labels; annotations?: Record<string, string> };
  spec: {
    terminationGracePeriodSeconds?: number;
    containers: Container[];
    volumes?: { name: string; configMap?: { name: string } }[];
  };
}

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  spec?: {
    selector?: Labels | { matchLabels: Labels };
    template?: PodTemplate;
    scaleTargetRef?: { kind?: string; name: string };
    triggers?: { type: string; metadata: Record<string, string | undefined> }[];
  };
}

interface Workload {
  name: string;
  role: string;
  labels: Labels;
  template: PodTemplate;
  container: Container;
}

interface ComposeService {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string>;
  stop_grace_period?: string;
}

// ---- loading ----------------------------------------------------------------------------------------

function readText(path: string): string {
  return readFileSync(join(ROOT, path), 'utf8');
}

function loadK8sObjects(): K8sObject[] {
  const files = readdirSync(K8S_DIR).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml');
  return files.flatMap((file) =>
    parseAllDocuments(readFileSync(join(K8S_DIR, file), 'utf8')).map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]?.message ?? 'invalid YAML'}`);
      return doc.toJS() as K8sObject;
    }),
  );
}

const k8s = loadK8sObjects();
const compose = parse(readText('docker-compose.yml'), { merge: true }) as { services: Record<string, ComposeService> };

function k8sObject(kind: string, name?: string): K8sObject {
  const found = k8s.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found === undefined) throw new Error(`no ${kind}${name === undefined ? '' : ` "${name}"`} under deploy/k8s`);
  return found;
}

/** Every Deployment, keyed by the CLI role its (single Spillway) container runs. */
function workloads(): Workload[] {
  return k8s
    .filter((o) => o.kind === 'Deployment')
    .map((o) => {
      const template = o.spec?.template;
      const container = template?.spec.containers[0];
      if (template === undefined || container === undefined) throw new Error(`Deployment ${o.metadata.name} has no container`);
      return { name: o.metadata.name, role: container.args?.[0] ?? '', labels: template.metadata.labels, template, container };
    });
}

function workload(role: string): Workload {
  const found = workloads().find((w) => w.role === role);
  if (found === undefined) throw new Error(`no Deployment runs the "${role}" role`);
  return found;
}

const VAR = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** The ${VAR} names used in the values of a YAML document (comments excluded). */
function referencedVars(value: unknown): Set<string> {
  const names = new Set<string>();
  const walk = (v: unknown): void => {
    if (typeof v === 'string') for (const match of v.matchAll(VAR)) names.add(match[1] ?? '');
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v !== null && typeof v === 'object') Object.values(v).forEach(walk);
  };
  walk(value);
  return names;
}

/** Replaces ${VAR} / ${VAR:-default} in every string, as load.ts does; a variable without a value throws. */
function substituteVars(value: unknown, env: Record<string, string>): unknown {
  if (typeof value === 'string') {
    return value.replace(VAR, (_match, name: string, fallback: string | undefined) => {
      const found = env[name] ?? fallback;
      if (found === undefined) throw new Error(`no value for \${${name}}`);
      return found;
    });
  }
  if (Array.isArray(value)) return value.map((item) => substituteVars(item, env));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substituteVars(v, env)]));
  }
  return value;
}

function configMapDocument(): unknown {
  const text = k8sObject('ConfigMap', 'spillway-config').data?.['spillway.yaml'];
  if (text === undefined) throw new Error('ConfigMap spillway-config has no spillway.yaml');
  return parse(text);
}

/** The example Secret's values stand in for the real ones: they must be valid where the config uses them. */
function exampleSecret(): Record<string, string> {
  return k8sObject('Secret', 'spillway-secrets').stringData ?? {};
}

function k8sConfig(): Config {
  return parseConfig(substituteVars(configMapDocument(), exampleSecret()), 'deploy/k8s/configmap.yaml');
}

function composeConfig(): Config {
  return parseConfig(substituteVars(parse(readText('deploy/compose/spillway.yaml')), {}), 'deploy/compose/spillway.yaml');
}

function probesOf(container: Container): Probe[] {
  return [container.startupProbe, container.readinessProbe, container.livenessProbe].filter((p): p is Probe => p !== undefined);
}

function resolvePort(container: Container, port: number | string): number | undefined {
  return typeof port === 'number' ? port : container.ports?.find((p) => p.name === port)?.containerPort;
}

function preStopSeconds(container: Container): number {
  const preStop = container.lifecycle?.preStop;
  if (preStop?.sleep !== undefined) return preStop.sleep.seconds;
  const [cmd, seconds] = preStop?.exec?.command ?? [];
  return cmd === 'sleep' ? Number(seconds) : 0;
}

/** Compose durations: "45s", "1m30s", "500ms". */
function durationSeconds(text: string): number {
  const units: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600 };
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) throw new Error(`not a compose duration: "${text}"`);
  return parts.reduce((sum, p) => sum + Number(p[1]) * (units[p[2] ?? 's'] ?? 1), 0);
}

function matchLabelsOf(selector: Labels | { matchLabels: Labels } | undefined): Labels {
  if (selector === undefined) return {};
  return 'matchLabels' in selector && typeof selector.matchLabels === 'object' ? selector.matchLabels : (selector as Labels);
}

function selects(selector: Labels, labels: Labels): boolean {
  return Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
}

const PROMQL_WORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'bool', 'and', 'or', 'unless']);

/** Metric names a PromQL query reads: identifiers outside label matchers, strings and ranges, not functions or keywords. */
function promqlMetricNames(query: string): string[] {
  const bare = query
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = [...bare.matchAll(/(?<![\w:.])[A-Za-z_:][\w:]*(?![\w:])(?!\s*\()/g)].map((m) => m[0]).filter((word) => !PROMQL_WORDS.has(word));
  return [...new Set(names)];
}

function nginxDirectives(): string {
  return readText('deploy/nginx/nginx.conf').replace(/#.*$/gm, '');
}

// ---- tests ------------------------------------------------------------------------------------------

describe('Spillway config files shipped with the deployments', () => {
  it('the compose config validates against the config schema', () => {
    expect(() => composeConfig()).not.toThrow();
  });

  it('the k8s ConfigMap config validates against the config schema with the example Secret values', () => {
    expect(() => k8sConfig()).not.toThrow();
  });

  it('every ${VAR} of the k8s config is a key of the Secret the Spillway pods load', () => {
    const secret = k8sObject('Secret', 'spillway-secrets');
    const keys = Object.keys(secret.stringData ?? {});
    expect(keys).toEqual(expect.arrayContaining([...referencedVars(configMapDocument())]));
    for (const w of workloads()) {
      expect(w.container.envFrom?.map((e) => e.secretRef?.name), w.name).toContain(secret.metadata.name);
    }
  });

  it('every Spillway pod reads SPILLWAY_CONFIG from the mounted ConfigMap', () => {
    for (const w of workloads()) {
      const path = w.container.env?.find((e) => e.name === 'SPILLWAY_CONFIG')?.value ?? '';
      const volume = w.template.spec.volumes?.find((v) => v.configMap?.name === 'spillway-config');
      const mount = w.container.volumeMounts?.find((m) => m.name === volume?.name);
      expect(mount, w.name).toBeDefined();
      expect(path, w.name).toBe(`${mount?.mountPath ?? ''}/spillway.yaml`);
    }
  });
});

describe('KEDA worker autoscaling', () => {
  const scaledObject = k8sObject('ScaledObject');
  const triggers = scaledObject.spec?.triggers ?? [];
  const queueKeys = (): ReturnType<ReturnType<typeof createRedisKeys>['queueDepthKeys']> =>
    createRedisKeys(k8sConfig().redis.prefix).queueDepthKeys('completions');

  it('has triggers, each of a kind these checks understand', () => {
    expect(triggers.length).toBeGreaterThan(0);
    for (const trigger of triggers) expect(['redis', 'prometheus']).toContain(trigger.type);
  });

  it("reads with each redis trigger a list of the completions queue, under the key the code uses", () => {
    // KEDA's redis scaler reads LLEN: only BullMQ's lists count (test/integration/queue-key-types.test.ts checks
    // which keys are lists against real BullMQ); a zset or a wrong name reads 0 and never scales.
    const keys = queueKeys();
    const lists = BULLMQ_LIST_STATES.map((state) => keys[state]);
    const redisTriggers = triggers.filter((t) => t.type === 'redis');
    expect(redisTriggers.length).toBeGreaterThan(0);
    for (const trigger of redisTriggers) expect(lists).toContain(trigger.metadata.listName);
    // The waiting list is what grows when every worker slot is busy: without it nothing scales up.
    expect(redisTriggers.map((t) => t.metadata.listName)).toContain(keys.wait);
  });

  it('reaches the Redis that the Spillway config names', () => {
    const url = new URL(k8sConfig().redis.url);
    for (const trigger of triggers.filter((t) => t.type === 'redis')) {
      const [host = '', port = ''] = (trigger.metadata.address ?? '').split(':');
      // KEDA runs in its own namespace: it needs the Service's full name where the pods use the short one.
      expect(host.split('.')[0]).toBe(url.hostname);
      expect(port).toBe(url.port || '6379');
    }
  });

  it('adds a worker before every slot of the active ones is busy', () => {
    const active = triggers.find((t) => t.type === 'redis' && t.metadata.listName === queueKeys().active);
    if (active !== undefined) expect(Number(active.metadata.listLength)).toBeLessThanOrEqual(k8sConfig().worker.concurrency);
  });

  it('queries only metrics that a Spillway process registers', () => {
    const metrics = createMetrics({ roles: ['ingress', 'worker'] });
    const exported = new Set(
      metrics.registry.getMetricsAsArray().flatMap((m) => {
        const type = (m as unknown as { type: string }).type;
        return type === 'histogram' ? [m.name, `${m.name}_bucket`, `${m.name}_sum`, `${m.name}_count`] : [m.name];
      }),
    );
    for (const trigger of triggers.filter((t) => t.type === 'prometheus')) {
      const names = promqlMetricNames(trigger.metadata.query ?? '');
      expect(names.length, trigger.metadata.query).toBeGreaterThan(0);
      for (const name of names) expect(exported, `${name} (in ${trigger.metadata.query})`).toContain(name);
    }
  });

  it('finds the metric names of a PromQL query', () => {
    expect(promqlMetricNames('max(sum by (instance) (spillway_queue_depth{queue="completions", state=~"a|b"}))')).toEqual(['spillway_queue_depth']);
    expect(promqlMetricNames('sum(rate(spillway_jobs_processed_total[5m])) / on() group_left count(up{job="w"})')).toEqual(['spillway_jobs_processed_total', 'up']);
  });

  it('targets the Deployment that runs the worker role', () => {
    expect(scaledObject.spec?.scaleTargetRef?.name).toBe(workload('worker').name);
  });
});

describe('Kubernetes workloads', () => {
  it('runs one Deployment per split role, each starting a CLI role', () => {
    expect(workloads().map((w) => w.role).sort()).toEqual(['ingress', 'worker']);
    for (const w of workloads()) expect(CLI_ROLES.has(w.role), w.name).toBe(true);
  });

  it('probes only paths the role serves, on the port the config gives it', () => {
    const config = k8sConfig();
    const ports: Record<string, number> = { ingress: config.server.port, worker: config.worker.metricsPort };
    for (const w of workloads()) {
      const probes = probesOf(w.container);
      expect(probes.length, w.name).toBeGreaterThan(0);
      for (const probe of probes) {
        expect(PROBE_PATHS[w.role], w.name).toContain(probe.httpGet?.path);
        expect(resolvePort(w.container, probe.httpGet?.port ?? ''), w.name).toBe(ports[w.role]);
      }
    }
  });

  it('takes an ingress pod out of the Service through /ready, which turns false on SIGTERM', () => {
    expect(workload('ingress').container.readinessProbe?.httpGet?.path).toBe('/ready');
  });

  it('gives the ingress its preStop sleep plus server.shutdownGraceMs before SIGKILL', () => {
    const { template, container } = workload('ingress');
    const grace = template.spec.terminationGracePeriodSeconds ?? 30;
    expect(grace).toBeGreaterThan(preStopSeconds(container) + k8sConfig().server.shutdownGraceMs / 1000);
  });

  it('gives a worker time to finish an upstream call (server.requestTimeoutMs) before SIGKILL', () => {
    const { server } = k8sConfig();
    const grace = workload('worker').template.spec.terminationGracePeriodSeconds ?? 30;
    expect(grace).toBeGreaterThan(Math.max(server.requestTimeoutMs, server.shutdownGraceMs) / 1000);
  });

  it('scrapes each role on the port that serves its /metrics', () => {
    const config = k8sConfig();
    const ports: Record<string, number> = { ingress: config.server.port, worker: config.worker.metricsPort };
    for (const w of workloads()) {
      expect(w.template.metadata.annotations?.['prometheus.io/scrape'], w.name).toBe('true');
      expect(Number(w.template.metadata.annotations?.['prometheus.io/port']), w.name).toBe(ports[w.role]);
    }
  });

  it('points every Service, PodDisruptionBudget and autoscaler at an existing Spillway workload', () => {
    const all = workloads();
    for (const o of k8s.filter((x) => (x.kind === 'Service' && x.metadata.name.startsWith('spillway')) || x.kind === 'PodDisruptionBudget')) {
      const selector = matchLabelsOf(o.spec?.selector);
      expect(all.some((w) => selects(selector, w.labels)), `${o.kind} ${o.metadata.name}`).toBe(true);
    }
    for (const o of k8s.filter((x) => x.kind === 'HorizontalPodAutoscaler' || x.kind === 'ScaledObject')) {
      expect(all.map((w) => w.name), `${o.kind} ${o.metadata.name}`).toContain(o.spec?.scaleTargetRef?.name);
    }
  });

  it('kustomization applies every manifest except the example Secret', () => {
    const kustomization = parse(readFileSync(join(K8S_DIR, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
    const manifests = readdirSync(K8S_DIR).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml');
    expect([...kustomization.resources].sort()).toEqual(manifests.filter((f) => f !== 'secret.example.yaml').sort());
  });
});

describe('docker-compose', () => {
  const services = Object.entries(compose.services);
  const spillwayImage = services.find(([, s]) => s.build !== undefined)?.[1].image;
  const spillwayServices = services.filter(([, s]) => s.build !== undefined || s.image === spillwayImage);

  it('starts a CLI role in every service that runs the Spillway image', () => {
    expect(spillwayServices.length).toBeGreaterThan(0);
    for (const [name, service] of spillwayServices) {
      expect(CLI_ROLES.has(service.command?.[0] ?? ''), `${name}: ${String(service.command)}`).toBe(true);
    }
    expect(spillwayServices.map(([, s]) => s.command?.[0])).toEqual(expect.arrayContaining(['ingress', 'worker', 'mock-upstream']));
  });

  it('lets the ingress finish in-flight requests (server.shutdownGraceMs) before Docker kills it', () => {
    const ingress = compose.services.ingress;
    expect(durationSeconds(ingress?.stop_grace_period ?? '10s')).toBeGreaterThan(composeConfig().server.shutdownGraceMs / 1000);
  });

  it('lets a worker finish an upstream call (server.requestTimeoutMs) before Docker kills it', () => {
    const { server } = composeConfig();
    const worker = compose.services.worker;
    expect(durationSeconds(worker?.stop_grace_period ?? '10s')).toBeGreaterThan(Math.max(server.requestTimeoutMs, server.shutdownGraceMs) / 1000);
  });

  it('binds the mock upstream to all interfaces so worker containers can reach it', () => {
    const mock = services.find(([, s]) => s.command?.[0] === 'mock-upstream')?.[1];
    expect(mock?.environment?.HOST).toBe('0.0.0.0');
  });

  it('health-checks and scrapes the workers on the configured worker.metricsPort', () => {
    const port = composeConfig().worker.metricsPort;
    expect(compose.services.worker?.environment?.HEALTHCHECK_URL).toBe(`http://127.0.0.1:${port}/health`);
    const prometheus = parse(readText('deploy/prometheus/prometheus.yml')) as {
      scrape_configs: { job_name: string; dns_sd_configs?: { names: string[]; port: number }[] }[];
    };
    const targets = prometheus.scrape_configs.flatMap((job) => job.dns_sd_configs ?? []);
    expect(targets).toEqual(expect.arrayContaining([
      expect.objectContaining({ names: ['worker'], port }),
      expect.objectContaining({ names: ['ingress'], port: composeConfig().server.port }),
    ]));
  });

  it('reaches Redis and every upstream of the compose config through compose service names', () => {
    const config = composeConfig();
    const hosts = [new URL(config.redis.url).hostname, ...config.providers.flatMap((p) => (p.baseUrl ? [new URL(p.baseUrl).hostname] : []))];
    for (const host of hosts) expect(Object.keys(compose.services)).toContain(host);
  });
});

describe('nginx in front of the ingress', () => {
  it('streams responses unbuffered, as SSE needs', () => {
    const conf = nginxDirectives();
    expect(conf).toMatch(/\bproxy_buffering\s+off;/);
    expect(conf).toMatch(/\bproxy_http_version\s+1\.1;/);
  });

  it('accepts every body the ingress accepts (server.bodyLimitBytes)', () => {
    const match = /\bclient_max_body_size\s+(\d+)([kKmMgG]?);/.exec(nginxDirectives());
    const factor: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };
    const bytes = Number(match?.[1]) * (factor[(match?.[2] ?? '').toLowerCase()] ?? 1);
    expect(bytes).toBeGreaterThanOrEqual(composeConfig().server.bodyLimitBytes);
  });

  it('waits for an answer as long as a request may live (server.maxDeadlineMs)', () => {
    const match = /\bproxy_read_timeout\s+(\d+)s;/.exec(nginxDirectives());
    expect(Number(match?.[1])).toBeGreaterThanOrEqual(composeConfig().server.maxDeadlineMs / 1000);
  });
});
