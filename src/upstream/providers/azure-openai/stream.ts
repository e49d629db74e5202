// Reads an Azure OpenAI stream: OpenAI's chunks, plus Azure's own first chunk that carries only the prompt's
// content-filter verdicts (`prompt_filter_results`, no choices, an empty id and model): that one is dropped.
import type { Dispatcher } from 'undici';
import { readSseEvents, type SseOutcome } from '../openai/stream.ts';

export function readAzureStream(body: Dispatcher.ResponseData['body'], maxEventBytes: number, onData: (data: string) => void): Promise<SseOutcome> {
  return readSseEvents(body, maxEventBytes, (data) => {
    // Substring checks, no parse: a chunk with no choices is only ever the usage chunk (kept) or Azure's filter chunk.
    if (data.includes('"prompt_filter_results"') && data.includes('"choices":[]') && !data.includes('"usage":{')) return;
    onData(data);
  });
}
