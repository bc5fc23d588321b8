/**
 * The platform's own examples of every callback body and stored object (the product design's
 * "API Contract", "Inference Execution" and "Export Execution" sections, written out here as
 * data), and a comparison of what the runtime produced with them, field by field: every name
 * the example has must be there, with the example's JSON type, at the example's nesting. What
 * the runtime adds beyond the example is allowed (add, never rename or reshape).
 *
 * Rules a backend written against the design relies on, and no more:
 * - a number in an example may be null (metrics are finite numbers or null, never NaN);
 * - a `*_path` string may be null (nothing was stored, e.g. a failed job);
 * - null in an example says nothing about the type (e.g. `error_message`);
 * - an array's elements are compared with the example's first element;
 * - a key listed in `tasks` is required only for those task types (`accuracy` is a
 *   classification metric, `mAP50` a detection one); without a task type, none of them is;
 * - a failed completion (`status: "failed"`) has every top-level key, but what a failed job
 *   could not measure is not compared (the design's examples are successes).
 */
import { afterEach, expect } from 'vitest';
import type { TaskType } from '../../src/config/tasks.js';
import type { ReceiverFixture } from './receiver.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface DesignExample {
  example: { [key: string]: Json };
  /** Dotted paths (arrays as `[]`) required only for these task types. */
  tasks?: Record<string, readonly TaskType[]>;
  /** Dotted paths whose value is not compared (only present). */
  free?: readonly string[];
  /** Dotted paths of maps (e.g. pr_curves by class name): any keys, each value shaped as the example's one. */
  maps?: readonly string[];
}

const CLASSIFICATION: readonly TaskType[] = ['image_classification', 'zero_shot_classification'];
const DETECTION: readonly TaskType[] = ['object_detection', 'instance_segmentation', 'pose_estimation'];

const TIMESTAMP = '2025-01-10T12:34:56Z';

