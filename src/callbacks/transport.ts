/**
 * The one place that sends a callback over HTTP and decides whether, and when, to try again.
 * Both delivery paths use it: progress callbacks with a short policy, completions with a long
 * one. The loop itself is the shared retry core (src/net/retry.ts, which storage uses too);
 * this file adds what is HTTP's: one `isRetryable` rule (408, 409, 429, 5xx, connection
 * failures and timeouts), Retry-After honoured in its three spellings, otherwise exponential
 * backoff with jitter.
 *
 * undici's RetryAgent was considered: it has no jitter (thousands of jobs retrying an
 * outage in lockstep is what jitter prevents), ignores `retry-after-ms`, and gives no hook to
 * log each failed attempt, so the loop is written here.
 *
 * Errors thrown here are internal to the callbacks package; the client turns a failed
 * completion into CallbackDeliveryError. Messages name the URL without its query and a
 * redacted, truncated excerpt of the server's answer, never the request headers.
 */
import { setTimeout as sleepFor } from 'node:timers/promises';
import { fetch as undiciFetch, type Dispatcher } from 'undici';
import { backoffDelay, retry } from '../net/retry.js';
import { describeUrl, redact } from '../redact.js';

export { backoffDelay };

export interface RetryPolicy {
  /** Attempts in all, the first one included (1 = never retry). */
  maxAttempts: number;
  /** Delay before the first retry; it doubles for each retry after that. */
  baseDelayMs: number;
  /** Ceiling of the computed backoff delay. */
  maxDelayMs: number;
  /** Per attempt: connecting, sending and reading the answer. */
  timeoutMs: number;
  /** The longest Retry-After honoured; a server asking for more gets this much. */
  maxRetryAfterMs: number;
}

/** Progress callbacks are worth a couple of quick tries, then they are stale. */
export const PROGRESS_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({
  maxAttempts: 3,
  baseDelayMs: 250,
  maxDelayMs: 2_000,
  timeoutMs: 10_000,
  maxRetryAfterMs: 5_000,
});

/** A completion rides out a backend restart: 8 attempts over roughly two minutes. */
export const COMPLETION_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({
  maxAttempts: 8,
  baseDelayMs: 1_000,
  maxDelayMs: 30_000,
  timeoutMs: 30_000,
  maxRetryAfterMs: 120_000,
});

export interface HeadersLike {
  get(name: string): string | null;
}

export interface FetchResponseLike {
  status: number;
  statusText: string;
  headers: HeadersLike;
  text(): Promise<string>;
}

export interface FetchInit {
  method: 'POST';
  headers: Record<string, string>;
  body: string;
  signal: AbortSignal;
  redirect: 'manual';
  dispatcher?: Dispatcher;
}

/** undici's fetch, the global fetch, or a test double. */
export type FetchLike = (url: string, init: FetchInit) => Promise<FetchResponseLike>;

export interface TransportRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
}

export interface TransportResponse {
  status: number;
  headers: HeadersLike;
  body: string;
  attempts: number;
}

export interface RetryNotice {
  /** The attempt that just failed, counting from 1. */
  attempt: number;
  maxAttempts: number;
  delayMs: number;
  error: CallbackTransportError;
}

export interface SendOptions {
  /** Aborting gives up at once: no more attempts, the current one is cancelled. */
  signal?: AbortSignal;
  onRetry?: (notice: RetryNotice) => void;
}

// ---------------------------------------------------------------------------------------
// Errors

const BODY_EXCERPT_CHARS = 300;

export abstract class CallbackTransportError extends Error {
  abstract readonly retryable: boolean;
  /** Attempts made when this error ended the delivery. */
  attempts = 1;
  constructor(message: string, options?: { cause?: unknown }) {
    super(redact(message), options);
    this.name = new.target.name;
  }
}

/** The server answered with a status other than 2xx. */
export class CallbackHttpError extends CallbackTransportError {
  readonly status: number;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  readonly bodyExcerpt: string;
  constructor(url: string, response: { status: number; statusText: string; headers: HeadersLike }, body: string) {
    const excerpt = excerptOf(body);
    const location = response.headers.get('location');
    const redirectHint = location ? ` (redirected to ${describeUrl(location)}: set BACKEND_BASE_URL to the final address)` : '';
    const reason = response.statusText ? ` ${response.statusText}` : '';
    super(`POST ${describeUrl(url)} answered ${response.status}${reason}${redirectHint}${excerpt ? `: ${excerpt}` : ''}`);
    this.status = response.status;
    this.retryable = isRetryableStatus(response.status);
    this.retryAfterMs = parseRetryAfter(response.headers);
    this.bodyExcerpt = excerpt;
  }
}

/** No answer: refused, reset, DNS failure, TLS failure. */
export class CallbackConnectionError extends CallbackTransportError {
  readonly retryable = true;
  readonly code: string | undefined;
  constructor(url: string, cause: unknown) {
    const root = rootCause(cause);
    const code = typeof (root as { code?: unknown })?.code === 'string' ? (root as { code: string }).code : undefined;
    const detail = root instanceof Error ? root.message : String(root);
    super(`POST ${describeUrl(url)} failed to connect: ${code && !detail.includes(code) ? `${code} ` : ''}${detail}`, { cause });
    this.code = code;
  }
}

/** The attempt took longer than the policy's timeoutMs. */
export class CallbackTimeoutError extends CallbackTransportError {
  readonly retryable = true;
  readonly timeoutMs: number;
  constructor(url: string, timeoutMs: number) {
    super(`POST ${describeUrl(url)} got no answer within ${timeoutMs} ms`);
    this.timeoutMs = timeoutMs;
  }
}

