import { describe, expect, it } from 'vitest';
import {
  backoffDelay,
  CallbackAbortedError,
  CallbackConnectionError,
  CallbackHttpError,
  CallbackTimeoutError,
  CallbackTransport,
  isRetryableStatus,
  parseRetryAfter,
  retryDelay,
  type FetchInit,
  type FetchLike,
  type RetryPolicy,
} from '../../src/callbacks/transport.js';
import { registerSecret } from '../../src/redact.js';

const POLICY: RetryPolicy = { maxAttempts: 4, baseDelayMs: 100, maxDelayMs: 1_000, timeoutMs: 200, maxRetryAfterMs: 5_000 };
const URL_ = 'http://backend.test/api/v1/jobs/j1/done';
const TOKEN = 'secret-token-abcdef';

function headers(values: Record<string, string> = {}) {
  const lower = Object.fromEntries(Object.entries(values).map(([k, v]) => [k.toLowerCase(), v]));
  return { get: (name: string) => lower[name.toLowerCase()] ?? null };
}

function answer(status: number, body = '', extraHeaders: Record<string, string> = {}) {
  return { status, statusText: status === 200 ? 'OK' : 'Error', headers: headers(extraHeaders), text: async () => body };
}

/** A fetch that plays back answers in order and records every call. */
function scriptedFetch(script: Array<ReturnType<typeof answer> | Error>): { fetch: FetchLike; calls: Array<{ url: string; init: FetchInit }> } {
  const calls: Array<{ url: string; init: FetchInit }> = [];
  const fetch: FetchLike = async (url, init) => {
    calls.push({ url, init });
    const next = script[Math.min(calls.length - 1, script.length - 1)]!;
    if (next instanceof Error) throw next;
    return next;
  };
  return { fetch, calls };
}

function recordingSleep(): { sleep: (ms: number) => Promise<void>; waits: number[] } {
  const waits: number[] = [];
  return { waits, sleep: async (ms) => void waits.push(ms) };
}

const request = { url: URL_, headers: { Authorization: `Bearer ${TOKEN}`, 'Idempotency-Key': 'key-1' }, body: '{"status":"succeeded"}' };

describe('parseRetryAfter', () => {
  const now = Date.parse('2025-01-10T12:00:00Z');
  it.each([
    [{ 'Retry-After': '3' }, 3_000],
    [{ 'Retry-After': '0.5' }, 500],
    [{ 'Retry-After': ' 2 ' }, 2_000],
    [{ 'Retry-After': 'Fri, 10 Jan 2025 12:00:07 GMT' }, 7_000],
    [{ 'Retry-After': 'Fri, 10 Jan 2025 11:59:00 GMT' }, 0],
    [{ 'retry-after-ms': '250' }, 250],
    [{ 'retry-after-ms': '250', 'Retry-After': '9' }, 250],
    [{ 'retry-after-ms': 'soon', 'Retry-After': '9' }, 9_000],
    [{ 'Retry-After': 'whenever' }, undefined],
    [{ 'Retry-After': '-5' }, undefined],
    [{}, undefined],
  ])('%j → %s ms', (values, expected) => {
    expect(parseRetryAfter(headers(values), now)).toBe(expected);
  });
});

describe('backoff', () => {
  it('doubles from the base delay up to the ceiling', () => {
    const top = () => 1;
    expect([1, 2, 3, 4, 5, 6].map((retry) => backoffDelay(retry, POLICY, top))).toEqual([100, 200, 400, 800, 1_000, 1_000]);
  });

  it('jitters within the upper half of each step', () => {
    expect(backoffDelay(3, POLICY, () => 0)).toBe(200);
    for (let i = 0; i < 100; i++) {
      const delay = backoffDelay(3, POLICY);
      expect(delay).toBeGreaterThanOrEqual(200);
      expect(delay).toBeLessThanOrEqual(400);
    }
  });

  it('takes the server’s Retry-After over backoff, capped by the policy', () => {
    const asked = new CallbackHttpError(URL_, { status: 503, statusText: '', headers: headers({ 'Retry-After': '2' }) }, '');
    expect(retryDelay(asked, 1, POLICY, () => 1)).toBe(2_000);
    const greedy = new CallbackHttpError(URL_, { status: 429, statusText: '', headers: headers({ 'Retry-After': '3600' }) }, '');
    expect(retryDelay(greedy, 1, POLICY, () => 1)).toBe(5_000);
    const silent = new CallbackHttpError(URL_, { status: 503, statusText: '', headers: headers() }, '');
    expect(retryDelay(silent, 2, POLICY, () => 1)).toBe(200);
  });

  it.each([
    [408, true],
    [409, true],
    [429, true],
    [500, true],
    [503, true],
    [400, false],
    [401, false],
    [403, false],
    [404, false],
    [422, false],
    [301, false],
  ])('status %i retryable: %s', (status, retryable) => {
    expect(isRetryableStatus(status)).toBe(retryable);
  });
});

