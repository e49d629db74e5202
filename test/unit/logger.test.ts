// The process logger's redaction: wherever a secret could sit in a logged object, the line shows `[redacted]`.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/logger.ts';

function capture(): { lines: () => string[]; stream: Writable } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  return { lines: () => chunks.join('').split('\n').filter((l) => l !== ''), stream };
}

describe('logger redaction', () => {
  it('hides tenant, admin and provider keys, webhook secrets and auth headers wherever they sit', () => {
    const { lines, stream } = capture();
    const log = createLogger('info', 'test', stream);
    log.info({ req: { headers: { authorization: 'Bearer sk-tenant-1', 'api-key': 'sk-tenant-2', 'x-api-key': 'sk-tenant-3', cookie: 'c=sk-cookie' } } }, 'a request');
    log.info({ upstream: { headers: { authorization: 'Bearer sk-provider-1' }, apiKey: 'sk-provider-2' } }, 'an upstream call');
    log.info({ headers: { 'webhook-signature': 'v1,sig-secret' }, secrets: ['whsec_secret-1'], webhook: { secrets: ['whsec_secret-2'] } }, 'a delivery');
    log.info({ config: { providers: [{ apiKey: 'sk-provider-3', headers: { 'x-org': 'org-secret' } }], tenants: [{ keys: ['sk-tenant-4'], webhook: { secrets: ['whsec_secret-3'] } }], admin: { keys: ['sk-admin-1'] } } }, 'a config');
    const text = lines().join('\n');
    for (const secret of ['sk-tenant-1', 'sk-tenant-2', 'sk-tenant-3', 'sk-cookie', 'sk-provider-1', 'sk-provider-2', 'sig-secret', 'whsec_secret-1', 'whsec_secret-2', 'sk-provider-3', 'org-secret', 'sk-tenant-4', 'whsec_secret-3', 'sk-admin-1']) {
      expect(text, secret).not.toContain(secret);
    }
    expect(lines()).toHaveLength(4);
    expect(text).toContain('[redacted]');
  });
});
