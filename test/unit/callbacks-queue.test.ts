import { describe, expect, it } from 'vitest';
import { ProgressQueue, type DropReason } from '../../src/callbacks/progress-queue.js';

/** A queue whose deliveries the test releases one at a time. */
function gatedQueue(limit: number) {
  const delivered: number[] = [];
  const dropped: Array<[number, DropReason]> = [];
  const gates: Array<() => void> = [];
  let concurrent = 0;
  let maxConcurrent = 0;
  const queue = new ProgressQueue<number>({
    limit,
    deliver: (item, signal) =>
      new Promise<void>((resolve, reject) => {
        concurrent++;
        maxConcurrent = Math.max(maxConcurrent, concurrent);
        const finish = (ok: boolean) => {
          concurrent--;
          if (ok) {
            delivered.push(item);
            resolve();
          } else reject(new Error('aborted'));
        };
        gates.push(() => finish(true));
        signal.addEventListener('abort', () => finish(false));
      }),
    onDropped: (item, reason) => dropped.push([item, reason]),
  });
  const tick = () => new Promise((resolve) => setImmediate(resolve));
  const releaseAll = async () => {
    while (gates.length > 0 || queue.size > 0) {
      gates.shift()?.();
      await tick();
    }
  };
  return { queue, delivered, dropped, gates, tick, releaseAll, maxConcurrent: () => maxConcurrent };
}

describe('ProgressQueue', () => {
  it('returns from push before any delivery starts', async () => {
    const { queue, gates, tick } = gatedQueue(10);
    queue.push(1);
    expect(gates).toHaveLength(0);
    await tick();
    expect(gates).toHaveLength(1);
  });

  it('delivers in order, one at a time', async () => {
    const { queue, delivered, releaseAll, maxConcurrent } = gatedQueue(100);
    for (let i = 1; i <= 50; i++) queue.push(i);
    await releaseAll();
    expect(delivered).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(maxConcurrent()).toBe(1);
  });

  it('drops the oldest waiting item when full, keeping the newest', async () => {
    const { queue, delivered, dropped, tick, releaseAll } = gatedQueue(3);
    queue.push(1);
    await tick(); // 1 is in flight; the limit counts waiting items only
    for (let i = 2; i <= 7; i++) queue.push(i);
    expect(dropped).toEqual([
      [2, 'overflow'],
      [3, 'overflow'],
      [4, 'overflow'],
    ]);
    await releaseAll();
    expect(delivered).toEqual([1, 5, 6, 7]);
  });

  it('flush resolves true once drained, false when the time runs out', async () => {
    const { queue, gates, tick, releaseAll } = gatedQueue(10);
    expect(await queue.flush(10)).toBe(true);
    queue.push(1);
    queue.push(2);
    await tick();
    expect(await queue.flush(20)).toBe(false);
    const drained = queue.flush(5_000);
    await releaseAll();
    expect(await drained).toBe(true);
    expect(gates).toHaveLength(0);
  });

  it('abandon drops what waits and cancels what is in flight', async () => {
    const { queue, delivered, dropped, tick } = gatedQueue(10);
    for (let i = 1; i <= 4; i++) queue.push(i);
    await tick();
    expect(queue.abandon()).toBe(3);
    expect(await queue.flush(1_000)).toBe(true);
    expect(delivered).toEqual([]);
    expect(dropped).toEqual([
      [2, 'abandoned'],
      [3, 'abandoned'],
      [4, 'abandoned'],
      [1, 'abandoned'],
    ]);
    expect(queue.size).toBe(0);
  });

  it('keeps working after a delivery throws', async () => {
    const delivered: number[] = [];
    const dropped: Array<[number, DropReason]> = [];
    const queue = new ProgressQueue<number>({
      limit: 10,
      deliver: async (item) => {
        if (item === 2) throw new Error('bug');
        delivered.push(item);
      },
      onDropped: (item, reason) => dropped.push([item, reason]),
    });
    [1, 2, 3].forEach((i) => queue.push(i));
    expect(await queue.flush(1_000)).toBe(true);
    expect(delivered).toEqual([1, 3]);
    expect(dropped).toEqual([[2, 'failed']]);
  });
});
