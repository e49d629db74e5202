// The only request-body parser: application/json with Fastify's own protections (prototype poisoning refused) plus
// a nesting limit checked before JSON.parse. Any other content type is a 415. Never hands a body it cannot re-serialise on.
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { jsonTooDeep } from '../../errors.ts';

export interface JsonBodyOptions {
  /** Deepest nesting of arrays and objects accepted (server.maxJsonDepth). */
  maxDepth: number;
}

export const jsonBodyPlugin = fp(
  async (app: FastifyInstance, options: JsonBodyOptions) => {
    // Fastify's default text/plain parser would hand a string to routes that need an object (400 instead of 415):
    // with JSON the only parser left, every other content type is refused with FST_ERR_CTP_INVALID_MEDIA_TYPE.
    app.removeAllContentTypeParsers();
    const parseJson = app.getDefaultJsonParser('error', 'error');
    app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
      const text = body as string;
      // A very deep body parses fine but overflows the stack of every JSON.stringify downstream (BullMQ's, at
      // ~4,400 levels): refuse it here, as the client's fault, before it costs anything.
      if (exceedsDepth(text, options.maxDepth)) {
        done(jsonTooDeep(options.maxDepth), undefined);
        return;
      }
      void parseJson(request, text, done);
    });
  },
  { name: 'spillway-json-body' },
);

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_ARRAY = 0x5d;
const CLOSE_OBJECT = 0x7d;

/**
 * Whether arrays and objects in `text` nest deeper than `maxDepth`, counting brackets outside strings. Linear and
 * allocation-free; strings (most of an LLM request) are skipped with indexOf. Malformed JSON is left to JSON.parse.
 */
export function exceedsDepth(text: string, maxDepth: number): boolean {
  // Nesting deeper than maxDepth needs more than maxDepth opening brackets.
  if (text.length <= maxDepth) return false;
  let depth = 0;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      i = endOfString(text, i);
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > maxDepth) return true;
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      depth--;
    }
  }
  return false;
}

/** Index of the quote closing the string opened at `start` (or the end of the text when it is unterminated). */
function endOfString(text: string, start: number): number {
  let quote = text.indexOf('"', start + 1);
  while (quote !== -1) {
    let backslashes = 0;
    while (text.charCodeAt(quote - 1 - backslashes) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return quote;
    quote = text.indexOf('"', quote + 1);
  }
  return text.length;
}
