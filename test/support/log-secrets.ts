// Secrets must never reach a log line: every secret a Spillway config holds (tenant and admin keys, raw and hashed,
// provider keys, webhook signing secrets), and a scan of process output for any of them. startCluster's close() runs
// the scan on every e2e file's processes; test/e2e/observability.test.ts runs it on purpose, after traffic.
import { TENANT_KEY } from './spillway-cluster.ts';

export interface Secret {
  /** Where the secret comes from, for the failure message (the secret itself is never printed). */
  label: string;
  value: string;
}

const list = (value: unknown): unknown[] => (Array.isArray(value) ? value : typeof value === 'string' ? value.split(/[\s,]+/).filter((v) => v !== '') : []);
const field = (value: unknown, key: string): unknown => (value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined);

/** A configured key as it could leak: a plain key as written, a `sha256:<hex>` entry as its hex too. */
function keyForms(label: string, key: unknown): Secret[] {
  if (typeof key !== 'string' || key.length < 8) return [];
  return key.startsWith('sha256:') ? [{ label, value: key.slice('sha256:'.length) }] : [{ label, value: key }];
}

/**
 * Every secret in a config (as written to the processes' config file), plus `extra` raw keys the test presents (the
 * keys behind the hashes). The default test tenant's raw key is always included.
 */
export function configuredSecrets(config: unknown, extra: readonly string[] = []): Secret[] {
  const secrets: Secret[] = [{ label: 'the test tenant key', value: TENANT_KEY }, ...extra.map((value, i) => ({ label: `extra secret #${i + 1}`, value }))];
  list(field(config, 'providers')).forEach((provider, i) => {
    const apiKey = field(provider, 'apiKey');
    if (typeof apiKey === 'string' && apiKey.length >= 8) secrets.push({ label: `providers[${i}].apiKey`, value: apiKey });
  });
  list(field(config, 'tenants')).forEach((tenant, i) => {
    list(field(tenant, 'keys')).forEach((key, j) => secrets.push(...keyForms(`tenants[${i}].keys[${j}]`, key)));
    list(field(field(tenant, 'webhook'), 'secrets')).forEach((secret, j) => {
      if (typeof secret !== 'string') return;
      // The signing key is the base64 after `whsec_`: either form in a log is a leak.
      secrets.push({ label: `tenants[${i}].webhook.secrets[${j}]`, value: secret }, { label: `tenants[${i}].webhook.secrets[${j}] (base64)`, value: secret.replace(/^whsec_/, '') });
    });
  });
  list(field(field(config, 'admin'), 'keys')).forEach((key, i) => secrets.push(...keyForms(`admin.keys[${i}]`, key)));
  return secrets;
}

/** Which secrets appear in which outputs: one line per leak, naming the process and the secret's origin, never the secret. */
export function findLeaks(outputs: ReadonlyArray<{ name: string; text: string }>, secrets: readonly Secret[]): string[] {
  const leaks: string[] = [];
  for (const { name, text } of outputs) {
    for (const { label, value } of secrets) if (text.includes(value)) leaks.push(`${name} printed ${label}`);
  }
  return leaks;
}
