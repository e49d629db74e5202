// API-key authentication: which header forms present a key, that only hashes are compared, and that the onRequest
// hook's tenant is what routes get.
import { describe, expect, it } from 'vitest';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { createAuthenticator, hashApiKey, presentedKey } from '../../src/http/plugins/auth.ts';
import type { SpillwayError } from '../../src/errors.ts';
import type { TenantConfig } from '../../src/config/schema.ts';

const KEY = 'sk-tenant-key-0123456789';
const tenant: TenantConfig = { id: 'acme', keys: [`sha256:${hashApiKey(KEY)}`], dev: false };
const devTenant: TenantConfig = { id: 'dev', keys: ['sk-plain-dev-key'], dev: true };

function request(headers: Record<string, string>): FastifyRequest {
  return { headers, tenant: null } as unknown as FastifyRequest;
}

/** Runs the onRequest hook as Fastify would; resolves with the error it passed to done(), if any. */
function runHook(auth: ReturnType<typeof createAuthenticator>, req: FastifyRequest): { err: unknown; headers: Record<string, string> } {
  const headers: Record<string, string> = {};
  const reply = { header: (name: string, value: string) => { headers[name] = value; return reply; } } as unknown as FastifyReply;
  let err: unknown;
  (auth.onRequest as (req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => void).call(undefined, req, reply, (e) => {
    err = e;
  });
  return { err, headers };
}

describe('presentedKey', () => {
  it.each([
    ['Bearer sk-1', 'sk-1'],
    ['bearer sk-1', 'sk-1'],
    ['BEARER sk-1', 'sk-1'],
    ['Bearer   sk-1  ', 'sk-1'],
    ['Bearer\tsk-1', 'sk-1'],
  ])('reads %j from Authorization as %j (the scheme is case-insensitive)', (header, key) => {
    expect(presentedKey({ authorization: header })).toBe(key);
  });

  it('reads api-key, trimmed, as Azure OpenAI clients send it', () => {
    expect(presentedKey({ 'api-key': '  sk-1 ' })).toBe('sk-1');
  });

  it('sees no key in an empty Bearer, another scheme or a blank api-key', () => {
    expect(presentedKey({ authorization: 'Bearer ' })).toBeUndefined();
    expect(presentedKey({ authorization: 'Basic dXNlcjpwYXNz' })).toBeUndefined();
    expect(presentedKey({ 'api-key': '   ' })).toBeUndefined();
    expect(presentedKey({})).toBeUndefined();
  });
});

describe('createAuthenticator', () => {
  const auth = createAuthenticator([tenant, devTenant]);

  it('resolves the tenant of a hashed key and of a dev plain key', () => {
    expect(auth.authenticate(request({ authorization: `bearer ${KEY}` }))).toBe(tenant);
    expect(auth.authenticate(request({ 'api-key': ' sk-plain-dev-key ' }))).toBe(devTenant);
  });

  it('refuses a missing key and a wrong key with 401s that never echo the key', () => {
    const refusal = (headers: Record<string, string>): SpillwayError => {
      try {
        auth.authenticate(request(headers));
      } catch (err) {
        return err as SpillwayError;
      }
      throw new Error('expected a refusal');
    };
    expect(refusal({})).toMatchObject({ statusCode: 401, code: 'missing_api_key' });
    const wrong = refusal({ authorization: 'Bearer sk-wrong-secret-value' });
    expect(wrong).toMatchObject({ statusCode: 401, code: 'invalid_api_key' });
    expect(wrong.message).not.toContain('sk-wrong-secret-value');
  });

  it('the hook stores the tenant on the request, and routes get that tenant', () => {
    const req = request({ authorization: `Bearer ${KEY}` });
    expect(runHook(auth, req).err).toBeUndefined();
    expect(req.tenant).toBe(tenant);
    // What the route gets is what the hook resolved, even if the headers changed since.
    (req.headers as Record<string, string>).authorization = 'Bearer something-else';
    expect(auth.authenticate(req)).toBe(tenant);
  });

  it('the hook refuses a request with a body and no key with connection: close, so its body is never drained', () => {
    const withBody = runHook(auth, request({ 'content-length': '5000000' }));
    expect(withBody.err).toMatchObject({ statusCode: 401 });
    expect(withBody.headers).toEqual({ connection: 'close' });
    const chunked = runHook(auth, request({ 'transfer-encoding': 'chunked', authorization: 'Bearer nope-nope-nope' }));
    expect(chunked.headers).toEqual({ connection: 'close' });
    // Nothing to drain: the connection may be reused.
    expect(runHook(auth, request({})).headers).toEqual({});
  });

  it('hashApiKey is the hex SHA-256 the config stores as sha256:<hex>', () => {
    expect(hashApiKey('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});
