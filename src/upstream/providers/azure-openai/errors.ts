// Normalises Azure OpenAI error answers. Azure's error body is OpenAI's shape with Azure codes (`content_filter`,
// `DeploymentNotFound`, "429"); its Retry-After and retry-after-ms headers are OpenAI's. Never echoes a key.
import type { Dispatcher } from 'undici';
import { failureFromResponse, type UpstreamFailure } from '../openai/errors.ts';

/**
 * A prompt refused by Azure's content filter is a 400 with code `content_filter` (and an `innererror` with the
 * verdict per category): the client's request, relayed as the 400 it is, never retried and never a breaker failure.
 * A missing deployment (404 DeploymentNotFound) is the operator's configuration: 502, like any upstream 404.
 */
export function failureFromAzureResponse(status: number, headers: Dispatcher.ResponseData['headers'], bodyText: string | undefined): UpstreamFailure {
  const failure = failureFromResponse(status, headers, bodyText);
  if (failure.clientError?.code === 'content_filter') {
    return { ...failure, detail: `azure content filter refused the prompt: ${failure.clientError.message.slice(0, 200)}` };
  }
  return failure;
}
