import { describe, expect, it } from 'vitest';
import { buildPayload, CallbackPayloadError, sanitizeNumbers } from '../../src/callbacks/payload.js';
import {
  CALLBACK_KINDS,
  callbackPath,
  ENDPOINTS,
  HeartbeatSchema,
  matchCallbackPath,
  ValidationResponseSchema,
  type CallbackKind,
} from '../../src/callbacks/schemas.js';
import { EXAMPLE_INPUTS } from '../helpers/receiver.js';

const NOW = new Date('2025-01-10T12:34:56.789Z');

describe('sanitizeNumbers', () => {
  it('turns NaN and ±Infinity into null at any depth and reports where', () => {
    const replaced: string[] = [];
    const out = sanitizeNumbers({ loss: Number.NaN, ok: 0.5, nested: { curve: [1, Number.POSITIVE_INFINITY, { deep: Number.NEGATIVE_INFINITY }] } }, (path) =>
      replaced.push(path),
    );
    expect(out).toEqual({ loss: null, ok: 0.5, nested: { curve: [1, null, { deep: null }] } });
    expect(replaced).toEqual(['loss', 'nested.curve[1]', 'nested.curve[2].deep']);
  });

  it('drops undefined object entries as JSON would, and leaves other values alone', () => {
    expect(sanitizeNumbers({ a: undefined, b: 'text', c: true, d: null, e: [0, -1.5] })).toEqual({ b: 'text', c: true, d: null, e: [0, -1.5] });
    expect(sanitizeNumbers(Number.NaN)).toBeNull();
  });
});

