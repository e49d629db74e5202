// The `spillway` command as a user runs it (node bin/spillway.js, the compiled CLI in dist/): check-config exit
// codes and messages, usage on a wrong command. Needs `npm run build` first (npm test runs it as pretest).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/spillway.js');
const dir = mkdtempSync(join(tmpdir(), 'spillway-cli-test-'));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with a clean environment (no SPILLWAY_CONFIG, REDIS_URL or PORT from the caller). */
function spillway(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((done) => {
    const child = execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: ROOT, env: { PATH: process.env.PATH ?? '', ...env }, timeout: 20_000 },
      (err, stdout, stderr) => done({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    );
    child.stdin?.end();
  });
}

function writeYaml(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

const VALID = `
providers:
  - { id: openai, type: openai, baseUrl: "https://api.example.com/v1", apiKey: "\${OPENAI_API_KEY}" }
models:
  - { name: gpt-4o-mini, route: [{ provider: openai, model: gpt-4o-mini }] }
tenants:
  - { id: acme, keys: ["sha256:${'c'.repeat(64)}"] }
`;

beforeAll(() => {
  if (!existsSync(join(ROOT, 'dist/src/cli.js'))) throw new Error('dist/ is missing: run `npm run build` before these tests');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('spillway check-config', () => {
  it('exits 0 for a valid file and says what it found', async () => {
    const file = writeYaml('valid.yaml', VALID);
    const run = await spillway(['check-config', '--config', file], { OPENAI_API_KEY: 'sk-real-looking-secret' });
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('configuration OK');
    expect(run.stdout).toContain('1 provider(s), 1 model(s), 1 tenant(s)');
    expect(run.stdout + run.stderr).not.toContain('sk-real-looking-secret');
  });

  it('exits 0 without a file, on the built-in dev config', async () => {
    const run = await spillway(['check-config']);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('built-in dev config');
  });

  it('exits 2 for a bad file, listing each bad field path on stderr without a stack trace', async () => {
    const file = writeYaml(
      'bad.yaml',
      `
server: { port: "eighty", bodyLimt: 10 }
providers:
  - { id: openai, type: openai }
models:
  - { name: gpt-4o-mini, route: [] }
tenants:
  - { id: acme, keys: ["sk-plain-key-123"] }
`,
    );
    const run = await spillway(['check-config', '--config', file]);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    for (const path of ['server.port', 'server: unknown field "bodyLimt"', 'models[0].route', 'tenants[0].keys[0]']) {
      expect(run.stderr).toContain(path);
    }
    expect(run.stderr).toContain(file);
    expect(run.stderr).not.toContain('    at ');
    expect(run.stderr).not.toContain('sk-plain-key-123');
  });

  it('exits 2 naming the field whose environment variable is missing', async () => {
    const file = writeYaml('needs-env.yaml', VALID);
    const run = await spillway(['check-config', '--config', file]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('providers[0].apiKey: environment variable OPENAI_API_KEY is not set');
    expect(run.stderr).not.toContain('    at ');
  });

  it('exits 2 for a file that does not exist or is not YAML, without a stack trace', async () => {
    const missing = await spillway(['check-config', '--config', join(dir, 'nope.yaml')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('cannot read the file: ENOENT');
    const broken = await spillway(['check-config', '--config', writeYaml('broken.yaml', 'a: [1, 2\nb: }')]);
    expect(broken.code).toBe(2);
    expect(broken.stderr).toContain('not valid YAML');
    for (const run of [missing, broken]) expect(run.stderr).not.toContain('    at ');
  });

  it('honours SPILLWAY_CONFIG and lets REDIS_URL override the file', async () => {
    const file = writeYaml('env.yaml', `${VALID}redis: { url: "redis://file-host:6379" }\n`);
    const good = await spillway(['check-config'], { SPILLWAY_CONFIG: file, OPENAI_API_KEY: 'x', REDIS_URL: 'redis://env:1' });
    expect(good.code).toBe(0);
    expect(good.stdout).toContain(file);
    const bad = await spillway(['check-config'], { SPILLWAY_CONFIG: file, OPENAI_API_KEY: 'x', REDIS_URL: 'not-a-url' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('redis.url');
  });
});

describe('usage', () => {
  it('an unknown command exits 2 with the usage on stderr', async () => {
    const run = await spillway(['frobnicate']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('unknown command "frobnicate"');
    expect(run.stderr).toContain('Usage: spillway <command>');
    expect(run.stderr).toContain('check-config');
  });

  it('an unknown option exits 2 with the usage', async () => {
    const run = await spillway(['check-config', '--no-such-option']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('Usage: spillway <command>');
  });

  it('no command at all exits 2 with the usage; --help exits 0', async () => {
    const none = await spillway([]);
    expect(none.code).toBe(2);
    expect(none.stdout).toContain('Usage: spillway <command>');
    const help = await spillway(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: spillway <command>');
  });
});
