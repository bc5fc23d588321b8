/**
 * The one retry loop: callbacks (src/callbacks/transport.ts) and storage
 * (src/storage/retrying.ts) both go through it, so a backend outage and a storage outage are
 * ridden out the same way. The shape is openai-node's: an attempt function, one `retryable`
 * rule that may name the delay a server asked for (Retry-After), otherwise exponential backoff
 * with jitter; attempts bounded by a count, a time budget, or both; an AbortSignal ends the
 * attempt under way and the wait.
 *
 * The budget is a deadline read before every wait, not a number fixed at the start: a job that
 * is asked to stop shortens the time its uploads may still take.
 */
import { setTimeout as sleepFor } from 'node:timers/promises';

export interface BackoffPolicy {
  /** Delay before the first retry; it doubles for each retry after that. */
  baseDelayMs: number;
  /** Ceiling of the computed backoff delay. */
  maxDelayMs: number;
}

/**
 * Exponential backoff with jitter for the n-th retry (1 = first). The delay is drawn from the
 * upper half of the exponential step, so retries never bunch up at zero yet jobs hit by the
 * same outage spread out.
 */
export function backoffDelay(retry: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const step = Math.min(policy.baseDelayMs * 2 ** Math.max(0, retry - 1), policy.maxDelayMs);
  return Math.round(step * (0.5 + 0.5 * random()));
}

/** `true`: retry after the backoff delay; `{ afterMs }`: retry after the delay the server asked for; `false`: give up. */
export type RetryDecision = boolean | { afterMs: number };

export interface RetryNotice {
  /** The attempt that just failed, counting from 1. */
  attempt: number;
  /** Attempts allowed in all (Infinity when only the deadline bounds them). */
  maxAttempts: number;
  delayMs: number;
  error: unknown;
}

export interface RetryOptions extends BackoffPolicy {
  /** Attempts in all, the first one included (default: unbounded, the deadline decides). */
  maxAttempts?: number;
  /**
   * No retry starts after this moment (ms since the epoch). A function is read before every
   * wait, so the caller may bring it closer (a stopping job); the wait is cut to fit it.
   */
  deadline?: number | (() => number);
  /** Aborting ends the attempt under way (it gets the signal) and any wait: the loop throws `signal.reason`. */
  signal?: AbortSignal | undefined;
  /** Whether an error is worth another attempt. */
  retryable(error: unknown): RetryDecision;
  /** Told about every failed attempt that will be retried, before the wait. */
  onRetry?(notice: RetryNotice): void;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
  now?: () => number;
}

/** What the loop throws when the signal aborted without an Error as its reason. */
export class RetryAbortedError extends Error {
  constructor() {
    super('aborted');
    this.name = 'RetryAbortedError';
  }
}

/** The attempts made by the call that threw `error` (set on every error the loop rethrows). */
export function attemptsOf(error: unknown): number {
  return typeof (error as { attempts?: unknown })?.attempts === 'number' ? (error as { attempts: number }).attempts : 1;
}

const defaultSleep = (ms: number, signal?: AbortSignal) => sleepFor(ms, undefined, signal ? { signal } : undefined);

/**
 * Runs `attempt` until it resolves, the error is not retryable, the attempts or the deadline
 * are used up, or the signal aborts. The last error is rethrown with `attempts` set on it.
 */
export async function retry<T>(attempt: (n: number, signal: AbortSignal | undefined) => Promise<T>, options: RetryOptions): Promise<T> {
  const maxAttempts = Math.max(1, Math.floor(options.maxAttempts ?? Number.POSITIVE_INFINITY));
  const sleep = options.sleep ?? defaultSleep;
  const now = options.now ?? Date.now;
  const deadline = () => (typeof options.deadline === 'function' ? options.deadline() : (options.deadline ?? Number.POSITIVE_INFINITY));
  const { signal } = options;
  for (let n = 1; ; n++) {
    if (signal?.aborted) throw abortReason(signal);
    let error: unknown;
    try {
      return await attempt(n, signal);
    } catch (err) {
      error = err;
    }
    setAttempts(error, n);
    if (signal?.aborted) throw abortReason(signal);
    const decision = n < maxAttempts ? options.retryable(error) : false;
    if (decision === false) throw error;
    const wanted = typeof decision === 'object' ? decision.afterMs : backoffDelay(n, options, options.random);
    const left = deadline() - now();
    if (left <= 0) throw error;
    const delayMs = Math.max(0, Math.min(wanted, left));
    options.onRetry?.({ attempt: n, maxAttempts, delayMs, error });
    try {
      await sleep(delayMs, signal);
    } catch {
      throw signal?.aborted ? abortReason(signal) : error;
    }
  }
}

function setAttempts(error: unknown, attempts: number): void {
  if (error !== null && typeof error === 'object') {
    try {
      (error as { attempts?: number }).attempts = attempts;
    } catch {
      // a frozen error keeps its count
    }
  }
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new RetryAbortedError();
}

/** A signal aborted when any of `signals` is (undefined ones ignored); undefined when none is given. */
export function anySignal(...signals: Array<AbortSignal | undefined>): AbortSignal | undefined {
  const given = signals.filter((s): s is AbortSignal => s !== undefined);
  if (given.length <= 1) return given[0];
  return AbortSignal.any(given);
}