describe('buildPayload', () => {
  it('sends a NaN loss as null and stamps an ISO UTC timestamp', () => {
    const { body, nonFinite } = buildPayload('heartbeat', { epoch: 2, progress: 20, metrics: { loss: Number.NaN, mAP50: 0.4 } }, NOW);
    expect(body).toEqual({ epoch: 2, progress: 20, metrics: { loss: null, mAP50: 0.4 }, timestamp: '2025-01-10T12:34:56.789Z' });
    expect(nonFinite).toEqual(['metrics.loss']);
    expect(JSON.stringify(body)).not.toMatch(/NaN|Infinity/);
  });

  it('accepts a heartbeat sent between epochs, with an unknown ETA as null', () => {
    const input = { epoch: 4, batch: 5, total_batches: 20, total_epochs: 10, progress: 32.5, eta_seconds: Number.POSITIVE_INFINITY, metrics: {} };
    expect(buildPayload('heartbeat', input, NOW).body).toMatchObject({ batch: 5, total_batches: 20, eta_seconds: null });
  });

  it.each(CALLBACK_KINDS)('accepts a realistic %s body and fills its defaults', (kind) => {
    const { body } = buildPayload(kind, EXAMPLE_INPUTS[kind] as never, NOW);
    expect(body).toMatchObject({ timestamp: NOW.toISOString() });
    expect(ENDPOINTS[kind].schema.safeParse(body).success).toBe(true);
  });

  it('fills the design’s explicit nulls and empty objects in a failed completion', () => {
    const { body } = buildPayload('trainingDone', { status: 'failed', error_message: 'CUDA out of memory' }, NOW);
    expect(body).toEqual({
      status: 'failed',
      final_metrics: {},
      checkpoint_path: null,
      error_message: 'CUDA out of memory',
      timestamp: NOW.toISOString(),
    });
  });

  const invalid: Array<[string, CallbackKind, Record<string, unknown>, string]> = [
    ['a failed completion without error_message', 'trainingDone', { status: 'failed' }, 'error_message'],
    ['a succeeded completion with an error_message', 'exportDone', { status: 'succeeded', error_message: 'boom' }, 'error_message'],
    ['an unknown status word', 'testRunDone', { status: 'completed' }, 'status'],
    ['an unknown top-level field', 'heartbeat', { epoch: 1, progress: 10, metrics: {}, loss: 0.3 }, 'loss'],
    ['a negative epoch', 'heartbeat', { epoch: -1, progress: 10, metrics: {} }, 'epoch'],
    ['progress over 100', 'heartbeat', { epoch: 1, progress: 130, metrics: {} }, 'progress'],
    ['a metric that is a string', 'heartbeat', { epoch: 1, progress: 10, metrics: { loss: '0.3' } }, 'metrics.loss'],
    ['an event_type that is not snake_case', 'event', { event_type: 'Checkpoint Saved', message: 'x' }, 'event_type'],
    [
      'a PR curve with mismatched lengths',
      'validation',
      { ...EXAMPLE_INPUTS.validation, pr_curves: { cat: { precision: [0.9, 0.8], recall: [0.1] } } },
      'pr_curves.cat',
    ],
    ['an unknown task type', 'validation', { ...EXAMPLE_INPUTS.validation, task_type: 'detection' }, 'task_type'],
    ['more images processed than exist', 'inferenceProgress', { processed_images: 5, total_images: 4, progress_percent: 100 }, 'processed_images'],
    ['an export stage outside the list', 'exportProgress', { progress_percent: 5, stage: 'compiling', message: '' }, 'stage'],
  ];

  it.each(invalid)('rejects %s, naming the field', (_what, kind, input, field) => {
    let error: unknown;
    try {
      buildPayload(kind, input as never, NOW);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(CallbackPayloadError);
    const payloadError = error as CallbackPayloadError;
    expect(payloadError.kind).toBe(kind);
    expect(payloadError.issues.map((i) => [...i.path, ...('keys' in i ? (i.keys as string[]) : [])].join('.'))).toContainEqual(expect.stringContaining(field));
    expect(payloadError.message).toContain(`The ${kind} callback body does not match its schema`);
  });

  it('refuses a timestamp with an offset: the wire format is UTC with Z', () => {
    const parsed = HeartbeatSchema.safeParse({ epoch: 1, progress: 10, metrics: {}, timestamp: '2025-01-10T13:34:56+01:00' });
    expect(parsed.success).toBe(false);
  });
});

describe('ENDPOINTS', () => {
  it("has exactly the platform's callback paths (docs/contract.md)", () => {
    const paths = Object.fromEntries(CALLBACK_KINDS.map((kind) => [kind, ENDPOINTS[kind].path]));
    expect(paths).toEqual({
      heartbeat: '/api/v1/jobs/{JOB_ID}/heartbeat',
      event: '/api/v1/jobs/{JOB_ID}/event',
      validation: '/api/v1/jobs/{JOB_ID}/validation',
      trainingDone: '/api/v1/jobs/{JOB_ID}/done',
      inferenceProgress: '/api/v1/inference/{JOB_ID}/progress',
      testRunDone: '/api/v1/test-runs/{JOB_ID}/done',
      inferenceJobDone: '/api/v1/inference/jobs/{JOB_ID}/done',
      exportProgress: '/api/v1/export/jobs/{JOB_ID}/progress',
      exportDone: '/api/v1/export/jobs/{JOB_ID}/done',
    });
  });

  it('marks only the four done endpoints as completions', () => {
    const completions = CALLBACK_KINDS.filter((kind) => ENDPOINTS[kind].delivery === 'completion');
    expect(completions).toEqual(['trainingDone', 'testRunDone', 'inferenceJobDone', 'exportDone']);
  });

  it.each(CALLBACK_KINDS)('routes the %s path back to its kind and job id, even for odd job ids', (kind) => {
    for (const jobId of ['550e8400-e29b-41d4-a716-446655440000', 'job with/slash?']) {
      const path = callbackPath(kind, jobId);
      expect(matchCallbackPath(path)).toEqual({ kind, jobId });
    }
  });

  it('matches no other path', () => {
    for (const path of ['/api/v1/jobs/abc', '/api/v1/jobs/abc/heartbeat/extra', '/api/v2/jobs/abc/done', '/api/v1/jobs//done', '/']) {
      expect(matchCallbackPath(path)).toBeUndefined();
    }
  });
});

describe('ValidationResponseSchema', () => {
  it('reads {status, is_best} and keeps fields the backend adds', () => {
    expect(ValidationResponseSchema.parse({ status: 'ok', is_best: true, best_epoch: 4 })).toEqual({ status: 'ok', is_best: true, best_epoch: 4 });
    expect(ValidationResponseSchema.safeParse({ status: 'ok' }).success).toBe(false);
  });
});
