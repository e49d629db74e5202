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

export const ProviderTypeSchema = z.enum(['openai', 'azure-openai', 'anthropic', 'mock']);

export const ProviderSchema = z.strictObject({
  id: identifier,
  /**
   * `openai`: any OpenAI-compatible API. `azure-openai`: Azure OpenAI (baseUrl is the resource endpoint, a route
   * target's model the deployment name). `anthropic`: the Messages API. `mock`: the built-in mock upstream, started
   * inside each worker.
   */
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
  /** `azure-openai` only (required there): the `api-version` query parameter of every call, e.g. 2024-10-21. */
  apiVersion: z.string().regex(/^\d{4}-\d{2}-\d{2}(-preview)?$/, 'must look like 2024-10-21 or 2025-01-01-preview').optional(),
  /** `anthropic` only: the `anthropic-version` header; default 2023-06-01. */
  anthropicVersion: z.string().min(1).optional(),
  /** `anthropic` only: `max_tokens` sent when the client sets none (the Messages API requires it); default 4096. */
  defaultMaxTokens: positiveInt.optional(),
  /**
   * One breaker per deployment (provider + model) per worker, shared through Redis: `failureThreshold` failures
   * within `windowMs` open it in every worker for `resetTimeoutMs`, then one probe call decides for the whole pool.
   */
  circuitBreaker: z
    .strictObject({
      enabled: bool().default(true),
      failureThreshold: positiveInt.default(5),
      windowMs: positiveInt.default(60_000),
      resetTimeoutMs: positiveInt.default(30_000),
    })
    .prefault({}),
  /** Optional active health check, run by one worker at a time; a failed probe opens the provider's breakers pool-wide. */
  healthCheck: z
    .strictObject({
      /** Joined to the baseUrl's path; default `/models` (`/openai/models` for azure-openai). */
      path: z.string().regex(/^\/[^\s]*$/, 'must start with /').optional(),
      intervalMs: int(z.number().int().min(100)).default(10_000),
    })
    .optional(),
  /**
   * Limits that hold across the whole worker pool (all workers together, counted in Redis), unlike `maxConcurrency`
   * above (per worker process): calls per minute, tokens per minute (estimated before a call, settled from its usage)
   * and calls at once. `scope`: one budget for the provider (default) or one per deployment (provider + model, like
   * Azure's per-deployment quotas). A deployment without limits costs no Redis call.
   */
  limits: z
    .strictObject({
      rpm: positiveInt.optional(),
      tpm: positiveInt.optional(),
      maxConcurrency: positiveInt.optional(),
      scope: z.enum(['provider', 'deployment']).default('provider'),
    })
    .optional(),
  /** Only for `type: mock`: behaviour of the built-in mock. */
  mock: z
    .strictObject({
      latencyMs: nonNegativeInt.default(0),
      chunks: positiveInt.default(8),
      chunkDelayMs: nonNegativeInt.default(0),
    })
    .optional(),
  /**
   * How POST /v1/responses reaches this provider: `native` forwards it to the provider's own /responses, `bridged`
   * translates it to chat completions (or Anthropic's Messages) and back. Default: native for `openai` and `mock`,
   * bridged for `azure-openai` (its Responses API needs a preview api-version) and `anthropic` (bridged only).
   */
  responses: z.enum(['native', 'bridged']).optional(),
});

export const RouteTargetSchema = z.strictObject({
  provider: identifier,
  /** The model name the provider expects. */
  model: z.string().min(1),
  /** `strategy: weighted` only: this target's share of first attempts, relative to the others' (default 1). */
  weight: fromEnv(z.number().positive().max(1_000_000), /^\d+(\.\d+)?$/, Number).optional(),
});

export const EndpointSchema = z.enum(['chat.completions', 'completions', 'embeddings', 'responses']);

/** Route ordering per model (src/upstream/strategies.ts). */
export const RoutingStrategySchema = z.enum(['fallback', 'weighted', 'least-busy', 'latency']);

/** Response cache settings, all optional here: unset ones come from the top-level `cache` (src/cache/directive.ts). */
const cacheFields = {
  enabled: bool().optional(),
  /** How long an answer is served as a fresh hit. */
  ttlMs: positiveInt.optional(),
  /** How much longer it is kept as the last fallback when every deployment fails (`x-spillway-cache: stale`). */
  maxStaleMs: nonNegativeInt.optional(),
  /** Larger answers are not stored. */
  maxEntryBytes: positiveInt.optional(),
};
export const ModelCacheSchema = z.strictObject({
  ...cacheFields,
  /** One entry for every tenant asking the same (never mixes tenants unless set). */
  shared: bool().optional(),
});
export const TenantCacheSchema = z.strictObject(cacheFields);

