// Request-body validation of the OpenAI endpoints: only the fields the broker relies on are checked, the client's
// object travels on untouched, and a bad body is a 400 naming the parameter the way OpenAI does.
import { describe, expect, it } from 'vitest';
import { parseRequestBody } from '../../src/openai/schemas.ts';
import { SpillwayError } from '../../src/errors.ts';
import type { Endpoint } from '../../src/config/schema.ts';

const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };

/** Runs the parser expecting a SpillwayError, and returns it. */
function rejection(endpoint: Endpoint, body: unknown): SpillwayError {
  try {
    parseRequestBody(endpoint, body);
  } catch (err) {
    expect(err).toBeInstanceOf(SpillwayError);
    return err as SpillwayError;
  }
  throw new Error('expected the body to be refused');
}

describe('accepted bodies', () => {
  it('returns the very object the client sent, with unknown fields and their order untouched', () => {
    const body = {
      temperature: 0.2,
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }], name: 'bob', x_vendor: { nested: [1, 2] } }],
      tools: [{ type: 'function', function: { name: 'f', parameters: {} } }],
      some_future_field: null,
    };
    const snapshot = structuredClone(body);
    const parsed = parseRequestBody('chat.completions', body);
    expect(parsed.body).toBe(body);
    expect(body).toEqual(snapshot);
    expect(Object.keys(parsed.body)).toEqual(['temperature', 'model', 'messages', 'tools', 'some_future_field']);
    expect(parsed.model).toBe('gpt-4o-mini');
  });

  it('stream is true only for stream: true', () => {
    expect(parseRequestBody('chat.completions', { ...CHAT, stream: true }).stream).toBe(true);
    expect(parseRequestBody('chat.completions', { ...CHAT, stream: false }).stream).toBe(false);
    expect(parseRequestBody('chat.completions', { ...CHAT, stream: null }).stream).toBe(false);
    expect(parseRequestBody('chat.completions', CHAT).stream).toBe(false);
    expect(parseRequestBody('completions', { model: 'm', prompt: 'p', stream: true }).stream).toBe(true);
  });

  it('nullable OpenAI fields accept null', () => {
    const parsed = parseRequestBody('chat.completions', { ...CHAT, max_tokens: null, n: null, stream_options: null });
    expect(parsed.model).toBe('gpt-4o-mini');
  });

  it('text completions accept every prompt form', () => {
    for (const prompt of ['once upon', ['a', 'b'], [1, 2, 3], [[1, 2], [3]]]) {
      expect(parseRequestBody('completions', { model: 'm', prompt }).model).toBe('m');
    }
  });

  it('embeddings accept a string, strings, token ids and arrays of token ids', () => {
    for (const input of ['text', ['a', 'b'], [1, 2, 3], [[1, 2], [3, 4]]]) {
      expect(parseRequestBody('embeddings', { model: 'e', input }).model).toBe('e');
    }
    expect(parseRequestBody('embeddings', { model: 'e', input: 'x', encoding_format: 'base64', dimensions: 32 }).stream).toBe(false);
  });
});

describe('refused bodies', () => {
  it.each([null, 'a string', 42, [CHAT], true])('a body that is not a JSON object (%j) is a 400', (body) => {
    const err = rejection('chat.completions', body);
    expect(err.statusCode).toBe(400);
    expect(err.type).toBe('invalid_request_error');
    expect(err.message).toMatch(/JSON object/);
  });

  it('a missing model is missing_required_parameter with param model', () => {
    const err = rejection('chat.completions', { messages: CHAT.messages });
    expect(err).toMatchObject({ statusCode: 400, type: 'invalid_request_error', param: 'model', code: 'missing_required_parameter' });
    expect(err.message).toContain("'model'");
  });

  it.each<[Endpoint, string]>([
    ['chat.completions', 'messages'],
    ['completions', 'prompt'],
    ['embeddings', 'input'],
  ])('a body for %s without %s is missing_required_parameter naming it', (endpoint, field) => {
    const err = rejection(endpoint, { model: 'm' });
    expect(err).toMatchObject({ statusCode: 400, param: field, code: 'missing_required_parameter' });
    expect(err.message).toBe(`Missing required parameter: '${field}'.`);
  });

  it('a message without a role names its path', () => {
    const err = rejection('chat.completions', { model: 'm', messages: [{ role: 'user', content: 'a' }, { content: 'b' }] });
    expect(err).toMatchObject({ statusCode: 400, param: 'messages[1].role', code: 'missing_required_parameter' });
  });

  it('a role of the wrong type is invalid_value at messages[0].role', () => {
    const err = rejection('chat.completions', { model: 'm', messages: [{ role: 7, content: 'a' }] });
    expect(err).toMatchObject({ statusCode: 400, type: 'invalid_request_error', param: 'messages[0].role', code: 'invalid_value' });
  });

  it('a max_tokens of the wrong type is invalid_value at max_tokens', () => {
    const err = rejection('chat.completions', { ...CHAT, max_tokens: 'ten' });
    expect(err).toMatchObject({ statusCode: 400, param: 'max_tokens', code: 'invalid_value' });
    expect(err.message).toMatch(/^Invalid value for 'max_tokens'/);
  });

  it('numbers out of range are refused at their parameter', () => {
    expect(rejection('chat.completions', { ...CHAT, max_tokens: 0 })).toMatchObject({ param: 'max_tokens' });
    expect(rejection('chat.completions', { ...CHAT, max_completion_tokens: 1.5 })).toMatchObject({ param: 'max_completion_tokens' });
    expect(rejection('chat.completions', { ...CHAT, n: 129 })).toMatchObject({ param: 'n' });
  });

  it('an empty model or empty messages is refused', () => {
    expect(rejection('chat.completions', { ...CHAT, model: '' })).toMatchObject({ param: 'model', code: 'invalid_value' });
    expect(rejection('chat.completions', { ...CHAT, messages: [] })).toMatchObject({ param: 'messages', code: 'invalid_value' });
  });

  it('stream and stream_options of the wrong type are refused at their path', () => {
    expect(rejection('chat.completions', { ...CHAT, stream: 'yes' })).toMatchObject({ param: 'stream', code: 'invalid_value' });
    expect(rejection('chat.completions', { ...CHAT, stream_options: { include_usage: 'yes' } })).toMatchObject({
      param: 'stream_options.include_usage',
    });
  });

  it('embeddings refuse empty arrays, mixed arrays and an unknown encoding_format', () => {
    expect(rejection('embeddings', { model: 'e', input: [] })).toMatchObject({ statusCode: 400, param: 'input' });
    expect(rejection('embeddings', { model: 'e', input: ['a', 1] })).toMatchObject({ statusCode: 400 });
    expect(rejection('embeddings', { model: 'e', input: 'x', encoding_format: 'int8' })).toMatchObject({ param: 'encoding_format' });
    expect(rejection('embeddings', { model: 'e', input: 'x', dimensions: -1 })).toMatchObject({ param: 'dimensions' });
  });

  it('a text completion prompt of the wrong type is refused at prompt', () => {
    expect(rejection('completions', { model: 'm', prompt: { text: 'x' } })).toMatchObject({ statusCode: 400, param: 'prompt' });
  });
});
