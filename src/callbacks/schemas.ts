/**
 * The callback contract with the backend: one zod schema per endpoint body, and the
 * `ENDPOINTS` table mapping each callback kind to its path and schema. The client builds
 * payloads with these schemas and the dev receiver validates with the same table, so the
 * two cannot drift apart. TypeScript consumers take their types from here.
 *
 * Paths and bodies are the platform's (docs/contract.md, "Callbacks"); the JSON Schemas in
 * docs/schemas/callbacks.schema.json are generated from this file.
 */
import { z } from 'zod';
import { TASK_TYPES } from '../config/tasks.js';
import { ExitCode, VisionTrainerError } from '../errors.js';

/** A metric: a finite number or null. zod's number already refuses NaN and ±Infinity. */
export const MetricValueSchema = z.number().nullable();
export const MetricsSchema = z.record(z.string().min(1), MetricValueSchema);

/** ISO 8601 in UTC with the `Z` suffix, as the design writes every timestamp. */
export const TimestampSchema = z.iso.datetime({ offset: false });

/** The task types config accepts (one list, in src/config/tasks.ts). */
export const CallbackTaskTypeSchema = z.enum(TASK_TYPES);

export const CompletionStatusSchema = z.enum(['succeeded', 'failed']);

const Percent = z.number().min(0).max(100);
const Count = z.number().int().nonnegative();
const OptionalPath = z.string().min(1).nullable().default(null);

/**
 * A failed completion must say why; a successful one carries no error. Applied to every
 * completion body so a `failed` callback without a message is caught before it is sent.
 */
function requireErrorMessageWhenFailed(body: { status: string; error_message?: string | null | undefined }, ctx: z.RefinementCtx): void {
  if (body.status === 'failed' && !body.error_message) {
    ctx.addIssue({ code: 'custom', path: ['error_message'], message: 'a failed completion needs an error_message saying what went wrong' });
  }
  if (body.status === 'succeeded' && body.error_message) {
    ctx.addIssue({ code: 'custom', path: ['error_message'], message: 'a succeeded completion must not carry an error_message' });
  }
}

/**
 * Added to a `failed` completion that is not final: the job was stopped (SIGTERM,
 * preemption), hit its time limit with a checkpoint saved, or could not reach storage; a
 * retry of the same JOB_ID continues it, and its completion replaces this one. Absent on
 * final outcomes.
 */
const ResumableSchema = z.literal(true).optional();

// ---------------------------------------------------------------------------------------
// Training: /api/v1/jobs/{JOB_ID}/{heartbeat,event,validation,done}

export const HeartbeatSchema = z.strictObject({
  epoch: Count,
  /** Percent of the planned epochs done, 0-100. */
  progress: Percent,
  /** Real training losses plus the latest validation metrics. */
  metrics: MetricsSchema,
  /** Not in the design's example; lets a reader show "epoch 3/10" without deriving it. */
  total_epochs: Count.optional(),
  /** Set on heartbeats sent between epochs: the batch reached in the epoch under way. */
  batch: Count.optional(),
  total_batches: Count.optional(),
  /** Estimated seconds until training ends; null when not yet known. */
  eta_seconds: z.number().nonnegative().nullable().optional(),
  timestamp: TimestampSchema,
});

/** Event names are snake_case words, e.g. `dataset_downloaded`, `checkpoint_saved`. */
export const EventTypeSchema = z.string().regex(/^[a-z][a-z0-9_]*$/, 'event_type must be snake_case, e.g. "checkpoint_saved"');

export const EventSchema = z.strictObject({
  event_type: EventTypeSchema,
  message: z.string(),
  data: z.record(z.string(), z.json()).default({}),
  timestamp: TimestampSchema,
});