/** A price in US dollars per million tokens (0: free). */
const pricePerMillion = fromEnv(z.number().nonnegative().max(1_000_000), /^\d+(\.\d+)?$/, Number);

/** What a model's tokens cost (metrics, GET /v1/usage, GET /v1/models): USD per million tokens. */
export const ModelPriceSchema = z.strictObject({
  /** Prompt (input) tokens. */
  input: pricePerMillion,
  /** Completion (output) tokens. */
  output: pricePerMillion,
  /** Prompt tokens the provider served from its prompt cache (`cached_tokens`); default: the input price. */
  cachedInput: pricePerMillion.optional(),
});

export const ModelSchema = z.strictObject({
  name: identifier,
  /** Targets in order: the first is preferred, the others are fallbacks. */
  route: z.array(RouteTargetSchema).min(1),
  /** Endpoints this model serves; a call to another answers 400. Default: all. */
  endpoints: z.array(EndpointSchema).min(1).optional(),
  /**
   * How the route's targets are ordered for each request: `fallback` as listed; `weighted` the first drawn by `weight`;
   * `least-busy` fewest calls in flight across the pool first; `latency` lowest recent latency (EWMA) first.
   */
  strategy: RoutingStrategySchema.default('fallback'),
  /** Other public models tried, in order, once this model's route is exhausted (e.g. gpt-4.1 → claude-sonnet). */
  fallbacks: z.array(identifier).optional(),
  /** A model (with a larger context window) that gets the request when an upstream refuses it as too long (a 400). */
  contextWindowFallback: identifier.optional(),
  /** Response cache for this model, over the top-level `cache` (a tenant's own `cache` wins over it). */
  cache: ModelCacheSchema.optional(),
  /** Token prices of this model (the one the client asked for, whichever deployment answers); none: cost counts 0. */
  price: ModelPriceSchema.optional(),
});

const hashedKey = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'must be "sha256:" followed by 64 lowercase hex digits');

/** A tenant's priority class: every `high` job runs before any `normal` one, every `normal` before any `batch`. */
export const PriorityClassSchema = z.enum(['high', 'normal', 'batch']);

const positiveNumber = fromEnv(z.number().positive().max(1_000_000), /^-?\d+(\.\d+)?$/, Number);

/**
 * Per-tenant admission limits, all optional: set on a tenant or, for every tenant, under `tenantDefaults`
 * (the tenant's own value wins). src/admission/limits.ts resolves them; README "Tenant limits" explains them.
 */
const tenantLimitFields = {
  /** Requests per minute, paced smoothly (GCRA): one every 60000/rpm ms once the burst is spent. */
  rpm: positiveInt.optional(),
  /** Requests admitted at once on top of the pace; default one second's worth, max(1, rpm/60). */
  burst: positiveInt.optional(),
  /** Tokens per minute (prompt + answer budget, settled from the upstream's usage), paced like rpm. */
  tpm: positiveInt.optional(),
  /** Tokens admitted at once on top of the pace; default one second's worth, max(1, tpm/60). */
  tokenBurst: positiveInt.optional(),
  /** Jobs of this tenant running at once, across every worker replica (leases in Redis). */
  maxConcurrent: positiveInt.optional(),
  /** Priority class; default `normal`. */
  priority: PriorityClassSchema.optional(),
  /** Share under contention relative to other tenants of the same class; default 1. */
  weight: positiveNumber.optional(),
  /** Answer tokens counted against tpm when a request sets no max_tokens / max_completion_tokens; default 1024. */
  estimatedCompletionTokens: nonNegativeInt.optional(),
};

/** A Standard Webhooks signing secret: `whsec_` and the base64 of at least 24 random bytes. */
const webhookSecret = z
  .string()
  .regex(/^whsec_[A-Za-z0-9+/]{32,}={0,2}$/, 'must be "whsec_" followed by the base64 of at least 24 random bytes');

