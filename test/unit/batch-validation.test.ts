// One input line checked as POST /v1/batches' validation does: the first problem found, with its code, its param and
// the line number in its message; a good line gives the request as it will run.
import { describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/schema.ts';
import { createRouter } from '../../src/catalogue/catalogue.ts';
import { checkLine, type LineContext } from '../../src/batches/validation.ts';

const config = ConfigSchema.parse({
  providers: [{ id: 'p', type: 'openai', baseUrl: 'http://127.0.0.1:9/v1' }],
  models: [
    { name: 'chat', route: [{ provider: 'p', model: 'c' }] },
    { name: 'embed', route: [{ provider: 'p', model: 'e' }], endpoints: ['embeddings'] },
    { name: 'private', route: [{ provider: 'p', model: 'x' }] },
  ],
  tenants: [{ id: 't', keys: ['sk-test-0123456789'], dev: true, models: ['chat', 'embed'] }],
});
const ctx: LineContext = { endpoint: 'chat.completions', tenant: config.tenants[0]!, router: createRouter(config) };
const line = (fields: Record<string, unknown>) => JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/chat/completions', body: { model: 'chat', messages: [{ role: 'user', content: 'hi' }] }, ...fields });

describe('checkLine', () => {
  it('gives the request of a good line', () => {
    expect(checkLine(line({}), 1, ctx)).toEqual({ customId: 'a', model: 'chat', body: { model: 'chat', messages: [{ role: 'user', content: 'hi' }] } });
  });

  it.each([
    ['not JSON', '{"custom_id": ', 'invalid_json_line', null],
    ['not an object', '[1, 2]', 'invalid_json_line', null],
    ['no custom_id', line({ custom_id: undefined }), 'missing_required_parameter', 'custom_id'],
    ['an empty custom_id', line({ custom_id: '' }), 'missing_required_parameter', 'custom_id'],
    ['another method', line({ method: 'GET' }), 'invalid_value', 'method'],
    ['another endpoint', line({ url: '/v1/embeddings' }), 'invalid_url', 'url'],
    ['no body', line({ body: undefined }), 'invalid_request', 'body'],
    ['no messages', line({ body: { model: 'chat' } }), 'missing_required_parameter', 'body.messages'],
    ['stream: true', line({ body: { model: 'chat', stream: true, messages: [{ role: 'user', content: 'x' }] } }), 'invalid_value', 'body.stream'],
    ['an unknown model', line({ body: { model: 'nope', messages: [{ role: 'user', content: 'x' }] } }), 'model_not_found', 'body.model'],
    ['a model the tenant may not use', line({ body: { model: 'private', messages: [{ role: 'user', content: 'x' }] } }), 'model_not_allowed', 'body.model'],
    ['a model not serving the endpoint', line({ body: { model: 'embed', messages: [{ role: 'user', content: 'x' }] } }), 'model_not_supported', 'body.model'],
  ])('refuses %s, naming the line', (_what, text, code, param) => {
    const problem = checkLine(text, 42, ctx);
    expect(problem).toMatchObject({ code, param, line: 42 });
    expect((problem as { message: string }).message).toContain('Line 42');
  });
});
