// A real HTTP webhook receiver for tests: records every POST (headers, raw body), verifies each signature with the
// `standardwebhooks` library and with the official openai client's `webhooks.unwrap()`, answers what the test says.
// Can go down (connections refused) and come back on the same port.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import OpenAI from 'openai';
import { freePort } from './ports.ts';

export interface ReceivedWebhook {
  /** The `webhook-id` header. */
  id: string;
  headers: Record<string, string>;
  body: string;
  /** What the receiver answered. */
  status: number;
  /** Epoch ms when the request arrived. */
  receivedAt: number;
  /** Verified by `standardwebhooks` with the receiver's secret. */
  verifiedByStandardWebhooks: boolean;
  /** Verified and parsed by the openai client's `webhooks.unwrap()`; undefined when it threw. */
  unwrapped: { id: string; object: string; type: string; created_at: number; data: { id: string; status: string; metadata: unknown; job?: Record<string, unknown> } } | undefined;
  unwrapError?: string;
}

export interface WebhookReceiver {
  url: string;
  port: number;
  secret: string;
  received: ReceivedWebhook[];
  /** The status every POST gets from now on (default 200). */
  answer(status: number): void;
  /** Stops listening: deliveries get connection refused until up(). */
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

/** A Standard Webhooks secret: `whsec_` and the base64 of 24 random bytes. */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

export async function startWebhookReceiver(secret = newWebhookSecret()): Promise<WebhookReceiver> {
  const port = await freePort();
  const verifier = new Webhook(secret);
  const openai = new OpenAI({ apiKey: 'unused', webhookSecret: secret });
  const received: ReceivedWebhook[] = [];
  let status = 200;
  let server: Server | undefined;

  const handle = async (req: IncomingMessage): Promise<ReceivedWebhook> => {
    const receivedAt = Date.now();
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) if (typeof value === 'string') headers[name] = value;
    let verifiedByStandardWebhooks = false;
    try {
      verifier.verify(body, headers);
      verifiedByStandardWebhooks = true;
    } catch {
      // recorded as unverified
    }
    let unwrapped: ReceivedWebhook['unwrapped'];
    let unwrapError: string | undefined;
    try {
      unwrapped = (await openai.webhooks.unwrap(body, headers, secret)) as unknown as ReceivedWebhook['unwrapped'];
    } catch (err) {
      unwrapError = (err as Error).message;
    }
    return { id: headers['webhook-id'] ?? '', headers, body, status, receivedAt, verifiedByStandardWebhooks, unwrapped, ...(unwrapError === undefined ? {} : { unwrapError }) };
  };

  const up = async () => {
    const next = createServer((req, res) => {
      handle(req).then(
        (record) => {
          received.push(record);
          res.writeHead(record.status, { 'content-type': 'text/plain' }).end(record.status < 300 ? 'ok' : 'nope');
        },
        () => res.writeHead(500).end(),
      );
    });
    next.keepAliveTimeout = 100;
    await new Promise<void>((resolve) => next.listen(port, '127.0.0.1', resolve));
    server = next;
  };
  const down = async () => {
    const current = server;
    server = undefined;
    if (current === undefined) return;
    await new Promise<void>((resolve) => {
      current.close(() => resolve());
      current.closeAllConnections();
    });
  };
  await up();
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    port,
    secret,
    received,
    answer: (next) => {
      status = next;
    },
    down,
    up,
    close: down,
  };
}
