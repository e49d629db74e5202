// What `kubectl apply -k deploy/k8s` would send, validated offline against the Kubernetes and KEDA schemas
// (kubernetes-models, @kubernetes-models/keda), and strictly: a field the schema does not know is an error here,
// where the API server would drop it with a warning (a misspelt `topologySpreadConstraint` spreads nothing).
import { describe, expect, it } from 'vitest';
import { Namespace, ConfigMap, Secret, Service, PersistentVolumeClaim } from 'kubernetes-models/v1';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { ScaledObject, TriggerAuthentication } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import { k8sObject, loadK8sObjects, renderKustomization, type K8sObject } from '../deploy/files.ts';

interface ModelClass {
  new (data: never): { validate(): void };
  prototype: { validate(this: unknown): void };
}

const MODELS: Record<string, ModelClass> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject,
  'keda.sh/v1alpha1/TriggerAuthentication': TriggerAuthentication,
} as unknown as Record<string, ModelClass>;

function modelFor(object: K8sObject): ModelClass {
  const model = MODELS[`${object.apiVersion}/${object.kind}`];
  if (model === undefined) throw new Error(`no schema here for ${object.apiVersion} ${object.kind}: add its model to MODELS`);
  return model;
}

/**
 * Field paths the schema's validator never looked at. The compiled validators read every property their schema
 * declares (and enumerate maps such as labels): a property of a checked object that was never read is unknown to
 * the schema. Objects the validator did not look into at all (free-form fields) are left alone.
 */
function unknownFields(model: ModelClass, data: K8sObject): string[] {
  const reads = new Map<object, Set<PropertyKey>>();
  const enumerated = new Set<object>();
  const paths = new Map<object, string>();
  const proxies = new WeakMap<object, object>();
  const wrap = (value: unknown, path: string): unknown => {
    if (value === null || typeof value !== 'object') return value;
    const cached = proxies.get(value);
    if (cached !== undefined) return cached;
    reads.set(value, new Set());
    paths.set(value, path);
    const proxy = new Proxy(value, {
      get(target, key, receiver) {
        reads.get(target)?.add(key);
        const child: unknown = Reflect.get(target, key, receiver);
        return typeof key === 'string' && Object.hasOwn(target, key) ? wrap(child, Array.isArray(target) ? `${path}[${key}]` : `${path}.${key}`) : child;
      },
      has(target, key) {
        reads.get(target)?.add(key);
        return Reflect.has(target, key);
      },
      ownKeys(target) {
        enumerated.add(target);
        return Reflect.ownKeys(target);
      },
    });
    proxies.set(value, proxy);
    return proxy;
  };
  model.prototype.validate.call(wrap(structuredClone(data), ''));
  const unknown: string[] = [];
  for (const [object, read] of reads) {
    if (Array.isArray(object) || enumerated.has(object) || read.size === 0) continue;
    for (const key of Object.keys(object)) if (!read.has(key)) unknown.push(`${paths.get(object)}.${key}`);
  }
  return unknown;
}

function validate(object: K8sObject): string[] {
  const model = modelFor(object);
  try {
    new model(object as never).validate();
  } catch (err) {
    return [(err as Error).message];
  }
  return unknownFields(model, object).map((path) => `unknown field ${path}`);
}

describe('rendered Kubernetes objects', () => {
  const rendered = renderKustomization();

  it('are what the kustomization applies: every resource, in its namespace, with the release image', () => {
    expect(rendered.map((o) => o.kind)).toEqual(expect.arrayContaining(['Deployment', 'ScaledObject', 'TriggerAuthentication', 'NetworkPolicy']));
    for (const o of rendered.filter((x) => x.kind !== 'Namespace')) expect(o.metadata.namespace, `${o.kind} ${o.metadata.name}`).toBe('spillway');
    const images = rendered.flatMap((o) => o.spec?.template?.spec.containers.map((c) => c.image) ?? []);
    expect(images).toContain('ghcr.io/example/spillway:0.1.0');
  });

  it.each(rendered.map((o) => [`${o.kind} ${o.metadata.name}`, o] as const))('%s is valid against its schema, with no unknown field', (_name, object) => {
    expect(validate(object)).toEqual([]);
  });

  it('the example Secret (applied by hand) is valid too', () => {
    expect(validate(k8sObject(loadK8sObjects(), 'Secret', 'spillway-secrets'))).toEqual([]);
  });
});

describe('the strict validation itself', () => {
  const deployment = renderKustomization().find((o) => o.kind === 'Deployment') as K8sObject;

  it('reports a field the schema does not declare, at its path, and leaves maps such as labels alone', () => {
    const broken = structuredClone(deployment) as unknown as { spec: Record<string, unknown> & { template: { spec: Record<string, unknown> } } };
    broken.spec.replicaz = 3;
    broken.spec.template.spec.topologySpreadConstraint = [];
    const [container] = broken.spec.template.spec.containers as Record<string, unknown>[];
    (container as Record<string, unknown>).readinesProbe = {};
    const affinity = broken.spec.template.spec.affinity as { podAntiAffinity: Record<string, unknown> };
    affinity.podAntiAffinity.preferedDuringSchedulingIgnoredDuringExecution = [];
    expect(validate(broken as unknown as K8sObject).sort()).toEqual([
      'unknown field .spec.replicaz',
      'unknown field .spec.template.spec.affinity.podAntiAffinity.preferedDuringSchedulingIgnoredDuringExecution',
      'unknown field .spec.template.spec.containers[0].readinesProbe',
      'unknown field .spec.template.spec.topologySpreadConstraint',
    ]);
  });

  it('reports a value of the wrong type', () => {
    const broken = structuredClone(k8sObject(renderKustomization(), 'ScaledObject')) as unknown as { spec: { fallback: Record<string, unknown> } };
    broken.spec.fallback = { replicas: 'four' };
    expect(validate(broken as unknown as K8sObject).join('\n')).toMatch(/fallback/);
  });
});
