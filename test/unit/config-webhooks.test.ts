// Async-job and webhook configuration: tenants' webhook URL and signing secrets (from ${ENV} too, several at once),
// the delivery rules and their defaults; a wrong secret is refused at start, by path, without printing it.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ConfigError, loadConfig, parseConfig } from '../../src/config/load.ts';
import type { ConfigInput } from '../../src/config/schema.ts';

const KEY = `sha256:${'b'.repeat(64)}`;
const secret = () => `whsec_${randomBytes(24).toString('base64')}`;

function config(tenant: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): ConfigInput {
  return {
    providers: [{ id: 'mock', type: 'mock' }],
    models: [{ name: 'gpt-4o-mini', route: [{ provider: 'mock', model: 'gpt-4o-mini' }] }],
    tenants: [{ id: 'acme', keys: [KEY], ...tenant }],
    ...extra,
  } as ConfigInput;
}

function problems(input: ConfigInput): readonly string[] {
  try {
    parseConfig(input);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('webhook configuration', () => {
  it('has safe defaults: https only, no allow-listed host, about a day of retries, async jobs in the batch class', () => {
    const parsed = parseConfig(config());
    expect(parsed.webhooks).toMatchObject({ allowHttp: false, allowHosts: [], timeoutMs: 10_000, maxAttempts: 11, includeJob: true });
    expect(parsed.jobs).toMatchObject({ asyncPriority: 'batch', asyncMaxQueueWaitMs: 6 * 3_600_000, asyncRetentionSeconds: 172_800, asyncConcurrencyShare: 0.5 });
    expect(parsed.tenants[0]!.webhook).toBeUndefined();
  });

  it('accepts a tenant URL and secrets, newest first', () => {
    const [a, b] = [secret(), secret()];
    const parsed = parseConfig(config({ webhook: { url: 'https://hooks.example.com/spillway', secrets: [a, b] } }));
    expect(parsed.tenants[0]!.webhook).toEqual({ url: 'https://hooks.example.com/spillway', secrets: [a, b] });
  });

  it('refuses a secret that is not whsec_ base64, naming the field and not the value', () => {
    const found = problems(config({ webhook: { secrets: ['not-a-secret-value'] } }));
    expect(found.join('\n')).toContain('tenants[0].webhook.secrets[0]');
    expect(found.join('\n')).not.toContain('not-a-secret-value');
    expect(problems(config({ webhook: { secrets: [] } })).join('\n')).toContain('tenants[0].webhook.secrets');
    expect(problems(config({}, { webhooks: { allowHttps: true } })).join('\n')).toContain('webhooks');
  });

  it('reads secrets and allow-listed hosts from the environment, several in one variable', () => {
    const [a, b] = [secret(), secret()];
    const dir = mkdtempSync(join(tmpdir(), 'spillway-config-'));
    const file = join(dir, 'spillway.yaml');
    writeFileSync(
      file,
      stringify({ ...config({ webhook: { secrets: '${WEBHOOK_SECRETS}' } }), webhooks: { allowHosts: '${WEBHOOK_HOSTS}', allowHttp: '${WEBHOOK_HTTP}' } }),
    );
    const { config: loaded } = loadConfig({ file, env: { WEBHOOK_SECRETS: `${a} ${b}`, WEBHOOK_HOSTS: 'hooks.internal, 10.0.0.7', WEBHOOK_HTTP: 'true' } });
    expect(loaded.tenants[0]!.webhook!.secrets).toEqual([a, b]);
    expect(loaded.webhooks.allowHosts).toEqual(['hooks.internal', '10.0.0.7']);
    expect(loaded.webhooks.allowHttp).toBe(true);
  });
});
