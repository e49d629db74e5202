// The Prometheus config compose mounts, checked by Prometheus's own promtool (Debian's `prometheus` package).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { ROOT } from './files.ts';

it('promtool accepts deploy/prometheus/prometheus.yml', () => {
  const result = spawnSync('promtool', ['check', 'config', join(ROOT, 'deploy/prometheus/prometheus.yml')], { encoding: 'utf8' });
  if (result.error !== undefined) throw new Error(`cannot run promtool (is Debian's prometheus installed?): ${result.error.message}`);
  expect(result.status, `${result.stdout}${result.stderr}`).toBe(0);
});
