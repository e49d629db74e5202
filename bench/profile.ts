// Summarises V8 .cpuprofile files (node --cpu-prof): top functions by self time, and self time by package or module.
// Usage: node bench/profile.ts FILE_OR_DIR... [--top N]. Reads profiles only; never runs anything.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
}

const IDLE = new Set(['(idle)']);

/** Where a frame's code lives: an npm package, a Spillway folder, Node's internals, or a V8 pseudo-frame. */
function moduleOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return url.split('/')[0]!;
  const local = /\/(dist\/)?(src|workers|bin)\/(.*)$/.exec(url);
  return local ? `${local[2]}/${local[3]!.replace(/\.js$/, '.ts')}` : url;
}

function shortUrl(url: string): string {
  const pkg = /node_modules\/(.*)$/.exec(url);
  if (pkg) return pkg[1]!;
  const local = /\/(dist\/)?((src|workers|bin)\/.*)$/.exec(url);
  return local ? local[2]!.replace(/\.js$/, '.ts') + (local[1] ? ' (dist)' : '') : url.replace(/^file:\/\//, '');
}

export function summariseProfile(file: string, top = 25): string {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const durationMs = (profile.endTime - profile.startTime) / 1000;
  const msPerSample = profile.samples.length > 0 ? durationMs / profile.samples.length : 0;
  const byFunction = new Map<string, number>();
  const byModule = new Map<string, number>();
  let busy = 0;
  let idle = 0;
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    if (hits === 0) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    if (IDLE.has(functionName)) {
      idle += hits;
      continue;
    }
    busy += hits;
    const key = `${functionName || '(anonymous)'}  ${url ? `${shortUrl(url)}:${lineNumber + 1}` : ''}`.trim();
    byFunction.set(key, (byFunction.get(key) ?? 0) + hits);
    const mod = moduleOf(url, functionName);
    byModule.set(mod, (byModule.get(mod) ?? 0) + hits);
  }
  const total = busy + idle;
  const inclusive = inclusiveBySpillwayFunction(profile);
  const pct = (hits: number) => `${((100 * hits) / Math.max(1, busy)).toFixed(1).padStart(5)} %`;
  const ms = (hits: number) => `${(hits * msPerSample).toFixed(0).padStart(7)} ms`;
  const table = (map: Map<string, number>, n: number) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, hits]) => `  ${ms(hits)} ${pct(hits)}  ${k}`)
      .join('\n');
  return [
    `${file}`,
    `  ${(durationMs / 1000).toFixed(1)} s profiled, busy ${((100 * busy) / Math.max(1, total)).toFixed(1)} % (${(busy * msPerSample / 1000).toFixed(1)} s CPU on the main thread)`,
    `  top ${top} functions by self time (% of busy time):`,
    table(byFunction, top),
    `  self time by package / module:`,
    table(byModule, 15),
    `  Spillway's own functions by total time (self + callees):`,
    table(inclusive, 15),
  ].join('\n');
}

/** Hits under each of Spillway's own functions (src/, workers/), callees included; recursion counted once. */
function inclusiveBySpillwayFunction(profile: CpuProfile): Map<string, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const totals = new Map<string, number>();
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    if (hits === 0 || node.callFrame.functionName === '(idle)') continue;
    const seen = new Set<string>();
    // Walk up the stack; bounded by the tree's depth (every node has one parent, the root none).
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const frame = byId.get(id)!.callFrame;
      if (!/\/(src|workers)\//.test(frame.url)) continue;
      const key = `${frame.functionName || '(anonymous)'}  ${shortUrl(frame.url)}:${frame.lineNumber + 1}`;
      if (seen.has(key)) continue;
      seen.add(key);
      totals.set(key, (totals.get(key) ?? 0) + hits);
    }
  }
  return totals;
}

export function profilesIn(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path)
    .filter((f) => f.endsWith('.cpuprofile'))
    .sort()
    .map((f) => join(path, f));
}

if (import.meta.main) {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } });
  if (positionals.length === 0) {
    process.stderr.write('usage: node bench/profile.ts FILE_OR_DIR... [--top N]\n');
    process.exit(2);
  }
  for (const file of positionals.flatMap(profilesIn)) {
    process.stdout.write(`${summariseProfile(relative(process.cwd(), file) || file, Number(values.top))}\n\n`);
  }
}
