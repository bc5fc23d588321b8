/**
 * `npm run bench:threads`: what torch's thread count does to training speed on this machine when
 * it is quiet and when other processes want its CPUs, the case `CPU_THREADS` and the cgroup-quota
 * sizing (python/vision_trainer/cpu_budget.py) are for. The same workload (resnet18 training
 * steps at 64 px, batch 16, random data: bench/threads_python.py) runs BENCH_SECONDS (default 10)
 * with 1 thread, then with one thread per CPU, interleaved BENCH_REPEATS times (default 2), in
 * two conditions:
 *
 *   as is    the machine as it is (its load average is printed: "quiet" only if it is)
 *   loaded   plus one busy-looping process per CPU, started by the bench (another tenant)
 *
 * Reported: steps/s median [min-max] and CPU seconds per step for each thread count and
 * condition, and the ratio many-threads / one-thread. Results: bench/results/threads.{json,md}.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT, defaultPythonBin } from '../src/paths.js';
import { describeMachine, fmtSpread, machine, measure, runBench, spread, table, writeResults } from './harness.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 2);
const CPUS = availableParallelism();
const COUNTS = [...new Set([1, CPUS])];

interface Sample {
  stepsPerSecond: number;
  cpuPerStep: number;
  load: number;
}

async function sample(threads: number): Promise<Sample> {
  // Every pool at the same size, as cpu_budget.py sets them.
  const env = { ...process.env, OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) };
  const m = await measure(defaultPythonBin(), [join(PROJECT_ROOT, 'bench', 'threads_python.py'), String(threads), String(SECONDS)], env);
  const r = JSON.parse(m.stdout.trim().split('\n').at(-1)!) as { steps: number; steps_per_second: number };
  return { stepsPerSecond: r.steps_per_second, cpuPerStep: m.cpu / Math.max(1, r.steps), load: m.load };
}

function busy(): ChildProcess[] {
  const hogs = Array.from({ length: CPUS }, () => spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }));
  // Never left spinning: not when the bench fails, nor when it is interrupted.
  const stop = () => {
    for (const h of hogs) h.kill('SIGKILL');
  };
  process.once('exit', stop);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
  return hogs;
}

runBench(async () => {
  const m = machine();
  process.stdout.write(`${describeMachine(m)}\nthreads ${COUNTS.join(' vs ')}, ${SECONDS} s per run, ${REPEATS} interleaved repeats\n`);
  const results: Record<string, Record<number, Sample[]>> = {
    'as is': Object.fromEntries(COUNTS.map((t) => [t, []])),
    loaded: Object.fromEntries(COUNTS.map((t) => [t, []])),
  };
  for (const condition of ['as is', 'loaded'] as const) {
    const hogs = condition === 'loaded' ? busy() : [];
    try {
      for (let r = 0; r < REPEATS; r++) {
        for (const threads of COUNTS) {
          const s = await sample(threads);
          results[condition]![threads]!.push(s);
          process.stdout.write(
            `${condition}, ${threads} thread(s): ${s.stepsPerSecond.toFixed(2)} steps/s, ${s.cpuPerStep.toFixed(2)} CPU s/step (load ${s.load.toFixed(2)})\n`,
          );
        }
      }
    } finally {
      for (const h of hogs) h.kill('SIGKILL');
    }
  }
  const rows = Object.entries(results).flatMap(([condition, byThreads]) =>
    COUNTS.map((threads) => {
      const samples = byThreads[threads]!;
      const sps = spread(samples.map((s) => s.stepsPerSecond));
      const one = spread(byThreads[1]!.map((s) => s.stepsPerSecond)).median;
      return {
        condition,
        threads,
        stepsPerSecond: sps,
        cpuPerStep: spread(samples.map((s) => s.cpuPerStep)).median,
        vsOneThread: sps.median / one,
        loads: samples.map((s) => s.load),
      };
    }),
  );
  for (const r of rows)
    process.stdout.write(`${r.condition}, ${r.threads} thread(s): ${fmtSpread(r.stepsPerSecond)} steps/s; ratio to 1 thread: ${r.vsOneThread.toFixed(2)}\n`);
  writeResults('threads', { machine: m, seconds: SECONDS, repeats: REPEATS, rows }, [
    '## bench:threads: torch threads on a quiet and a loaded machine',
    '',
    `${describeMachine(m)}. resnet18 training steps, 64 px, batch 16; ${SECONDS} s per run, ${REPEATS} interleaved repeats; "loaded" adds ${CPUS} busy-looping processes.`,
    '',
    ...table(
      ['condition', 'threads', 'steps/s', 'CPU s per step', 'ratio to 1 thread', 'load at each run'],
      rows.map((r) => [
        r.condition,
        String(r.threads),
        fmtSpread(r.stepsPerSecond),
        r.cpuPerStep.toFixed(2),
        r.vsOneThread.toFixed(2),
        r.loads.map((l) => l.toFixed(1)).join(', '),
      ]),
    ),
  ]);
});
