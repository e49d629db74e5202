// Every error the API can emit: one class, one factory per case. Turned into OpenAI's error shape by
// openai/errors.ts, the same way by the HTTP error handler and by the worker's `error` reply. Never carries a secret.

export type OpenAIErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error'
  | 'timeout_error'
  | 'api_error';

export interface SpillwayErrorInit {
  statusCode: number;
  type: OpenAIErrorType;
  code?: string | null;
  param?: string | null;
  headers?: Record<string, string>;
  /** Whether trying again (later, or with another upstream) may succeed. */
  retryable?: boolean;
  cause?: unknown;
}

export class SpillwayError extends Error {
  readonly statusCode: number;
  readonly type: OpenAIErrorType;
  readonly code: string | null;
  readonly param: string | null;
  /** Fastify applies `headers` of a thrown error to the reply (Retry-After, x-ratelimit-*). */
  readonly headers: Record<string, string>;
  readonly retryable: boolean;

  constructor(message: string, init: SpillwayErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'SpillwayError';
    this.statusCode = init.statusCode;
    this.type = init.type;
    this.code = init.code ?? null;
    this.param = init.param ?? null;
    this.headers = init.headers ?? {};
    this.retryable = init.retryable ?? false;
  }
}

export const invalidRequest = (message: string, param: string | null = null, code: string | null = null) =>
  new SpillwayError(message, { statusCode: 400, type: 'invalid_request_error', param, code });

export const invalidJson = (detail: string) =>
  new SpillwayError(`We could not parse the JSON body of your request. (${detail})`, {
    statusCode: 400,
    type: 'invalid_request_error',
    code: 'invalid_json',
  });

export const missingApiKey = () =>
  new SpillwayError(
    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
    { statusCode: 401, type: 'invalid_request_error', code: 'missing_api_key' },
  );

/** Never echoes the key back: OpenAI shows a masked prefix, we show nothing of it. */
export const invalidApiKey = () =>
  new SpillwayError('Incorrect API key provided.', { statusCode: 401, type: 'invalid_request_error', code: 'invalid_api_key' });

export const modelNotAllowed = (model: string) =>
  new SpillwayError(`Your API key does not have access to the model \`${model}\`.`, {
    statusCode: 403,
    type: 'permission_error',
    param: 'model',
    code: 'model_not_allowed',
  });

export const modelNotFound = (model: string) =>
  new SpillwayError(`The model \`${model}\` does not exist or you do not have access to it.`, {
    statusCode: 404,
    type: 'invalid_request_error',
    param: 'model',
    code: 'model_not_found',
  });

export const modelWrongEndpoint = (model: string, endpoint: string) =>
  new SpillwayError(`The model \`${model}\` is not supported by the ${endpoint} endpoint.`, {
    statusCode: 400,
    type: 'invalid_request_error',
    param: 'model',
    code: 'model_not_supported',
  });

export const routeNotFound = (method: string, url: string) =>
  new SpillwayError(`Invalid URL (${method} ${url})`, { statusCode: 404, type: 'invalid_request_error', code: 'unknown_url' });

export const bodyTooLarge = (limitBytes: number) =>
  new SpillwayError(`Request body too large: the limit is ${limitBytes} bytes.`, {
    statusCode: 413,
    type: 'invalid_request_error',
    code: 'request_too_large',
  });

export const unsupportedMediaType = (contentType: string | undefined) =>
  new SpillwayError(`Unsupported Content-Type ${contentType ? `"${contentType}"` : '(none)'}: send application/json.`, {
    statusCode: 415,
    type: 'invalid_request_error',
    code: 'unsupported_media_type',
  });

export const serviceUnavailable = (message: string, retryAfterSeconds = 1) =>
  new SpillwayError(message, {
    statusCode: 503,
    type: 'server_error',
    code: 'service_unavailable',
    headers: { 'retry-after': String(retryAfterSeconds) },
    retryable: true,
  });

export const deadlineExceeded = () =>
  new SpillwayError('The request did not complete before its deadline.', { statusCode: 504, type: 'timeout_error', code: 'deadline_exceeded' });

export const upstreamFailed = (message: string, statusCode = 502) =>
  new SpillwayError(message, { statusCode, type: 'api_error', code: 'upstream_error', retryable: true });

export const streamInterrupted = (message: string) =>
  new SpillwayError(message, { statusCode: 502, type: 'api_error', code: 'stream_interrupted' });

/** The broker lost track of the job (Redis lost it): a broker fault, not an upstream one, so 503 and not 502. */
export const jobLost = () =>
  new SpillwayError('The request was lost by the broker before it was answered; try again.', {
    statusCode: 503,
    type: 'server_error',
    code: 'job_lost',
    headers: { 'retry-after': '1' },
    retryable: true,
  });

/** The ingress is shutting down and could not finish this request within its grace period. */
export const shuttingDown = () =>
  new SpillwayError('The server is shutting down; the request was not completed. Try again.', {
    statusCode: 503,
    type: 'server_error',
    code: 'server_shutting_down',
    headers: { 'retry-after': '1' },
    retryable: true,
  });

/** A client that does not read its stream: the unread bytes passed the per-stream buffer limit. */
export const slowReader = (limitBytes: number) =>
  new SpillwayError(`The stream was ended: the client left more than ${limitBytes} bytes unread.`, {
    statusCode: 502,
    type: 'api_error',
    code: 'stream_buffer_exceeded',
  });

export const jsonTooDeep = (maxDepth: number) =>
  new SpillwayError(`We could not parse the JSON body of your request. (nested deeper than ${maxDepth} levels)`, {
    statusCode: 400,
    type: 'invalid_request_error',
    code: 'invalid_json',
  });

