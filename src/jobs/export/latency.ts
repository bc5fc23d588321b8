/** Latency figures: measured runs, summarised the same way for every runtime. */

/** The p-th percentile (0-100) by linear interpolation between the closest ranks. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new Error('percentile of no values');
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return (sorted[lo] as number) + ((sorted[hi] as number) - (sorted[lo] as number)) * (rank - lo);
}

export interface LatencySummary {
  p50: number;
  p95: number;
}

/** Milliseconds, rounded to 0.01 ms. */
export function summarize(milliseconds: readonly number[]): LatencySummary {
  const r = (v: number) => Math.round(v * 100) / 100;
  return { p50: r(percentile(milliseconds, 50)), p95: r(percentile(milliseconds, 95)) };
}

/** Times `run` `runs` times after `warmup` untimed calls; milliseconds per call. */
export async function timeRuns(run: () => Promise<unknown>, warmup: number, runs: number): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await run();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    await run();
    times.push(performance.now() - started);
  }
  return times;
}
