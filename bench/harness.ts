/**
 * What every benchmark shares:
 *
 * - `measure`: a child process run under bench/measure.py, which reports its wall time, the
 *   user+sys CPU time of its whole process tree (every descendant it waited for: data-loader
 *   workers, the bridge's Python) and its peak RSS, with the load average when it started;
 * - `spread`: median, min and max of repeats;
 * - `sameSettings`: both sides of a comparison print what they resolved (framework arguments,
 *   threads, determinism, AMP, workers, validation and saving); a difference fails the bench,
 *   because a ratio between two different pieces of work measures nothing;
 * - `machine` and `writeResults`: the machine and its load, and bench/results/<name>.{json,md}
 *   (collected by bench/all.ts into bench/results/summary.{json,md}).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { PROJECT_ROOT, defaultPythonBin } from '../src/paths.js';

/** BENCH_RESULTS_DIR: elsewhere than bench/results (bench/gpu.sh writes bench/results/gpu). */
export const RESULTS_DIR = process.env.BENCH_RESULTS_DIR ?? join(PROJECT_ROOT, 'bench', 'results');
const MEASURE = join(PROJECT_ROOT, 'bench', 'measure.py');

/** Threads both sides of a bench use (OMP_NUM_THREADS, which vision-trainer's CPU budget and torch honour). */
export const BENCH_THREADS = Number(process.env.BENCH_THREADS ?? availableParallelism());

export interface Measured {
  /** Wall-clock time (seconds since the epoch) the command was started at. */
  startedAt: number;
  wall: number;
  /** user + sys of the whole process tree. */
  cpu: number;
  maxrssMb: number;
  /** 1-minute load average when the run started. */
  load: number;
  stdout: string;
  stderr: string;
}

export class BenchError extends Error {}

/** Runs `command` to its end under measure.py; a non-zero exit is an error with the output's tail. */
export function measure(command: string, args: string[], env: NodeJS.ProcessEnv, options: { cwd?: string } = {}): Promise<Measured> {
  const dir = mkdtempSync(join(tmpdir(), 'vt-bench-measure-'));
  const out = join(dir, 'usage.json');
  const load = loadavg()[0]!;
  return new Promise((resolve, reject) => {
    const child = spawn(defaultPythonBin(), [MEASURE, out, '--', command, ...args], { env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => stdout.push(d));
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-200_000);
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      const text = Buffer.concat(stdout).toString('utf8');
      try {
        if (code !== 0) throw new BenchError(`${command} ${args.join(' ')} failed (exit ${code}):\n${text.slice(-3000)}\n${stderr.slice(-3000)}`);
        const usage = JSON.parse(readFileSync(out, 'utf8')) as { started_at: number; wall: number; user: number; sys: number; maxrss_kb: number };
        resolve({ startedAt: usage.started_at, wall: usage.wall, cpu: usage.user + usage.sys, maxrssMb: usage.maxrss_kb / 1024, load, stdout: text, stderr });
      } catch (err) {
        reject(err);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}

export interface Spread {
  median: number;
  min: number;
  max: number;
  /** (max - min) / median, in percent. */
  spreadPercent: number;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function spread(xs: number[]): Spread {
  const m = median(xs);
  const min = Math.min(...xs);
  const max = Math.max(...xs);
  return { median: m, min, max, spreadPercent: m > 0 ? ((max - min) / m) * 100 : 0 };
}

export const fmtSpread = (s: Spread, digits = 2, unit = '') => `${s.median.toFixed(digits)}${unit} [${s.min.toFixed(digits)}-${s.max.toFixed(digits)}]`;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * A printed setting with its whole-number floats written as integers: `scale=(0.5, 1.0)` from one
 * side and `scale=(0.5, 1)` from the other (the value crossed JSON) are the same work.
 */
const sameNumbers = (v: Json | undefined) => JSON.stringify(v)?.replace(/(\d)\.0+\b/g, '$1');

/** Every path where `a` and `b` differ ("runtime.torch_threads: 1 vs 2"). */
export function differences(a: Json | undefined, b: Json | undefined, path = ''): string[] {
  if (sameNumbers(a) === sameNumbers(b)) return [];
  const isObject = (v: Json | undefined): v is { [key: string]: Json } => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (isObject(a) && isObject(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => differences(a[k], b[k], path ? `${path}.${k}` : k));
  }
  const show = (v: Json | undefined) => (v === undefined ? '(absent)' : JSON.stringify(v));
  return [`${path || '(root)'}: ${show(a)} vs ${show(b)}`];
}

/**
 * Prints what both sides resolved and fails when it differs. `compare` picks the parts that
 * decide the work (e.g. the framework's arguments and the runtime settings).
 */
export function sameSettings(
  title: string,
  sides: Record<string, Json | undefined>,
  compare: (settings: Json | undefined) => Json | undefined = (s) => s,
): void {
  const names = Object.keys(sides);
  const [first, ...rest] = names;
  if (first === undefined) return;
  for (const name of names) {
    if (sides[name] === undefined) throw new BenchError(`${title}: ${name} did not print its resolved settings`);
  }
  process.stdout.write(`${title}: resolved settings (${names.join(' = ')}):\n${indent(JSON.stringify(compare(sides[first]), null, 1))}\n`);
  for (const other of rest) {
    const diff = differences(compare(sides[first]), compare(sides[other]));
    if (diff.length > 0) throw new BenchError(`${title}: ${first} and ${other} did not do the same work; their settings differ:\n  ${diff.join('\n  ')}`);
  }
}

const indent = (text: string) =>
  text
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  node: string;
  loadAtStart: number[];
}

export function machine(): MachineInfo {
  return {
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 1024 ** 3),
    kernel: release(),
    node: process.version,
    loadAtStart: loadavg().map((l) => Number(l.toFixed(2))),
  };
}

export const describeMachine = (m: MachineInfo) =>
  `${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}; load average at start ${m.loadAtStart.join(' ')}`;

/**
 * A results JSON file in the repository's JSON style: Biome (which `npm run lint` runs over the
 * committed bench/results) lays short arrays out on one line where JSON.stringify breaks them,
 * so the file is formatted by it once written. Files outside the repository (BENCH_RESULTS_DIR
 * elsewhere) are not linted and stay as JSON.stringify writes them.
 */
export function writeJson(path: string, value: unknown): void {
  writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);
  if (relative(PROJECT_ROOT, resolve(path)).startsWith('..')) return;
  const biome = join(PROJECT_ROOT, 'node_modules', '.bin', 'biome');
  const formatted = spawnSync(biome, ['format', '--write', path], { cwd: PROJECT_ROOT, encoding: 'utf8' });
  if (formatted.status !== 0) process.stderr.write(`biome format ${path} failed (the file is plain JSON.stringify): ${formatted.stderr.slice(-500)}\n`);
}

/** One benchmark's results: bench/results/<name>.json (everything) and <name>.md (the tables). */
export function writeResults(name: string, report: Record<string, unknown>, markdown: string[]): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeJson(join(RESULTS_DIR, `${name}.json`), { bench: name, measuredAt: new Date().toISOString(), ...report });
  writeFileSync(join(RESULTS_DIR, `${name}.md`), `${markdown.join('\n')}\n`);
  process.stdout.write(`\nresults: ${join(RESULTS_DIR, name)}.json, .md\n`);
}

/** A markdown table. */
export function table(header: string[], rows: string[][]): string[] {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}

/** Runs a bench's main, reporting a failure on stderr and in the exit code. */
export function runBench(main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof BenchError ? `bench failed: ${err.message}` : ((err as Error).stack ?? String(err))}\n`);
    process.exitCode = 1;
  });
}
