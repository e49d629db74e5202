// `npm run bench`: starts Redis, the mock upstreams and Spillway (1 ingress + N workers), runs each scenario direct and
// through Spillway, writes bench/results/<ISO time>.json and prints Markdown tables. Every child is stopped on any exit.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { installCleanup, openFileLimits, stopAllChildren } from './support/processes.ts';
import { REPO_ROOT, startStack, type Stack } from './support/stack.ts';
import { aggregate, redisCommandsTable, resultsTable, targetsTable, type ScenarioReport } from './support/report.ts';
import type { RunResult, Scenario } from './support/scenario.ts';
import { profilesIn, summariseProfile } from './profile.ts';
import { overhead } from './scenarios/overhead.ts';
import { ttft } from './scenarios/ttft.ts';
import { throughput } from './scenarios/throughput.ts';
import { streamRelay } from './scenarios/stream-relay.ts';
import { spike } from './scenarios/spike.ts';
import { hold } from './scenarios/hold.ts';
import { cluster } from './scenarios/cluster.ts';
import { admission } from './scenarios/admission.ts';
import { fairness } from './scenarios/fairness.ts';
import { asyncFlood } from './scenarios/async-flood.ts';

const SCENARIOS: readonly Scenario[] = [overhead, ttft, throughput, admission, streamRelay, cluster, spike, hold, fairness, asyncFlood];
/** Open files the hold scenario needs in one process (10,000 client sockets), with room for the rest. */
const FILES_NEEDED = 12_000;
const RESULTS_DIR = join(REPO_ROOT, 'bench', 'results');

const USAGE = `Usage: npm run bench -- [options]

  --scenario NAME   run only this scenario (repeatable or comma-separated): ${SCENARIOS.map((s) => s.name).join(', ')}
  --runs N          runs of each scenario; the tables show medians (default 1)
  --workers N       Spillway worker processes (default 2)
  --duration S      seconds of each measured load phase (default 8)
  --cpu-prof        run the ingress and workers with --cpu-prof; profiles and their summary land next to the results
  -h, --help        this text`;

const log = (line: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);

function parseOptions() {
  const { values } = parseArgs({
    options: {
      scenario: { type: 'string', multiple: true },
      runs: { type: 'string', default: '1' },
      workers: { type: 'string', default: '2' },
      duration: { type: 'string', default: '8' },
      'cpu-prof': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const names = (values.scenario ?? []).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
  const unknown = names.filter((n) => !SCENARIOS.some((s) => s.name === n));
  const int = (raw: string, name: string, max: number) => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new Error(`--${name} must be a whole number from 1 to ${max}`);
    return n;
  };
  if (unknown.length > 0) throw new Error(`unknown scenario(s): ${unknown.join(', ')}\n\n${USAGE}`);
  return {
    scenarios: names.length === 0 ? SCENARIOS : SCENARIOS.filter((s) => names.includes(s.name)),
    runs: int(values.runs, 'runs', 20),
    workers: int(values.workers, 'workers', 32),
    durationMs: int(values.duration, 'duration', 120) * 1000,
    cpuProf: values['cpu-prof'],
  };
}

/**
 * The hold scenario needs ~10k sockets in one process. Node raises its soft open-files limit to the hard limit at
 * start-up (children inherit it), so only the hard limit matters: warn when it is too low, the run goes on.
 */
function checkFileLimit(): { soft: number; hard: number } {
  const limits = openFileLimits();
  if (limits.soft < FILES_NEEDED) {
    log(`warning: open files limited to ${limits.soft} (hard limit ${limits.hard}); the hold scenario needs ${FILES_NEEDED}: raise it with ulimit -n`);
  }
  return limits;
}

/** The commit measured, with "+dirty" when the working tree differs from it (dist/ is built from the tree). */
function gitDescribe(): string | undefined {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return `${git('rev-parse', '--short', 'HEAD')}${git('status', '--porcelain', '--', 'src', 'workers') === '' ? '' : '+dirty'}`;
  } catch {
    return undefined;
  }
}

async function main(): Promise<number> {
  let options: ReturnType<typeof parseOptions>;
  try {
    options = parseOptions();
  } catch (err) {
    // A usage mistake (unknown option or scenario, bad number): the message, never a stack trace.
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  }
  const limits = checkFileLimit();
  installCleanup(log);

  const startedAt = new Date();
  const stamp = startedAt.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const logDir = mkdtempSync(join(tmpdir(), 'spillway-bench-'));
  const cpuProfDir = options.cpuProf ? join(RESULTS_DIR, `${stamp}-profiles`) : undefined;
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true });
  const loadBefore = loadavg();
  const commit = gitDescribe(); // the tree `npm run bench` has just built
  log(`scenarios: ${options.scenarios.map((s) => s.name).join(', ')}; runs: ${options.runs}; workers: ${options.workers}; logs: ${logDir}`);

  const reports: ScenarioReport[] = [];
  let stack: Stack | undefined;
  let failed = false;
  try {
    stack = await startStack({ workers: options.workers, logDir, cpuProfDir, log });
    for (const scenario of options.scenarios) {
      const runs: RunResult[] = [];
      let error: string | undefined;
      for (let run = 1; run <= options.runs && error === undefined; run++) {
        log(`${scenario.name} (run ${run}/${options.runs}): ${scenario.summary}`);
        try {
          runs.push(await scenario.run({ stack, durationMs: options.durationMs, workers: options.workers, run, logDir, log }));
        } catch (err) {
          error = err instanceof Error ? err.message : String(err);
          log(`${scenario.name} failed: ${error}`);
        }
      }
      reports.push(aggregate(scenario, runs, error));
      if (error !== undefined) {
        failed = true;
        stack.assertAlive(); // a dead process ends the run; anything else moves on to the next scenario
      }
    }
  } catch (err) {
    failed = true;
    log(`benchmark aborted: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    log('stopping processes');
    await stack?.close().catch(() => undefined);
    await stopAllChildren();
  }

  const results = {
    version: 1,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    options: { ...options, scenarios: options.scenarios.map((s) => s.name) },
    environment: {
      node: process.version,
      commit,
      redis: stack?.redis.version,
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      memoryGB: Math.round(totalmem() / 2 ** 30),
      loadAverageBefore: loadBefore,
      loadAverageAfter: loadavg(),
      openFiles: limits,
    },
    scenarios: reports,
  };
  if (reports.length > 0) {
    mkdirSync(RESULTS_DIR, { recursive: true });
    const file = join(RESULTS_DIR, `${stamp}.json`);
    writeFileSync(`${file}.tmp`, `${JSON.stringify(results, null, 2)}\n`);
    renameSync(`${file}.tmp`, file);
    const commands = redisCommandsTable(reports);
    process.stdout.write(`\n${resultsTable(reports, options.runs)}\n\n${targetsTable(reports)}\n\n${commands === '' ? '' : `${commands}\n\n`}`);
    log(`results: ${relative(process.cwd(), file)}`);
  }
  if (cpuProfDir) {
    for (const profile of profilesIn(cpuProfDir)) process.stdout.write(`${summariseProfile(relative(process.cwd(), profile), 20)}\n\n`);
  }
  if (failed) log(`logs kept in ${logDir}`);
  else rmSync(logDir, { recursive: true, force: true });
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    log(`fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    await stopAllChildren(2_000);
    process.exit(1);
  },
);
