// Async-job and webhook configuration: tenants' webhook URL and signing secrets (from ${ENV} too, several at once),
// the delivery rules and their defaults; a wrong secret is refused at start, by path, without printing it.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadConfig, parseConfig } from '../../src/config/load.ts';
import { configProblems, minimalConfig } from '../support/config.ts';

const secret = () => `whsec_${randomBytes(24).toString('base64')}`;

describe('webhook configuration', () => {
  it('has safe defaults: https only, no allow-listed host, about a day of retries, async jobs in the batch class', () => {
    const parsed = parseConfig(minimalConfig());
    expect(parsed.webhooks).toMatchObject({ allowHttp: false, allowHosts: [], timeoutMs: 10_000, maxAttempts: 11, includeJob: true });
    expect(parsed.jobs).toMatchObject({ asyncPriority: 'batch', asyncMaxQueueWaitMs: 6 * 3_600_000, asyncRetentionSeconds: 172_800, asyncConcurrencyShare: 0.5 });
    expect(parsed.tenants[0]!.webhook).toBeUndefined();
  });

  it('accepts a tenant URL and secrets, newest first', () => {
    const [a, b] = [secret(), secret()];
    const parsed = parseConfig(minimalConfig({ webhook: { url: 'https://hooks.example.com/spillway', secrets: [a, b] } }));
    expect(parsed.tenants[0]!.webhook).toEqual({ url: 'https://hooks.example.com/spillway', secrets: [a, b] });
  });

  it('refuses a secret that is not whsec_ base64, naming the field and not the value', () => {
    const found = configProblems(minimalConfig({ webhook: { secrets: ['not-a-secret-value'] } }));
    expect(found.join('\n')).toContain('tenants[0].webhook.secrets[0]');
    expect(found.join('\n')).not.toContain('not-a-secret-value');
    expect(configProblems(minimalConfig({ webhook: { secrets: [] } })).join('\n')).toContain('tenants[0].webhook.secrets');
    expect(configProblems(minimalConfig({}, { webhooks: { allowHttps: true } })).join('\n')).toContain('webhooks');
  });

  it('reads secrets and allow-listed hosts from the environment, several in one variable', () => {
    const [a, b] = [secret(), secret()];
    const dir = mkdtempSync(join(tmpdir(), 'spillway-config-'));
    const file = join(dir, 'spillway.yaml');
    writeFileSync(
      file,
      stringify({ ...minimalConfig({ webhook: { secrets: '${WEBHOOK_SECRETS}' } }), webhooks: { allowHosts: '${WEBHOOK_HOSTS}', allowHttp: '${WEBHOOK_HTTP}' } }),
    );
    const { config: loaded } = loadConfig({ file, env: { WEBHOOK_SECRETS: `${a} ${b}`, WEBHOOK_HOSTS: 'hooks.internal, 10.0.0.7', WEBHOOK_HTTP: 'true' } });
    expect(loaded.tenants[0]!.webhook!.secrets).toEqual([a, b]);
    expect(loaded.webhooks.allowHosts).toEqual(['hooks.internal', '10.0.0.7']);
    expect(loaded.webhooks.allowHttp).toBe(true);
  });
});