export const PerClassMetricSchema = z
  .object({
    /** The dataset's class id (never a framework's index). */
    class_id: Count,
    class_name: z.string(),
    precision: MetricValueSchema.optional(),
    recall: MetricValueSchema.optional(),
    ap: MetricValueSchema.optional(),
    /** Ground-truth instances (or images, for classification) of this class. */
    support: Count.optional(),
  })
  // Frameworks add their own per-class values (f1, ap50, iou).
  .catchall(z.json());

export const PrCurveSchema = z
  .strictObject({
    precision: z.array(MetricValueSchema),
    recall: z.array(MetricValueSchema),
  })
  .refine((curve) => curve.precision.length === curve.recall.length, {
    message: 'precision and recall must have the same number of points',
  });

/** Rows are true classes, columns predicted classes; cells are counts (or normalised rates). */
export const ConfusionMatrixSchema = z.array(z.array(z.number().nonnegative()));

/**
 * The dataset's class id of each row and column of a confusion matrix, in order (ascending ids);
 * null marks a detection matrix's last "background" row and column.
 */
export const ConfusionMatrixClassIdsSchema = z.array(Count.nullable());

export const ValidationSchema = z.strictObject({
  epoch: Count,
  task_type: CallbackTaskTypeSchema,
  primary_metric_name: z.string().min(1),
  primary_metric_value: MetricValueSchema,
  metrics: MetricsSchema,
  per_class_metrics: z.array(PerClassMetricSchema).nullable().default(null),
  /** Classification only. */
  confusion_matrix: ConfusionMatrixSchema.nullable().default(null),
  /** Not in the design: the class id of each row and column of confusion_matrix. */
  confusion_matrix_class_ids: ConfusionMatrixClassIdsSchema.nullable().optional(),
  /** Detection and segmentation, keyed by class name. */
  pr_curves: z.record(z.string(), PrCurveSchema).nullable().default(null),
  /** validation-results/job-{JOB_ID}/epoch-{N}/images.json, once it is in storage. */
  image_results_path: OptionalPath,
  num_images_validated: Count.default(0),
  validation_time_seconds: z.number().nonnegative().nullable().default(null),
  timestamp: TimestampSchema,
});

/** The backend's answer to a validation callback. Unknown fields are kept, not refused. */
export const ValidationResponseSchema = z.looseObject({
  status: z.string(),
  is_best: z.boolean(),
});

export const TrainingDoneSchema = z
  .strictObject({
    status: CompletionStatusSchema,
    final_metrics: MetricsSchema.default({}),
    checkpoint_path: OptionalPath,
    error_message: z.string().nullable().default(null),
    resumable: ResumableSchema,
    timestamp: TimestampSchema,
  })
  .superRefine(requireErrorMessageWhenFailed);

// ---------------------------------------------------------------------------------------
// Inference: /api/v1/inference/{JOB_ID}/progress, /api/v1/test-runs/{JOB_ID}/done,
// /api/v1/inference/jobs/{JOB_ID}/done

export const InferenceProgressSchema = z
  .strictObject({
    processed_images: Count,
    total_images: Count,
    progress_percent: Percent,
    avg_inference_time_ms: MetricValueSchema.default(null),
    /** ENABLE_XAI: heatmaps made so far, of the sample's; sent after each one while LIME or SHAP run (minutes). */
    explained_images: Count.optional(),
    images_to_explain: Count.optional(),
    xai_method: z.string().optional(),
    timestamp: TimestampSchema,
  })
  .refine((body) => body.processed_images <= body.total_images, {
    path: ['processed_images'],
    message: 'processed_images cannot exceed total_images',
  });

export const TestRunDoneSchema = z
  .strictObject({
    status: CompletionStatusSchema,
    overall_metrics: MetricsSchema.default({}),
    per_class_metrics: z.array(PerClassMetricSchema).default([]),
    confusion_matrix: ConfusionMatrixSchema.nullable().default(null),
    /** Not in the design: the class id of each row and column of confusion_matrix (null: background). */
    confusion_matrix_class_ids: ConfusionMatrixClassIdsSchema.nullable().optional(),
    pr_curves: z.record(z.string(), PrCurveSchema).default({}),
    results_path: OptionalPath,
    visualizations_path: OptionalPath,
    xai_results_path: OptionalPath,
    error_message: z.string().nullable().default(null),
    resumable: ResumableSchema,
    timestamp: TimestampSchema,
  })
  .superRefine(requireErrorMessageWhenFailed);

