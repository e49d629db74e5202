// Draws the latency percentiles, direct vs Spillway, from a results file as a dependency-free SVG (docs/performance.md).
// Usage: node bench/chart.ts [RESULTS.json] [--out FILE]; default: the newest results it can draw → docs/performance-latency.svg.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';

interface ResultsFile {
  startedAt: string;
  options: { runs: number; workers: number };
  scenarios: { name: string; median: Record<string, number> }[];
}

interface Panel {
  scenario: string;
  title: string;
  /** Metric prefixes: `${prefix}_p50` etc. `raw`: the bare BullMQ round trip at the same concurrency, when measured. */
  direct: string;
  raw: string | undefined;
  spillway: string;
}

const ROOT = resolve(import.meta.dirname, '..');
const PANELS: readonly Panel[] = [
  { scenario: 'overhead', title: 'overhead: latency, 10 clients', direct: 'direct_latency', raw: 'raw_latency', spillway: 'spillway_latency' },
  { scenario: 'ttft', title: 'ttft: time to first token, 50 streams', direct: 'direct_ttft', raw: undefined, spillway: 'spillway_ttft' },
  { scenario: 'throughput', title: 'throughput: latency, 200 clients', direct: 'direct_latency', raw: 'raw_latency', spillway: 'spillway_latency' },
];
const PERCENTILES = [
  ['p50', 'p50'],
  ['p90', 'p90'],
  ['p99', 'p99'],
  ['p999', 'p99.9'],
] as const;
const COLORS = { direct: '#6b7a8f', raw: '#b9c2cf', spillway: '#e8833a' };
const PANEL_W = 340;
const PANEL_H = 260;
const PLOT = { left: 46, right: 10, top: 34, bottom: 30 };

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A "nice" axis: a step of 1, 2 or 5 × 10^k giving about five ticks up to at least `max`. */
function axis(max: number): { top: number; step: number } {
  const raw = Math.max(max, 1e-3) / 5;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? 10 * magnitude;
  return { top: Math.ceil(max / step) * step || step, step };
}

