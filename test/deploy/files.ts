// The deployment files as tests read them: deploy/k8s rendered the way `kubectl apply -k` would (namespace, image),
// docker-compose.yml with its YAML merges, and the Spillway config each deployment ships, parsed by the real loader.
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { parseConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';

export const ROOT = resolve(import.meta.dirname, '../..');
export const K8S_DIR = join(ROOT, 'deploy/k8s');

export type Labels = Record<string, string>;

export interface Probe {
  httpGet?: { path: string; port: number | string };
  exec?: { command: string[] };
}

export interface Container {
  name: string;
  image?: string;
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
  envFrom?: { secretRef?: { name: string } }[];
  ports?: { name?: string; containerPort: number }[];
  startupProbe?: Probe;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  lifecycle?: { preStop?: { exec?: { command: string[] }; sleep?: { seconds: number } } };
  volumeMounts?: { name: string; mountPath: string }[];
}

interface LabelSelector {
  matchLabels?: Labels;
}

export interface PodTemplate {
  metadata: { labels: Labels; annotations?: Record<string, string> };
  spec: {
    terminationGracePeriodSeconds?: number;
    containers: Container[];
    volumes?: { name: string; configMap?: { name: string } }[];
    affinity?: {
      podAntiAffinity?: {
        preferredDuringSchedulingIgnoredDuringExecution?: { weight: number; podAffinityTerm: { topologyKey: string; labelSelector: LabelSelector } }[];
      };
    };
    topologySpreadConstraints?: { maxSkew: number; topologyKey: string; whenUnsatisfiable: string; labelSelector: LabelSelector }[];
  };
}

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  spec?: {
    selector?: Labels | LabelSelector;
    podSelector?: LabelSelector;
    ingress?: { from?: { podSelector?: LabelSelector; namespaceSelector?: LabelSelector }[]; ports?: { port: number }[] }[];
    template?: PodTemplate;
    scaleTargetRef?: { kind?: string; name: string };
    minReplicas?: number;
    maxReplicas?: number;
    metrics?: { type: string; resource?: { name: string; target: { type: string; averageUtilization?: number } } }[];
    fallback?: { failureThreshold: number; replicas: number };
    triggers?: { type: string; metadata: Record<string, string | undefined>; authenticationRef?: { name: string } }[];
    secretTargetRef?: { parameter: string; name: string; key: string }[];
  };
}

export interface Workload {
  name: string;
  role: string;
  labels: Labels;
  template: PodTemplate;
  container: Container;
}

export interface ComposeService {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string>;
  stop_grace_period?: string;
  ports?: string[];
  healthcheck?: { test: string[] };
  deploy?: { replicas?: number; resources?: { limits?: { cpus?: string; memory?: string } } };
}

export function readText(path: string): string {
  return readFileSync(join(ROOT, path), 'utf8');
}

function parseK8sFile(file: string): K8sObject[] {
  return parseAllDocuments(readFileSync(join(K8S_DIR, file), 'utf8')).map((doc) => {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]?.message ?? 'invalid YAML'}`);
    return doc.toJS() as K8sObject;
  });
}

/** Every object of every manifest under deploy/k8s (the example Secret included), as written. */
export function loadK8sObjects(): K8sObject[] {
  return readdirSync(K8S_DIR)
    .filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml')
    .flatMap(parseK8sFile);
}

interface Kustomization {
  namespace?: string;
  resources: string[];
  images?: { name: string; newName?: string; newTag?: string }[];
}

export function kustomization(): Kustomization {
  return parse(readFileSync(join(K8S_DIR, 'kustomization.yaml'), 'utf8')) as Kustomization;
}

/**
 * What `kubectl apply -k deploy/k8s` sends, for the transformations this kustomization uses: its resources only,
 * the namespace set on every namespaced object, and the image names rewritten.
 */
export function renderKustomization(): K8sObject[] {
  const k = kustomization();
  return k.resources.flatMap(parseK8sFile).map((object) => {
    const rendered = structuredClone(object);
    if (k.namespace !== undefined && rendered.kind !== 'Namespace') rendered.metadata.namespace = k.namespace;
    for (const container of rendered.spec?.template?.spec.containers ?? []) {
      const image = k.images?.find((i) => i.name === container.image);
      if (image !== undefined) container.image = `${image.newName ?? image.name}${image.newTag === undefined ? '' : `:${image.newTag}`}`;
    }
    return rendered;
  });
}

export function k8sObject(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found === undefined) throw new Error(`no ${kind}${name === undefined ? '' : ` "${name}"`} under deploy/k8s`);
  return found;
}

/** Every Deployment, keyed by the CLI role its (single Spillway) container runs. */
export function workloads(objects: K8sObject[]): Workload[] {
  return objects
    .filter((o) => o.kind === 'Deployment')
    .map((o) => {
      const template = o.spec?.template;
      const container = template?.spec.containers[0];
      if (template === undefined || container === undefined) throw new Error(`Deployment ${o.metadata.name} has no container`);
      return { name: o.metadata.name, role: container.args?.[0] ?? '', labels: template.metadata.labels, template, container };
    });
}

const VAR = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** The ${VAR} names used in the values of a YAML document (comments excluded). */
export function referencedVars(value: unknown): Set<string> {
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
export function substituteVars(value: unknown, env: Record<string, string>): unknown {
  if (typeof value === 'string') {
    return value.replace(VAR, (_match, name: string, fallback: string | undefined) => {
      const found = env[name] || fallback;
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

export function configMapDocument(objects: K8sObject[]): unknown {
  const text = k8sObject(objects, 'ConfigMap', 'spillway-config').data?.['spillway.yaml'];
  if (text === undefined) throw new Error('ConfigMap spillway-config has no spillway.yaml');
  return parse(text);
}

/** The example Secret's values stand in for the real ones: they must be valid where the config uses them. */
export function exampleSecret(objects: K8sObject[]): Record<string, string> {
  return k8sObject(objects, 'Secret', 'spillway-secrets').stringData ?? {};
}

export function k8sConfig(objects: K8sObject[]): Config {
  return parseConfig(substituteVars(configMapDocument(objects), exampleSecret(objects)), 'deploy/k8s/configmap.yaml');
}

export function composeFile(): { services: Record<string, ComposeService> } {
  return parse(readText('docker-compose.yml'), { merge: true }) as { services: Record<string, ComposeService> };
}

/** deploy/compose/spillway.yaml as the containers load it, with `env` as their environment. */
export function composeConfig(env: Record<string, string> = {}): Config {
  return parseConfig(substituteVars(parse(readText('deploy/compose/spillway.yaml')), env), 'deploy/compose/spillway.yaml');
}

/** Compose durations: "45s", "1m30s", "500ms". */
export function durationSeconds(text: string): number {
  const units: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600 };
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) throw new Error(`not a compose duration: "${text}"`);
  return parts.reduce((sum, p) => sum + Number(p[1]) * (units[p[2] ?? 's'] ?? 1), 0);
}
