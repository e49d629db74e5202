// The Responses API as one more endpoint of a provider adapter: `native` forwards /responses and relays its events,
// `bridged` speaks the provider's chat completions (or Messages, through its own adapter) and translates both ways.
// Every other endpoint goes to the wrapped adapter untouched. No I/O of its own, no state beyond one call.
import type { ProviderAdapter, StreamEnd } from '../upstream/providers/adapter.ts';
import { clientFailure, protocolFailure } from '../upstream/providers/openai/errors.ts';
import { responsesContextOf } from './context.ts';
import { isRefusal, toChatRequest } from './request.ts';
import { responseFromChatCompletion } from './response.ts';
import { ResponsesStreamTranslator } from './stream.ts';
import { nativeRequestBody, readNativeStream } from './native.ts';

export type ResponsesMode = 'native' | 'bridged';

/** The default per provider type: OpenAI's own API (and the mock) serve /responses; Azure's needs a preview api-version, Anthropic has none. */
export function defaultResponsesMode(type: string): ResponsesMode {
  return type === 'openai' || type === 'mock' ? 'native' : 'bridged';
}

export function withResponses(inner: ProviderAdapter, mode: ResponsesMode): ProviderAdapter {
  return mode === 'native' ? nativeAdapter(inner) : bridgedAdapter(inner);
}

function nativeAdapter(inner: ProviderAdapter): ProviderAdapter {
  return {
    ...inner,
    buildRequest: (provider, endpoint, body, model, headers) =>
      inner.buildRequest(provider, endpoint, endpoint === 'responses' ? nativeRequestBody(body, responsesContextOf(body)) : body, model, headers),
    readStream: (stream, maxEventBytes, context, onData) =>
      responsesContextOf(context.body) === undefined ? inner.readStream(stream, maxEventBytes, context, onData) : readNativeStream(stream, maxEventBytes, onData),
  };
}

function bridgedAdapter(inner: ProviderAdapter): ProviderAdapter {
  return {
    ...inner,
    serves: (endpoint) => inner.serves(endpoint === 'responses' ? 'chat.completions' : endpoint),
    buildRequest(provider, endpoint, body, model, headers) {
      if (endpoint !== 'responses') return inner.buildRequest(provider, endpoint, body, model, headers);
      const chat = toChatRequest(body, responsesContextOf(body)?.previous?.items);
      if (isRefusal(chat)) return clientFailure(chat.message, chat.param, `responses bridge refused: ${chat.param}`);
      return inner.buildRequest(provider, 'chat.completions', chat, model, headers);
    },
    translateJson(text, endpoint, model, body) {
      if (endpoint !== 'responses') return inner.translateJson === undefined ? text : inner.translateJson(text, endpoint, model, body);
      const chatText = inner.translateJson === undefined ? text : inner.translateJson(text, 'chat.completions', model);
      if (typeof chatText !== 'string') return chatText;
      const context = body === undefined ? undefined : responsesContextOf(body);
      if (context === undefined || body === undefined) return protocolFailure(200, false, 'responses bridge: the job carried no responses context');
      let chat: unknown;
      try {
        chat = JSON.parse(chatText);
      } catch {
        return protocolFailure(200, true, 'responses bridge: the upstream answer is not JSON');
      }
      if (chat === null || typeof chat !== 'object') return protocolFailure(200, true, 'responses bridge: the upstream answer is not an object');
      return JSON.stringify(responseFromChatCompletion(chat as Record<string, unknown>, body, context.id, context.createdAt, Math.floor(Date.now() / 1000)));
    },
    async readStream(stream, maxEventBytes, context, onData): Promise<StreamEnd> {
      const responses = responsesContextOf(context.body);
      if (responses === undefined) return inner.readStream(stream, maxEventBytes, context, onData);
      // Built already once by buildRequest, which would have refused it: here it always translates.
      const chat = toChatRequest(context.body, responses.previous?.items);
      const translator = new ResponsesStreamTranslator({ body: context.body, id: responses.id, createdAt: responses.createdAt });
      const emit = (events: string[]) => {
        for (const event of events) onData(event);
      };
      let end: StreamEnd;
      try {
        end = await inner.readStream(stream, maxEventBytes, { body: isRefusal(chat) ? context.body : chat, model: context.model }, (data) => emit(translator.push(data)));
      } catch (err) {
        // A stream that broke after it started ends with response.failed; one cut by the client's leaving ends unheard.
        if (!isAbort(err)) emit(translator.fail('The upstream stream was interrupted.'));
        throw err;
      }
      if (end === 'done') {
        emit(translator.finish());
        return 'done';
      }
      emit(translator.fail(typeof end === 'string' ? 'The upstream stream ended early.' : 'The upstream reported an error during the stream.'));
      return end;
    },
  };
}

function isAbort(err: unknown): boolean {
  const e = err as { name?: unknown; code?: unknown } | null;
  return e !== null && typeof e === 'object' && (e.name === 'AbortError' || e.code === 'UND_ERR_ABORTED');
}
