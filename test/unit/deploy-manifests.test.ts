// Static checks of the Kubernetes manifests (deploy/k8s) against the app's own contracts: the values that, when
// wrong, apply cleanly and fail only in production. Reads files only; compose and nginx: compose-edge.test.ts.
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createRedisKeys } from '../../src/queue/keys.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import {
  configMapDocument,
  K8S_DIR,
  k8sConfig as parseK8sConfig,
  k8sObject as findObject,
  kustomization,
  loadK8sObjects,
  referencedVars,
  composeConfig,
  composeFile,
  workloads as findWorkloads,
  type Container,
  type Labels,
  type Probe,
  type Workload,
} from '../deploy/files.ts';

/** The roles `node bin/spillway.js <role>` accepts. */
const CLI_ROLES = new Set(['start', 'ingress', 'worker', 'mock-upstream', 'check-config']);
/** HTTP paths each long-running role serves for probes (the worker on worker.metricsPort). */
const PROBE_PATHS: Record<string, readonly string[]> = { ingress: ['/health', '/ready'], worker: ['/health'] };
/** BullMQ keeps these job states in lists (`prioritized` and `delayed` are sorted sets). */
const BULLMQ_LIST_STATES = ['wait', 'active'] as const;

const k8s = loadK8sObjects();
const k8sObject = (kind: string, name?: string) => findObject(k8s, kind, name);
const workloads = (): Workload[] => findWorkloads(k8s);
const k8sConfig = () => parseK8sConfig(k8s);

