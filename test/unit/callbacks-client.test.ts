import { afterEach, describe, expect, it } from 'vitest';
import { CallbackClient, type CallbackClientOptions } from '../../src/callbacks/client.js';
import { CallbackPayloadError } from '../../src/callbacks/payload.js';
import type { FetchInit, FetchLike } from '../../src/callbacks/transport.js';
import { CallbackDeliveryError, ExitCode } from '../../src/errors.js';
import { Logger } from '../../src/log.js';
import { EXAMPLE_INPUTS, FAST_RETRY } from '../helpers/receiver.js';

const TOKEN = 'unit-client-token-9d8e7f';

interface Sent {
  url: string;
  init: FetchInit;
  body: Record<string, unknown>;
}

/** A backend double: answers each request with the next status in `statuses` (then 200). */
function fakeBackend(statuses: number[] = []) {
  const sent: Sent[] = [];
  const fetch: FetchLike = async (url, init) => {
    sent.push({ url, init, body: JSON.parse(init.body) as Record<string, unknown> });
    const status = statuses.shift() ?? 200;
    const body = url.endsWith('/validation') ? '{"status":"ok","is_best":true}' : `{"status":"${status === 200 ? 'ok' : 'error'}"}`;
    return { status, statusText: '', headers: { get: () => null }, text: async () => body };
  };
  return { fetch, sent };
}

const clients: CallbackClient[] = [];
function makeClient(overrides: Partial<CallbackClientOptions> & { fetch: FetchLike }) {
  const lines: string[] = [];
  const logger = Logger.create({ format: 'text', level: 'debug', sink: (line) => lines.push(line) });
  const client = new CallbackClient({
    baseUrl: 'http://backend.test/',
    token: TOKEN,
    jobId: 'job-1',
    traceId: 'trace-1',
    retry: FAST_RETRY,
    logger,
    ...overrides,
  });
  clients.push(client);
  return { client, lines };
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close(100)));
});