export const InferenceJobDoneSchema = z
  .strictObject({
    status: CompletionStatusSchema,
    results_path: OptionalPath,
    visualizations_path: OptionalPath,
    xai_results_path: OptionalPath,
    error_message: z.string().nullable().default(null),
    resumable: ResumableSchema,
    timestamp: TimestampSchema,
  })
  .superRefine(requireErrorMessageWhenFailed);

// ---------------------------------------------------------------------------------------
// Export: /api/v1/export/jobs/{JOB_ID}/{progress,done}

/**
 * The design's five stages, plus `uploading`, which its own export implementation sends
 * between packaging and completion.
 */
export const ExportStageSchema = z.enum(['downloading', 'converting', 'optimizing', 'validating', 'packaging', 'uploading']);

export const ExportProgressSchema = z.strictObject({
  progress_percent: Percent,
  stage: ExportStageSchema,
  message: z.string(),
  timestamp: TimestampSchema,
});

/** A tensor shape; ONNX names dynamic axes (e.g. "batch"), so a dimension may be a string. */
export const TensorShapeSchema = z.array(z.union([z.number().int().nonnegative(), z.string().min(1)]));

export const ModelInfoSchema = z
  .object({
    model_size_mb: MetricValueSchema.optional(),
    inference_speed_ms: MetricValueSchema.optional(),
    input_shape: TensorShapeSchema.optional(),
    /** One shape, or one per output for multi-output models (e.g. segmentation). */
    output_shape: z.union([TensorShapeSchema, z.array(TensorShapeSchema)]).optional(),
  })
  .catchall(z.json());

export const ExportValidationMetricsSchema = z
  .object({
    accuracy: MetricValueSchema.optional(),
    original_accuracy: MetricValueSchema.optional(),
    accuracy_drop: MetricValueSchema.optional(),
    passed: z.boolean().optional(),
  })
  .catchall(z.json());

export const ExportDoneSchema = z
  .strictObject({
    status: CompletionStatusSchema,
    export_path: OptionalPath,
    metadata_path: OptionalPath,
    package_path: OptionalPath,
    model_info: ModelInfoSchema.default({}),
    validation_metrics: ExportValidationMetricsSchema.nullable().default(null),
    error_message: z.string().nullable().default(null),
    resumable: ResumableSchema,
    timestamp: TimestampSchema,
  })
  .superRefine(requireErrorMessageWhenFailed);

// ---------------------------------------------------------------------------------------
// The endpoint table

/**
 * `progress` callbacks are best effort (queued, dropped on failure); `completion` callbacks
 * are retried until delivered and their failure fails the process.
 */
export type Delivery = 'progress' | 'completion';

/** Placeholder in path templates; job ids are URL-encoded when substituted. */
export const JOB_ID_PLACEHOLDER = '{JOB_ID}';

export const ENDPOINTS = {
  heartbeat: { path: '/api/v1/jobs/{JOB_ID}/heartbeat', schema: HeartbeatSchema, delivery: 'progress' },
  event: { path: '/api/v1/jobs/{JOB_ID}/event', schema: EventSchema, delivery: 'progress' },
  validation: { path: '/api/v1/jobs/{JOB_ID}/validation', schema: ValidationSchema, delivery: 'progress' },
  trainingDone: { path: '/api/v1/jobs/{JOB_ID}/done', schema: TrainingDoneSchema, delivery: 'completion' },
  inferenceProgress: { path: '/api/v1/inference/{JOB_ID}/progress', schema: InferenceProgressSchema, delivery: 'progress' },
  testRunDone: { path: '/api/v1/test-runs/{JOB_ID}/done', schema: TestRunDoneSchema, delivery: 'completion' },
  inferenceJobDone: { path: '/api/v1/inference/jobs/{JOB_ID}/done', schema: InferenceJobDoneSchema, delivery: 'completion' },
  exportProgress: { path: '/api/v1/export/jobs/{JOB_ID}/progress', schema: ExportProgressSchema, delivery: 'progress' },
  exportDone: { path: '/api/v1/export/jobs/{JOB_ID}/done', schema: ExportDoneSchema, delivery: 'completion' },
} as const satisfies Record<string, { path: string; schema: z.ZodType; delivery: Delivery }>;