/** The caller gave up (the client abandons queued progress when a completion is due). */
export class CallbackAbortedError extends CallbackTransportError {
  readonly retryable = false;
  constructor(url: string) {
    super(`POST ${describeUrl(url)} was cancelled`);
  }
}

/** 408 request timeout, 409 conflict (a lock or a concurrent same-key request), 429, 5xx. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

function excerptOf(body: string): string {
  const flat = body.replace(/\s+/g, ' ').trim();
  const cut = flat.length > BODY_EXCERPT_CHARS ? `${flat.slice(0, BODY_EXCERPT_CHARS)}… (${flat.length} chars)` : flat;
  return redact(cut);
}

/** undici wraps the socket error: `TypeError: fetch failed` → cause → the errno error. */
function rootCause(err: unknown): unknown {
  let current = err;
  for (let depth = 0; depth < 5; depth++) {
    const next = (current as { cause?: unknown } | null)?.cause;
    if (next === undefined || next === null) break;
    current = next;
  }
  return current;
}

// ---------------------------------------------------------------------------------------
// Timing

/**
 * How long the server asked us to wait, in ms: `retry-after-ms` (a non-standard header
 * openai-node also reads), then `Retry-After` as seconds or as an HTTP-date.
 */
export function parseRetryAfter(headers: HeadersLike, now: number = Date.now()): number | undefined {
  const millis = headers.get('retry-after-ms');
  if (millis !== null && /^\s*\d+(\.\d+)?\s*$/.test(millis)) return Number(millis);
  const value = headers.get('retry-after');
  if (value === null) return undefined;
  if (/^\s*\d+(\.\d+)?\s*$/.test(value)) return Number(value) * 1000;
  // An HTTP-date always names its weekday and month; anything else (e.g. "-5") is ignored.
  const date = /[a-z]/i.test(value) ? Date.parse(value) : Number.NaN;
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** The wait before the next attempt after `error` ended attempt number `attempt`. */
export function retryDelay(error: CallbackTransportError, attempt: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const asked = error instanceof CallbackHttpError ? error.retryAfterMs : undefined;
  if (asked !== undefined) return Math.min(asked, policy.maxRetryAfterMs);
  return backoffDelay(attempt, policy, random);
}

// ---------------------------------------------------------------------------------------
// The request loop

export interface CallbackTransportOptions {
  fetch?: FetchLike;
  dispatcher?: Dispatcher;
  /** Tests replace the clock's waiting and the jitter. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
}

export class CallbackTransport {
  private readonly fetch: FetchLike;
  private readonly dispatcher: Dispatcher | undefined;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  private readonly random: () => number;

  constructor(options: CallbackTransportOptions = {}) {
    this.fetch = options.fetch ?? (undiciFetch as unknown as FetchLike);
    this.dispatcher = options.dispatcher;
    this.sleep = options.sleep ?? ((ms, signal) => sleepFor(ms, undefined, signal ? { signal } : undefined));
    this.random = options.random ?? Math.random;
  }

  /**
   * POSTs the request until it gets a 2xx or the policy says stop; then throws the last
   * error, with `attempts` set. The same headers (so the same Idempotency-Key) go with every
   * attempt.
   */
  async send(request: TransportRequest, policy: RetryPolicy, options: SendOptions = {}): Promise<TransportResponse> {
    const maxAttempts = Math.max(1, Math.floor(policy.maxAttempts));
    let attempts = 0;
    try {
      const response = await retry(
        (n) => {
          attempts = n;
          return this.attempt(request, policy.timeoutMs, options.signal);
        },
        {
          ...policy,
          maxAttempts,
          signal: options.signal,
          sleep: this.sleep,
          random: this.random,
          retryable: (err) => {
            const error = err as CallbackTransportError;
            if (!error.retryable || options.signal?.aborted) return false;
            return { afterMs: retryDelay(error, attempts, policy, this.random) };
          },
          onRetry: (notice) =>
            options.onRetry?.({ attempt: notice.attempt, maxAttempts, delayMs: notice.delayMs, error: notice.error as CallbackTransportError }),
        },
      );
      return { ...response, attempts };
    } catch (err) {
      // The transport's own errors carry their attempts; a wait cut short by the signal is a cancellation.
      const error = err instanceof CallbackTransportError ? err : new CallbackAbortedError(request.url);
      error.attempts = attempts;
      throw error;
    }
  }

  private async attempt(request: TransportRequest, timeoutMs: number, outer: AbortSignal | undefined): Promise<Omit<TransportResponse, 'attempts'>> {
    if (outer?.aborted) throw new CallbackAbortedError(request.url);
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    const forwardAbort = () => controller.abort();
    outer?.addEventListener('abort', forwardAbort, { once: true });
    try {
      const init: FetchInit = { method: 'POST', headers: request.headers, body: request.body, signal: controller.signal, redirect: 'manual' };
      if (this.dispatcher) init.dispatcher = this.dispatcher;
      const response = await this.fetch(request.url, init);
      // The body is read under the same timeout: a server that stalls mid-answer is a timeout too.
      const body = await response.text();
      if (response.status < 200 || response.status > 299) throw new CallbackHttpError(request.url, response, body);
      return { status: response.status, headers: response.headers, body };
    } catch (err) {
      if (err instanceof CallbackTransportError) throw err;
      if (timedOut) throw new CallbackTimeoutError(request.url, timeoutMs);
      if (controller.signal.aborted) throw new CallbackAbortedError(request.url);
      throw new CallbackConnectionError(request.url, err);
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener('abort', forwardAbort);
    }
  }
}
