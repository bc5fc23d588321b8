/**
 * Progress callbacks must never slow the work down, even while the backend is down or slow.
 * They wait here, in a bounded in-memory queue that one worker delivers in order.
 *
 * When the backend is slower than the job, the queue degrades in a fixed order:
 *  - an item with a coalescing key (a heartbeat) replaces the waiting one with the same key:
 *    only the newest waiting heartbeat is kept, since it says everything the older one did;
 *  - when the queue is full, the oldest item of the lowest priority goes first, so a
 *    validation or a checkpoint_saved event is never dropped while a heartbeat waits.
 *
 * Completions never enter this queue; they wait for it to drain (`flush`) so they arrive last.
 */

/**
 * coalesced: replaced by a newer item with the same key; overflow: pushed out by newer items;
 * abandoned: given up for a completion; failed: delivery threw.
 */
export type DropReason = 'coalesced' | 'overflow' | 'abandoned' | 'failed';

export interface ProgressQueueOptions<T> {
  /** Items waiting (not counting the one being delivered) before one is dropped. */
  limit: number;
  /** Items with the same key replace each other while they wait (default: none do). */
  coalesceKey?: (item: T) => string | undefined;
  /** When full, items of lower priority are dropped first (default: all equal, the oldest goes). */
  priority?: (item: T) => number;
  /** Delivers one item. It should handle its own failures; a rejection is treated as a drop. */
  deliver: (item: T, signal: AbortSignal) => Promise<void>;
  /** Told about every item that will never be delivered. */
  onDropped: (item: T, reason: DropReason) => void;
}

export class ProgressQueue<T> {
  private readonly pending: T[] = [];
  private inFlight: AbortController | undefined;
  private running = false;
  private idleWaiters: Array<() => void> = [];
  private readonly limit: number;

  constructor(private readonly options: ProgressQueueOptions<T>) {
    this.limit = Math.max(1, Math.floor(options.limit));
  }

  /** Items not yet delivered, the one in flight included. */
  get size(): number {
    return this.pending.length + (this.inFlight ? 1 : 0);
  }

  /** Adds an item and returns at once; delivery starts on a later turn of the event loop. */
  push(item: T): void {
    const key = this.options.coalesceKey?.(item);
    if (key !== undefined) {
      const older = this.pending.findIndex((waiting) => this.options.coalesceKey?.(waiting) === key);
      if (older >= 0) this.options.onDropped(this.pending.splice(older, 1)[0] as T, 'coalesced');
    }
    this.pending.push(item);
    while (this.pending.length > this.limit) this.options.onDropped(this.pending.splice(this.victim(), 1)[0] as T, 'overflow');
    if (!this.running) {
      this.running = true;
      // setImmediate rather than a microtask: the caller (often a Python callback waiting on
      // the bridge) gets its answer before any delivery work starts.
      setImmediate(() => void this.work());
    }
  }

  /** Resolves true once everything queued so far is delivered (or dropped), false on timeout. */
  flush(timeoutMs: number): Promise<boolean> {
    if (!this.running) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      this.idleWaiters.push(done);
    });
  }

  /** The index of the item an overflow drops: the oldest of the lowest priority. */
  private victim(): number {
    const priority = this.options.priority;
    if (!priority) return 0;
    let index = 0;
    let lowest = Number.POSITIVE_INFINITY;
    this.pending.forEach((item, i) => {
      const p = priority(item);
      if (p < lowest) {
        lowest = p;
        index = i;
      }
    });
    return index;
  }

  /** Drops everything waiting and cancels the delivery in flight. Returns how many were dropped. */
  abandon(): number {
    const dropped = this.pending.splice(0, this.pending.length);
    for (const item of dropped) this.options.onDropped(item, 'abandoned');
    this.inFlight?.abort();
    return dropped.length;
  }

  private async work(): Promise<void> {
    try {
      for (let item = this.pending.shift(); item !== undefined; item = this.pending.shift()) {
        const controller = new AbortController();
        this.inFlight = controller;
        try {
          await this.options.deliver(item, controller.signal);
        } catch {
          this.options.onDropped(item, controller.signal.aborted ? 'abandoned' : 'failed');
        } finally {
          this.inFlight = undefined;
        }
      }
    } finally {
      this.running = false;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const wake of waiters) wake();
    }
  }
}
