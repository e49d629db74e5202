// Which provider format a mock request speaks, told by its path: OpenAI (/v1/...), Azure OpenAI
// (/openai/deployments/{deployment}/...?api-version=…) or Anthropic (/v1/messages); each format's credential header
// and error body. Pure lookups: the server decides what to do with them.
import type { IncomingHttpHeaders } from 'node:http';
import type { GenerationKind } from './bodies.ts';
import { errorBody, errorKindFor } from './bodies.ts';
import { anthropicErrorBody } from './anthropic.ts';

export type Format = 'openai' | 'azure' | 'anthropic';
export type LlmEndpoint = GenerationKind | 'embeddings' | 'responses';

export interface LlmRoute {
  readonly endpoint: LlmEndpoint;
  readonly format: Format;
  /** Azure: the deployment named in the path (the model a request without `model` gets). */
  readonly deployment: string | undefined;
}

const OPENAI = new Map<string, LlmEndpoint>([
  ['/v1/chat/completions', 'chat'],
  ['/v1/completions', 'completions'],
  ['/v1/embeddings', 'embeddings'],
  ['/v1/responses', 'responses'],
]);
const AZURE = /^\/openai\/deployments\/([^/]+)\/(chat\/completions|completions|embeddings)$/;
const AZURE_ENDPOINTS: Record<string, LlmEndpoint> = { 'chat/completions': 'chat', completions: 'completions', embeddings: 'embeddings' };

/** The LLM endpoint of a POST path, or undefined; `'no-api-version'` for an Azure path without its api-version. */
export function llmRoute(path: string, query: URLSearchParams): LlmRoute | 'no-api-version' | undefined {
  const openai = OPENAI.get(path);
  if (openai !== undefined) return { endpoint: openai, format: 'openai', deployment: undefined };
  if (path === '/v1/messages') return { endpoint: 'chat', format: 'anthropic', deployment: undefined };
  const azure = AZURE.exec(path);
  if (azure === null) return undefined;
  if (!query.has('api-version')) return 'no-api-version';
  return { endpoint: AZURE_ENDPOINTS[azure[2]!]!, format: 'azure', deployment: decodeURIComponent(azure[1]!) };
}

/** Model listings, the paths health checks probe: OpenAI's and Anthropic's /v1/models, Azure's /openai/models. */
export function isModelsPath(path: string): boolean {
  return path === '/v1/models' || path.startsWith('/v1/models/') || path === '/openai/models';
}

/**
 * OpenAI: `Authorization: Bearer <key>`; Azure: `api-key: <key>`; Anthropic: `x-api-key: <key>`. A model listing
 * accepts any of the three (each provider's health probe lists models with its own header).
 */
export function credentialOf(format: Format | 'any', h: IncomingHttpHeaders): string | undefined {
  const bearer = typeof h.authorization === 'string' && h.authorization.startsWith('Bearer ') ? h.authorization.slice(7) : undefined;
  const apiKey = typeof h['api-key'] === 'string' ? h['api-key'] : undefined;
  const xApiKey = typeof h['x-api-key'] === 'string' ? h['x-api-key'] : undefined;
  if (format === 'openai') return bearer;
  if (format === 'azure') return apiKey;
  if (format === 'anthropic') return xApiKey;
  return bearer ?? apiKey ?? xApiKey;
}

/** The error body each format answers with. */
export function errorBodyFor(format: Format, status: number, message: string, param: string | null, code?: string | null): string {
  if (format === 'anthropic') return anthropicErrorBody(status, message);
  const kind = errorKindFor(status);
  return errorBody(message, kind.type, code === undefined ? kind.code : code, param);
}