/** A tenant's async-job callbacks: a default URL and the signing secrets (README "Async jobs and webhooks"). */
export const TenantWebhookSchema = z.strictObject({
  /** Where the tenant's job events go when a submission names no URL of its own. */
  url: z.url({ protocol: /^https?$/ }).optional(),
  /**
   * Signing secrets, newest first; every one signs each event (rotation: add the new one first, drop the old one once
   * receivers have it). `${VAR}` may hold several, separated by spaces or commas.
   */
  secrets: z.preprocess(
    (value) => (typeof value === 'string' ? value.split(/[\s,]+/).filter((part) => part !== '') : value),
    z.array(webhookSecret).min(1),
  ),
});

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
    /** Async jobs: the default callback URL and the signing secrets of this tenant's webhooks. */
    webhook: TenantWebhookSchema.optional(),
    /** Response cache for this tenant's requests: wins over the model's and the top-level settings. */
    cache: TenantCacheSchema.optional(),
    ...tenantLimitFields,
  })
  .superRefine((tenant, ctx) => {
    if (tenant.dev) return;
    tenant.keys.forEach((key, i) => {
      if (!hashedKey.safeParse(key).success) {
        ctx.addIssue({ code: 'custom', path: ['keys', i], message: 'must be "sha256:<64 hex digits>" (plain keys need dev: true)' });
      }
    });
  });

/** A list that may come from one environment variable: `${VAR}` arrives as a string, its items separated by spaces or commas. */
const listFromEnv = <T extends z.ZodType>(item: T) =>
  z.preprocess((value) => (typeof value === 'string' ? value.split(/[\s,]+/).filter((part) => part !== '') : value), z.array(item));

