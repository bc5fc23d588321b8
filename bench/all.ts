/**
 * `npm run bench:all`: every benchmark, one after the other, then one summary of them all in
 * bench/results/summary.{json,md}: the machine, its load average before each bench, each bench's
 * ratio lines as it printed them, its wall time, and the tables of the benches that write
 * bench/results/<name>.md (bridge, transfer).
 *
 *   BENCH_ALL=bridge,infer,onnx,threads,startup,startup-test-run,transfer,convert   which benches, in this order (default: all)
 *   BENCH_RESULTS_DIR   where the files go (default bench/results)
 *   BENCH_QUICK=1   small sizes and one repeat everywhere: checks that the whole chain runs (a
 *                   dry run for bench/gpu.sh too); its figures are not measurements
 *   BENCH_SHORT=1   (`npm run bench:all:short`) every comparison at the full benches' model and
 *                   image sizes with fewer repeats, images and objects, and without bench:infer's
 *                   settings table: real measurements in about 12 minutes on a quiet 2-CPU
 *                   machine, where the full run takes about an hour
 *
 * A bench that fails (including a comparison whose two sides resolved different settings) is
 * reported as failed in the summary, the others still run, and the exit code is 1.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../src/paths.js';
import { RESULTS_DIR, describeMachine, machine, writeJson } from './harness.js';

const QUICK = process.env.BENCH_QUICK === '1';
const SHORT = !QUICK && process.env.BENCH_SHORT === '1';

interface Bench {
  name: string;
  /** The bench's script under dist/bench when it is not `name` (a variant of another bench). */
  script?: string;
  /** Variables that make the variant. */
  env?: Record<string, string>;
  args: string[];
  /** What BENCH_QUICK=1 changes. */
  quickEnv: Record<string, string>;
  quickArgs: string[];
  /** What BENCH_SHORT=1 changes. */
  shortEnv?: Record<string, string>;
  shortArgs?: string[];
}

const BENCHES: Bench[] = [
  {
    name: 'bridge',
    args: [],
    quickEnv: { BENCH_REPEATS: '1', BENCH_EPOCHS: '2', BENCH_IMAGES: '32', BENCH_PER_CLASS: '6' },
    quickArgs: [],
    shortEnv: { BENCH_REPEATS: '1', BENCH_EPOCHS: '2' },
  },
  {
    name: 'infer',
    args: [],
    quickEnv: { BENCH_REPEATS: '1', BENCH_IMAGES: '32', BENCH_IMGSZ: '64', BENCH_INFER_SETTINGS: 'batch=4;threads=1' },
    quickArgs: [],
    shortEnv: { BENCH_REPEATS: '1', BENCH_INFER_IMAGES: '96', BENCH_INFER_SETTINGS_REPEATS: '0' },
  },
  { name: 'onnx', args: [], quickEnv: { BENCH_REPEATS: '1', BENCH_SECONDS: '1' }, quickArgs: [], shortEnv: { BENCH_REPEATS: '2', BENCH_SECONDS: '4' } },
  { name: 'threads', args: [], quickEnv: { BENCH_REPEATS: '1', BENCH_SECONDS: '2' }, quickArgs: [], shortEnv: { BENCH_REPEATS: '1', BENCH_SECONDS: '5' } },
  {
    name: 'startup',
    args: [],
    quickEnv: { BENCH_REPEATS: '1', BENCH_STARTUP_IMAGES: '300' },
    quickArgs: [],
    shortEnv: { BENCH_REPEATS: '1', BENCH_STARTUP_IMAGES: '4000' },
  },
  {
    name: 'startup-test-run',
    script: 'startup',
    env: { BENCH_STARTUP_JOB: 'test_run' },
    args: [],
    quickEnv: { BENCH_REPEATS: '1', BENCH_STARTUP_IMAGES: '300' },
    quickArgs: [],
    shortEnv: { BENCH_REPEATS: '1', BENCH_STARTUP_IMAGES: '4000' },
  },
  {
    name: 'transfer',
    args: [],
    quickEnv: {},
    quickArgs: ['--small', '200', '--zip-mb', '8', '--repeats', '1'],
    shortArgs: ['--small', '4000', '--zip-mb', '256', '--repeats', '1'],
  },
  {
    name: 'convert',
    args: [],
    quickEnv: {},
    quickArgs: ['--images', '2000', '--boxes', '6000', '--runs', '1', '--skip-design'],
    shortArgs: ['--images', '20000', '--boxes', '60000', '--runs', '1'],
  },
];

