/**
 * A job's events, delivered to subscribers as they happen and to async iterators in order.
 * Subscribers are called synchronously so that an exception in one fails the run at the point
 * it happened (the training job turns it into a stop request and a failed run). The `done`
 * event ends the stream.
 */
import type { RunEvent } from '../events.js';

/** What every job's events have: a type; `done` is the last. */
export interface JobEvent {
  readonly type: string;
}
export type Subscriber<E> = (event: E) => void | Promise<void>;

const MAX_BUFFERED = 10_000;

export class RunStream<E extends JobEvent = RunEvent> implements AsyncIterable<E> {
  private readonly subscribers: Subscriber<E>[] = [];
  private readonly buffered: E[] = [];
  private readonly waiting: Array<(r: IteratorResult<E>) => void> = [];
  private ended = false;
  /** Events are buffered only for an attached iterator, so a run nobody iterates holds no history. */
  private iterating = false;
  private iterated = false;

  subscribe(fn: Subscriber<E>): () => void {
    this.subscribers.push(fn);
    return () => {
      const i = this.subscribers.indexOf(fn);
      if (i >= 0) this.subscribers.splice(i, 1);
    };
  }

  /**
   * Delivers to the iterator and every subscriber, even when one of them throws; returns the
   * subscribers' promises so callers may await async ones. The first synchronous throw is
   * rethrown after everyone has the event (the training job turns it into a stop request).
   */
  emit(event: E): Promise<unknown> {
    const waiter = this.waiting.shift();
    if (waiter) waiter({ value: event, done: false });
    else if (this.iterating && !this.ended) this.buffer(event);
    const pending: Promise<unknown>[] = [];
    let thrown: { error: unknown } | undefined;
    for (const fn of [...this.subscribers]) {
      try {
        const r = fn(event);
        if (r && typeof (r as Promise<void>).then === 'function') pending.push(r as Promise<void>);
      } catch (error) {
        thrown ??= { error };
      }
    }
    if (event.type === 'done') this.end();
    const all = Promise.all(pending);
    // Callers may ignore the promise (progress events): its failure then goes to onAsyncError
    // instead of becoming an unhandled rejection that would kill the process.
    all.catch((err: unknown) => this.onAsyncError?.(err, event));
    if (thrown) throw thrown.error;
    return all;
  }

  /** Receives failures of async subscribers; the training job turns them into a stop request. */
  onAsyncError: ((err: unknown, event: E) => void) | undefined;

  private buffer(event: E): void {
    this.buffered.push(event);
    // A consumer far behind loses batch events first; epochs, checkpoints and done are kept.
    if (this.buffered.length > MAX_BUFFERED) {
      const i = this.buffered.findIndex((e) => e.type === 'batch');
      this.buffered.splice(Math.max(i, 0), 1);
    }
  }

  end(): void {
    this.ended = true;
    for (const w of this.waiting.splice(0)) w({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<E> {
    if (this.iterated) throw new Error('A run can be iterated once; subscribe() for more consumers.');
    this.iterated = true;
    this.iterating = true;
    return {
      next: () => {
        const event = this.buffered.shift();
        if (event) return Promise.resolve({ value: event, done: false });
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => this.waiting.push(resolve));
      },
      return: () => {
        // A consumer that stops iterating stops receiving; the run itself goes on.
        this.iterating = false;
        this.buffered.length = 0;
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