describe('CallbackClient', () => {
  it('sends the contract headers and a fresh Idempotency-Key per callback', async () => {
    const { fetch, sent } = fakeBackend();
    const { client } = makeClient({ fetch });
    client.heartbeat(EXAMPLE_INPUTS.heartbeat);
    client.event(EXAMPLE_INPUTS.event);
    await client.flush(1_000);
    expect(sent.map((s) => s.url)).toEqual(['http://backend.test/api/v1/jobs/job-1/heartbeat', 'http://backend.test/api/v1/jobs/job-1/event']);
    for (const { init } of sent) {
      expect(init.headers).toMatchObject({ Authorization: `Bearer ${TOKEN}`, 'X-Trace-ID': 'trace-1', 'Content-Type': 'application/json' });
      expect(init.headers['Idempotency-Key']).toMatch(/^[0-9a-f-]{36}$/);
    }
    expect(sent[0]!.init.headers['Idempotency-Key']).not.toBe(sent[1]!.init.headers['Idempotency-Key']);
  });

  it('keeps the Idempotency-Key across retries of one completion', async () => {
    const { fetch, sent } = fakeBackend([503, 500]);
    const { client } = makeClient({ fetch });
    await client.trainingDone(EXAMPLE_INPUTS.trainingDone);
    expect(sent).toHaveLength(3);
    expect(new Set(sent.map((s) => s.init.headers['Idempotency-Key'])).size).toBe(1);
  });

  it('sends NaN metrics as null and says which', async () => {
    const { fetch, sent } = fakeBackend();
    const { client, lines } = makeClient({ fetch });
    client.heartbeat({ epoch: 1, progress: 10, metrics: { loss: Number.NaN, lr: 0.01 } });
    await client.flush(1_000);
    expect(sent[0]!.body.metrics).toEqual({ loss: null, lr: 0.01 });
    expect(lines.join('\n')).toContain('heartbeat callback: non-finite numbers sent as null: metrics.loss');
  });

  it('logs a malformed progress callback as a bug, sends nothing, and does not throw', async () => {
    const { fetch, sent } = fakeBackend();
    const { client, lines } = makeClient({ fetch });
    expect(() => client.heartbeat({ epoch: -3, progress: 10, metrics: {} })).not.toThrow();
    await expect(client.validation({ ...EXAMPLE_INPUTS.validation, task_type: 'nope' as never })).resolves.toBeUndefined();
    await client.flush(1_000);
    expect(sent).toHaveLength(0);
    const text = lines.join('\n');
    expect(text).toContain('ERROR heartbeat callback not sent: The heartbeat callback body does not match its schema');
    expect(text).toContain('→ at epoch');
    expect(text).toContain('ERROR validation callback not sent');
  });

  it('rejects a malformed completion with CallbackPayloadError before sending anything', async () => {
    const { fetch, sent } = fakeBackend();
    const { client } = makeClient({ fetch });
    const error = await client.exportDone({ status: 'failed' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CallbackPayloadError);
    expect((error as CallbackPayloadError).exitCode).toBe(ExitCode.internal);
    expect(sent).toHaveLength(0);
  });

  it('returns the backend’s is_best answer to those who await validation()', async () => {
    const { fetch } = fakeBackend();
    const { client } = makeClient({ fetch });
    await expect(client.validation(EXAMPLE_INPUTS.validation)).resolves.toEqual({ status: 'ok', is_best: true });
  });

  it('sends a completion only after the progress queued before it', async () => {
    const { fetch, sent } = fakeBackend();
    const { client } = makeClient({ fetch });
    for (let epoch = 1; epoch <= 3; epoch++) {
      client.event({ ...EXAMPLE_INPUTS.event, data: { epoch } });
      client.validation({ ...EXAMPLE_INPUTS.validation, epoch });
    }
    await client.trainingDone(EXAMPLE_INPUTS.trainingDone);
    expect(sent.map((s) => s.url.split('/').pop())).toEqual(['event', 'validation', 'event', 'validation', 'event', 'validation', 'done']);
  });

  it('derives a completion Idempotency-Key from the job and the content, not the time', async () => {
    const { fetch, sent } = fakeBackend();
    const { client } = makeClient({ fetch });
    await client.trainingDone(EXAMPLE_INPUTS.trainingDone);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const again = makeClient({ fetch }).client;
    await again.trainingDone(EXAMPLE_INPUTS.trainingDone);
    await again.trainingDone({ ...EXAMPLE_INPUTS.trainingDone, final_metrics: { best_epoch: 3 } });
    const keys = sent.map((s) => s.init.headers['Idempotency-Key']);
    expect(sent[0]!.body.timestamp).not.toBe(sent[1]!.body.timestamp);
    expect(keys[0]).toBe(keys[1]);
    expect(keys[2]).not.toBe(keys[0]);
    expect(keys[0]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('abandons stuck progress when a completion is due, so the completion still goes', async () => {
    const sent: string[] = [];
    const fetch: FetchLike = (url, init) => {
      sent.push(url);
      if (url.endsWith('/done')) return Promise.resolve({ status: 200, statusText: '', headers: { get: () => null }, text: async () => '' });
      return new Promise((_resolve, reject) => init.signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))));
    };
    const { client, lines } = makeClient({ fetch, flushTimeoutMs: 50, retry: { ...FAST_RETRY, progress: { ...FAST_RETRY.progress, timeoutMs: 60_000 } } });
    client.event(EXAMPLE_INPUTS.event);
    client.event(EXAMPLE_INPUTS.event);
    await client.trainingDone(EXAMPLE_INPUTS.trainingDone);
    expect(sent.map((u) => u.split('/').pop())).toEqual(['event', 'done']);
    expect(client.stats()).toEqual({ delivered: 0, dropped: 2, queued: 0 });
    expect(lines.join('\n')).toContain('Gave up on 1 queued progress callback (and any in flight)');
  });

  it('keeps only the newest waiting heartbeat, and never drops a validation or checkpoint event before a heartbeat', async () => {
    const { fetch, sent } = fakeBackend();
    const { client, lines } = makeClient({ fetch, queueLimit: 3 });
    for (let epoch = 1; epoch <= 5; epoch++) client.heartbeat({ epoch, progress: epoch * 20, metrics: {} });
    client.validation({ ...EXAMPLE_INPUTS.validation, epoch: 5 });
    client.event(EXAMPLE_INPUTS.event); // checkpoint_saved
    client.event({ event_type: 'dataset_prepared', message: 'a milestone', data: {} });
    client.event({ event_type: 'dataset_prepared', message: 'another milestone', data: {} });
    await client.close(1_000);
    // Heartbeats 1-4 were replaced by 5; when the queue overflowed, heartbeat 5 went, then the oldest milestone.
    expect(sent.map((s) => s.url.split('/').pop())).toEqual(['validation', 'event', 'event']);
    expect(sent.map((s) => s.body.event_type).filter(Boolean)).toEqual(['checkpoint_saved', 'dataset_prepared']);
    expect(sent[2]!.body.message).toBe('another milestone');
    const summaries = lines.filter((l) => l.includes('Progress callbacks not delivered'));
    expect(summaries).toHaveLength(1);
    expect(summaries[0]).toContain('4 heartbeat (replaced by a newer one)');
    expect(summaries[0]).toContain('1 heartbeat (queue full)');
    expect(summaries[0]).toContain('1 event (queue full)');
    expect(client.stats()).toMatchObject({ delivered: 3, dropped: 6 });
  });

  it("an export's progress is replaced only by a newer update of the same stage: every stage reaches the backend", async () => {
    const { fetch, sent } = fakeBackend();
    const { client } = makeClient({ fetch });
    const steps: Array<[string, number]> = [
      ['downloading', 2],
      ['converting', 10],
      ['converting', 20],
      ['converting', 30],
      ['validating', 60],
      ['packaging', 80],
      ['packaging', 90],
    ];
    for (const [stage, percent] of steps) client.exportProgress({ stage: stage as 'converting', progress_percent: percent, message: `${stage} ${percent}` });
    await client.close(1_000);
    expect(sent.map((s) => [s.body.stage, s.body.progress_percent])).toEqual([
      ['downloading', 2],
      ['converting', 30],
      ['validating', 60],
      ['packaging', 90],
    ]);
  });

  it('sums up progress that could not be delivered in one line per interval, not one per drop', async () => {
    const fetch: FetchLike = async () => ({ status: 503, statusText: '', headers: { get: () => null }, text: async () => 'down' });
    const { client, lines } = makeClient({
      fetch,
      dropSummaryIntervalMs: 60_000,
      retry: { ...FAST_RETRY, progress: { ...FAST_RETRY.progress, maxAttempts: 1 } },
    });
    for (let i = 0; i < 200; i++) {
      client.heartbeat({ epoch: i, progress: 0, metrics: {} });
      client.event({ event_type: 'dataset_prepared', message: `m${i}`, data: {} });
      await new Promise((resolve) => setImmediate(resolve));
    }
    await client.flush(5_000);
    expect(lines.filter((l) => l.includes('WARN'))).toHaveLength(0);
    await client.close(100);
    const warnings = lines.filter((l) => l.includes('WARN'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/Progress callbacks not delivered .*heartbeat \(delivery failed\).*event \(delivery failed\).*last error: .*answered 503/);
  });

  it('fails a completion refused with 401 at once, without the token in the error or the logs', async () => {
    const { fetch, sent } = fakeBackend([401]);
    const { client, lines } = makeClient({ fetch });
    const error = await client.testRunDone(EXAMPLE_INPUTS.testRunDone).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CallbackDeliveryError);
    expect(error).toMatchObject({ status: 401, exitCode: ExitCode.callbackUndelivered });
    expect(sent).toHaveLength(1);
    const message = (error as Error).message;
    expect(message).toContain(
      'Could not deliver the test-run completion callback (status succeeded) after 1 attempt: POST http://backend.test/api/v1/test-runs/job-1/done answered 401',
    );
    expect(message).not.toContain(TOKEN);
    expect(lines.join('\n')).not.toContain(TOKEN);
  });

  it('refuses options that cannot work, saying which variable to fix', () => {
    const base = { baseUrl: 'http://backend.test', token: TOKEN, jobId: 'job-1', traceId: 't' };
    expect(() => new CallbackClient({ ...base, baseUrl: 'backend:8080' })).toThrow(/is not an http\(s\) URL; set BACKEND_BASE_URL/);
    expect(() => new CallbackClient({ ...base, jobId: '' })).toThrow(/needs a jobId \(JOB_ID\)/);
    expect(() => new CallbackClient({ ...base, token: '' })).toThrow(/needs a token \(CALLBACK_TOKEN\)/);
  });

  it('ignores progress after close and refuses completions', async () => {
    const { fetch, sent } = fakeBackend();
    const { client } = makeClient({ fetch });
    await client.close();
    client.heartbeat(EXAMPLE_INPUTS.heartbeat);
    await expect(client.inferenceJobDone(EXAMPLE_INPUTS.inferenceJobDone)).rejects.toThrow(/after CallbackClient.close\(\)/);
    expect(sent).toHaveLength(0);
  });
});
