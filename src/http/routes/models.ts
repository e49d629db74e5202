// GET /v1/models and /v1/models/:model: the public model names this tenant may call (never the upstream names), with
// the model's token prices when the config has them.
import type { FastifyInstance } from 'fastify';
import type { Config, ModelConfig, TenantConfig } from '../../config/schema.ts';
import type { Authenticate } from '../plugins/auth.ts';
import { modelNotFound } from '../../errors.ts';

export function registerModelRoutes(app: FastifyInstance, deps: { config: Config; authenticate: Authenticate; startedAt: number }): void {
  const created = Math.floor(deps.startedAt / 1000);
  const visible = (tenant: TenantConfig) => deps.config.models.filter((m) => tenant.models === undefined || tenant.models.includes(m.name));
  // `pricing` is Spillway's own field (OpenAI's model object has none; its SDKs keep unknown fields): US dollars per
  // million tokens, as `models[].price` states them.
  const toModel = (model: ModelConfig) => ({
    id: model.name,
    object: 'model' as const,
    created,
    owned_by: 'spillway',
    ...(model.price === undefined
      ? {}
      : { pricing: { currency: 'usd', unit: '1M tokens', input: model.price.input, output: model.price.output, cached_input: model.price.cachedInput ?? model.price.input } }),
  });

  app.get('/v1/models', async (request) => {
    const tenant = deps.authenticate(request);
    return { object: 'list', data: visible(tenant).map(toModel) };
  });

  app.get<{ Params: { model: string } }>('/v1/models/*', async (request) => {
    const tenant = deps.authenticate(request);
    // Model names may contain '/', so the name is the rest of the path. The router has already percent-decoded
    // it: decoding again would turn `%25` back into a lone '%' and throw.
    const name = (request.params as Record<string, string>)['*'] ?? '';
    const model = visible(tenant).find((m) => m.name === name);
    if (model === undefined) throw modelNotFound(name);
    return toModel(model);
  });
}
