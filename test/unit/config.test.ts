// The configuration loader: YAML file or built-in default, ${VAR} interpolation, env overrides, and errors that
// name every bad field by its path. Files live in a mkdtemp directory removed after the run; no real env is read.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseConfig } from '../../src/config/load.ts';
import { defaultDevConfig, DEV_API_KEY } from '../../src/config/default.ts';

const dir = mkdtempSync(join(tmpdir(), 'spillway-config-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
function writeYaml(text: string): string {
  const file = join(dir, `config-${++fileCount}.yaml`);
  writeFileSync(file, text);
  return file;
}

const HASHED_KEY = `sha256:${'a'.repeat(64)}`;

/** A valid file; tests append or replace sections. */
const VALID = `
providers:
  - id: openai
    type: openai
    baseUrl: https://api.example.com/v1
    apiKey: sk-file-key
models:
  - name: gpt-4o-mini
    route: [{ provider: openai, model: gpt-4o-mini }]
tenants:
  - id: acme
    keys: ["${HASHED_KEY}"]
`;

/** Runs `fn`, expecting a ConfigError, and returns it. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError, but the configuration was accepted');
}

describe('built-in default', () => {
  it('is a valid configuration serving the dev tenant with the documented key', () => {
    const config = parseConfig(defaultDevConfig());
    expect(config.tenants.map((t) => [t.id, t.dev, t.keys])).toEqual([['dev', true, [DEV_API_KEY]]]);
    expect(config.providers.every((p) => p.type === 'mock')).toBe(true);
  });

  it('is what loadConfig returns when no file is given, with defaults filled in and frozen', () => {
    const { config, source } = loadConfig({ env: {} });
    expect(source).toBe('built-in dev config');
    expect(config.server.port).toBe(8080);
    expect(config.redis.prefix).toBe('{spillway}');
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.models[0]?.route)).toBe(true);
  });

  it('reads the file named by SPILLWAY_CONFIG when no file is given', () => {
    const file = writeYaml(VALID);
    const { config, source } = loadConfig({ env: { SPILLWAY_CONFIG: file } });
    expect(source).toBe(file);
    expect(config.providers[0]?.id).toBe('openai');
  });
});

describe('a file with several mistakes', () => {
  const file = writeYaml(`
server:
  prot: 8080
worker:
  concurrency: many
providers:
  - id: openai
    type: openai
    baseUrl: https://api.example.com/v1
models:
  - name: gpt-4o-mini
    route: [{ provider: opnai, model: gpt-4o-mini }]
  - name: gpt-4o-mini
    route: [{ provider: openai, model: gpt-4o }]
tenants:
  - id: acme
    keys: ["sk-plain-text-key-1"]
  - id: beta
    keys: ["${HASHED_KEY}"]
    models: [gpt-5-turbo]
`);

  it('is refused with one problem per bad field, each naming the field path', () => {
    const err = configError(() => loadConfig({ file, env: {} }));
    const problems = err.problems;
    expect(problems).toContainEqual(expect.stringMatching(/^server: unknown field "prot"/));
    expect(problems).toContainEqual(expect.stringMatching(/^worker\.concurrency: /));
    expect(problems).toContainEqual(expect.stringMatching(/^models\[0\]\.route\[0\]\.provider: no provider with id "opnai"/));
    expect(problems).toContainEqual(expect.stringMatching(/^models\[1\]\.name: duplicate model name "gpt-4o-mini"/));
    expect(problems).toContainEqual(expect.stringMatching(/^tenants\[0\]\.keys\[0\]: .*dev: true/));
    expect(problems).toContainEqual(expect.stringMatching(/^tenants\[1\]\.models\[0\]: no model named "gpt-5-turbo"/));
  });

  it('without the structural mistakes, every cross-reference mistake is still reported', () => {
    const text = `
providers: [{ id: openai, type: openai, baseUrl: "https://api.example.com/v1" }]
models:
  - { name: gpt-4o-mini, route: [{ provider: opnai, model: gpt-4o-mini }] }
  - { name: gpt-4o-mini, route: [{ provider: openai, model: gpt-4o }] }
tenants:
  - { id: beta, keys: ["${HASHED_KEY}"], models: [gpt-5-turbo] }
`;
    const err = configError(() => loadConfig({ file: writeYaml(text), env: {} }));
    expect([...err.problems].sort()).toEqual([
      'models[0].route[0].provider: no provider with id "opnai"',
      'models[1].name: duplicate model name "gpt-4o-mini"',
      'tenants[0].models[0]: no model named "gpt-5-turbo"',
    ]);
  });

  it('names the file in the message and never echoes a plain key', () => {
    const err = configError(() => loadConfig({ file, env: {} }));
    expect(err.message).toContain(file);
    expect(err.message).not.toContain('sk-plain-text-key-1');
  });
});

describe('single mistakes', () => {
  it('a plain key is accepted when the tenant says dev: true', () => {
    const config = parseConfig({ ...defaultDevConfig(), tenants: [{ id: 'dev', dev: true, keys: ['sk-plain-dev-key'] }] });
    expect(config.tenants[0]?.keys).toEqual(['sk-plain-dev-key']);
  });

  it('an openai provider without baseUrl is refused at providers[i].baseUrl', () => {
    const err = configError(() => parseConfig({ ...defaultDevConfig(), providers: [{ id: 'mock', type: 'openai' }] }));
    expect(err.problems).toContainEqual(expect.stringMatching(/^providers\[0\]\.baseUrl: required for type "openai"/));
  });

  it('a missing required section is reported at its path', () => {
    const { tenants: _tenants, ...rest } = defaultDevConfig();
    const err = configError(() => parseConfig(rest));
    expect(err.problems).toContainEqual(expect.stringMatching(/^tenants: /));
  });

  it('a document that is not a mapping is reported at the root', () => {
    const err = configError(() => loadConfig({ file: writeYaml('- just\n- a list\n'), env: {} }));
    expect(err.problems).toContainEqual(expect.stringMatching(/^\(root\): /));
  });
});

describe('${VAR} interpolation', () => {
  it('replaces ${VAR} from the environment and uses the default of ${VAR:-default} when unset or empty', () => {
    const file = writeYaml(
      VALID.replace('apiKey: sk-file-key', 'apiKey: ${OPENAI_KEY}').replace('https://api.example.com/v1', '${BASE:-https://fallback.example.com}/v1'),
    );
    expect(loadConfig({ file, env: { OPENAI_KEY: 'sk-from-env' } }).config.providers[0]).toMatchObject({
      apiKey: 'sk-from-env',
      baseUrl: 'https://fallback.example.com/v1',
    });
    expect(loadConfig({ file, env: { OPENAI_KEY: 'sk-from-env', BASE: '' } }).config.providers[0]?.baseUrl).toBe('https://fallback.example.com/v1');
    expect(loadConfig({ file, env: { OPENAI_KEY: 'k-12345678', BASE: 'https://set.example.com' } }).config.providers[0]?.baseUrl).toBe(
      'https://set.example.com/v1',
    );
  });

  it('interpolates inside arrays and keeps the surrounding text', () => {
    const file = writeYaml(VALID.replace(`keys: ["${HASHED_KEY}"]`, 'keys: ["sha256:${KEY_HASH}"]'));
    const { config } = loadConfig({ file, env: { OPENAI_KEY: 'x', KEY_HASH: 'b'.repeat(64) } });
    expect(config.tenants[0]?.keys).toEqual([`sha256:${'b'.repeat(64)}`]);
  });

  it('a missing variable is reported with the path of the field that uses it, and no other value is echoed', () => {
    const file = writeYaml(
      VALID.replace('apiKey: sk-file-key', 'apiKey: ${MISSING_KEY}').replace('https://api.example.com/v1', 'https://${HOST_VAR}/v1'),
    );
    const err = configError(() => loadConfig({ file, env: { HOST_VAR: 'secret-host-value.example.com', OTHER: 'sk-other-secret' } }));
    expect(err.problems).toEqual(['providers[0].apiKey: environment variable MISSING_KEY is not set']);
    expect(err.message).not.toContain('secret-host-value');
    expect(err.message).not.toContain('sk-other-secret');
  });

  it('reads numbers and booleans from variables (a port from the environment), and still rejects non-numbers', () => {
    const file = writeYaml(`server:\n  port: \${LISTEN_PORT}\n  trustProxy: \${TRUST}\nworker:\n  concurrency: \${CONCURRENCY}\n${VALID}`);
    const { config } = loadConfig({ file, env: { LISTEN_PORT: '9099', TRUST: 'true', CONCURRENCY: '64' } });
    expect(config.server).toMatchObject({ port: 9099, trustProxy: true });
    expect(config.worker.concurrency).toBe(64);
    const err = configError(() => loadConfig({ file, env: { LISTEN_PORT: 'eighty', TRUST: 'true', CONCURRENCY: '64' } }));
    expect(err.problems).toEqual([expect.stringMatching(/^server\.port: /)]);
  });

  it('every missing variable is reported, not only the first', () => {
    const file = writeYaml(VALID.replace('apiKey: sk-file-key', 'apiKey: ${A_KEY}').replace('id: acme', 'id: ${TENANT_ID}'));
    const err = configError(() => loadConfig({ file, env: {} }));
    expect(err.problems).toEqual([
      'providers[0].apiKey: environment variable A_KEY is not set',
      'tenants[0].id: environment variable TENANT_ID is not set',
    ]);
  });
});

describe('environment overrides', () => {
  const file = writeYaml(`${VALID}server:\n  port: 9000\nredis:\n  url: redis://file-host:6379\n  prefix: "{mine}"\n`);

  it('REDIS_URL and PORT win over the file, other fields of those sections are kept', () => {
    const { config } = loadConfig({ file, env: { REDIS_URL: 'redis://env-host:6380', PORT: '7070' } });
    expect(config.redis).toMatchObject({ url: 'redis://env-host:6380', prefix: '{mine}' });
    expect(config.server.port).toBe(7070);
  });

  it('without them the file values stay', () => {
    const { config } = loadConfig({ file, env: {} });
    expect(config.redis.url).toBe('redis://file-host:6379');
    expect(config.server.port).toBe(9000);
  });

  it('apply to the built-in default too', () => {
    const { config } = loadConfig({ env: { REDIS_URL: 'redis://env-host:6381', PORT: '0' } });
    expect(config.redis.url).toBe('redis://env-host:6381');
    expect(config.server.port).toBe(0);
  });

  it('a PORT that is not a number is reported at server.port', () => {
    const err = configError(() => loadConfig({ file, env: { PORT: 'eighty' } }));
    expect(err.problems).toContainEqual(expect.stringMatching(/^server\.port: /));
  });

  it('a REDIS_URL that is not a redis URL is reported at redis.url', () => {
    const err = configError(() => loadConfig({ file, env: { REDIS_URL: 'http://nope' } }));
    expect(err.problems).toEqual(['redis.url: must be a redis:// or rediss:// URL']);
  });
});

describe('unreadable input', () => {
  it('a missing file is one clear problem naming the error code', () => {
    const missing = join(dir, 'does-not-exist.yaml');
    const err = configError(() => loadConfig({ file: missing, env: {} }));
    expect(err.problems).toEqual(['cannot read the file: ENOENT']);
    expect(err.message).toContain(missing);
  });

  it('a directory instead of a file is a clear problem', () => {
    const err = configError(() => loadConfig({ file: dir, env: {} }));
    expect(err.problems).toEqual(['cannot read the file: EISDIR']);
  });

  it('invalid YAML is one problem, on one line', () => {
    const err = configError(() => loadConfig({ file: writeYaml('providers: [\n  - id: x\n  bad: : :\n'), env: {} }));
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatch(/^not valid YAML: /);
    expect(err.problems[0]).not.toContain('\n');
  });
});