export const internalError = () =>
  new SpillwayError('The server had an error while processing your request.', { statusCode: 500, type: 'server_error', code: null });

/** The admin pages (queue UI) without a valid admin key: the challenge makes a browser ask for it (HTTP Basic). */
export const adminKeyRequired = () =>
  new SpillwayError('This page needs an admin key: sign in with any user name and an admin key as the password.', {
    statusCode: 401,
    type: 'invalid_request_error',
    code: 'invalid_admin_key',
    headers: { 'www-authenticate': 'Basic realm="Spillway admin", charset="UTF-8"' },
  });

/** An async job that does not exist, has expired, or belongs to another tenant: the same 404, never a 403. */
export const jobNotFound = (jobId: string) =>
  new SpillwayError(`No job found with id '${jobId}'.`, { statusCode: 404, type: 'invalid_request_error', param: 'id', code: 'job_not_found' });

/** The same Idempotency-Key sent again with another request: nothing is run. */
export const idempotencyKeyReused = () =>
  new SpillwayError('This Idempotency-Key was already used with a different request; use a new key for a new request.', {
    statusCode: 409,
    type: 'invalid_request_error',
    param: 'Idempotency-Key',
    code: 'idempotency_key_reused',
  });

/** A retried stream whose first request is still running: a stream cannot be joined half way. */
export const idempotentRequestInProgress = () =>
  new SpillwayError('A request with this Idempotency-Key is still in progress; retry once it has finished.', {
    statusCode: 409,
    type: 'invalid_request_error',
    param: 'Idempotency-Key',
    code: 'idempotency_request_in_progress',
    headers: { 'retry-after': '1' },
  });

/** A webhook URL refused at submission: wrong scheme, or a host that resolves to a non-public address. Never echoes a secret. */
export const invalidWebhookUrl = (reason: string) =>
  new SpillwayError(`Invalid webhook URL: ${reason}.`, { statusCode: 400, type: 'invalid_request_error', param: 'webhook.url', code: 'invalid_webhook_url' });

/** A webhook was asked for, but the tenant has no signing secret configured (an unsigned event is never sent). */
export const webhookNotConfigured = () =>
  new SpillwayError('Webhooks need a signing secret: none is configured for this API key (tenants[].webhook.secrets).', {
    statusCode: 400,
    type: 'invalid_request_error',
    param: 'webhook',
    code: 'webhook_not_configured',
  });

/** A job whose webhook cannot be sent (again) yet: it has not finished, or it has no webhook. */
export const webhookNotDeliverable = (reason: string) =>
  new SpillwayError(`The webhook cannot be sent: ${reason}.`, { statusCode: 409, type: 'invalid_request_error', param: null, code: 'webhook_not_deliverable' });

/** GET/DELETE of a stored response this tenant does not have (unknown, expired, deleted, or another tenant's). */
export const responseNotFound = (id: string) =>
  new SpillwayError(`Response with id '${id}' not found.`, { statusCode: 404, type: 'invalid_request_error', param: null, code: 'not_found' });

/** A `previous_response_id` this tenant has no stored response for: OpenAI's 400, naming the parameter. */
export const previousResponseNotFound = (id: string) =>
  new SpillwayError(`Previous response with id '${id}' not found.`, {
    statusCode: 400,
    type: 'invalid_request_error',
    param: 'previous_response_id',
    code: 'previous_response_not_found',
  });

/** A request parameter this broker cannot honour: a 400 naming it, never silently ignored. */
export const unsupportedParameter = (param: string, message: string) =>
  new SpillwayError(message, { statusCode: 400, type: 'invalid_request_error', param, code: 'unsupported_parameter' });

/** A file this tenant does not have (unknown, expired, deleted, or another tenant's): the same 404, never a 403. */
export const fileNotFound = (id: string) =>
  new SpillwayError(`No such File object: ${id}`, { statusCode: 404, type: 'invalid_request_error', param: 'id', code: 'file_not_found' });

/** An upload over `files.maxBytes`: nothing of it is kept. */
export const fileTooLarge = (limitBytes: number) =>
  new SpillwayError(`File too large: the limit is ${limitBytes} bytes.`, { statusCode: 413, type: 'invalid_request_error', param: 'file', code: 'file_too_large' });

/** DELETE of an input file that an unfinished batch still reads. */
export const fileInUse = (id: string) =>
  new SpillwayError(`File ${id} is the input of a batch that has not finished; cancel the batch or wait for it first.`, {
    statusCode: 409,
    type: 'invalid_request_error',
    param: 'id',
    code: 'file_in_use',
  });

/** A batch this tenant does not have (unknown, expired, or another tenant's): the same 404, never a 403. */
export const batchNotFound = (id: string) =>
  new SpillwayError(`No batch found with id '${id}'.`, { statusCode: 404, type: 'invalid_request_error', param: 'batch_id', code: 'batch_not_found' });

/** POST /v1/batches/{id}/cancel on a batch that has already ended. */
export const batchNotCancellable = (status: string) =>
  new SpillwayError(`Cannot cancel a batch with status '${status}'.`, { statusCode: 400, type: 'invalid_request_error', param: null, code: 'batch_not_cancellable' });

/** The file storage (local directory or S3) failed: the client may try again. */
export const fileStorageUnavailable = () =>
  new SpillwayError('The file storage is unavailable; try again shortly.', {
    statusCode: 503,
    type: 'server_error',
    code: 'file_storage_unavailable',
    headers: { 'retry-after': '1' },
    retryable: true,
  });
