// The one error handler: every error (ours, Fastify's body parser and router, not-found) leaves as OpenAI's error
// shape with the status an SDK expects. Unknown errors are logged once with context and answered with a generic 500.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { bodyTooLarge, invalidJson, invalidRequest, routeNotFound, SpillwayError, unsupportedMediaType } from '../../errors.ts';
import { toOpenAIError } from '../../openai/errors.ts';

export const errorHandlerPlugin = fp(
  async (app: FastifyInstance, options: { bodyLimitBytes: number }) => {
    app.setNotFoundHandler((request) => {
      throw routeNotFound(request.method, request.url.split('?')[0] ?? request.url);
    });
    app.setErrorHandler((err: FastifyError, request, reply) => {
      const mapped = mapError(err, request.headers['content-type'], options.bodyLimitBytes);
      if (mapped.statusCode >= 500 && !(err instanceof SpillwayError)) {
        request.log.error({ err }, 'unhandled error');
      }
      const { statusCode, headers, body } = toOpenAIError(mapped);
      return reply.code(statusCode).headers(headers).send(body);
    });
  },
  { name: 'spillway-error-handler' },
);

/**
 * Fastify's `frameworkErrors` option: errors raised while routing, before any hook or handler (a malformed
 * percent-encoding in the URL), answered like every other error rather than in Fastify's own shape.
 */
export function frameworkErrors(err: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const { statusCode, headers, body } = toOpenAIError(mapError(err, undefined, 0));
  void reply.code(statusCode).headers(headers).send(body);
}

function mapError(err: FastifyError, contentType: string | undefined, bodyLimitBytes: number): SpillwayError {
  if (err instanceof SpillwayError) return err;
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return bodyTooLarge(bodyLimitBytes);
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return invalidJson('malformed JSON');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return invalidJson('the body is empty');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return unsupportedMediaType(contentType);
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return invalidRequest('Content-Length does not match the body.');
    case 'FST_ERR_BAD_URL':
      return invalidRequest('Invalid URL: malformed percent-encoding.', null, 'invalid_url');
    default:
  }
  if (err instanceof SyntaxError || (err.statusCode === 400 && /JSON|prototype|constructor/i.test(err.message))) {
    return invalidJson(err.message.slice(0, 120));
  }
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
    return new SpillwayError(err.message, { statusCode: err.statusCode, type: 'invalid_request_error', code: err.code ?? null });
  }
  return toInternal();
}

function toInternal(): SpillwayError {
  return new SpillwayError('The server had an error while processing your request.', { statusCode: 500, type: 'server_error' });
}