export type CallbackKind = keyof typeof ENDPOINTS;
export const CALLBACK_KINDS = Object.keys(ENDPOINTS) as CallbackKind[];

/** The body as sent on the wire (defaults filled in). */
export type CallbackPayload<K extends CallbackKind> = z.output<(typeof ENDPOINTS)[K]['schema']>;
/** What a caller supplies: the body without the timestamp, which the client adds. */
export type CallbackInput<K extends CallbackKind> = Omit<z.input<(typeof ENDPOINTS)[K]['schema']>, 'timestamp'>;

export type HeartbeatPayload = CallbackPayload<'heartbeat'>;
export type EventPayload = CallbackPayload<'event'>;
export type ValidationPayload = CallbackPayload<'validation'>;
export type ValidationResponse = z.output<typeof ValidationResponseSchema>;
export type TrainingDonePayload = CallbackPayload<'trainingDone'>;
export type InferenceProgressPayload = CallbackPayload<'inferenceProgress'>;
export type TestRunDonePayload = CallbackPayload<'testRunDone'>;
export type InferenceJobDonePayload = CallbackPayload<'inferenceJobDone'>;
export type ExportProgressPayload = CallbackPayload<'exportProgress'>;
export type ExportDonePayload = CallbackPayload<'exportDone'>;
export type PerClassMetric = z.output<typeof PerClassMetricSchema>;
export type ExportStage = z.output<typeof ExportStageSchema>;
export type CompletionStatus = z.output<typeof CompletionStatusSchema>;

/**
 * The path of a callback for a job, e.g. `/api/v1/jobs/abc/heartbeat`. The id is one encoded
 * path segment. URL parsers resolve "." and ".." segments even when percent-encoded ("%2e"),
 * so those are refused rather than encoded: `/api/v1/jobs/../done` would be `/api/v1/done`.
 */
export function callbackPath(kind: CallbackKind, jobId: string): string {
  return ENDPOINTS[kind].path.replace(JOB_ID_PLACEHOLDER, () => pathSegment(jobId, 'JOB_ID'));
}

/** One URL path segment holding `value` and nothing else; throws for values no encoding can hold. */
export function pathSegment(value: string, what: string): string {
  if (value === '' || value === '.' || value === '..') {
    throw new VisionTrainerError(`${what} ${JSON.stringify(value)} cannot be a URL path segment: an empty, "." or ".." segment would change the route`, {
      exitCode: ExitCode.config,
    });
  }
  return encodeURIComponent(value);
}

const PATH_MATCHERS: Array<[CallbackKind, RegExp]> = CALLBACK_KINDS.map((kind) => {
  const [before, after] = ENDPOINTS[kind].path.split(JOB_ID_PLACEHOLDER) as [string, string];
  return [kind, new RegExp(`^${escapeRegExp(before)}([^/]+)${escapeRegExp(after)}$`)];
});

/** The callback kind and job id a request path addresses, or undefined for any other path. */
export function matchCallbackPath(pathname: string): { kind: CallbackKind; jobId: string } | undefined {
  for (const [kind, pattern] of PATH_MATCHERS) {
    const match = pattern.exec(pathname);
    if (!match) continue;
    try {
      return { kind, jobId: decodeURIComponent(match[1]!) };
    } catch {
      return undefined;
    }
  }
  return undefined;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
