/** The dev dashboard's model: requests the receiver answered, folded into job views and log lines. */
import { describe, expect, it } from 'vitest';
import { ENDPOINTS, callbackPath, type CallbackKind, type CallbackInput } from '../../src/callbacks/schemas.js';
import { JobBoard, LIMITS } from '../../src/dev/dashboard/board.js';
import type { JobView, LogEntry } from '../../src/dev/dashboard/view.js';
import type { ReceivedRequest } from '../../src/dev/receiver.js';

const T0 = Date.parse('2026-01-01T10:00:00Z');

/** A request as the receiver records an accepted callback: the body parsed by the endpoint's schema. */
function accepted<K extends CallbackKind>(kind: K, jobId: string, body: CallbackInput<K>, atSeconds: number): ReceivedRequest {
  const timestamp = new Date(T0 + atSeconds * 1000).toISOString();
  const parsed = ENDPOINTS[kind].schema.parse({ ...body, timestamp });
  return {
    method: 'POST',
    path: callbackPath(kind, jobId),
    kind,
    jobId,
    body: parsed,
    headers: {},
    idempotencyKey: undefined,
    traceId: 't',
    valid: true,
    errors: [],
    status: 200,
    outcome: 'accepted',
    receivedAt: new Date(T0 + atSeconds * 1000),
  };
}

function feed(board: JobBoard, requests: ReceivedRequest[]): void {
  for (const r of requests) board.record(r);
}

function trainingRun(jobId: string): ReceivedRequest[] {
  const out: ReceivedRequest[] = [
    accepted('event', jobId, { event_type: 'training_started', message: 'Training 3 epochs on cpu', data: { epochs: 3, device: 'cpu' } }, 0),
  ];
  for (let epoch = 1; epoch <= 2; epoch++) {
    const at = epoch * 10;
    out.push(
      accepted(
        'heartbeat',
        jobId,
        {
          epoch,
          progress: ((epoch - 0.5) / 3) * 100,
          metrics: { loss: 3 - epoch, accuracy: 0.1 },
          total_epochs: 3,
          batch: 2,
          total_batches: 4,
          eta_seconds: 40 - epoch * 10,
        },
        at - 5,
      ),
      accepted(
        'heartbeat',
        jobId,
        {
          epoch,
          progress: (epoch / 3) * 100,
          metrics: { loss: 2.5 - epoch, val_loss: 3.5 - epoch, accuracy: 0.3 * epoch, learning_rate: 0.001 },
          total_epochs: 3,
        },
        at,
      ),
      accepted(
        'validation',
        jobId,
        {
          epoch,
          task_type: 'image_classification',
          primary_metric_name: 'accuracy',
          primary_metric_value: epoch === 1 ? 0.3 : 0.25,
          metrics: { accuracy: epoch === 1 ? 0.3 : 0.25, loss: 3.5 - epoch },
          per_class_metrics: [
            { class_id: 0, class_name: 'a', precision: 0.5 },
            { class_id: 1, class_name: 'b', precision: 0.1 },
          ],
          confusion_matrix: [
            [3, 1],
            [2, 2],
          ],
          num_images_validated: 8,
        },
        at,
      ),
    );
  }
  return out;
}

