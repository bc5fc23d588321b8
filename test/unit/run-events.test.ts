import { describe, expect, it, vi } from 'vitest';
import type { CallbackClient } from '../../src/callbacks/client.js';
import type { RunEvent } from '../../src/events.js';
import { trainingCompletion, trainingReporter } from '../../src/jobs/train/reporter.js';
import { RunStream } from '../../src/jobs/run-stream.js';
import { StopController } from '../../src/jobs/stop.js';
import { Logger } from '../../src/log.js';
import { clearSecrets, describeUrl, redact, registerSecret } from '../../src/redact.js';

const epoch = (n: number): RunEvent => ({
  type: 'epoch',
  epoch: n,
  epochs: 3,
  progress: (n / 3) * 100,
  losses: { box_loss: 1, loss: 2 },
  learningRate: 0.01,
  metrics: { 'mAP50-95': 0.1 * n, loss: 5 },
  isBest: true,
  epochTimeSeconds: 1,
});
const done: RunEvent = {
  type: 'done',
  status: 'succeeded',
  bestEpoch: 2,
  primaryMetricName: 'mAP50-95',
  bestMetricValue: 0.2,
  checkpointUri: 's3://b/k',
  totalTimeSeconds: 3,
  finalMetrics: { best_epoch: 2 },
  errorMessage: null,
  exitCode: 0,
};

describe('RunStream', () => {
  it('delivers to subscribers in order and to an iterator until done', async () => {
    const stream = new RunStream();
    const seen: number[] = [];
    stream.subscribe((e) => void (e.type === 'epoch' && seen.push(e.epoch)));
    const iterated: string[] = [];
    const reading = (async () => {
      for await (const e of stream) iterated.push(e.type);
    })();
    void stream.emit(epoch(1));
    void stream.emit(epoch(2));
    await stream.emit(done);
    await reading;
    expect(seen).toEqual([1, 2]);
    expect(iterated).toEqual(['epoch', 'epoch', 'done']);
  });

  it('keeps no history when nobody iterates', async () => {
    const stream = new RunStream();
    for (let i = 0; i < 5; i++) void stream.emit(epoch(i));
    const it = stream[Symbol.asyncIterator]();
    void stream.emit(done);
    expect((await it.next()).value).toMatchObject({ type: 'done' });
  });

  it('routes an async subscriber failure to onAsyncError instead of an unhandled rejection', async () => {
    const stream = new RunStream();
    const failures: unknown[] = [];
    stream.onAsyncError = (err) => failures.push(err);
    stream.subscribe(async () => {
      throw new Error('backend adapter broke');
    });
    void stream.emit(epoch(1));
    await new Promise((r) => setTimeout(r, 0));
    expect(failures).toHaveLength(1);
  });

  it('a synchronous subscriber throw reaches the emitter after every consumer has the event', async () => {
    const stream = new RunStream();
    const others: number[] = [];
    stream.subscribe(() => {
      throw new Error('sync');
    });
    stream.subscribe((e) => void (e.type === 'epoch' && others.push(e.epoch)));
    const it = stream[Symbol.asyncIterator]();
    expect(() => stream.emit(epoch(1))).toThrow('sync');
    expect(others).toEqual([1]);
    expect((await it.next()).value).toMatchObject({ type: 'epoch', epoch: 1 });
  });
});

describe('StopController', () => {
  it('keeps the first reason and turns it into the matching error', () => {
    const stop = new StopController();
    const heard: string[] = [];
    stop.onRequest((r) => heard.push(r.kind));
    stop.request({ kind: 'signal', signal: 'SIGTERM' });
    stop.request({ kind: 'time_limit', limitSeconds: 5 });
    expect(heard).toEqual(['signal']);
    expect(stop.toError().exitCode).toBe(143);
    const limited = new StopController();
    limited.request({ kind: 'time_limit', limitSeconds: 5 });
    expect(limited.toError().exitCode).toBe(7);
    expect(() => limited.throwIfRequested()).toThrow(/maximum time limit of 5 s/);
  });
});

