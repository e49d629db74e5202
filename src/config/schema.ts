// The configuration contract: one zod schema, strict objects (a typo is an error), cross-references checked.
// Never reads files or the environment: load.ts does that and hands the parsed object here.
import { z } from 'zod';
import { DEFAULT_PREFIX } from '../queue/keys.ts';

// `port: ${PORT}` arrives as the string "8080" after interpolation: number and boolean fields accept their
// plain string forms too (and only those), so environment-driven files work.
const fromEnv = <T extends z.ZodType>(schema: T, pattern: RegExp, convert: (s: string) => unknown) =>
  z.preprocess((value) => (typeof value === 'string' && pattern.test(value.trim()) ? convert(value.trim()) : value), schema);
const int = (schema: z.ZodNumber) => fromEnv(schema, /^-?\d+$/, Number);
const bool = () => fromEnv(z.boolean(), /^(true|false)$/, (s) => s === 'true');

const positiveInt = int(z.number().int().positive());
const nonNegativeInt = int(z.number().int().nonnegative());

/** A client-facing model name or provider id: no spaces, no control characters. */
const identifier = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$/, 'must be 1-128 characters: letters, digits and . _ : / @ -');

export const ProviderTypeSchema = z.enum(['openai', 'mock']);

export const ProviderSchema = z.strictObject({
  id: identifier,
  /** `openai`: any OpenAI-compatible API. `mock`: the built-in mock upstream, started inside each worker. */
  type: ProviderTypeSchema,
  baseUrl: z.url({ protocol: /^https?$/ }).optional(),
  apiKey: z.string().min(1).optional(),
  /** Time from sending the request to the response head (status and headers); a stream's length is not bounded by it. */
  timeoutMs: positiveInt.default(60_000),
  /** Longest silence between two pieces of a response body (a stream's chunk gap): past it the call fails. */
  streamIdleTimeoutMs: positiveInt.default(60_000),
  /** Largest upstream response body read (JSON answers and error bodies); a larger one fails the attempt cleanly. */
  maxResponseBytes: positiveInt.default(256 * 1024 * 1024),
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
    dev: bool().default(false),
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
        port: int(z.number().int().min(0).max(65_535)).default(8080),
        /** Pending-connection queue of the listening socket (Node's default, 511, drops SYNs in a burst; the kernel's somaxconn caps it). */
        listenBacklog: positiveInt.default(4096),
        /** Largest accepted request body; beyond it: 413. */
        bodyLimitBytes: positiveInt.default(10 * 1024 * 1024),
        /** Deepest nesting of arrays and objects accepted in a JSON body; deeper: 400. */
        maxJsonDepth: positiveInt.default(128),
        /** Time a client has to send its request headers; then the connection is closed (408). */
        headersTimeoutMs: positiveInt.default(10_000),
        /** Time a client has to send its whole request, body included; then 408. */
        requestReceiveTimeoutMs: positiveInt.default(30_000),
        /** A stream still waiting for its first event gets its head and then `: keep-alive` comments at this interval. */
        streamKeepAliveMs: positiveInt.default(10_000),
        /** Bytes a slow reader may leave unread on one stream; past it the stream ends with an error and its job is cancelled. */
        streamBufferBytes: positiveInt.default(4 * 1024 * 1024),
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
        trustProxy: bool().default(false),
      })
      .prefault({}),
    redis: z
      .strictObject({
        url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL').default('redis://127.0.0.1:6379'),
        prefix: z.string().min(1).default(DEFAULT_PREFIX),
        /** Longest wait for one Redis command on the request path; then the request gets 503. */
        commandTimeoutMs: positiveInt.default(5_000),
        /** Replies larger than this travel under a short-lived key, not over pub/sub (Redis closes a subscriber past its output buffer). */
        inlineReplyBytes: positiveInt.default(1024 * 1024),
      })
      .prefault({}),
    worker: z
      .strictObject({
        /** Jobs one worker process runs at once (upstream calls are I/O bound: high is right). */
        concurrency: positiveInt.default(256),
        /** A job whose worker stops renewing its lock for this long is stalled and taken over by another worker. */
        lockDurationMs: int(z.number().int().min(1000)).default(10_000),
        stalledIntervalMs: int(z.number().int().min(500)).default(5_000),
        /** How often a job may stall before it fails. */
        maxStalledCount: nonNegativeInt.default(1),
        /** Attempts per request across the route's targets (first call included). */
        maxAttempts: positiveInt.default(3),
        /** Time active jobs get to finish on SIGTERM (an upstream call may run requestTimeoutMs). */
        shutdownGraceMs: positiveInt.default(130_000),
        /** Port of the worker's own /metrics and /health (split mode); 0: none. */
        metricsPort: int(z.number().int().min(0).max(65_535)).default(0),
      })
      .prefault({}),
    jobs: z
      .strictObject({
        /** How long a finished job (and its result) stays in Redis, for reconciliation after a reconnect. */
        keepCompletedSeconds: positiveInt.default(60),
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
  // `when`: run the cross-reference checks even when other fields are wrong, so one run names every problem.
  // The input may then be partly invalid, hence the shape guards.
  .superRefine((config, ctx) => checkCrossReferences(config, ctx), { when: () => true });

type Ctx = z.RefinementCtx;
const list = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
const field = (value: unknown, key: string): unknown => (value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined);
const text = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);

/** The distinct values of `key` across a section's items; a value seen before is reported where it repeats. */
function uniqueValues(items: unknown[], section: string, key: string, what: string, ctx: Ctx): Set<string> {
  const seen = new Set<string>();
  items.forEach((item, i) => {
    const value = text(field(item, key));
    if (value === undefined) return;
    if (seen.has(value)) ctx.addIssue({ code: 'custom', path: [section, i, key], message: `duplicate ${what} "${value}"` });
    seen.add(value);
  });
  return seen;
}

function checkCrossReferences(config: unknown, ctx: Ctx): void {
  const providers = list(field(config, 'providers'));
  const models = list(field(config, 'models'));
  const tenants = list(field(config, 'tenants'));
  const providerIds = uniqueValues(providers, 'providers', 'id', 'provider id', ctx);
  const modelNames = uniqueValues(models, 'models', 'name', 'model name', ctx);
  uniqueValues(tenants, 'tenants', 'id', 'tenant id', ctx);

  providers.forEach((provider, i) => {
    const type = text(field(provider, 'type'));
    if (type !== undefined && type !== 'mock' && field(provider, 'baseUrl') === undefined) {
      ctx.addIssue({ code: 'custom', path: ['providers', i, 'baseUrl'], message: `required for type "${type}"` });
    }
  });
  models.forEach((model, i) => {
    list(field(model, 'route')).forEach((target, j) => {
      const provider = text(field(target, 'provider'));
      if (provider !== undefined && !providerIds.has(provider)) {
        ctx.addIssue({ code: 'custom', path: ['models', i, 'route', j, 'provider'], message: `no provider with id "${provider}"` });
      }
    });
  });
  const keys = new Set<string>();
  tenants.forEach((tenant, i) => {
    list(field(tenant, 'keys')).forEach((key, j) => {
      if (typeof key !== 'string') return;
      if (keys.has(key)) ctx.addIssue({ code: 'custom', path: ['tenants', i, 'keys', j], message: 'key already belongs to another tenant' });
      keys.add(key);
    });
    list(field(tenant, 'models')).forEach((name, j) => {
      if (typeof name === 'string' && !modelNames.has(name)) ctx.addIssue({ code: 'custom', path: ['tenants', i, 'models', j], message: `no model named "${name}"` });
    });
  });
}

export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;
export type ProviderConfig = z.infer<typeof ProviderSchema>;
export type ModelConfig = z.infer<typeof ModelSchema>;
export type TenantConfig = z.infer<typeof TenantSchema>;
export type Endpoint = z.infer<typeof EndpointSchema>;
