// /v1/batches: create a batch from an uploaded input file, retrieve it, list the tenant's batches, cancel one. The
// batch runs in the workers (src/batches/driver.ts); nothing here reads the input file or calls an upstream.
// Another tenant's batch answers 404.
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Config, Endpoint } from '../../config/schema.ts';
import type { Authenticate } from '../plugins/auth.ts';
import { compileHeaderFilter, pickHeaders } from '../forward-headers.ts';
import { batchNotCancellable, batchNotFound, invalidRequest, serviceUnavailable, SpillwayError, webhookNotConfigured } from '../../errors.ts';
import { ENDPOINT_PATHS } from '../../queue/job-object.ts';
import { BATCH_ID_PATTERN, toPublicBatch, type BatchRecord } from '../../batches/batch-record.ts';
import type { BatchStore } from '../../batches/batch-store.ts';
import type { BatchQueue } from '../../batches/runner.ts';
import type { FileRecords } from '../../files/file-records.ts';

/** What the ingress needs for batches (built in roles/ingress.ts). */
export interface BatchServices {
  store: BatchStore;
  queue: BatchQueue;
  files: FileRecords;
}

export interface BatchRouteDeps {
  config: Config;
  batches: BatchServices;
  authenticate: Authenticate;
}

const ENDPOINT_BY_PATH = new Map(Object.entries(ENDPOINT_PATHS).map(([endpoint, path]) => [path, endpoint as Endpoint]));

/** OpenAI's Metadata: up to 16 pairs, keys up to 64 characters, string values up to 512. */
const MetadataSchema = z
  .record(z.string().max(64, 'keys are at most 64 characters'), z.string().max(512, 'values are strings of at most 512 characters'))
  .refine((value) => Object.keys(value).length <= 16, 'at most 16 pairs');

const CreateBatchSchema = z.strictObject({
  input_file_id: z.string().min(1).max(64),
  endpoint: z.enum(Object.values(ENDPOINT_PATHS) as [string, ...string[]], { error: `must be one of ${Object.values(ENDPOINT_PATHS).join(', ')}` }),
  completion_window: z.literal('24h', { error: "must be '24h'" }),
  metadata: MetadataSchema.nullish(),
  output_expires_after: z.strictObject({ anchor: z.literal('created_at'), seconds: z.number().int().min(3_600).max(2_592_000) }).optional(),
});

const ListQuerySchema = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  after: z.string().min(1).max(64).optional(),
});

