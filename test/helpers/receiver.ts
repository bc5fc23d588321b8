/**
 * One real callback receiver per test file, reset before each test, plus clients pointed at
 * it with retry delays short enough for tests, logging into `logLines` rather than stdout.
 * Set RECEIVER_PRINT=1 to see the receiver's lines.
 *
 *   const backend = useCallbackReceiver();
 *   it('…', async () => {
 *     const client = backend.client();
 *     client.heartbeat({ epoch: 1, progress: 10, metrics: { loss: 0.5 } });
 *     await backend.receiver.waitFor('heartbeat');
 *   });
 */
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { CallbackClient, type CallbackClientOptions } from '../../src/callbacks/client.js';
import type { CallbackInput, CallbackKind } from '../../src/callbacks/schemas.js';
import type { RetryPolicy } from '../../src/callbacks/transport.js';
import { Logger } from '../../src/log.js';
import { startCallbackReceiver, type CallbackReceiver, type CallbackReceiverOptions } from '../../src/dev/receiver.js';

export const TEST_CALLBACK_TOKEN = 'test-callback-token-5f2c9a';
export const TEST_JOB_ID = 'job-test-1';
export const TEST_TRACE_ID = 'trace-test-1';

/** Retry policies that keep the real shape (several attempts, backoff) but take milliseconds. */
export const FAST_RETRY: { progress: RetryPolicy; completion: RetryPolicy } = {
  progress: { maxAttempts: 3, baseDelayMs: 5, maxDelayMs: 20, timeoutMs: 2_000, maxRetryAfterMs: 2_000 },
  completion: { maxAttempts: 4, baseDelayMs: 5, maxDelayMs: 20, timeoutMs: 2_000, maxRetryAfterMs: 5_000 },
};

export interface ReceiverFixture {
  /** The running receiver (available inside tests and hooks). */
  readonly receiver: CallbackReceiver;
  /** A client for this receiver with FAST_RETRY, logging into logLines; closed after the test. */
  client(overrides?: Partial<CallbackClientOptions>): CallbackClient;
  /** What the fixture's clients logged during the current test (readable lines). */
  readonly logLines: string[];
  /** Environment variables a job needs to call this receiver. */
  env(): { BACKEND_BASE_URL: string; CALLBACK_TOKEN: string };
}

export function useCallbackReceiver(options: Partial<CallbackReceiverOptions> = {}): ReceiverFixture {
  let receiver: CallbackReceiver | undefined;
  const clients: CallbackClient[] = [];
  const logLines: string[] = [];
  const logger = Logger.create({ format: 'text', level: 'debug', sink: (line) => logLines.push(line) });

  beforeAll(async () => {
    receiver = await startCallbackReceiver({ token: TEST_CALLBACK_TOKEN, print: process.env.RECEIVER_PRINT === '1', ...options });
  });
  beforeEach(() => {
    receiver?.reset();
    logLines.length = 0;
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.close(1_000)));
  });
  afterAll(async () => {
    await receiver?.close();
  });

  const running = (): CallbackReceiver => {
    if (!receiver) throw new Error('The callback receiver starts in beforeAll: use it inside tests or hooks.');
    return receiver;
  };

  return {
    get receiver() {
      return running();
    },
    logLines,
    client(overrides = {}) {
      const client = new CallbackClient({
        baseUrl: running().url,
        token: TEST_CALLBACK_TOKEN,
        jobId: TEST_JOB_ID,
        traceId: TEST_TRACE_ID,
        retry: FAST_RETRY,
        flushTimeoutMs: 5_000,
        logger,
        ...overrides,
      });
      clients.push(client);
      return client;
    },
    env() {
      return { BACKEND_BASE_URL: running().url, CALLBACK_TOKEN: TEST_CALLBACK_TOKEN };
    },
  };
}

/** One realistic input per callback kind, as a job would build it. */
export const EXAMPLE_INPUTS: { [K in CallbackKind]: CallbackInput<K> } = {
  heartbeat: {
    epoch: 3,
    progress: 30,
    total_epochs: 10,
    metrics: { loss: 0.52, box_loss: 0.21, 'mAP50-95': 0.31 },
  },
  event: {
    event_type: 'checkpoint_saved',
    message: 'Checkpoint saved at epoch 10',
    data: { checkpoint_path: 's3://bucket/checkpoints/job-abc/epoch-10.pt', epoch: 10, metrics: { loss: 0.2 } },
  },
  validation: {
    epoch: 10,
    task_type: 'object_detection',
    primary_metric_name: 'mAP50-95',
    primary_metric_value: 0.6523,
    metrics: { mAP50: 0.8721, 'mAP50-95': 0.6523, precision: 0.8912, recall: 0.8234, loss: 0.0345 },
    per_class_metrics: [
      { class_id: 0, class_name: 'cat', precision: 0.9, recall: 0.85, ap: 0.88, support: 120 },
      { class_id: 1, class_name: 'dog', precision: 0.88, recall: 0.79, ap: 0.86, support: 95, ap50: 0.93 },
    ],
    pr_curves: {
      cat: { precision: [0.9, 0.88, 0.85], recall: [0.1, 0.2, 0.3] },
      dog: { precision: [0.87, 0.85, 0.82], recall: [0.1, 0.2, 0.3] },
    },
    image_results_path: 's3://bucket/validation-results/job-abc/epoch-10/images.json',
    num_images_validated: 500,
    validation_time_seconds: 45.2,
  },
  trainingDone: {
    status: 'succeeded',
    final_metrics: { best_epoch: 2, best_loss: 0.123, total_time_seconds: 3600 },
    checkpoint_path: 's3://bucket/checkpoints/job-abc/best.pt',
  },
  inferenceProgress: { processed_images: 50, total_images: 100, progress_percent: 50, avg_inference_time_ms: 25.3 },
  testRunDone: {
    status: 'succeeded',
    overall_metrics: { accuracy: 0.95, precision: 0.89, recall: 0.82 },
    per_class_metrics: [{ class_id: 0, class_name: 'cat', precision: 0.9, recall: 0.85, support: 12 }],
    confusion_matrix: [
      [110, 10],
      [4, 101],
    ],
    results_path: 's3://bucket/test-runs/abc/results.json',
    visualizations_path: 's3://bucket/test-runs/abc/visualizations/',
    xai_results_path: null,
  },
  inferenceJobDone: {
    status: 'succeeded',
    results_path: 's3://bucket/inference-jobs/abc/results.json',
    visualizations_path: 's3://bucket/inference-jobs/abc/visualizations/',
  },
  exportProgress: { progress_percent: 30, stage: 'converting', message: 'Converting to ONNX format...' },
  exportDone: {
    status: 'succeeded',
    export_path: 's3://bucket/export-jobs/abc/model.onnx',
    metadata_path: 's3://bucket/export-jobs/abc/metadata.json',
    package_path: 's3://bucket/export-jobs/abc/package.zip',
    model_info: { model_size_mb: 22.5, inference_speed_ms: 15.3, input_shape: [1, 3, 640, 640], output_shape: [1, 84, 8400] },
    validation_metrics: { accuracy: 0.94, original_accuracy: 0.95, accuracy_drop: 0.01, passed: true },
  },
};
