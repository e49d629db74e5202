// GET /v1/usage?from=&to=&group_by=tenant|model: requests, tokens and cost per UTC day from the daily counters, shaped
// like OpenAI's usage API (a page of daily buckets). An admin key sees every tenant, a tenant's key only its own.
// Never counts anything itself (the workers do) and never accepts a range it would have to read unboundedly.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Config, TenantConfig } from '../../config/schema.ts';
import { invalidRequest, missingApiKey } from '../../errors.ts';
import { createAdminKeyCheck, presentedKey, type Authenticate } from '../plugins/auth.ts';
import { addTotals, emptyTotals, utcDay, type UsageTotals } from '../../usage/usage-counters.ts';

export interface UsageReader {
  read(tenant: string, days: readonly string[]): Promise<Map<string, Map<string, UsageTotals>>>;
}

export interface UsageRouteDeps {
  config: Config;
  authenticate: Authenticate;
  usage: UsageReader;
}

/** Longest range one request may ask for (each day is one Redis read per tenant). */
export const MAX_USAGE_DAYS = 366;
const DAY_MS = 86_400_000;

const isoDay = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, 'must be a UTC date as YYYY-MM-DD')
  .refine((day) => !Number.isNaN(Date.parse(`${day}T00:00:00Z`)) && utcDay(Date.parse(`${day}T00:00:00Z`)) === day, 'is not a calendar date');

const QuerySchema = z.strictObject({
  from: isoDay,
  to: isoDay.optional(),
  group_by: z.enum(['tenant', 'model']).optional(),
});

type GroupBy = 'tenant' | 'model' | undefined;

export function registerUsageRoutes(app: FastifyInstance, deps: UsageRouteDeps): void {
  const isAdmin = createAdminKeyCheck(deps.config.admin.keys);
  app.get('/v1/usage', async (request) => {
    // An admin key is not a tenant key: it is recognised here, before the tenant lookup would refuse it.
    const key = presentedKey(request.headers);
    if (key === undefined) throw missingApiKey();
    const tenants: readonly TenantConfig[] = isAdmin(key) ? deps.config.tenants : [deps.authenticate(request)];
    const { from, to, groupBy } = parseQuery(request);
    const days = daysBetween(from, to);
    const perTenant = await Promise.all(tenants.map(async (tenant) => ({ tenant: tenant.id, days: await deps.usage.read(tenant.id, days) })));
    const totals = emptyTotals();
    const data = days.map((day) => {
      const groups = new Map<string, UsageTotals>();
      for (const { tenant, days: byDay } of perTenant) {
        for (const [model, counted] of byDay.get(day) ?? []) {
          const group = groupBy === 'tenant' ? tenant : groupBy === 'model' ? model : '';
          addTotals(groups.get(group) ?? groups.set(group, emptyTotals()).get(group)!, counted);
          addTotals(totals, counted);
        }
      }
      const start = Date.parse(`${day}T00:00:00Z`) / 1000;
      return {
        object: 'bucket',
        date: day,
        start_time: start,
        end_time: start + DAY_MS / 1000,
        results: [...groups].sort(([a], [b]) => a.localeCompare(b)).map(([group, counted]) => toResult(counted, groupBy, group)),
      };
    });
    return { object: 'page', from, to, group_by: groupBy ?? null, data, totals: toResult(totals, undefined, ''), has_more: false, next_page: null };
  });
}

function parseQuery(request: FastifyRequest): { from: string; to: string; groupBy: GroupBy } {
  const parsed = QuerySchema.safeParse(request.query ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    if (issue.code === 'unrecognized_keys') throw invalidRequest(`Unknown query parameter '${issue.keys[0]}'.`, issue.keys[0] ?? null);
    const param = String(issue.path[0] ?? 'from');
    if (issue.code === 'invalid_type' && param === 'from') throw invalidRequest("Missing required parameter 'from' (a UTC date, YYYY-MM-DD).", 'from');
    throw invalidRequest(`Invalid '${param}': ${param === 'group_by' ? "must be 'tenant' or 'model'" : issue.message}.`, param);
  }
  const { from, group_by: groupBy } = parsed.data;
  const to = parsed.data.to ?? utcDay(Date.now());
  if (to < from) throw invalidRequest("'to' is before 'from'.", 'to');
  const span = (Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / DAY_MS + 1;
  if (span > MAX_USAGE_DAYS) throw invalidRequest(`The range covers ${span} days; at most ${MAX_USAGE_DAYS} may be asked for at once.`, 'from');
  return { from, to, groupBy };
}

/** Every UTC day from `from` to `to`, both included. */
function daysBetween(from: string, to: string): string[] {
  const days: string[] = [];
  for (let t = Date.parse(`${from}T00:00:00Z`), end = Date.parse(`${to}T00:00:00Z`); t <= end; t += DAY_MS) days.push(utcDay(t));
  return days;
}

function toResult(counted: UsageTotals, groupBy: GroupBy, group: string): Record<string, unknown> {
  return {
    object: 'usage.result',
    ...(groupBy === undefined ? {} : { [groupBy]: group }),
    num_model_requests: counted.requests,
    input_tokens: counted.promptTokens,
    output_tokens: counted.completionTokens,
    input_cached_tokens: counted.cachedTokens,
    total_tokens: counted.promptTokens + counted.completionTokens,
    // Counted in nano-dollars (exact sums); shown in dollars.
    cost: { value: Math.round(counted.costNanoUsd) / 1e9, currency: 'usd' },
  };
}
