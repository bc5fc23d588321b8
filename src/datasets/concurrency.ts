/**
 * Bounded parallelism for file work: enough operations in flight to keep the disk and
 * libuv's thread pool busy, never one promise per file for a 100,000-image dataset.
 */

/** Default in-flight operations; libuv has 4 threads, and a queue a few deep hides latency. */
export const FILE_CONCURRENCY = 32;

/**
 * Runs `work(item, index, worker)` for every item with at most `limit` running at once.
 * `worker` (0..limit-1) lets a caller keep one scratch buffer per worker. Rejects with the
 * first error after the running operations settle; no new work starts after an error.
 */
export async function forEachBounded<T>(items: readonly T[], limit: number, work: (item: T, index: number, worker: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const runWorker = async (worker: number): Promise<void> => {
    while (failure === undefined && next < items.length) {
      const index = next++;
      try {
        await work(items[index] as T, index, worker);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  const workers = Math.max(1, Math.min(limit, items.length));
  await Promise.all(Array.from({ length: workers }, (_, worker) => runWorker(worker)));
  if (failure) throw failure.error;
}
