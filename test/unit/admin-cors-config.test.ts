// The `admin` and `server.cors` sections of the config: off by default, admin keys hashed like tenant keys (plain only
// with dev), origins written as browsers send them, and both lists fillable from one environment variable.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseConfig } from '../../src/config/load.ts';

const HASHED = `sha256:${'b'.repeat(64)}`;
const BASE = {
  providers: [{ id: 'p', type: 'mock' }],
  models: [{ name: 'm', route: [{ provider: 'p', model: 'x' }] }],
  tenants: [{ id: 't', keys: [`sha256:${'a'.repeat(64)}`] }],
};

const dir = mkdtempSync(join(tmpdir(), 'spillway-admin-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function problems(raw: object): string[] {
  try {
    parseConfig({ ...BASE, ...raw });
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

describe('admin keys', () => {
  it('are none by default (nothing admin is mounted)', () => {
    expect(parseConfig(BASE).admin).toEqual({ keys: [], dev: false });
  });

  it('must be sha256 hashes, like tenant keys', () => {
    expect(parseConfig({ ...BASE, admin: { keys: [HASHED] } }).admin.keys).toEqual([HASHED]);
    expect(problems({ admin: { keys: ['sk-plain-admin-key'] } })).toEqual([expect.stringMatching(/^admin\.keys\[0\]: must be "sha256:/)]);
  });

  it('may be plain only with dev: true', () => {
    expect(parseConfig({ ...BASE, admin: { dev: true, keys: ['sk-plain-admin-key'] } }).admin.keys).toEqual(['sk-plain-admin-key']);
  });

  it('come from one environment variable as a list separated by spaces or commas, or as none when it is empty', () => {
    const file = join(dir, 'admin.yaml');
    writeFileSync(file, `${JSON.stringify(BASE)}`.replace(/}$/, ', "admin": { "keys": "${ADMIN_KEYS:-}" } }'));
    const other = `sha256:${'c'.repeat(64)}`;
    expect(loadConfig({ file, env: { ADMIN_KEYS: `${HASHED}, ${other}` } }).config.admin.keys).toEqual([HASHED, other]);
    expect(loadConfig({ file, env: {} }).config.admin.keys).toEqual([]);
  });
});

describe('server.cors.origins', () => {
  it('is empty by default: CORS off', () => {
    expect(parseConfig(BASE).server.cors).toEqual({ origins: [] });
  });

  it('accepts origins as browsers send them, from a list or one space-separated string', () => {
    const origins = ['https://app.example.com', 'http://localhost:5173', 'http://[::1]:3000'];
    expect(parseConfig({ ...BASE, server: { cors: { origins } } }).server.cors.origins).toEqual(origins);
    expect(parseConfig({ ...BASE, server: { cors: { origins: origins.join(' ') } } }).server.cors.origins).toEqual(origins);
  });

  it.each(['https://app.example.com/', 'https://app.example.com/path', 'https://App.Example.com', '*', 'app.example.com'])(
    'refuses %s, which no browser sends as an Origin (it would never match)',
    (origin) => {
      expect(problems({ server: { cors: { origins: [origin] } } })).toEqual([expect.stringMatching(/^server\.cors\.origins\[0\]: must be an origin/)]);
    },
  );
});
