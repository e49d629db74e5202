// Configurations for the config-validation tests: a minimal valid one to vary, and the problems parseConfig reports.
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import type { ConfigInput } from '../../src/config/schema.ts';

export const TENANT_KEY_HASH = `sha256:${'b'.repeat(64)}`;

/** One mock provider, one model, tenant `acme` with `tenant`'s fields, and `extra` top-level sections. */
export function minimalConfig(tenant: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): ConfigInput {
  return {
    providers: [{ id: 'mock', type: 'mock' }],
    models: [{ name: 'gpt-4o-mini', route: [{ provider: 'mock', model: 'gpt-4o-mini' }] }],
    tenants: [{ id: 'acme', keys: [TENANT_KEY_HASH], ...tenant }],
    ...extra,
  } as ConfigInput;
}

/** The problems parseConfig reports for `input`, each prefixed by its path; [] when the configuration is valid. */
export function configProblems(input: unknown): readonly string[] {
  try {
    parseConfig(input);
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.problems;
  }
}