function workload(role: string): Workload {
  const found = workloads().find((w) => w.role === role);
  if (found === undefined) throw new Error(`no Deployment runs the "${role}" role`);
  return found;
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

function matchLabelsOf(selector: Labels | { matchLabels?: Labels } | undefined): Labels {
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

describe('Spillway config shipped with the Kubernetes manifests', () => {
  it('the k8s ConfigMap config validates against the config schema with the example Secret values', () => {
    expect(() => k8sConfig()).not.toThrow();
  });

  it('every ${VAR} of the k8s config is a key of the Secret the Spillway pods load', () => {
    const secret = k8sObject('Secret', 'spillway-secrets');
    const keys = Object.keys(secret.stringData ?? {});
    expect(keys).toEqual(expect.arrayContaining([...referencedVars(configMapDocument(k8s))]));
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
  /** The BullMQ keys of every shard of the completions queue, as the code names them. */
  const shardKeys = () => {
    const config = k8sConfig();
    const keys = createRedisKeys(config.redis.prefix, { shards: config.queue.shards });
    return keys.shards.map((shard) => keys.queueDepthKeys('completions', shard.index));
  };

  it('has triggers, each of a kind these checks understand', () => {
    expect(triggers.length).toBeGreaterThan(0);
    for (const trigger of triggers) expect(['redis', 'prometheus']).toContain(trigger.type);
  });

  it('reads with its redis triggers both lists of every shard of the completions queue, under the keys the code uses', () => {
    // KEDA's redis scaler reads LLEN: only BullMQ's lists count (test/integration/queue-key-types.test.ts checks
    // which keys are lists against real BullMQ); a zset or a wrong name reads 0 and never scales.
    const expected = shardKeys().flatMap((keys) => BULLMQ_LIST_STATES.map((state) => keys[state]));
    const listNames = triggers.filter((t) => t.type === 'redis').map((t) => t.metadata.listName);
    expect([...listNames].sort()).toEqual(expected.sort());
  });

  it('reaches the Redis that the Spillway config names, with its password', () => {
    const url = new URL(k8sConfig().redis.url);
    const auth = k8sObject('TriggerAuthentication');
    const password = auth.spec?.secretTargetRef?.find((r) => r.parameter === 'password');
    for (const trigger of triggers.filter((t) => t.type === 'redis')) {
      const [host = '', port = ''] = (trigger.metadata.address ?? '').split(':');
      // KEDA runs in its own namespace: it needs the Service's full name where the pods use the short one.
      expect(host.split('.')[0]).toBe(url.hostname);
      expect(port).toBe(url.port || '6379');
      expect(trigger.authenticationRef?.name).toBe(auth.metadata.name);
    }
    // The same Secret key the pods put in redis.url.
    expect(password).toMatchObject({ name: 'spillway-secrets', key: 'REDIS_PASSWORD' });
    expect(url.password).toBe(k8sObject('Secret', 'spillway-secrets').stringData?.REDIS_PASSWORD);
  });

  it('holds a fixed worker count when its source is unreachable (fallback)', () => {
    expect(scaledObject.spec?.fallback?.failureThreshold).toBeGreaterThan(0);
    expect(scaledObject.spec?.fallback?.replicas).toBeGreaterThanOrEqual(2);
  });

  it('adds a worker before every slot of the active ones is busy', () => {
    for (const keys of shardKeys()) {
      const active = triggers.find((t) => t.type === 'redis' && t.metadata.listName === keys.active);
      expect(Number(active?.metadata.listLength)).toBeLessThanOrEqual(k8sConfig().worker.concurrency);
    }
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

  it('scales the ingress from 3 to 10 replicas at 70 % CPU (the reference design)', () => {
    const hpa = k8sObject('HorizontalPodAutoscaler');
    expect(hpa.spec?.scaleTargetRef?.name).toBe(workload('ingress').name);
    expect([hpa.spec?.minReplicas, hpa.spec?.maxReplicas]).toEqual([3, 10]);
    expect(hpa.spec?.metrics).toEqual([{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } } }]);
  });

  it('spreads each role over nodes (preferred anti-affinity) and zones (topology spread), selecting its own pods', () => {
    for (const w of workloads()) {
      const own = (selector: { matchLabels?: Labels }) => selects(matchLabelsOf(selector), w.labels) && matchLabelsOf(selector)['app.kubernetes.io/component'] === w.role;
      const preferred = w.template.spec.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
      expect(preferred.some((p) => p.podAffinityTerm.topologyKey === 'kubernetes.io/hostname' && own(p.podAffinityTerm.labelSelector)), w.name).toBe(true);
      const spread = w.template.spec.topologySpreadConstraints ?? [];
      expect(spread.some((s) => s.topologyKey === 'topology.kubernetes.io/zone' && own(s.labelSelector) && s.whenUnsatisfiable === 'ScheduleAnyway'), w.name).toBe(true);
    }
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

  it('gives a worker its drain (worker.shutdownGraceMs) and a whole upstream call (server.requestTimeoutMs) before SIGKILL', () => {
    const { server, worker } = k8sConfig();
    const grace = workload('worker').template.spec.terminationGracePeriodSeconds ?? 30;
    expect(grace).toBeGreaterThan(Math.max(server.requestTimeoutMs, worker.shutdownGraceMs) / 1000);
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
    const manifests = readdirSync(K8S_DIR).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml');
    expect([...kustomization().resources].sort()).toEqual(manifests.filter((f) => f !== 'secret.example.yaml').sort());
  });
});

describe('the Redis of the manifests', () => {
  const redis = k8sObject('StatefulSet', 'redis');
  const container = redis.spec?.template?.spec.containers[0];

  it('requires the password the Spillway pods and KEDA use, from that one Secret key', () => {
    const args = container?.args ?? [];
    expect(args[args.indexOf('--requirepass') + 1]).toBe('$(REDIS_PASSWORD)');
    expect(container?.env).toContainEqual({ name: 'REDIS_PASSWORD', valueFrom: { secretKeyRef: { name: 'spillway-secrets', key: 'REDIS_PASSWORD' } } });
    // envFrom would hand the Redis pod every provider and tenant key as well.
    expect(container?.envFrom).toBeUndefined();
    for (const probe of probesOf(container as Container)) expect(probe.exec?.command.join(' ')).toContain('REDISCLI_AUTH="$REDIS_PASSWORD"');
  });

  it('runs with AOF and noeviction, under a maxmemory', () => {
    const args = container?.args ?? [];
    expect(args[args.indexOf('--appendonly') + 1]).toBe('yes');
    expect(args[args.indexOf('--maxmemory-policy') + 1]).toBe('noeviction');
    expect(args).toContain('--maxmemory');
  });

  it('accepts connections only from Spillway pods and the KEDA namespace (NetworkPolicy)', () => {
    const policy = k8sObject('NetworkPolicy');
    expect(selects(matchLabelsOf(policy.spec?.podSelector), redis.spec?.template?.metadata.labels ?? {})).toBe(true);
    const rules = policy.spec?.ingress ?? [];
    expect(rules.flatMap((r) => r.ports ?? []).map((p) => p.port)).toEqual([6379]);
    const from = rules.flatMap((r) => r.from ?? []);
    for (const w of workloads()) expect(from.some((f) => f.podSelector !== undefined && selects(matchLabelsOf(f.podSelector), w.labels)), w.name).toBe(true);
    expect(from.some((f) => f.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name'] === 'keda')).toBe(true);
    expect(from.every((f) => f.podSelector !== undefined || f.namespaceSelector !== undefined)).toBe(true);
  });
});

describe('the Batch API\'s files volume', () => {
  it('mounts the k8s config\'s files.dir in every Spillway pod from one ReadWriteMany claim, writable by the node group', () => {
    const claim = k8sObject('PersistentVolumeClaim', 'spillway-files') as unknown as { spec: { accessModes: string[] } };
    expect(claim.spec.accessModes).toEqual(['ReadWriteMany']);
    for (const w of workloads()) {
      const spec = w.template.spec as unknown as { volumes: { name: string; persistentVolumeClaim?: { claimName: string } }[]; securityContext?: { fsGroup?: number } };
      const volume = spec.volumes.find((v) => v.persistentVolumeClaim?.claimName === 'spillway-files');
      const mount = w.container.volumeMounts?.find((m) => m.name === volume?.name);
      expect(mount?.mountPath, w.name).toBe(k8sConfig().files.dir);
      expect(spec.securityContext?.fsGroup, w.name).toBe(1000);
    }
  });

  it('mounts the compose config\'s files.dir from a named volume in the ingress and worker services', () => {
    const compose = composeFile() as unknown as { services: Record<string, { volumes?: string[] }>; volumes: Record<string, unknown> };
    const dir = composeConfig().files.dir;
    for (const role of ['ingress', 'worker']) {
      const mount = compose.services[role]?.volumes?.find((v) => v.endsWith(`:${dir}`));
      expect(mount, role).toBeDefined();
      expect(Object.keys(compose.volumes)).toContain(mount!.split(':')[0]);
    }
  });
});