describe('CallbackTransport.send', () => {
  it('retries 503s and succeeds, sending the very same headers (Idempotency-Key) each time', async () => {
    const { fetch, calls } = scriptedFetch([answer(503), answer(503, '', { 'Retry-After': '1' }), answer(200, '{"status":"ok"}')]);
    const { sleep, waits } = recordingSleep();
    const retries: number[] = [];
    const response = await new CallbackTransport({ fetch, sleep, random: () => 1 }).send(request, POLICY, {
      onRetry: (notice) => retries.push(notice.attempt),
    });
    expect(response).toMatchObject({ status: 200, body: '{"status":"ok"}', attempts: 3 });
    expect(calls).toHaveLength(3);
    expect(new Set(calls.map((c) => c.init.headers['Idempotency-Key']))).toEqual(new Set(['key-1']));
    expect(calls.every((c) => c.init.body === request.body && c.init.method === 'POST' && c.init.redirect === 'manual')).toBe(true);
    expect(waits).toEqual([100, 1_000]);
    expect(retries).toEqual([1, 2]);
  });

  it('does not retry a 4xx such as 401, and says what the server answered', async () => {
    const { fetch, calls } = scriptedFetch([answer(401, '{"detail":"invalid token"}')]);
    const error = await new CallbackTransport({ fetch, sleep: recordingSleep().sleep }).send(request, POLICY).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CallbackHttpError);
    expect(error).toMatchObject({ status: 401, attempts: 1, retryable: false });
    expect((error as Error).message).toBe('POST http://backend.test/api/v1/jobs/j1/done answered 401 Error: {"detail":"invalid token"}');
    expect(calls).toHaveLength(1);
  });

  it('gives up after maxAttempts and reports the last error with the count', async () => {
    const { fetch, calls } = scriptedFetch([answer(502)]);
    const error = await new CallbackTransport({ fetch, sleep: recordingSleep().sleep }).send(request, POLICY).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 502, attempts: 4 });
    expect(calls).toHaveLength(4);
  });

  it('treats a refused connection as retryable and names the cause', async () => {
    const refused = new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' }) });
    const { fetch, calls } = scriptedFetch([refused, answer(200)]);
    const response = await new CallbackTransport({ fetch, sleep: recordingSleep().sleep }).send(request, POLICY);
    expect(response.attempts).toBe(2);
    expect(calls).toHaveLength(2);

    const { fetch: down } = scriptedFetch([refused]);
    const error = await new CallbackTransport({ fetch: down, sleep: recordingSleep().sleep })
      .send(request, { ...POLICY, maxAttempts: 2 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CallbackConnectionError);
    expect(error).toMatchObject({ code: 'ECONNREFUSED', attempts: 2 });
    expect((error as Error).message).toContain('failed to connect: connect ECONNREFUSED 127.0.0.1:9');
  });

  it('times out an attempt that gets no answer, then retries it', async () => {
    let call = 0;
    const fetch: FetchLike = (_url, init) => {
      call++;
      if (call > 1) return Promise.resolve(answer(200));
      return new Promise((_resolve, reject) => init.signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))));
    };
    const notices: string[] = [];
    const started = Date.now();
    const response = await new CallbackTransport({ fetch, sleep: recordingSleep().sleep }).send(
      request,
      { ...POLICY, timeoutMs: 50 },
      {
        onRetry: (notice) => notices.push(notice.error.constructor.name),
      },
    );
    expect(response.attempts).toBe(2);
    expect(notices).toEqual([CallbackTimeoutError.name]);
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('stops at once, without retrying, when the caller aborts', async () => {
    const controller = new AbortController();
    const fetch: FetchLike = (_url, init) =>
      new Promise((_resolve, reject) => init.signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))));
    const pending = new CallbackTransport({ fetch }).send(request, POLICY, { signal: controller.signal });
    setTimeout(() => controller.abort(), 10);
    const error = await pending.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CallbackAbortedError);
    expect(error).toMatchObject({ attempts: 1 });
  });

  it('truncates and redacts what the server said', async () => {
    registerSecret(TOKEN);
    const echo = `{"error":"bad token ${TOKEN}", "auth":"Bearer ${TOKEN}", "padding":"${'x'.repeat(2_000)}"}`;
    const { fetch } = scriptedFetch([answer(400, echo)]);
    const error = (await new CallbackTransport({ fetch }).send(request, POLICY).catch((e: unknown) => e)) as CallbackHttpError;
    expect(error.message).not.toContain(TOKEN);
    expect(error.message).toContain('[REDACTED]');
    expect(error.message.length).toBeLessThan(500);
    expect(error.message).toMatch(/… \(\d+ chars\)$/);
  });

  it('explains a redirect instead of following it', async () => {
    const { fetch } = scriptedFetch([answer(301, '', { Location: 'https://backend.test/api/v1/jobs/j1/done?sig=abc' })]);
    const error = (await new CallbackTransport({ fetch }).send(request, POLICY).catch((e: unknown) => e)) as CallbackHttpError;
    expect(error.retryable).toBe(false);
    expect(error.message).toContain('redirected to https://backend.test/api/v1/jobs/j1/done?…: set BACKEND_BASE_URL to the final address');
  });
});
