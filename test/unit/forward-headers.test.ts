// Which client headers reach the upstream: what server.forwardHeaders allows, never credentials, hop-by-hop, proxy
// or encoding headers, and never a header the client's own Connection header declares hop-by-hop.
import { describe, expect, it } from 'vitest';
import { compileHeaderFilter, pickHeaders } from '../../src/http/forward-headers.ts';

describe('compileHeaderFilter', () => {
  it('allows exact names and prefixes ending in *', () => {
    const forward = compileHeaderFilter(['openai-organization', 'x-mock-*']);
    expect(forward('openai-organization')).toBe(true);
    expect(forward('x-mock-chunks')).toBe(true);
    expect(forward('x-other')).toBe(false);
  });

  it.each([
    'authorization',
    'api-key',
    'x-api-key',
    'cookie',
    'accept-encoding',
    'content-encoding',
    'forwarded',
    'via',
    'x-forwarded-for',
    'x-forwarded-proto',
    'x-forwarded-host',
    'proxy-authorization',
    'proxy-connection',
    'connection',
    'keep-alive',
    'transfer-encoding',
    'te',
    'trailer',
    'upgrade',
    'expect',
  ])('never forwards %s, even when a pattern names it', (name) => {
    expect(compileHeaderFilter([name])(name)).toBe(false);
    expect(compileHeaderFilter([`${name.slice(0, 2)}*`])(name)).toBe(false);
  });
});

describe('pickHeaders', () => {
  const forward = compileHeaderFilter(['x-*', 'accept-*', 'openai-*']);

  it('keeps the allowed headers and drops the rest', () => {
    const headers = {
      'x-mock-chunks': '3',
      'openai-beta': 'assistants=v2',
      'accept-encoding': 'gzip, br',
      'x-forwarded-for': '10.0.0.1',
      authorization: 'Bearer sk-secret',
      host: 'spillway',
    };
    expect(pickHeaders(headers, forward)).toEqual({ 'x-mock-chunks': '3', 'openai-beta': 'assistants=v2' });
  });

  it('drops every header the client names in Connection, whatever its case and spacing', () => {
    const headers = { connection: 'keep-alive, X-Trace-Hop ,x-debug', 'x-trace-hop': '1', 'x-debug': 'on', 'x-kept': 'yes' };
    expect(pickHeaders(headers, forward)).toEqual({ 'x-kept': 'yes' });
  });

  it('keeps everything allowed when Connection names no header', () => {
    expect(pickHeaders({ connection: 'keep-alive', 'x-kept': 'yes' }, forward)).toEqual({ 'x-kept': 'yes' });
    expect(pickHeaders({ connection: 'close', 'x-kept': 'yes' }, forward)).toEqual({ 'x-kept': 'yes' });
  });

  it('leaves out a header whose value is a list (Node gives only set-cookie so)', () => {
    expect(pickHeaders({ 'x-multi': ['a', 'b'] }, forward)).toEqual({});
  });
});
