// One delivery attempt over real HTTP: the address a connection is about to use is checked then (DNS rebinding),
// redirects are not followed, the answer is read up to a cap, and a receiver that hangs times out.
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeliveryClient, type DeliveryClient } from '../../src/webhooks/deliver.ts';
import type { ResolveAll } from '../../src/webhooks/url-safety.ts';

let server: Server;
let port: number;
const hits: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    hits.push(req.url ?? '');
    req.resume();
    if (req.url === '/redirect') res.writeHead(302, { location: `http://127.0.0.1:${port}/target` }).end();
    else if (req.url === '/large') res.writeHead(200).end('x'.repeat(1024 * 1024));
    else if (req.url === '/hang') return; // never answers
    else res.writeHead(204).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as { port: number }).port;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

/** A resolver that answers loopback for every name, as a rebinding attacker's DNS would at delivery time. */
const rebound: ResolveAll = async () => [{ address: '127.0.0.1', family: 4 }];

function client(allowHosts: string[], timeoutMs = 2_000): DeliveryClient {
  return createDeliveryClient({ policy: { allowHttp: true, allowHosts }, timeoutMs, maxResponseBytes: 16, resolveAll: rebound });
}

describe('a delivery attempt', () => {
  it('refuses to connect when the host resolves to a non-public address at delivery time', async () => {
    const c = client([]);
    try {
      hits.length = 0;
      const result = await c.deliver(`http://hooks.example.test:${port}/ok`, '{}', {});
      expect(result).toMatchObject({ statusCode: null, error: expect.stringMatching(/^refused: .*non-public/) });
      expect(hits).toEqual([]);
    } finally {
      await c.close();
    }
  });

  it('delivers to an allow-listed host whatever it resolves to', async () => {
    const c = client(['hooks.example.test']);
    try {
      expect(await c.deliver(`http://hooks.example.test:${port}/ok`, '{}', { 'webhook-id': 'evt_1' })).toMatchObject({ statusCode: 204, error: null });
    } finally {
      await c.close();
    }
  });

  it('does not follow a redirect, and reads at most the configured bytes of an answer', async () => {
    const c = client(['127.0.0.1']);
    try {
      hits.length = 0;
      expect(await c.deliver(`http://127.0.0.1:${port}/redirect`, '{}', {})).toMatchObject({ statusCode: 302, error: 'receiver answered 302' });
      expect(hits).toEqual(['/redirect']);
      const large = await c.deliver(`http://127.0.0.1:${port}/large`, '{}', {});
      expect(large.statusCode).toBe(200);
      expect(large.responseBody).toBe('x'.repeat(16));
    } finally {
      await c.close();
    }
  });

  it('gives up on a receiver that does not answer within the timeout', async () => {
    const c = client(['127.0.0.1'], 300);
    try {
      expect(await c.deliver(`http://127.0.0.1:${port}/hang`, '{}', {})).toMatchObject({ statusCode: null, error: 'timed out' });
    } finally {
      await c.close();
    }
  });
});
