// The configuration contract: one zod schema, strict objects (a typo is an error), cross-references checked.
// Never reads files or the environment: load.ts does that and hands the parsed object here.
import { z } from 'zod';
import { DEFAULT_PREFIX } from '../queue/keys.ts';

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();

/** A client-facing model name or provider id: no spaces, no control characters. */
const identifier = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$/, 'must be 1-128 characters: letters, digits and . _ : / @ -');

export const ProviderTypeSchema = z.enum(['openai', 'mock']);

export const ProviderSchema = z.strictObject({
  id: identifier,
  /** `openai`: any OpenAI-compatible API. `mock`: the built-in mock upstream, started inside each worker. */
  type: ProviderTypeSchema,
  baseUrl: z.url({ protocol: /^https?$/ }).optional(),
  apiKey: z.string().min(1).optional(),
  timeoutMs: positiveInt.default(60_000),
  /** Concurrent upstream calls per worker process (the size of its undici pool). */
  maxConcurrency: positiveInt.default(256),
  /** Extra headers sent to this provider on every call (e.g. OpenAI-Organization). */
  headers: z.record(z.string(), z.string()).default({}),
  /** Only for `type: mock`: behaviour of the built-in mock. */
  mock: z
    .strictObject({
      latencyMs: nonNegativeInt.default(0),
      chunks: positiveInt.default(8),
      chunkDelayMs: nonNegativeInt.default(0),
    })
    .optional(),
});

export const RouteTargetSchema = z.strictObject({
  provider: identifier,
  /** The model name the provider expects. */
  model: z.string().min(1),
});

export const EndpointSchema = z.enum(['chat.completions', 'completions', 'embeddings']);

export const ModelSchema = z.strictObject({
  name: identifier,
  /** Targets in order: the first is preferred, the others are fallbacks. */
  route: z.array(RouteTargetSchema).min(1),
  /** Endpoints this model serves; a call to another answers 400. Default: all. */
  endpoints: z.array(EndpointSchema).min(1).optional(),
});

const hashedKey = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'must be "sha256:" followed by 64 lowercase hex digits');

export const TenantSchema = z
  .strictObject({
    id: identifier,
    /** API keys as `sha256:<hex>`; plain keys only when `dev: true`. */
    keys: z.array(z.string().min(8)).min(1),
    /** Allows plain-text keys in `keys`, for development only. */
    dev: z.boolean().default(false),
    /** Model names this tenant may call; default: every configured model. */
    models: z.array(identifier).optional(),
    /** How long a request of this tenant may wait in the queue before it is refused or times out. */
    maxQueueWaitMs: nonNegativeInt.optional(),
  })
  .superRefine((tenant, ctx) => {
    if (tenant.dev) return;
    tenant.keys.forEach((key, i) => {
      if (!hashedKey.safeParse(key).success) {
        ctx.addIssue({ code: 'custom', path: ['keys', i], message: 'must be "sha256:<64 hex digits>" (plain keys need dev: true)' });
      }
    });
  });