export const DESIGN_EXAMPLES = {
  heartbeat: {
    example: { epoch: 5, progress: 10.0, metrics: { loss: 0.234, accuracy: 0.892, learning_rate: 0.001 }, timestamp: TIMESTAMP },
    tasks: { 'metrics.accuracy': CLASSIFICATION },
  },
  /** A heartbeat between epochs (it carries `batch`): an addition on the same endpoint; accuracy is not known before the first validation. */
  batchHeartbeat: {
    example: { epoch: 5, progress: 10.0, metrics: { loss: 0.234, learning_rate: 0.001 }, timestamp: TIMESTAMP },
  },
  event: {
    example: { event_type: 'checkpoint_saved', message: 'Checkpoint saved at epoch 10', data: {}, timestamp: TIMESTAMP },
  },
  checkpointSavedEvent: {
    example: {
      event_type: 'checkpoint_saved',
      message: 'Checkpoint saved at epoch 10',
      data: { checkpoint_path: 's3://bucket/checkpoints/job-abc123/epoch-10.pt', epoch: 10, metrics: {} },
      timestamp: TIMESTAMP,
    },
  },
  trainingDone: {
    example: {
      status: 'succeeded',
      final_metrics: { best_epoch: 42, best_loss: 0.123, best_accuracy: 0.956, total_time_seconds: 3600 },
      checkpoint_path: 's3://bucket/checkpoints/job-abc123/best.pt',
      error_message: null,
      timestamp: TIMESTAMP,
    },
    tasks: { 'final_metrics.best_accuracy': CLASSIFICATION },
  },
  validation: {
    example: {
      epoch: 10,
      task_type: 'object_detection',
      primary_metric_name: 'mAP50-95',
      primary_metric_value: 0.6523,
      metrics: { mAP50: 0.8721, 'mAP50-95': 0.6523, precision: 0.8912, recall: 0.8234, accuracy: 0.9, inference_speed_fps: 45.2, model_size_mb: 12.3 },
      per_class_metrics: [{ class_id: 0, class_name: 'cat', precision: 0.9, recall: 0.85, ap: 0.88, support: 120 }],
      confusion_matrix: [
        [110, 10],
        [4, 101],
      ],
      pr_curves: { cat: { precision: [0.9, 0.88], recall: [0.1, 0.2] } },
      image_results_path: 's3://bucket/validation-results/job-abc123/epoch-10/images.json',
      num_images_validated: 500,
      validation_time_seconds: 45.2,
      timestamp: TIMESTAMP,
    },
    tasks: {
      'metrics.mAP50': DETECTION,
      'metrics.mAP50-95': DETECTION,
      'metrics.accuracy': CLASSIFICATION,
      confusion_matrix: CLASSIFICATION,
      pr_curves: ['object_detection', 'instance_segmentation'],
    },
    maps: ['pr_curves'],
  },
  validationResponse: { example: { status: 'ok', is_best: true } },
  inferenceProgress: {
    example: { processed_images: 50, total_images: 100, progress_percent: 50.0, avg_inference_time_ms: 25.3, timestamp: TIMESTAMP },
  },
  testRunDone: {
    example: {
      status: 'succeeded',
      overall_metrics: { accuracy: 0.95, 'mAP50-95': 0.6523, precision: 0.89, recall: 0.82 },
      per_class_metrics: [{ class_id: 0, class_name: 'cat' }],
      confusion_matrix: [
        [110, 10],
        [4, 101],
      ],
      pr_curves: {},
      results_path: 's3://bucket/test-runs/abc123/results.json',
      visualizations_path: 's3://bucket/test-runs/abc123/visualizations/',
      xai_results_path: 's3://bucket/test-runs/abc123/xai/',
      timestamp: TIMESTAMP,
    },
    tasks: { 'overall_metrics.accuracy': CLASSIFICATION, 'overall_metrics.mAP50-95': DETECTION, confusion_matrix: CLASSIFICATION },
  },
  inferenceJobDone: {
    example: {
      status: 'succeeded',
      results_path: 's3://bucket/inference-jobs/abc123/results.json',
      visualizations_path: 's3://bucket/inference-jobs/abc123/visualizations/',
      xai_results_path: 's3://bucket/inference-jobs/abc123/xai/',
      timestamp: TIMESTAMP,
    },
  },
  exportProgress: {
    example: { progress_percent: 50.0, stage: 'converting', message: 'Converting model to ONNX format...', timestamp: TIMESTAMP },
  },
  exportDone: {
    example: {
      status: 'succeeded',
      export_path: 's3://bucket/export-jobs/abc123/model.onnx',
      metadata_path: 's3://bucket/export-jobs/abc123/metadata.json',
      package_path: 's3://bucket/export-jobs/abc123/package.zip',
      model_info: { model_size_mb: 22.5, inference_speed_ms: 15.3, input_shape: [1, 3, 640, 640], output_shape: [1, 84, 8400] },
      validation_metrics: null,
      error_message: null,
      timestamp: TIMESTAMP,
    },
    // ONNX names dynamic axes ("batch"); a multi-output model lists one shape per output.
    free: ['model_info.input_shape', 'model_info.output_shape'],
  },
  exportValidationMetrics: { example: { accuracy: 0.94, original_accuracy: 0.95, accuracy_drop: 0.01, passed: true } },
  /** results.json; each entry of `results` is `resultsImage`. */
  results: {
    example: { job_id: 'abc123', inference_type: 'test_run', task_type: 'object_detection', num_images: 100, generated_at: TIMESTAMP, results: [] },
  },
  resultsImage: {
    example: { image_path: 'images/0001.jpg', predictions: null, ground_truth: null },
  },
  /** A result's `xai`, when XAI ran: statistics under the method's own name, `explanation` when the LLM ran. */
  resultsXai: {
    example: { method: 'gradcam', heatmap_path: 's3://bucket/test-runs/abc123/xai/0001.png' },
  },
  llmExplanation: {
    example: {
      summary: '...',
      key_factors: ['...'],
      confidence_reasoning: '...',
      alternative_considerations: '...',
      model: 'gpt-4o-mini',
      generated_at: TIMESTAMP,
    },
  },
  metadata: {
    example: {
      format_version: '1.0',
      export_format: 'onnx',
      task_type: 'object_detection',
      model_name: 'yolo11n',
      generated_at: TIMESTAMP,
      model: { framework: 'ultralytics', architecture: 'yolo11n', input_size: [640, 640], num_classes: 80, class_names: ['person'] },
      preprocessing: {},
      postprocessing: {},
      runtime: {},
      optimization: { quantization: null, include_preprocessing: true, include_postprocessing: true },
    },
  },
} satisfies Record<string, DesignExample>;

