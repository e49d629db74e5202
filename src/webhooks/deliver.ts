// One webhook delivery attempt over HTTP (undici): POST the signed event, read at most a small part of the answer,
// report status, latency and error. Never follows a redirect, never connects to an address the policy refuses.
import { Agent, request } from 'undici';
import { createSafeLookup, parseWebhookUrl, UnsafeWebhookUrl, type ResolveAll, type WebhookUrlPolicy } from './url-safety.ts';

export interface DeliveryOptions {
  policy: WebhookUrlPolicy;
  /** Time one attempt may take, connection to the end of the (capped) body read. */
  timeoutMs: number;
  /** Bytes of the receiver's answer kept; the rest is discarded. */
  maxResponseBytes: number;
  /** For tests: the DNS resolution used at connection time. */
  resolveAll?: ResolveAll;
}

export interface DeliveryResult {
  /** The receiver's HTTP status; null when no answer came (refused URL, network error, timeout). */
  statusCode: number | null;
  latencyMs: number;
  /** Why the attempt failed, for the delivery log (never a secret: the URL is not repeated). */
  error: string | null;
  /** The start of the receiver's answer, up to maxResponseBytes. */
  responseBody: string;
}

export interface DeliveryClient {
  deliver(url: string, payload: string, headers: Record<string, string>): Promise<DeliveryResult>;
  close(): Promise<void>;
}

export function createDeliveryClient(options: DeliveryOptions): DeliveryClient {
  const agent = new Agent({
    connect: { lookup: createSafeLookup(options.policy, options.resolveAll), timeout: options.timeoutMs },
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
    // One connection per receiver is plenty; a receiver that keeps it open gets it reused.
    connections: 8,
  });
  return {
    async deliver(url, payload, headers) {
      const started = performance.now();
      const elapsed = () => Math.round(performance.now() - started);
      try {
        // The URL is checked again here: the policy may have changed since submission, and an IP literal host never
        // reaches the lookup above.
        parseWebhookUrl(url, options.policy);
        const response = await request(url, {
          dispatcher: agent,
          method: 'POST',
          body: payload,
          headers: { 'content-type': 'application/json', 'user-agent': 'Spillway-Webhooks/1', ...headers },
          signal: AbortSignal.timeout(options.timeoutMs),
        });
        const responseBody = await readCapped(response.body, options.maxResponseBytes);
        const ok = response.statusCode >= 200 && response.statusCode < 300;
        return { statusCode: response.statusCode, latencyMs: elapsed(), error: ok ? null : `receiver answered ${response.statusCode}`, responseBody };
      } catch (err) {
        return { statusCode: null, latencyMs: elapsed(), error: describe(err), responseBody: '' };
      }
    },
    close: () => agent.close(),
  };
}

/** Reads up to `limit` bytes and drops the rest of the body (the connection is closed rather than drained). */
async function readCapped(body: AsyncIterable<Buffer> & { destroy(): unknown }, limit: number): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    if (size < limit) parts.push(chunk.subarray(0, limit - size));
    size += chunk.length;
    if (size >= limit) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(parts).toString('utf8');
}

function describe(err: unknown): string {
  if (err instanceof UnsafeWebhookUrl) return `refused: ${err.message}`;
  const cause = err instanceof Error && err.cause instanceof UnsafeWebhookUrl ? err.cause : undefined;
  if (cause !== undefined) return `refused: ${cause.message}`;
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return 'timed out';
  const code = err !== null && typeof err === 'object' && 'code' in err ? String((err as { code: unknown }).code) : undefined;
  return code !== undefined ? `network error (${code})` : err instanceof Error ? err.message.slice(0, 200) : 'network error';
}