/** A browser origin as browsers send it in `Origin`: scheme, lowercase host, optional port; no path. */
const corsOrigin = z
  .string()
  .regex(/^https?:\/\/([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(:\d{1,5})?$/, 'must be an origin such as https://app.example.com (lowercase, no path, no trailing slash)');

/** Operator access (the queue UI at /admin/queues). No key: nothing admin is mounted. */
export const AdminSchema = z
  .strictObject({
    /** Admin keys as `sha256:<hex>` (plain keys only when `dev: true`); a browser sends one as the HTTP Basic password. */
    keys: listFromEnv(z.string().min(8)).default([]),
    /** Allows plain-text keys in `keys`, for development only. */
    dev: bool().default(false),
  })
  .superRefine((admin, ctx) => {
    if (admin.dev) return;
    admin.keys.forEach((key, i) => {
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
        /**
         * Fair share between tenants (BullMQ priorities from each tenant's virtual finish time, one Redis call per
         * request): `auto` turns it on when there is more than one tenant or priority class.
         */
        fairShare: z.enum(['auto', 'on', 'off']).default('auto'),
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
        /** Browser origins allowed to call the API (CORS); a list, or one string of origins separated by spaces. Empty (default): CORS off. */
        cors: z.strictObject({ origins: listFromEnv(corsOrigin).default([]) }).prefault({}),
      })
      .prefault({}),
    redis: z
      .strictObject({
        url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL').default('redis://127.0.0.1:6379'),
        /**
         * Redis Cluster: seed URLs (any of the cluster's masters; credentials and TLS are taken from the first). When set,
         * it replaces `url` and `prefix` must be a hash tag such as `{spillway}`. A list, or one string separated by
         * spaces or commas.
         */
        nodes: listFromEnv(z.string().regex(/^rediss?:\/\/[^/]+:\d+\/?$/, 'must be a redis:// or rediss:// URL with a host and a port')).default([]),
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
        /** Queue shards this worker consumes (indexes below `queue.shards`); default: every shard. */
        shards: z.array(nonNegativeInt).min(1).optional(),
      })
      .prefault({}),
    queue: z
      .strictObject({
        /**
         * Shards of the completions queue, each under a hash tag of its own (src/queue/keys.ts shardPrefixes), so that on
         * Redis Cluster the queue's work spreads over the masters: a multiple of the number of masters. 1 (default): the
         * single queue of a single Redis. Change it only with the queue drained (jobs stay in the shard they were added to).
         */
        shards: int(z.number().int().min(1).max(256)).default(1),
      })
      .prefault({}),
    jobs: z
      .strictObject({
        /**
         * How long a completed job (and its return value) stays in Redis. 0 (default): removed at once, the cheapest in
         * Redis; an answer its ingress could not hear is parked for `replyTtlSeconds` instead. More: kept for the queue UI
         * and forensics, and read on reconciliation, at several Redis commands per job.
         */
        keepCompletedSeconds: nonNegativeInt.default(0),
        /** How long a body too large for pub/sub, or a final answer its ingress could not hear, waits under its key. */
        replyTtlSeconds: positiveInt.default(60),
        keepFailedSeconds: positiveInt.default(3600),
        /** How long an async job's record, result and delivery log stay readable after it finishes (cover webhook retries). */
        asyncRetentionSeconds: positiveInt.default(172_800),
        /** Longest an async job may wait in the queue before it expires: hours, not the seconds of a synchronous request. */
        asyncMaxQueueWaitMs: positiveInt.default(6 * 3_600_000),
        /** Priority class of async jobs; `batch` (default) runs after every synchronous request. */
        asyncPriority: PriorityClassSchema.default('batch'),
        /** Share of a tenant's maxConcurrent that its async jobs may hold at once (at least one): the rest stays for its synchronous requests. */
        asyncConcurrencyShare: fromEnv(z.number().gt(0).max(1), /^\d+(\.\d+)?$/, Number).default(0.5),
      })
      .prefault({}),
    /** Delivery of async-job webhooks (src/webhooks), for every tenant. */
    webhooks: z
      .strictObject({
        /** Allow http:// callback URLs (default: https only). */
        allowHttp: bool().default(false),
        /**
         * Host names or IP addresses exempt from the address check (loopback, private, link-local and metadata addresses
         * are refused otherwise); a list, or one string separated by spaces or commas.
         */
        allowHosts: listFromEnv(z.string().min(1)).default([]),
        /** Time one delivery attempt may take, connection to response head. */
        timeoutMs: positiveInt.default(10_000),
        /** Attempts per event before it is dead-lettered (visible in the delivery log, retried by hand). */
        maxAttempts: positiveInt.default(11),
        /** Wait before attempt n+1: min(maxMs, initialMs × multiplier^(n-1)), ± jitter (a fraction). Defaults span about a day. */
        backoff: z
          .strictObject({
            initialMs: positiveInt.default(10_000),
            multiplier: positiveNumber.default(3),
            maxMs: positiveInt.default(6 * 3_600_000),
            jitter: fromEnv(z.number().min(0).max(1), /^\d+(\.\d+)?$/, Number).default(0.2),
          })
          .prefault({}),
        /** Bytes of a receiver's response body read (and kept in the delivery log); the rest is discarded. */
        maxResponseBytes: nonNegativeInt.default(1024),
        /** Put the whole job (result included) in each event's `data.job`; false: `data` carries the id and status only. */
        includeJob: bool().default(true),
        /** Deliveries one worker process runs at once. */
        concurrency: positiveInt.default(32),
      })
      .prefault({}),
    /** Files (/v1/files: batch inputs, batch outputs): their bytes live here, their metadata in Redis (src/files). */
    files: z
      .strictObject({
        /**
         * The local directory holding the bytes (default storage), shared by every ingress and worker: a volume in compose,
         * a PersistentVolumeClaim in Kubernetes (ReadWriteMany across nodes). Created on first use.
         */
        dir: z.string().min(1).default('./data/files'),
        /** Largest file accepted by POST /v1/files (OpenAI's limit for a batch input file: 200 MB); larger: 413. */
        maxBytes: positiveInt.default(200 * 1024 * 1024),
        /** How long an uploaded file lives unless its upload sets `expires_after` (OpenAI: batch files, 30 days). */
        ttlSeconds: positiveInt.default(30 * 86_400),
        /** How often a worker deletes the bytes of expired files (their metadata expires in Redis by itself). */
        sweepIntervalMs: positiveInt.default(60_000),
        /** S3-compatible object storage (AWS S3, MinIO, R2, Ceph...) instead of `dir`, through the AWS SDK. */
        s3: z
          .strictObject({
            bucket: z.string().min(1),
            region: z.string().min(1).default('us-east-1'),
            /** The service's URL for a non-AWS store (e.g. http://minio:9000); default: AWS for the region. */
            endpoint: z.url({ protocol: /^https?$/ }).optional(),
            /** Path-style URLs (bucket in the path), which most non-AWS stores need. */
            forcePathStyle: bool().default(false),
            /** Prepended to every object key (e.g. `spillway/`). */
            prefix: z.string().default(''),
            /** Static credentials; both or neither (default: the AWS SDK's own chain: environment, profile, instance role). */
            accessKeyId: z.string().min(1).optional(),
            secretAccessKey: z.string().min(1).optional(),
          })
          .refine((s3) => (s3.accessKeyId === undefined) === (s3.secretAccessKey === undefined), {
            message: 'accessKeyId and secretAccessKey go together',
            path: ['secretAccessKey'],
          })
          .optional(),
      })
      .prefault({}),
    /** The Batch API (/v1/batches): each line runs as an async job of its tenant at `batch` priority (src/batches). */
    batches: z
      .strictObject({
        /** Lines of one batch handed to the queue and not finished yet: a 50,000-line batch never floods Redis. */
        maxInFlight: positiveInt.default(100),
        /** Most request lines in one input file (OpenAI: 50,000). */
        maxLines: positiveInt.default(50_000),
        /** What `completion_window: 24h` means here: past it the batch expires, its finished lines kept. */
        completionWindowSeconds: positiveInt.default(86_400),
        /** How long a finished batch stays readable; its output files live `outputTtlSeconds`. */
        retentionSeconds: positiveInt.default(30 * 86_400),
        outputTtlSeconds: positiveInt.default(30 * 86_400),
        /** Batches one worker process drives at once (each a light loop: feeding lines, flushing results). */
        concurrency: positiveInt.default(16),
        /** How often a driver looks at its batch's progress (finished lines, cancel, expiry). */
        pollMs: positiveInt.default(100),
      })
      .prefault({}),
    /** The Responses API's stored responses (`store: true`, the default): kept per tenant in Redis for this long. */
    responses: z
      .strictObject({
        storeTtlSeconds: positiveInt.default(30 * 24 * 3600),
      })
      .prefault({}),
    /**
     * The response cache (src/cache), off unless a model, a tenant or a request opts in. These are the defaults that a
     * model's and a tenant's `cache` override; `Cache-Control: no-cache` bypasses it for one request, `no-store` forbids it.
     */
    cache: z
      .strictObject({
        enabled: bool().default(false),
        ttlMs: positiveInt.default(300_000),
        maxStaleMs: nonNegativeInt.default(0),
        maxEntryBytes: positiveInt.default(1024 * 1024),
        shared: bool().default(false),
        /** A request may opt in with `Cache-Control: max-age=<s>` (its TTL, at most ttlMs) where caching is off. */
        requestOptIn: bool().default(true),
      })
      .prefault({}),
    providers: z.array(ProviderSchema).min(1),
    models: z.array(ModelSchema).min(1),
    tenants: z.array(TenantSchema).min(1),
    /** Limits for every tenant that does not set its own (`server.maxQueueWaitMs` is the queue-wait default). */
    tenantDefaults: z.strictObject(tenantLimitFields).prefault({}),
    admin: AdminSchema.prefault({}),
    /** Daily usage counters per tenant and model in Redis (GET /v1/usage). */
    usage: z
      .strictObject({
        /** How long a day's counters are kept (a TTL on each day's hash). */
        retentionDays: int(z.number().int().min(1).max(3_660)).default(400),
      })
      .prefault({}),
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
  checkRedisLayout(config, ctx);
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
    checkProviderTypeFields(provider, i, type, ctx);
  });
  const anthropicIds = new Set(providers.filter((p) => field(p, 'type') === 'anthropic').map((p) => text(field(p, 'id'))));
  models.forEach((model, i) => {
    list(field(model, 'route')).forEach((target, j) => {
      const provider = text(field(target, 'provider'));
      if (provider !== undefined && !providerIds.has(provider)) {
        ctx.addIssue({ code: 'custom', path: ['models', i, 'route', j, 'provider'], message: `no provider with id "${provider}"` });
      }
      // The Messages API has no embeddings or text completions: a model that declares them cannot route there.
      const declared = list(field(model, 'endpoints')).filter((e) => e === 'embeddings' || e === 'completions');
      if (declared.length > 0 && provider !== undefined && anthropicIds.has(provider)) {
        ctx.addIssue({ code: 'custom', path: ['models', i, 'route', j, 'provider'], message: `provider "${provider}" (anthropic) cannot serve ${declared.join(' or ')}` });
      }
    });
  });
  checkRoutingReferences(models, modelNames, ctx);
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

/** Model fallbacks name configured models (never the model itself); route weights only where they are read. */
function checkRoutingReferences(models: unknown[], modelNames: Set<string>, ctx: Ctx): void {
  models.forEach((model, i) => {
    const name = text(field(model, 'name'));
    list(field(model, 'fallbacks')).forEach((fallback, j) => {
      if (typeof fallback !== 'string') return;
      if (!modelNames.has(fallback)) ctx.addIssue({ code: 'custom', path: ['models', i, 'fallbacks', j], message: `no model named "${fallback}"` });
      else if (fallback === name) ctx.addIssue({ code: 'custom', path: ['models', i, 'fallbacks', j], message: 'a model cannot be its own fallback' });
    });
    const wider = text(field(model, 'contextWindowFallback'));
    if (wider !== undefined && !modelNames.has(wider)) {
      ctx.addIssue({ code: 'custom', path: ['models', i, 'contextWindowFallback'], message: `no model named "${wider}"` });
    } else if (wider !== undefined && wider === name) {
      ctx.addIssue({ code: 'custom', path: ['models', i, 'contextWindowFallback'], message: 'a model cannot be its own context-window fallback' });
    }
    const strategy = field(model, 'strategy') ?? 'fallback';
    list(field(model, 'route')).forEach((target, j) => {
      if (field(target, 'weight') !== undefined && strategy !== 'weighted') {
        ctx.addIssue({ code: 'custom', path: ['models', i, 'route', j, 'weight'], message: 'only read with strategy "weighted"' });
      }
    });
  });
}

/** Cluster mode needs the prefix as a hash tag (BullMQ's scripts touch several keys of a queue); shards must exist. */
function checkRedisLayout(config: unknown, ctx: Ctx): void {
  const redis = field(config, 'redis');
  const prefix = text(field(redis, 'prefix'));
  if (list(field(redis, 'nodes')).length > 0 && prefix !== undefined && !/^\{[^{}]+\}$/.test(prefix)) {
    ctx.addIssue({ code: 'custom', path: ['redis', 'prefix'], message: 'must be a hash tag such as {spillway} when redis.nodes is set (Redis Cluster)' });
  }
  const count = field(field(config, 'queue'), 'shards');
  const shards = typeof count === 'number' ? count : 1;
  const seen = new Set<unknown>();
  list(field(field(config, 'worker'), 'shards')).forEach((shard, i) => {
    if (typeof shard === 'number' && shard >= shards) ctx.addIssue({ code: 'custom', path: ['worker', 'shards', i], message: `no shard ${shard}: queue.shards is ${shards}` });
    if (seen.has(shard)) ctx.addIssue({ code: 'custom', path: ['worker', 'shards', i], message: `shard ${String(shard)} listed twice` });
    seen.add(shard);
  });
}

/** Fields that only one provider type reads: set on another type they would silently do nothing, so they are refused. */
function checkProviderTypeFields(provider: unknown, i: number, type: string | undefined, ctx: Ctx): void {
  if (type === 'azure-openai' && field(provider, 'apiVersion') === undefined) {
    ctx.addIssue({ code: 'custom', path: ['providers', i, 'apiVersion'], message: 'required for type "azure-openai"' });
  }
  if (type === 'anthropic' && field(provider, 'responses') === 'native') {
    ctx.addIssue({ code: 'custom', path: ['providers', i, 'responses'], message: 'type "anthropic" has no Responses API: only "bridged"' });
  }
  const owners: Record<string, string> = { apiVersion: 'azure-openai', anthropicVersion: 'anthropic', defaultMaxTokens: 'anthropic' };
  for (const [key, owner] of Object.entries(owners)) {
    if (type !== undefined && type !== owner && field(provider, key) !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['providers', i, key], message: `only for type "${owner}"` });
    }
  }
}

export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;
export type ProviderConfig = z.infer<typeof ProviderSchema>;
export type ModelConfig = z.infer<typeof ModelSchema>;
export type ModelPrice = z.infer<typeof ModelPriceSchema>;
export type TenantConfig = z.infer<typeof TenantSchema>;
export type AdminConfig = z.infer<typeof AdminSchema>;
export type TenantWebhookConfig = z.infer<typeof TenantWebhookSchema>;
export type WebhooksConfig = z.infer<typeof ConfigSchema>['webhooks'];
export type TenantDefaults = z.infer<typeof ConfigSchema>['tenantDefaults'];
export type PriorityClass = z.infer<typeof PriorityClassSchema>;
export type Endpoint = z.infer<typeof EndpointSchema>;
export type RoutingStrategy = z.infer<typeof RoutingStrategySchema>;
export type CacheConfig = z.infer<typeof ConfigSchema>['cache'];
export type ModelCacheConfig = z.infer<typeof ModelCacheSchema>;
export type TenantCacheConfig = z.infer<typeof TenantCacheSchema>;