describe('JobBoard: training', () => {
  it('builds per-epoch and per-batch curves, stage, progress, ETA and the best epoch from the callbacks', () => {
    const board = new JobBoard();
    feed(board, trainingRun('j1'));
    const job = board.job('training:j1')!;
    const t = job.training!;
    expect(job).toMatchObject({ id: 'j1', family: 'training', label: 'training', status: 'running', stage: 'training: epoch 2/3 done' });
    expect(job.progress).toBeCloseTo(66.67, 1);
    // 2 epochs in 20 s since training_started: 10 s for the one left.
    expect(job.etaSeconds).toBeCloseTo(10, 5);
    expect(job.etaAt).toBe(new Date(T0 + 20_000).toISOString());
    expect(t.epochs.x).toEqual([1, 2]);
    // The validation's own `loss` is its validation loss: it lands on val_loss, not on the training loss.
    expect(t.epochs.values).toEqual({ loss: [1.5, 0.5], val_loss: [2.5, 1.5], accuracy: [0.3, 0.25], learning_rate: [0.001, 0.001] });
    // Batch points carry the training losses only, at fractional epochs.
    expect(t.batches).toEqual({ x: [0.5, 1.5], values: { loss: [2, 1] } });
    expect(t).toMatchObject({
      totalEpochs: 3,
      epoch: 2,
      batch: null,
      primaryMetricName: 'accuracy',
      bestEpoch: 1,
      bestValue: 0.3,
      taskType: 'image_classification',
    });
    expect(t.latestValidation?.epoch).toBe(2);
    expect(t.latestValidation?.confusion_matrix).toEqual([
      [3, 1],
      [2, 2],
    ]);
    expect(job.milestones.map((m) => m.type)).toEqual(['training_started']);
    expect(job.requestCounts).toEqual({ accepted: 7 });
  });

  it('keeps one row per checkpoint URI (best.pt is rewritten), marks what storage holds, and ends with the completion', () => {
    const board = new JobBoard();
    const best = 's3://vision-platform/checkpoints/job-j2/best.pt';
    const periodic = 's3://vision-platform/checkpoints/job-j2/epoch-2.pt';
    feed(board, [
      ...trainingRun('j2'),
      accepted(
        'event',
        'j2',
        {
          event_type: 'checkpoint_saved',
          message: 'Best checkpoint saved (epoch 1)',
          data: { checkpoint_path: best, epoch: 1, is_best: true, reason: 'best', metrics: { accuracy: 0.3 } },
        },
        21,
      ),
      accepted(
        'event',
        'j2',
        {
          event_type: 'checkpoint_saved',
          message: 'Checkpoint saved at epoch 2',
          data: { checkpoint_path: periodic, epoch: 2, is_best: false, reason: 'periodic', metrics: {} },
        },
        22,
      ),
      accepted('trainingDone', 'j2', { status: 'succeeded', checkpoint_path: best, final_metrics: { best_epoch: 1, best_accuracy: 0.3 } }, 23),
    ]);
    board.setStoredCheckpoints(
      'training:j2',
      new Map([
        [best, 1000],
        ['s3://vision-platform/checkpoints/job-j2/last.pt', 2000],
        ['s3://vision-platform/checkpoints/job-j2/notes.txt', 5],
      ]),
    );
    const job = board.job('training:j2')!;
    expect(job).toMatchObject({ status: 'succeeded', stage: 'succeeded', progress: 100, etaSeconds: null, errorMessage: null });
    expect(job.training!.checkpoints).toEqual([
      { uri: best, epoch: 1, reason: 'best', isBest: true, metrics: { accuracy: 0.3 }, sizeBytes: 1000, inStorage: true },
      { uri: periodic, epoch: 2, reason: 'periodic', isBest: false, metrics: {}, sizeBytes: null, inStorage: false },
      { uri: 's3://vision-platform/checkpoints/job-j2/last.pt', epoch: null, reason: null, isBest: false, metrics: {}, sizeBytes: 2000, inStorage: true },
    ]);
    expect(job.training!.finalMetrics).toEqual({ best_epoch: 1, best_accuracy: 0.3 });
  });

  it('a failed completion shows its message as the stage', () => {
    const board = new JobBoard();
    feed(board, [accepted('trainingDone', 'j3', { status: 'failed', error_message: 'CUDA out of memory\nTry BATCH_SIZE=8' }, 1)]);
    expect(board.job('training:j3')).toMatchObject({
      status: 'failed',
      stage: 'failed: CUDA out of memory',
      errorMessage: 'CUDA out of memory\nTry BATCH_SIZE=8',
    });
  });
});

describe('JobBoard: refused requests', () => {
  it("counts and logs them with the receiver's reasons, without changing the job", () => {
    const board = new JobBoard();
    const changes: Array<{ job?: JobView; log?: LogEntry }> = [];
    board.subscribe((c) => changes.push(c));
    feed(board, trainingRun('j4').slice(0, 2));
    const before = JSON.stringify(board.job('training:j4'));
    board.record({
      ...accepted('heartbeat', 'j4', { epoch: 9, progress: 90, metrics: {} }, 30),
      body: { epoch: -1 },
      valid: false,
      errors: ['epoch: Too small: expected number to be >=0'],
      status: 422,
      outcome: 'invalid',
    });
    board.record({
      ...accepted('heartbeat', 'j4', { epoch: 9, progress: 90, metrics: {} }, 31),
      path: '/nowhere',
      kind: undefined,
      jobId: undefined,
      valid: false,
      errors: ['not a callback path'],
      status: 404,
      outcome: 'not_found',
    });

    const job = board.job('training:j4')!;
    expect(JSON.stringify({ ...job, requestCounts: {}, lastSeen: '' })).toBe(JSON.stringify({ ...JSON.parse(before), requestCounts: {}, lastSeen: '' }));
    expect(job.requestCounts).toEqual({ accepted: 2, invalid: 1 });
    const log = board.recentLog();
    expect(log.map((e) => [e.seq, e.kind, e.status, e.outcome, e.valid, e.jobKey])).toEqual([
      [1, 'event', 200, 'accepted', true, 'training:j4'],
      [2, 'heartbeat', 200, 'accepted', true, 'training:j4'],
      [3, 'heartbeat', 422, 'invalid', false, 'training:j4'],
      [4, null, 404, 'not_found', false, null],
    ]);
    expect(log[1]!.summary).toBe('heartbeat epoch 1/3 batch 2/4 (17%) loss=2 accuracy=0.1');
    expect(log[2]!.summary).toBe('epoch: Too small: expected number to be >=0');
    expect(board.request(3)?.body).toEqual({ epoch: -1 });
    // Every request is announced; job changes only for requests that name a job.
    expect(changes.map((c) => [c.log?.seq, c.job?.key ?? null])).toEqual([
      [1, 'training:j4'],
      [2, 'training:j4'],
      [3, 'training:j4'],
      [4, null],
    ]);
  });

  it('keeps at most LIMITS.logEntries log lines, forgetting the oldest requests', () => {
    const board = new JobBoard();
    const heartbeat = accepted('heartbeat', 'j5', { epoch: 1, progress: 1, metrics: { loss: 1 }, total_epochs: 1 }, 0);
    for (let i = 0; i < LIMITS.logEntries + 3; i++) board.record(heartbeat);
    const log = board.recentLog(LIMITS.logEntries + 10);
    expect(log).toHaveLength(LIMITS.logEntries);
    expect(log[0]!.seq).toBe(4);
    expect(board.request(3)).toBeUndefined();
    expect(board.request(4)).toBeDefined();
  });
});

