// Reads upstream response bodies under a size cap: JSON answers up to the provider's maxResponseBytes, error and
// unexpected bodies up to a small fixed cap. Never buffers past a cap: the body is destroyed (and its connection with it).
import type { Dispatcher } from 'undici';

type Body = Dispatcher.ResponseData['body'];

/** Error bodies and bodies of an unexpected content type: enough for any provider's error object, nothing more. */
export const SMALL_BODY_LIMIT = 64 * 1024;

/**
 * The body as UTF-8 text, or undefined when it is longer than `limit` bytes (announced by content-length, or
 * found while reading): the rest is never read.
 */
export async function readBodyCapped(body: Body, headers: Dispatcher.ResponseData['headers'], limit: number): Promise<string | undefined> {
  const declared = Number(headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    dropBody(body);
    return undefined;
  }
  const parts: Buffer[] = [];
  let size = 0;
  for await (const part of body as AsyncIterable<Buffer>) {
    size += part.length;
    if (size > limit) {
      dropBody(body);
      return undefined;
    }
    parts.push(part);
  }
  return parts.length === 1 ? parts[0]!.toString('utf8') : Buffer.concat(parts, size).toString('utf8');
}

/** Stops reading a body half-way: its connection is closed (undici cannot reuse it with unread bytes in it). */
export function dropBody(body: Body): void {
  // Destroying an unfinished body emits an abort error: expected here, so it must not go unhandled.
  body.on('error', () => undefined);
  body.destroy();
}

/** Discards a body nobody will read, reading at most SMALL_BODY_LIMIT bytes (past that the connection is dropped). */
export async function discardBody(body: Body): Promise<void> {
  await body.dump({ limit: SMALL_BODY_LIMIT }).catch(() => undefined);
}
