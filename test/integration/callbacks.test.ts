/**
 * The callback client against the real local receiver over real HTTP: every endpoint, retries,
 * Retry-After, an unreachable backend, a wrong token, ordering, and the receiver's own checks.
 */
import { createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import { fetch } from 'undici';
import { describe, expect, it } from 'vitest';
import { CallbackClient } from '../../src/callbacks/client.js';
import { CALLBACK_KINDS, callbackPath, type CallbackKind } from '../../src/callbacks/schemas.js';
import { CallbackConnectionError } from '../../src/callbacks/transport.js';
import { CallbackDeliveryError, ExitCode } from '../../src/errors.js';
import { Logger } from '../../src/log.js';
import { startCallbackReceiver } from '../../src/dev/receiver.js';
import { EXAMPLE_INPUTS, FAST_RETRY, TEST_CALLBACK_TOKEN, TEST_JOB_ID, TEST_TRACE_ID, useCallbackReceiver } from '../helpers/receiver.js';

const backend = useCallbackReceiver();

/** Calls the client method for `kind` with the example input. */
function send(client: CallbackClient, kind: CallbackKind): Promise<unknown> | undefined {
  const input = EXAMPLE_INPUTS[kind] as never;
  switch (kind) {
    case 'heartbeat':
      client.heartbeat(input);
      return undefined;
    case 'event':
      client.event(input);
      return undefined;
    case 'validation':
      return client.validation(input);
    case 'inferenceProgress':
      client.inferenceProgress(input);
      return undefined;
    case 'exportProgress':
      client.exportProgress(input);
      return undefined;
    case 'trainingDone':
      return client.trainingDone(input);
    case 'testRunDone':
      return client.testRunDone(input);
    case 'inferenceJobDone':
      return client.inferenceJobDone(input);
    case 'exportDone':
      return client.exportDone(input);
  }
}

/** A port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('callbacks over HTTP', () => {
  it('delivers every endpoint, valid, with the contract headers', async () => {
    const client = backend.client();
    for (const kind of CALLBACK_KINDS) await send(client, kind);
    await client.flush(5_000);
    const { received } = backend.receiver;
    expect(received.map((c) => c.kind)).toEqual(CALLBACK_KINDS);
    for (const callback of received) {
      expect(callback).toMatchObject({ valid: true, outcome: 'accepted', status: 200, jobId: TEST_JOB_ID, traceId: TEST_TRACE_ID, errors: [] });
      expect(callback.path).toBe(callbackPath(callback.kind, TEST_JOB_ID));
      expect(callback.headers.authorization).toBe('Bearer [REDACTED]');
      expect(callback.headers['content-type']).toBe('application/json');
      expect(callback.idempotencyKey).toMatch(/^[0-9a-f-]{36}$/);
    }
    expect(new Set(received.map((c) => c.idempotencyKey)).size).toBe(received.length);
  });

  it('prints one readable line per callback', async () => {
    const lines: string[] = [];
    const receiver = await startCallbackReceiver({ token: TEST_CALLBACK_TOKEN, logger: (line) => lines.push(line) });
    const quiet = Logger.create({ sink: () => undefined });
    const client = new CallbackClient({ baseUrl: receiver.url, token: TEST_CALLBACK_TOKEN, jobId: 'abc', traceId: 't', retry: FAST_RETRY, logger: quiet });
    try {
      for (const kind of CALLBACK_KINDS) await send(client, kind);
      client.heartbeat({ epoch: 4, batch: 5, total_batches: 20, total_epochs: 10, progress: 32.5, eta_seconds: Number.NaN, metrics: { loss: 0.5 } });
      await client.flush(5_000);
    } finally {
      await client.close();
      await receiver.close();
    }
    expect(lines).toEqual([
      '[job abc] heartbeat epoch 3/10 (30%) loss=0.52 box_loss=0.21 mAP50-95=0.31',
      '[job abc] event checkpoint_saved: Checkpoint saved at epoch 10',
      '[job abc] validation epoch 10 mAP50-95=0.6523 images=500 classes=2 (new best)',
      '[job abc] done succeeded best_epoch=2 best_loss=0.123 total_time_seconds=3600 checkpoint=s3://bucket/checkpoints/job-abc/best.pt',
      '[job abc] inference progress 50/100 (50%) 25.3 ms/image',
      '[job abc] test-run done succeeded accuracy=0.95 precision=0.89 recall=0.82 results=s3://bucket/test-runs/abc/results.json',
      '[job abc] inference-job done succeeded results=s3://bucket/inference-jobs/abc/results.json',
      '[job abc] export converting 30%: Converting to ONNX format...',
      '[job abc] export done succeeded model=s3://bucket/export-jobs/abc/model.onnx size=22.5MB validation=passed',
      '[job abc] heartbeat epoch 4/10 batch 5/20 (33%) loss=0.5',
    ]);
  });

  it('answers validation with is_best, tracking the best primary metric per job', async () => {
    const client = backend.client();
    const other = backend.client({ jobId: 'job-other' });
    const validate = (c: CallbackClient, value: number, name = 'mAP50-95') =>
      c.validation({ ...EXAMPLE_INPUTS.validation, primary_metric_name: name, primary_metric_value: value });
    expect(await validate(client, 0.4)).toEqual({ status: 'ok', is_best: true });
    expect(await validate(client, 0.3)).toEqual({ status: 'ok', is_best: false });
    expect(await validate(client, 0.5)).toEqual({ status: 'ok', is_best: true });
    expect(await validate(other, 0.1)).toEqual({ status: 'ok', is_best: true });
    const lossJob = backend.client({ jobId: 'job-loss' });
    expect(await validate(lossJob, 0.9, 'val_loss')).toMatchObject({ is_best: true });
    expect(await validate(lossJob, 0.7, 'val_loss')).toMatchObject({ is_best: true });
    expect(await validate(lossJob, 0.8, 'val_loss')).toMatchObject({ is_best: false });
  });

  it('retries a completion refused with 503 and it arrives once, under one Idempotency-Key', async () => {
    backend.receiver.failNext(1, { status: 503, kind: 'trainingDone' });
    const client = backend.client();
    await client.trainingDone(EXAMPLE_INPUTS.trainingDone);
    const attempts = backend.receiver.requests.filter((r) => r.kind === 'trainingDone');
    expect(attempts.map((r) => r.status)).toEqual([503, 200]);
    expect(attempts[0]!.idempotencyKey).toBe(attempts[1]!.idempotencyKey);
    expect(backend.receiver.received.filter((c) => c.kind === 'trainingDone')).toHaveLength(1);
  });

  it('honours Retry-After in seconds and retry-after-ms', async () => {
    const client = backend.client();
    backend.receiver.failNext(1, { status: 503, retryAfter: 1 });
    await client.exportDone(EXAMPLE_INPUTS.exportDone);
    backend.receiver.failNext(1, { status: 429, retryAfterMs: 300 });
    await client.inferenceJobDone(EXAMPLE_INPUTS.inferenceJobDone);
    const gap = (kind: CallbackKind) => {
      const [first, second] = backend.receiver.requests.filter((r) => r.kind === kind);
      return second!.receivedAt.getTime() - first!.receivedAt.getTime();
    };
    expect(gap('exportDone')).toBeGreaterThanOrEqual(1_000);
    expect(gap('inferenceJobDone')).toBeGreaterThanOrEqual(300);
    expect(gap('inferenceJobDone')).toBeLessThan(1_000);
  });

  it('retries an attempt that times out; the backend sees the same key twice and counts it once', async () => {
    backend.receiver.failNext(1, { status: 200, delayMs: 400, kind: 'testRunDone' });
    const client = backend.client({ retry: { ...FAST_RETRY, completion: { ...FAST_RETRY.completion, timeoutMs: 100 } } });
    await client.testRunDone(EXAMPLE_INPUTS.testRunDone);
    const attempts = backend.receiver.requests.filter((r) => r.kind === 'testRunDone');
    expect(attempts).toHaveLength(2);
    expect(attempts[0]!.idempotencyKey).toBe(attempts[1]!.idempotencyKey);
    expect(backend.receiver.received.filter((c) => c.kind === 'testRunDone')).toHaveLength(1);
  });

  it('records a repeated delivery as a duplicate and answers it as before', async () => {
    const post = () =>
      fetch(`${backend.receiver.url}${callbackPath('validation', 'job-dup')}`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${TEST_CALLBACK_TOKEN}`, 'X-Trace-ID': 't', 'Content-Type': 'application/json', 'Idempotency-Key': 'same-key' },
        body: JSON.stringify({ ...EXAMPLE_INPUTS.validation, timestamp: new Date().toISOString() }),
      });
    const first = await post();
    const second = await post();
    expect(await first.json()).toEqual({ status: 'ok', is_best: true });
    expect(await second.json()).toEqual({ status: 'ok', is_best: true });
    expect(backend.receiver.requests.map((r) => r.outcome)).toEqual(['accepted', 'duplicate']);
    expect(backend.receiver.received).toHaveLength(1);
  });

  it('keeps going when the backend is down: progress returns at once, the completion fails after its attempts', async () => {
    const port = await closedPort();
    const client = backend.client({
      baseUrl: `http://127.0.0.1:${port}`,
      retry: { progress: FAST_RETRY.progress, completion: { ...FAST_RETRY.completion, maxAttempts: 3 } },
    });
    // "At once": the calls return within one turn of the event loop, without waiting for the
    // refused connections (a wall-clock bound per call flaked on a busy 2-CPU machine: 9 ms once).
    let turned = false;
    setImmediate(() => {
      turned = true;
    });
    const loopStarted = performance.now();
    for (let epoch = 1; epoch <= 20; epoch++) {
      client.heartbeat({ epoch, progress: epoch * 5, metrics: { loss: 1 / epoch } });
      client.event({ event_type: 'epoch_end', message: `epoch ${epoch}` });
    }
    expect(turned).toBe(false);
    // Nor do they block synchronously (a retry that slept would take seconds).
    expect(performance.now() - loopStarted).toBeLessThan(1_000);

    const started = performance.now();
    const error = await client.trainingDone(EXAMPLE_INPUTS.trainingDone).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CallbackDeliveryError);
    expect(error).toMatchObject({ exitCode: ExitCode.callbackUndelivered });
    expect((error as Error).message).toContain(
      `Could not deliver the training completion callback (status succeeded) after 3 attempts: POST http://127.0.0.1:${port}/api/v1/jobs/${TEST_JOB_ID}/done failed to connect: connect ECONNREFUSED`,
    );
    expect((error as Error).cause).toBeInstanceOf(CallbackConnectionError);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(client.stats()).toEqual({ delivered: 0, dropped: 40, queued: 0 });
    // Heartbeats waiting behind a failing one are replaced by the newest; every loss is counted
    // in one summary line instead of a warning per callback.
    const summaries = backend.logLines.filter((l) => l.includes('Progress callbacks not delivered'));
    expect(summaries).toHaveLength(1);
    expect(summaries[0]).toContain('19 heartbeat (replaced by a newer one), 20 event (delivery failed), 1 heartbeat (delivery failed)');
    expect(summaries[0]).toContain('ECONNREFUSED');
  });

  it('does not retry a wrong token, and never shows the token', async () => {
    const wrongToken = 'wrong-token-7c1b2e4d';
    const client = backend.client({ token: wrongToken });
    client.heartbeat(EXAMPLE_INPUTS.heartbeat);
    const error = await client.trainingDone(EXAMPLE_INPUTS.trainingDone).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CallbackDeliveryError);
    expect(error).toMatchObject({ status: 401 });
    expect(backend.receiver.requests.map((r) => [r.kind, r.status])).toEqual([
      ['heartbeat', 401],
      ['trainingDone', 401],
    ]);
    const text = `${(error as Error).message}\n${backend.logLines.join('\n')}`;
    expect(text).toContain('answered 401');
    expect(text).not.toContain(wrongToken);
    expect(text).not.toContain(TEST_CALLBACK_TOKEN);
    expect(JSON.stringify(backend.receiver.requests)).not.toContain(wrongToken);
  });

  it('200 heartbeats queued at once: the newest waiting one replaces the others, the completion last', async () => {
    const client = backend.client({ queueLimit: 500 });
    for (let epoch = 1; epoch <= 200; epoch++) client.heartbeat({ epoch, progress: epoch / 2, metrics: { loss: 1 / epoch } });
    await client.trainingDone(EXAMPLE_INPUTS.trainingDone);
    const { received } = backend.receiver;
    const epochs = received.slice(0, -1).map((c) => (c.kind === 'heartbeat' ? c.body.epoch : c.kind));
    // A heartbeat only says where training is now: an older one still waiting is worth nothing.
    expect(epochs.at(-1)).toBe(200);
    expect(epochs).toEqual([...epochs].sort((a, b) => Number(a) - Number(b)));
    expect(received.at(-1)!.kind).toBe('trainingDone');
    expect(client.stats()).toEqual({ delivered: epochs.length, dropped: 200 - epochs.length, queued: 0 });
    expect(backend.logLines.join('\n')).toContain(`${200 - epochs.length} heartbeat (replaced by a newer one)`);
  });

  it('lets a progress callback ride out a brief outage with its short retry', async () => {
    backend.receiver.failNext(2, { status: 502, kind: 'exportProgress' });
    const client = backend.client();
    client.exportProgress(EXAMPLE_INPUTS.exportProgress);
    const delivered = await backend.receiver.waitFor('exportProgress', 5_000);
    expect(delivered.body.stage).toBe('converting');
    expect(backend.receiver.requests.map((r) => r.status)).toEqual([502, 502, 200]);
  });
});

describe('the receiver’s own checks', () => {
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${backend.receiver.url}${path}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${TEST_CALLBACK_TOKEN}`, 'X-Trace-ID': 'trace', 'Content-Type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  const heartbeat = { epoch: 1, progress: 10, metrics: { loss: 0.5 }, timestamp: '2025-01-10T12:34:56Z' };

  it('answers 404 for a path that is not a callback', async () => {
    const response = await post('/api/v1/jobs/abc/unknown', heartbeat);
    expect(response.status).toBe(404);
    expect(backend.receiver.requests[0]).toMatchObject({ outcome: 'not_found', kind: undefined });
  });

  it('answers 401 without the right bearer token, 400 without X-Trace-ID, 415 for other content types', async () => {
    expect((await post(callbackPath('heartbeat', 'a'), heartbeat, { Authorization: 'Bearer nope-nope' })).status).toBe(401);
    expect((await post(callbackPath('heartbeat', 'a'), heartbeat, { 'X-Trace-ID': '' })).status).toBe(400);
    expect((await post(callbackPath('heartbeat', 'a'), heartbeat, { 'Content-Type': 'text/plain' })).status).toBe(415);
    expect(backend.receiver.requests.map((r) => r.outcome)).toEqual(['unauthorized', 'missing_trace_id', 'unsupported_media_type']);
    expect(backend.receiver.received).toHaveLength(0);
  });

  it('answers 422 with the zod issues for a body that breaks the schema', async () => {
    const response = await post(callbackPath('heartbeat', 'a'), { ...heartbeat, epoch: 'three', metrics: { loss: 'NaN' } });
    expect(response.status).toBe(422);
    const answer = (await response.json()) as { issues: Array<{ path: string[] }> };
    expect(answer.issues.map((i) => i.path.join('.'))).toEqual(['epoch', 'metrics.loss']);
    expect(backend.receiver.requests[0]).toMatchObject({ valid: false, outcome: 'invalid' });
    expect(backend.receiver.requests[0]!.errors).toEqual([expect.stringMatching(/^epoch: /), expect.stringMatching(/^metrics\.loss: /)]);
    expect((await post(callbackPath('heartbeat', 'a'), '{not json')).status).toBe(400);
  });

  it('waitFor rejects with what did arrive when the awaited callback does not', async () => {
    await post(callbackPath('heartbeat', 'a'), heartbeat);
    await expect(backend.receiver.waitFor('trainingDone', 50)).rejects.toThrow('No a trainingDone callback within 50 ms; received so far: heartbeat×1');
  });
});