/** The lines that carry a bench's verdict: its ratios, speed-ups and throughputs. */
const VERDICT = /ratio|speedup|images\/s|x vision-trainer|past the download/i;

interface Outcome {
  name: string;
  ok: boolean;
  wallSeconds: number;
  loadAtStart: number[];
  verdict: string[];
  error?: string;
  results?: string;
}

function run(bench: Bench): Promise<Outcome> {
  const started = Date.now();
  const loadAtStart = loadavg().map((l) => Number(l.toFixed(2)));
  const resultsMd = join(RESULTS_DIR, `${bench.name}.md`);
  const before = existsSync(resultsMd) ? statSync(resultsMd).mtimeMs : 0;
  const args = [
    join(PROJECT_ROOT, 'dist', 'bench', `${bench.script ?? bench.name}.js`),
    ...bench.args,
    ...(QUICK ? bench.quickArgs : SHORT ? (bench.shortArgs ?? []) : []),
  ];
  process.stdout.write(`\n=== bench:${bench.name} (load average ${loadAtStart.join(' ')}) ===\n`);
  return new Promise((resolve) => {
    const env = { ...process.env, ...bench.env, ...(QUICK ? bench.quickEnv : SHORT ? (bench.shortEnv ?? {}) : {}) };
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      process.stdout.write(d);
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      process.stderr.write(d);
      err = (err + d.toString()).slice(-4000);
    });
    child.on('exit', (code, signal) => {
      const written = existsSync(resultsMd) && statSync(resultsMd).mtimeMs > before;
      resolve({
        name: bench.name,
        ok: code === 0,
        wallSeconds: (Date.now() - started) / 1000,
        loadAtStart,
        verdict: out
          .split('\n')
          // Not the printed settings (JSON lines such as "mask_ratio": 4).
          .filter((l) => VERDICT.test(l) && !l.trim().startsWith('"'))
          .map((l) => l.trim()),
        ...(code === 0 ? {} : { error: `exit ${code ?? signal}: ${err.trim().split('\n').slice(-6).join('\n')}` }),
        ...(written ? { results: readFileSync(resultsMd, 'utf8') } : {}),
      });
    });
  });
}

async function main(): Promise<void> {
  const m = machine();
  const wanted = (process.env.BENCH_ALL ?? BENCHES.map((b) => b.name).join(',')).split(',').map((n) => n.trim());
  const unknown = wanted.filter((n) => !BENCHES.some((b) => b.name === n));
  if (unknown.length > 0) throw new Error(`BENCH_ALL: unknown bench ${unknown.join(', ')} (${BENCHES.map((b) => b.name).join(', ')})`);
  const outcomes: Outcome[] = [];
  for (const name of wanted) outcomes.push(await run(BENCHES.find((b) => b.name === name)!));

  const totalSeconds = outcomes.reduce((sum, o) => sum + o.wallSeconds, 0);
  const summary = {
    bench: 'all',
    measuredAt: new Date().toISOString(),
    quick: QUICK,
    short: SHORT,
    totalSeconds: Math.round(totalSeconds),
    machine: m,
    outcomes: outcomes.map(({ results: _r, ...o }) => o),
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeJson(join(RESULTS_DIR, 'summary.json'), summary);
  const md = [
    '# Benchmarks: summary of `npm run bench:all`',
    '',
    `${describeMachine(m)}. Measured ${summary.measuredAt}, ${(totalSeconds / 60).toFixed(1)} min in all.${QUICK ? ' **BENCH_QUICK=1: a dry run with tiny sizes, not a measurement.**' : SHORT ? ' BENCH_SHORT=1: fewer repeats, images and objects than the full benches (the sizes each bench prints).' : ''}`,
    '',
    ...outcomes.flatMap((o) => [
      `## bench:${o.name}: ${o.ok ? 'done' : '**failed**'} in ${o.wallSeconds.toFixed(0)} s (load average at start ${o.loadAtStart.join(' ')})`,
      '',
      ...(o.error ? ['```', o.error, '```', ''] : []),
      ...(o.verdict.length > 0 ? ['```', ...o.verdict, '```', ''] : []),
      ...(o.results ? [o.results.replace(/^## /gm, '### '), ''] : []),
    ]),
  ];
  writeFileSync(join(RESULTS_DIR, 'summary.md'), `${md.join('\n')}\n`);
  process.stdout.write(`\nsummary: ${join(RESULTS_DIR, 'summary.json')}, ${join(RESULTS_DIR, 'summary.md')}\n`);
  if (outcomes.some((o) => !o.ok)) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
