// The Docker build context against the Dockerfile: every COPY source taken from the context exists in the repository
// and passes .dockerignore (read with a Docker-compatible matcher), so `docker build` cannot fail on a missing file.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import dockerignoreModule from '@balena/dockerignore';
import { describe, expect, it } from 'vitest';

// The package is CommonJS (`module.exports = factory`) while its types declare an ES default export.
const ignore = dockerignoreModule as unknown as typeof dockerignoreModule.default;

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface CopyInstruction {
  line: string;
  sources: string[];
}

/** COPY/ADD instructions that read the build context (not `--from=<stage>`), continuation lines joined. */
function contextCopies(dockerfile: string): CopyInstruction[] {
  const instructions = dockerfile
    .replace(/\\\r?\n/g, ' ')
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  const copies: CopyInstruction[] = [];
  for (const line of instructions) {
    const match = /^(COPY|ADD)\s+(.*)$/i.exec(line);
    if (match === null) continue;
    let rest = match[2] ?? '';
    const flags: string[] = [];
    while (rest.startsWith('--')) {
      const [flag = '', ...others] = rest.split(/\s+/);
      flags.push(flag);
      rest = others.join(' ');
    }
    if (flags.some((f) => f.startsWith('--from='))) continue;
    const args = rest.startsWith('[') ? (JSON.parse(rest) as string[]) : rest.split(/\s+/);
    copies.push({ line, sources: args.slice(0, -1) });
  }
  return copies;
}

/** Every file under `dir` (relative to the repo root), dependencies and build output excluded. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules') out.push(...filesUnder(path));
    } else {
      out.push(path);
    }
  }
  return out;
}

const dockerignore = ignore().add(readFileSync(join(ROOT, '.dockerignore'), 'utf8').split(/\r?\n/));
const copies = contextCopies(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
const sources = copies.flatMap((c) => c.sources.map((s) => s.replace(/^\.\//, '').replace(/\/+$/, '')));

describe('Dockerfile and .dockerignore', () => {
  it('reads the COPY instructions of the Dockerfile', () => {
    expect(sources).toEqual(expect.arrayContaining(['package.json', 'tsconfig.build.json', 'src']));
  });

  it.each(sources)('COPY source %s exists in the repository', (source) => {
    expect(existsSync(join(ROOT, source))).toBe(true);
  });

  it.each(sources)('COPY source %s is in the build context (not excluded by .dockerignore)', (source) => {
    expect(dockerignore.ignores(source)).toBe(false);
  });

  it.each(sources.filter((s) => existsSync(join(ROOT, s)) && statSync(join(ROOT, s)).isDirectory()))(
    'every file of COPY directory %s reaches the context, tests excepted',
    (dir) => {
      const excluded = filesUnder(dir).filter((file) => dockerignore.ignores(file));
      expect(excluded.filter((file) => !file.endsWith('.test.ts') && !file.endsWith('.DS_Store'))).toEqual([]);
    },
  );

  it('keeps secrets, dependencies and VCS data out of the context', () => {
    for (const path of ['.git', '.env', 'node_modules', '.toolchain', 'dist']) expect(dockerignore.ignores(path), path).toBe(true);
  });

  it('the parser skips stage copies and joins continuation lines', () => {
    const parsed = contextCopies('FROM x AS b\nCOPY --from=b /app/dist/ dist/\nCOPY --chown=node a \\\n  b ./\nADD ["c d", "e/"]\n');
    expect(parsed.map((c) => c.sources)).toEqual([['a', 'b'], ['c d']]);
  });
});
