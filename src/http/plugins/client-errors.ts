// Fastify's `clientErrorHandler`: what Node's HTTP parser refuses before any route runs (bad framing, headers over
// the size limit, a request not received in time) answered in OpenAI's error shape, then the connection closed.
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { SpillwayError } from '../../errors.ts';
import { toOpenAIError } from '../../openai/errors.ts';

/** Node's codes for a request that cannot be parsed, mapped to the status and the OpenAI error a client SDK expects. */
export function clientErrorFor(code: string | undefined): SpillwayError {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return new SpillwayError('Request header fields too large.', { statusCode: 431, type: 'invalid_request_error', code: 'headers_too_large' });
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new SpillwayError('The request was not received in time.', { statusCode: 408, type: 'invalid_request_error', code: 'request_timeout' });
    default:
      return new SpillwayError('The request could not be parsed as HTTP/1.1.', { statusCode: 400, type: 'invalid_request_error', code: 'malformed_request' });
  }
}

export function clientErrorHandler(this: FastifyInstance, err: Error & { code?: string }, socket: Socket): void {
  // A reset connection is already gone: nothing to answer, nothing worth logging above trace.
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  this.log.debug({ code: err.code }, 'client error');
  // As Node itself does: answer only if no response of this connection has started, or the bytes would corrupt it.
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  if (socket.writable && inFlight?.headersSent !== true) {
    const { statusCode, body } = toOpenAIError(clientErrorFor(err.code));
    const json = JSON.stringify(body);
    socket.write(
      `HTTP/1.1 ${statusCode} ${STATUS_CODES[statusCode] ?? ''}\r\n` +
        `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(json)}\r\nConnection: close\r\n\r\n${json}`,
    );
  }
  // Closed once the answer is flushed (destroy() at once may discard it, and a reset makes clients lose it).
  socket.destroySoon();
}
