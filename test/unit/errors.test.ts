// toOpenAIError: every thrown thing leaves as OpenAI's {"error":{message,type,param,code}} with its status and
// headers; an unknown error becomes a generic 500 that never leaks its own message.
import { describe, expect, it } from 'vitest';
import { fromErrorReply, toOpenAIError } from '../../src/openai/errors.ts';
import { clientErrorFor } from '../../src/http/plugins/client-errors.ts';
import {
  SpillwayError,
  deadlineExceeded,
  invalidApiKey,
  modelNotAllowed,
  modelNotFound,
  serviceUnavailable,
} from '../../src/errors.ts';

describe('toOpenAIError', () => {
  it('keeps status, type, code, param, message and headers of a SpillwayError', () => {
    const err = new SpillwayError('Too many requests for tenant.', {
      statusCode: 429,
      type: 'rate_limit_error',
      code: 'tenant_rate_limited',
      param: 'model',
      headers: { 'retry-after': '3', 'x-ratelimit-remaining-requests': '0' },
    });
    expect(toOpenAIError(err)).toEqual({
      statusCode: 429,
      headers: { 'retry-after': '3', 'x-ratelimit-remaining-requests': '0' },
      body: { error: { message: 'Too many requests for tenant.', type: 'rate_limit_error', param: 'model', code: 'tenant_rate_limited' } },
    });
  });

  it('gives param and code null, and no headers, when a SpillwayError has none', () => {
    const reply = toOpenAIError(new SpillwayError('bad', { statusCode: 400, type: 'invalid_request_error' }));
    expect(reply).toEqual({ statusCode: 400, headers: {}, body: { error: { message: 'bad', type: 'invalid_request_error', param: null, code: null } } });
  });

  it('the error body has exactly the four OpenAI fields', () => {
    const { body } = toOpenAIError(modelNotFound('gpt-9'));
    expect(Object.keys(body)).toEqual(['error']);
    expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  });

  it('maps the factories to the statuses client SDKs expect', () => {
    expect(toOpenAIError(invalidApiKey())).toMatchObject({ statusCode: 401, body: { error: { code: 'invalid_api_key' } } });
    expect(toOpenAIError(modelNotAllowed('m'))).toMatchObject({ statusCode: 403, body: { error: { type: 'permission_error', param: 'model' } } });
    expect(toOpenAIError(modelNotFound('m'))).toMatchObject({ statusCode: 404, body: { error: { code: 'model_not_found', param: 'model' } } });
    expect(toOpenAIError(deadlineExceeded())).toMatchObject({ statusCode: 504, body: { error: { type: 'timeout_error' } } });
    expect(toOpenAIError(serviceUnavailable('Redis is down', 5))).toMatchObject({
      statusCode: 503,
      headers: { 'retry-after': '5' },
      body: { error: { message: 'Redis is down', type: 'server_error', code: 'service_unavailable' } },
    });
  });

  it('turns an unknown Error into a generic 500 that does not leak its message', () => {
    const secret = 'connect ECONNREFUSED 10.0.0.7:6379 password=hunter2';
    const reply = toOpenAIError(new Error(secret));
    expect(reply.statusCode).toBe(500);
    expect(reply.headers).toEqual({});
    expect(reply.body.error).toMatchObject({ type: 'server_error', param: null, code: null });
    expect(reply.body.error.message).toBe('The server had an error while processing your request.');
    expect(JSON.stringify(reply)).not.toContain('hunter2');
    expect(JSON.stringify(reply)).not.toContain('10.0.0.7');
  });

  it('treats a plain object shaped like a SpillwayError as unknown (no trust in shapes)', () => {
    const lookalike = { statusCode: 400, type: 'invalid_request_error', message: 'sk-secret-in-message', headers: { 'x-leak': 'y' } };
    const reply = toOpenAIError(lookalike);
    expect(reply.statusCode).toBe(500);
    expect(JSON.stringify(reply)).not.toContain('sk-secret-in-message');
    expect(reply.headers).toEqual({});
  });

  it.each([undefined, null, 'a string', 42])('turns a thrown non-error (%j) into the generic 500', (thrown) => {
    expect(toOpenAIError(thrown)).toMatchObject({ statusCode: 500, body: { error: { type: 'server_error' } } });
  });
});

describe('fromErrorReply', () => {
  it('rebuilds an equivalent SpillwayError from a reply that crossed Redis', () => {
    const original = serviceUnavailable('busy', 2);
    const rebuilt = fromErrorReply(JSON.parse(JSON.stringify(toOpenAIError(original))) as ReturnType<typeof toOpenAIError>);
    expect(rebuilt).toBeInstanceOf(SpillwayError);
    expect(toOpenAIError(rebuilt)).toEqual(toOpenAIError(original));
  });
});

describe('clientErrorFor (what Node refuses before Fastify sees a request)', () => {
  it.each([
    ['HPE_HEADER_OVERFLOW', 431, 'headers_too_large'],
    ['ERR_HTTP_REQUEST_TIMEOUT', 408, 'request_timeout'],
    ['HPE_INVALID_METHOD', 400, 'malformed_request'],
    ['HPE_UNEXPECTED_CONTENT_LENGTH', 400, 'malformed_request'],
    [undefined, 400, 'malformed_request'],
  ])('%s is answered %i in OpenAI shape', (code, status, errorCode) => {
    expect(toOpenAIError(clientErrorFor(code))).toEqual({
      statusCode: status,
      headers: {},
      body: { error: { message: expect.any(String), type: 'invalid_request_error', param: null, code: errorCode } },
    });
  });
});