describe('JobBoard: inference and export', () => {
  it('a test run: progress with an ETA from the observed rate, then its completion and results paths', () => {
    const board = new JobBoard();
    feed(board, [
      accepted('inferenceProgress', 'tr1', { processed_images: 10, total_images: 40, progress_percent: 25, avg_inference_time_ms: 50 }, 0),
      accepted('inferenceProgress', 'tr1', { processed_images: 20, total_images: 40, progress_percent: 50, avg_inference_time_ms: 50 }, 5),
    ]);
    let job = board.job('inference:tr1')!;
    expect(job).toMatchObject({ label: 'inference', stage: 'predicting: 20/40 images', progress: 50 });
    expect(job.etaSeconds).toBeCloseTo(10, 5); // 10 images per 5 s, 20 left
    feed(board, [
      accepted(
        'testRunDone',
        'tr1',
        {
          status: 'succeeded',
          overall_metrics: { accuracy: 0.9 },
          per_class_metrics: [{ class_id: 0, class_name: 'a', precision: 1 }],
          results_path: 's3://b/test_runs/tr1/results.json',
          visualizations_path: 's3://b/test_runs/tr1/visualizations/',
          xai_results_path: 's3://b/test_runs/tr1/xai/',
        },
        9,
      ),
    ]);
    job = board.job('inference:tr1')!;
    expect(job).toMatchObject({ label: 'test run', status: 'succeeded', progress: 100 });
    expect(job.inference).toMatchObject({
      type: 'test_run',
      processed: 20,
      total: 40,
      resultsPath: 's3://b/test_runs/tr1/results.json',
      xaiResultsPath: 's3://b/test_runs/tr1/xai/',
      perClassMetrics: [{ class_name: 'a' }],
    });
    board.setInferenceResults('inference:tr1', {
      error: null,
      numImages: 40,
      failedImages: 0,
      avgInferenceTimeMs: 50,
      confusionMatrixLabels: ['a'],
      images: [],
    });
    expect(board.job('inference:tr1')!.inference!.results?.numImages).toBe(40);
  });

  it('an export: each stage as it came, then the completion; the same id in another family is another job', () => {
    const board = new JobBoard();
    feed(board, [
      accepted('exportProgress', 'x1', { progress_percent: 25, stage: 'converting', message: 'Converting to ONNX format...' }, 0),
      accepted('exportProgress', 'x1', { progress_percent: 60, stage: 'validating', message: 'Validating on 8 images...' }, 2),
      accepted(
        'exportDone',
        'x1',
        { status: 'succeeded', export_path: 's3://b/export-jobs/x1/model.onnx', validation_metrics: { passed: true, accuracy_drop: 0 } },
        3,
      ),
      accepted('heartbeat', 'x1', { epoch: 1, progress: 10, metrics: {} }, 4),
    ]);
    const job = board.job('export:x1')!;
    expect(job.export!.stages.map((s) => [s.stage, s.percent])).toEqual([
      ['converting', 25],
      ['validating', 60],
    ]);
    expect(job).toMatchObject({ status: 'succeeded', progress: 100 });
    expect(job.export!.done?.validation_metrics).toEqual({ passed: true, accuracy_drop: 0 });
    expect(board.allJobs().map((j) => j.key)).toEqual(['export:x1', 'training:x1']);
  });
});