export const ConfigSchema = z
  .strictObject({
    server: z
      .strictObject({
        host: z.string().min(1).default('0.0.0.0'),
        port: z.number().int().min(0).max(65_535).default(8080),
        /** Largest accepted request body; beyond it: 413. */
        bodyLimitBytes: positiveInt.default(10 * 1024 * 1024),
        /** Upstream time allowed to a request once a worker takes it (added to the queue wait for the deadline). */
        requestTimeoutMs: positiveInt.default(120_000),
        /** Default longest wait in the queue (a tenant may set its own). */
        maxQueueWaitMs: nonNegativeInt.default(60_000),
        /** No deadline is ever further away than this. */
        maxDeadlineMs: positiveInt.default(600_000),
        /** Time given to in-flight requests on SIGTERM. */
        shutdownGraceMs: positiveInt.default(30_000),
        /** Client headers forwarded to the upstream; `*` at the end matches a prefix (e.g. `x-mock-*`). */
        forwardHeaders: z.array(z.string().regex(/^[a-z0-9-]+\*?$/, 'must be a lowercase header name, optionally ending in *')).default([]),
        /** Trust X-Forwarded-* from a proxy in front (nginx). */
        trustProxy: z.boolean().default(false),
      })
      .prefault({}),
    redis: z
      .strictObject({
        url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL').default('redis://127.0.0.1:6379'),
        prefix: z.string().min(1).default(DEFAULT_PREFIX),
      })
      .prefault({}),
    worker: z
      .strictObject({
        /** Jobs one worker process runs at once (upstream calls are I/O bound: high is right). */
        concurrency: positiveInt.default(256),
        /** A job whose worker stops renewing its lock for this long is stalled and taken over by another worker. */
        lockDurationMs: z.number().int().min(1000).default(10_000),
        stalledIntervalMs: z.number().int().min(500).default(5_000),
        /** How often a job may stall before it fails. */
        maxStalledCount: nonNegativeInt.default(1),
        /** Attempts per request across the route's targets (first call included). */
        maxAttempts: positiveInt.default(3),
        /** Port of the worker's own /metrics and /health (split mode); 0: none. */
        metricsPort: z.number().int().min(0).max(65_535).default(0),
      })
      .prefault({}),
    jobs: z
      .strictObject({
        /** How long a finished job (and its result) stays in Redis, for reconciliation after a reconnect. */
        keepCompletedSeconds: positiveInt.default(300),
        keepFailedSeconds: positiveInt.default(3600),
      })
      .prefault({}),
    providers: z.array(ProviderSchema).min(1),
    models: z.array(ModelSchema).min(1),
    tenants: z.array(TenantSchema).min(1),
    logging: z
      .strictObject({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      })
      .prefault({}),
  })
  .superRefine((config, ctx) => {
    const providerIds = new Set<string>();
    config.providers.forEach((provider, i) => {
      if (providerIds.has(provider.id)) ctx.addIssue({ code: 'custom', path: ['providers', i, 'id'], message: `duplicate provider id "${provider.id}"` });
      providerIds.add(provider.id);
      if (provider.type !== 'mock' && provider.baseUrl === undefined) {
        ctx.addIssue({ code: 'custom', path: ['providers', i, 'baseUrl'], message: `required for type "${provider.type}"` });
      }
    });
    const modelNames = new Set<string>();
    config.models.forEach((model, i) => {
      if (modelNames.has(model.name)) ctx.addIssue({ code: 'custom', path: ['models', i, 'name'], message: `duplicate model name "${model.name}"` });
      modelNames.add(model.name);
      model.route.forEach((target, j) => {
        if (!providerIds.has(target.provider)) {
          ctx.addIssue({ code: 'custom', path: ['models', i, 'route', j, 'provider'], message: `no provider with id "${target.provider}"` });
        }
      });
    });
    const tenantIds = new Set<string>();
    const keys = new Set<string>();
    config.tenants.forEach((tenant, i) => {
      if (tenantIds.has(tenant.id)) ctx.addIssue({ code: 'custom', path: ['tenants', i, 'id'], message: `duplicate tenant id "${tenant.id}"` });
      tenantIds.add(tenant.id);
      tenant.keys.forEach((key, j) => {
        if (keys.has(key)) ctx.addIssue({ code: 'custom', path: ['tenants', i, 'keys', j], message: 'key already belongs to another tenant' });
        keys.add(key);
      });
      tenant.models?.forEach((name, j) => {
        if (!modelNames.has(name)) ctx.addIssue({ code: 'custom', path: ['tenants', i, 'models', j], message: `no model named "${name}"` });
      });
    });
  });

export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;
export type ProviderConfig = z.infer<typeof ProviderSchema>;
export type ModelConfig = z.infer<typeof ModelSchema>;
export type TenantConfig = z.infer<typeof TenantSchema>;
export type Endpoint = z.infer<typeof EndpointSchema>;
