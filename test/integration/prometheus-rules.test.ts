// The alert rules, checked by Prometheus's own promtool (Debian's `prometheus` package): their syntax, and the unit
// tests in deploy/prometheus/tests (each alert fires on the series that should fire it, and only then). Without
// promtool these tests are skipped with a warning; .ci/run installs it and fails if they were skipped.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const RULES = join(ROOT, 'deploy/prometheus/rules');
const TESTS = join(ROOT, 'deploy/prometheus/tests');
const hasPromtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' }).error === undefined;
if (!hasPromtool) {
  console.warn('\n*** promtool not found: the Prometheus rule checks are SKIPPED (apt-get install prometheus). CI fails on this. ***\n');
}

function promtool(args: string[]): { status: number | null; output: string } {
  const result = spawnSync('promtool', args, { encoding: 'utf8', cwd: ROOT });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

const files = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.yml')).map((f) => join(dir, f));

describe.skipIf(!hasPromtool)('Prometheus rules (promtool)', () => {
  it('promtool check rules accepts every rules file', () => {
    const rules = files(RULES);
    expect(rules.length).toBeGreaterThan(0);
    const { status, output } = promtool(['check', 'rules', ...rules]);
    expect(status, output).toBe(0);
  });

  it("promtool test rules passes the rules' unit tests (every alert fires when it should and stays quiet otherwise)", () => {
    const tests = files(TESTS);
    expect(tests.length).toBeGreaterThan(0);
    const { status, output } = promtool(['test', 'rules', ...tests]);
    expect(status, output).toBe(0);
    expect(output).toContain('SUCCESS');
  });
});