describe('trainingReporter', () => {
  function fakeClient() {
    return {
      heartbeat: vi.fn(),
      event: vi.fn(),
      validation: vi.fn(async () => undefined),
      trainingDone: vi.fn(async () => undefined),
    };
  }

  it('maps epochs to heartbeats with training losses, learning rate and the latest validation metrics', () => {
    const client = fakeClient();
    const report = trainingReporter(client as unknown as CallbackClient, 'object_detection');
    report(epoch(2));
    expect(client.heartbeat).toHaveBeenCalledWith({
      epoch: 2,
      progress: (2 / 3) * 100,
      metrics: { 'mAP50-95': 0.2, val_loss: 5, box_loss: 1, loss: 2, learning_rate: 0.01 },
      total_epochs: 3,
    });
  });

  it('sends batch progress at most once per interval', () => {
    const client = fakeClient();
    const report = trainingReporter(client as unknown as CallbackClient, 'object_detection', { batchIntervalMs: 60_000 });
    for (let b = 1; b <= 10; b++)
      report({ type: 'batch', epoch: 1, epochs: 2, batch: b, batches: 10, losses: { loss: 1 }, elapsedSeconds: b, etaSeconds: 20 - b });
    expect(client.heartbeat).toHaveBeenCalledTimes(1);
    expect(client.heartbeat.mock.calls[0]![0]).toMatchObject({ epoch: 1, batch: 1, total_batches: 10, eta_seconds: 19, progress: 5 });
  });

  it('maps checkpoints to checkpoint_saved events, and done to the completion the job context stores and sends', async () => {
    const client = fakeClient();
    const report = trainingReporter(client as unknown as CallbackClient, 'object_detection');
    report({ type: 'checkpoint', epoch: 5, uri: 's3://b/checkpoints/job-1/epoch-5.pt', isBest: false, reason: 'periodic', metrics: {} });
    expect(client.event).toHaveBeenCalledWith(
      expect.objectContaining({
        event_type: 'checkpoint_saved',
        data: expect.objectContaining({ checkpoint_path: 's3://b/checkpoints/job-1/epoch-5.pt', epoch: 5 }),
      }),
    );
    await report(done);
    expect(client.trainingDone).not.toHaveBeenCalled();
    expect(trainingCompletion(done as Extract<RunEvent, { type: 'done' }>)).toEqual({
      kind: 'trainingDone',
      input: { status: 'succeeded', final_metrics: { best_epoch: 2 }, checkpoint_path: 's3://b/k', error_message: null },
    });
  });
});

describe('redaction and logging', () => {
  it('masks registered secrets, presigned signatures, bearer tokens and API keys', () => {
    clearSecrets();
    registerSecret('my-storage-secret');
    const text = redact(
      'key my-storage-secret at https://h/w.pt?X-Amz-Credential=AKIA/x&X-Amz-Signature=abc123 with Bearer eyJhbGciOi.xyz and sk-abcdefghijkl',
    );
    expect(text).not.toMatch(/my-storage-secret|abc123|eyJhbGciOi|sk-abcdefghijkl|AKIA/);
    expect(describeUrl('https://h.example/w.pt?X-Amz-Signature=abc')).toBe('https://h.example/w.pt?…');
    clearSecrets();
  });

  it('writes JSON lines with job_id and trace_id, redacted', () => {
    const lines: string[] = [];
    registerSecret('tok-secret-123');
    const logger = Logger.create({ format: 'json', sink: (l) => lines.push(l) }).child({ job_id: 'j1', trace_id: 't1' });
    logger.info('token tok-secret-123 used', { epoch: 3 });
    const line = JSON.parse(lines[0]!);
    expect(line).toMatchObject({ level: 'info', msg: 'token [REDACTED] used', job_id: 'j1', trace_id: 't1', epoch: 3 });
    clearSecrets();
  });
});