export type DesignKind = keyof typeof DESIGN_EXAMPLES;

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/** What differs from the design's example: one line per problem, empty when it matches. */
export function designProblems(kind: DesignKind, actual: unknown, taskType?: TaskType): string[] {
  const spec: DesignExample = DESIGN_EXAMPLES[kind];
  const problems: string[] = [];
  const failed = (actual as { status?: unknown } | null)?.status === 'failed';
  const compare = (value: unknown, example: Json, path: string): void => {
    if (example === null || spec.free?.includes(path) || (failed && path !== '')) return;
    const want = typeOf(example);
    const got = typeOf(value);
    if (got === 'null' && (want === 'number' || (want === 'string' && /_path$/.test(path)))) return;
    if (got !== want) {
      problems.push(`${kind}: ${path || '(body)'} is ${got}, the design has ${want}`);
      return;
    }
    if (Array.isArray(example)) {
      if (example.length > 0) (value as unknown[]).forEach((item) => compare(item, example[0]!, `${path}[]`));
      return;
    }
    if (want !== 'object') return;
    if (spec.maps?.includes(path)) {
      const [shape] = Object.values(example as Record<string, Json>);
      for (const [key, item] of Object.entries(value as Record<string, unknown>)) compare(item, shape!, `${path}.${key}`);
      return;
    }
    for (const [key, sub] of Object.entries(example as Record<string, Json>)) {
      const keyPath = path ? `${path}.${key}` : key;
      const onlyFor = spec.tasks?.[keyPath];
      if (onlyFor && (taskType === undefined || !onlyFor.includes(taskType))) continue;
      if (!Object.hasOwn(value as object, key)) problems.push(`${kind}: ${keyPath} is missing`);
      else compare((value as Record<string, unknown>)[key], sub, keyPath);
    }
  };
  compare(actual, DESIGN_EXAMPLES[kind].example, '');
  return problems;
}

/** The design's example for a received callback body: the checkpoint_saved event has its own. */
export function designKindOf(kind: string, body: unknown): DesignKind {
  if (kind === 'event' && (body as { event_type?: string }).event_type === 'checkpoint_saved') return 'checkpointSavedEvent';
  if (kind === 'heartbeat' && (body as { batch?: number }).batch !== undefined) return 'batchHeartbeat';
  return kind as DesignKind;
}

/** Every recorded callback compared with the design; the problems of all of them. */
export function callbackDesignProblems(callbacks: Array<{ kind: string; body: unknown }>, taskType?: TaskType): string[] {
  return callbacks.flatMap((c) => designProblems(designKindOf(c.kind, c.body), c.body, taskType));
}

/** A results.json (test run or inference job) compared with the design, every image included. */
export function resultsDesignProblems(doc: unknown): string[] {
  const d = doc as { task_type?: TaskType; results?: Array<{ xai?: Record<string, unknown> }> };
  const problems = designProblems('results', doc, d.task_type);
  for (const r of d.results ?? []) {
    problems.push(...designProblems('resultsImage', r, d.task_type));
    if (r.xai) {
      problems.push(...designProblems('resultsXai', r.xai, d.task_type));
      const method = r.xai.method as string;
      // A heatmap that failed carries its error instead; method "none" is an LLM explanation without a heatmap.
      const hasHeatmap = method !== 'none' && !r.xai.error;
      if (hasHeatmap && (typeof r.xai[method] !== 'object' || r.xai[method] === null))
        problems.push(`resultsXai: the statistics under "${method}" are missing`);
      // Every explanation has the design's fields: one the model gave, and one that could not be had (empty, with `reason`).
      const explanation = r.xai.explanation as Record<string, unknown> | null | undefined;
      if (explanation) problems.push(...designProblems('llmExplanation', explanation, d.task_type));
    }
  }
  return problems;
}

/** After each test of the file: every callback the receiver took, compared with the design (no task-specific keys). */
export function expectDesignCallbacksAfterEach(backend: ReceiverFixture): void {
  afterEach(() => {
    expect(callbackDesignProblems(backend.receiver.received)).toEqual([]);
  });
}