function label(value: number): string {
  return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

function tickLabel(value: number, step: number): string {
  return value.toFixed(step >= 1 ? 0 : Math.ceil(-Math.log10(step)));
}

function drawPanel(panel: Panel, median: Record<string, number>, x0: number): string {
  const at = (prefix: string | undefined, key: string) => (prefix === undefined ? Number.NaN : (median[`${prefix}_${key}`] ?? Number.NaN));
  const values = PERCENTILES.map(([key]) => ({ d: at(panel.direct, key), r: at(panel.raw, key), s: at(panel.spillway, key) }));
  const { top, step } = axis(Math.max(...values.flatMap((v) => [v.d, v.r, v.s]).filter(Number.isFinite)));
  const plotW = PANEL_W - PLOT.left - PLOT.right;
  const plotH = PANEL_H - PLOT.top - PLOT.bottom;
  const y = (v: number) => PLOT.top + plotH - (v / top) * plotH;
  const parts = [`<g transform="translate(${x0},0)">`, `<text x="${PANEL_W / 2}" y="18" text-anchor="middle" class="title">${esc(panel.title)}</text>`];
  for (let tick = 0; tick <= top + step / 2; tick += step) {
    parts.push(`<line x1="${PLOT.left}" x2="${PLOT.left + plotW}" y1="${y(tick)}" y2="${y(tick)}" class="grid"/>`);
    parts.push(`<text x="${PLOT.left - 5}" y="${y(tick) + 4}" text-anchor="end" class="tick">${tickLabel(tick, step)}</text>`);
  }
  parts.push(`<text transform="translate(12,${PLOT.top + plotH / 2}) rotate(-90)" text-anchor="middle" class="tick">ms</text>`);
  const group = plotW / PERCENTILES.length;
  const series = panel.raw === undefined ? 2 : 3;
  const bar = (group * 0.72) / series;
  PERCENTILES.forEach(([, name], i) => {
    const gx = PLOT.left + i * group + group / 2 - (series * bar) / 2;
    const v = values[i]!;
    const bars = series === 2 ? [[v.d, 0, COLORS.direct], [v.s, bar, COLORS.spillway]] as const : [[v.d, 0, COLORS.direct], [v.r, bar, COLORS.raw], [v.s, 2 * bar, COLORS.spillway]] as const;
    for (const [value, dx, color] of bars) {
      if (!Number.isFinite(value)) continue;
      parts.push(`<rect x="${(gx + dx).toFixed(1)}" y="${y(value).toFixed(1)}" width="${bar.toFixed(1)}" height="${(PLOT.top + plotH - y(value)).toFixed(1)}" fill="${color}"/>`);
      parts.push(`<text x="${(gx + dx + bar / 2).toFixed(1)}" y="${(y(value) - 3).toFixed(1)}" text-anchor="middle" class="value">${label(value)}</text>`);
    }
    parts.push(`<text x="${gx + (series * bar) / 2}" y="${PLOT.top + plotH + 16}" text-anchor="middle" class="tick">${name}</text>`);
  });
  parts.push(`<line x1="${PLOT.left}" x2="${PLOT.left + plotW}" y1="${y(0)}" y2="${y(0)}" class="axis"/>`, '</g>');
  return parts.join('\n');
}

export function renderChart(results: ResultsFile): string {
  const panels = PANELS.flatMap((p) => {
    const scenario = results.scenarios.find((s) => s.name === p.scenario);
    return scenario && Object.keys(scenario.median).length > 0 ? [{ panel: p, median: scenario.median }] : [];
  });
  const width = Math.max(1, panels.length) * PANEL_W;
  const height = PANEL_H + 40;
  const runs = results.options.runs > 1 ? `medians of ${results.options.runs} runs` : 'one run';
  const legend = [
    `<rect x="10" y="${PANEL_H + 14}" width="12" height="12" fill="${COLORS.direct}"/><text x="27" y="${PANEL_H + 24}" class="tick">direct to the mock upstream</text>`,
    `<rect x="190" y="${PANEL_H + 14}" width="12" height="12" fill="${COLORS.raw}"/><text x="207" y="${PANEL_H + 24}" class="tick">raw BullMQ round trip (the floor)</text>`,
    `<rect x="390" y="${PANEL_H + 14}" width="12" height="12" fill="${COLORS.spillway}"/><text x="407" y="${PANEL_H + 24}" class="tick">through Spillway (1 ingress, ${results.options.workers} workers)</text>`,
    `<text x="${width - 10}" y="${PANEL_H + 24}" text-anchor="end" class="tick">${esc(`${results.startedAt.slice(0, 16).replace('T', ' ')} UTC, ${runs}`)}</text>`,
  ];
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif">`,
    '<style>.title{font-size:13px;font-weight:600;fill:#222}.tick{font-size:11px;fill:#444}.value{font-size:8.5px;fill:#222}.grid{stroke:#e3e3e3}.axis{stroke:#888}</style>',
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    ...panels.map(({ panel, median }, i) => drawPanel(panel, median, i * PANEL_W)),
    ...legend,
    '</svg>',
    '',
  ].join('\n');
}

/** The newest results file with at least one scenario the chart draws (a `--scenario spike` run has none). */
function newestResults(): string {
  const dir = join(ROOT, 'bench', 'results');
  const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort().reverse();
  const drawable = files.find((f) => {
    const results = JSON.parse(readFileSync(join(dir, f), 'utf8')) as ResultsFile;
    return results.scenarios.some((s) => PANELS.some((p) => p.scenario === s.name));
  });
  if (drawable === undefined) throw new Error(`no results with ${PANELS.map((p) => p.scenario).join(', ')} in ${dir}: run npm run bench first`);
  return join(dir, drawable);
}

if (import.meta.main) {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { out: { type: 'string', default: join(ROOT, 'docs', 'performance-latency.svg') } } });
  const input = positionals[0] ?? newestResults();
  writeFileSync(values.out, renderChart(JSON.parse(readFileSync(input, 'utf8')) as ResultsFile));
  process.stdout.write(`${relative(process.cwd(), values.out)} ← ${relative(process.cwd(), input)}\n`);
}