export function registerBatchRoutes(api: FastifyInstance, deps: BatchRouteDeps): void {
  const { batches, config } = deps;
  const forward = compileHeaderFilter(config.server.forwardHeaders);

  api.post('/v1/batches', async (request) => {
    const tenant = deps.authenticate(request);
    const input = parse(CreateBatchSchema, request.body);
    const webhookUrl = tenant.webhook?.url;
    if (webhookUrl !== undefined && tenant.webhook!.secrets.length === 0) throw webhookNotConfigured();
    const now = Date.now();
    const record: Pick<BatchRecord, 'id' | 'tenant' | 'createdAt' | 'expiresAt' | 'inputFileId'> = {
      id: `batch_${randomBytes(16).toString('hex')}`,
      tenant: tenant.id,
      createdAt: now,
      expiresAt: now + config.batches.completionWindowSeconds * 1000,
      inputFileId: input.input_file_id,
    };
    const fields = [
      'id', record.id, 'tenant', tenant.id, 'status', 'validating', 'endpoint', ENDPOINT_BY_PATH.get(input.endpoint)!,
      'input_file_id', input.input_file_id, 'completion_window', input.completion_window, 'created_at', String(now),
      'expires_at', String(record.expiresAt), 'request_id', request.id,
      'headers', JSON.stringify(pickHeaders(request.headers, forward)),
    ];
    if (input.metadata !== undefined && input.metadata !== null) fields.push('metadata', JSON.stringify(input.metadata));
    if (input.output_expires_after !== undefined) fields.push('output_ttl_ms', String(input.output_expires_after.seconds * 1000));
    // Batch events go to the tenant's webhook URL, as OpenAI sends them to the project's endpoints.
    if (webhookUrl !== undefined) fields.push('webhook', JSON.stringify({ url: webhookUrl }));
    // The input is needed until the batch ends, however long that takes: a day past its window.
    const pinUntil = record.expiresAt + 86_400_000;
    const created = await withRedis(() => batches.store.create(record, fields, pinUntil));
    if (created === 'no_file') throw invalidRequest(`No such File object: ${input.input_file_id}`, 'input_file_id', 'invalid_value');
    if (created === 'wrong_purpose') throw invalidRequest(`File ${input.input_file_id} was not uploaded with purpose 'batch'.`, 'input_file_id', 'invalid_value');
    try {
      await batches.files.extendExpiry(tenant.id, input.input_file_id, pinUntil);
      await batches.queue.start(tenant.id, record.id);
    } catch {
      // No driver will ever take it: end it now (unpinning the file) so it does not sit in `validating` for ever.
      const stored = await batches.store.get(tenant.id, record.id).catch(() => undefined);
      if (stored !== undefined) await batches.store.finish(stored, 'failed', { errors: JSON.stringify([{ code: 'server_error', message: 'The batch could not be queued.', param: null, line: null }]) }).catch(() => undefined);
      throw serviceUnavailable('The batch queue is unavailable; try again shortly.');
    }
    return toPublicBatch((await withRedis(() => batches.store.get(tenant.id, record.id)))!);
  });

  api.get('/v1/batches', async (request) => {
    const tenant = deps.authenticate(request);
    const query = parse(ListQuerySchema, request.query ?? {});
    const page = await withRedis(() => batches.store.list(tenant.id, { limit: query.limit, ...(query.after === undefined ? {} : { after: query.after }) }));
    const data = page.records.map(toPublicBatch);
    return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: page.hasMore };
  });

  api.get<{ Params: { id: string } }>('/v1/batches/:id', async (request) => {
    const tenant = deps.authenticate(request);
    return toPublicBatch(await findBatch(batches.store, tenant.id, request.params.id));
  });

  api.post<{ Params: { id: string } }>('/v1/batches/:id/cancel', async (request) => {
    const tenant = deps.authenticate(request);
    const batch = await findBatch(batches.store, tenant.id, request.params.id);
    // The driver sees `cancelling`, removes the lines still queued, aborts the running ones and ends it `cancelled`.
    const moved = await withRedis(() => batches.store.move(batch, 'cancelling', ['validating', 'in_progress'], { cancelling_at: String(Date.now()) }));
    if (!moved.changed && moved.current !== 'cancelling' && moved.current !== 'cancelled') throw batchNotCancellable(moved.current ?? batch.status);
    return toPublicBatch(await findBatch(batches.store, tenant.id, batch.id));
  });
}

/** The tenant's batch, or 404: an unknown id, an expired batch and another tenant's batch look the same. */
async function findBatch(store: BatchStore, tenantId: string, id: string): Promise<BatchRecord> {
  if (!BATCH_ID_PATTERN.test(id)) throw batchNotFound(id.slice(0, 64));
  const record = await withRedis(() => store.get(tenantId, id));
  if (record === undefined) throw batchNotFound(id);
  return record;
}

async function withRedis<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof SpillwayError) throw err;
    throw serviceUnavailable('The batch store is unavailable; try again shortly.');
  }
}

function parse<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalidRequest('The request body must be a JSON object.');
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const param = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') throw invalidRequest(`Unrecognized request argument supplied: ${issue.keys.join(', ')}.`, issue.keys[0] ?? null, 'unknown_parameter');
  const given = issue.path.reduce<unknown>((at, key) => (at !== null && typeof at === 'object' ? (at as Record<PropertyKey, unknown>)[key] : undefined), value);
  if (given === undefined) throw invalidRequest(`Missing required parameter: '${param}'.`, param || null, 'missing_required_parameter');
  throw invalidRequest(`Invalid value for '${param}': ${issue.message}.`, param || null, 'invalid_value');
}
