/**
 * The schema of `results.json`, the one document a test run or inference job leaves behind at
 * `{test_runs|inference_jobs}/{JOB_ID}/results.json`. The job validates every part it writes
 * against these schemas; consumers parse the file with `InferenceResultsSchema`.
 *
 * The design's fields, names and nesting are all here (job_id, inference_type, task_type,
 * num_images, generated_at, results[] with image_path, predictions, ground_truth, metrics and
 * xai {method, heatmap_path, <method>: statistics, explanation}); everything else is additional.
 *
 * Conventions:
 * - Coordinates are pixels of the original image, top-left origin; boxes are `[x1, y1, x2, y2]`.
 * - `class_id` is the dataset's class id (the one the training dataset gave the class; the
 *   checkpoint carries the mapping from the model's outputs, see `model.class_ids`), in
 *   predictions, ground truth and metrics alike; every id comes with its `class_name`.
 * - Polygons are flat `[x1, y1, x2, y2, ...]` lists, as in the Platform Format's `segmentation`.
 * - Keypoints are `[x, y, confidence]` in predictions and `[x, y, visibility]` in ground truth.
 * - Metrics are finite numbers or null (undefined, e.g. the precision of a class never predicted).
 *
 * The same prediction schemas validate what the Python side returns for each batch, and the
 * per-image validation results of training (images.json) use the same vocabulary.
 */
import { z } from 'zod';
import {
  ConfusionMatrixClassIdsSchema,
  ConfusionMatrixSchema,
  MetricsSchema,
  PerClassMetricSchema,
  PrCurveSchema,
  TimestampSchema,
} from '../../callbacks/schemas.js';
import { FRAMEWORKS, TASK_TYPES } from '../../config/tasks.js';
import { INFERENCE_BACKEND_CHOICES, INFERENCE_BACKENDS, INFERENCE_PRECISIONS, XAI_METHODS } from '../../config/variables.js';

/** 2: the design's names and nesting (image_path, metrics, xai.<method>, xai.explanation), dataset class ids. */
export const RESULTS_SCHEMA_VERSION = 2;

const Score = z.number().min(0).max(1);
const Count = z.number().int().nonnegative();
const Pixel = z.number();
const Metric = z.number().nullable();
const BoxSchema = z.tuple([Pixel, Pixel, Pixel, Pixel]);
const Point3 = z.tuple([Pixel, Pixel, z.number()]);

// ---------------------------------------------------------------------------------------------
// Predictions (the design's extract_predictions shapes)

export const DetectedObjectSchema = z.object({
  bbox: BoxSchema,
  class_id: Count,
  class_name: z.string(),
  confidence: Score,
  /** Instance segmentation: the object's outline(s). */
  segmentation: z.array(z.array(Pixel)).optional(),
  /** Pose: one `[x, y, confidence]` per keypoint, in the model's keypoint order. */
  keypoints: z.array(Point3).optional(),
  /** SAM 2: the mask's own predicted IoU (bbox, class and confidence are its prompt's). */
  mask_score: Score.optional(),
});

export const DetectionPredictionsSchema = z.object({ boxes: z.array(DetectedObjectSchema) });

export const ClassScoreSchema = z.object({ class_id: Count, class_name: z.string(), confidence: Score });

export const ClassificationPredictionsSchema = z.object({
  class_id: Count,
  class_name: z.string(),
  confidence: Score,
  /** The five most likely classes (fewer when the model has fewer), most likely first. */
  top5: z.array(ClassScoreSchema).min(1).max(5),
});

/** Semantic segmentation: a class and the share of the image's (labelled) pixels it covers. */
export const ClassShareSchema = z.object({ class_id: Count, class_name: z.string(), pixel_fraction: Score });

export const SemanticPredictionsSchema = z.object({
  /** The classes the predicted map holds, in ascending class id. */
  classes: z.array(ClassShareSchema),
  /**
   * Test runs and inference jobs: the predicted class map as an indexed PNG of the image's size
   * (its pixel values are the dataset's class ids, its palette the classes' colours), relative
   * to the job's results folder (`visualizations/...`). Absent from training's images.json.
   */
  mask_path: z.string().optional(),
});

export const PredictionsSchema = z.union([DetectionPredictionsSchema, ClassificationPredictionsSchema, SemanticPredictionsSchema]);

// ---------------------------------------------------------------------------------------------
// Ground truth and per-image metrics (test runs, validation)

export const GroundTruthObjectSchema = z.object({
  bbox: BoxSchema,
  class_id: Count,
  class_name: z.string(),
  segmentation: z.array(z.array(Pixel)).optional(),
  keypoints: z.array(Point3).optional(),
});

export const GroundTruthSchema = z.union([
  z.object({ objects: z.array(GroundTruthObjectSchema) }),
  z.object({ class_id: Count, class_name: z.string() }),
  /** Semantic segmentation: the classes of the mask's labelled pixels (values that are no class id are ignored). */
  z.object({ classes: z.array(ClassShareSchema) }),
]);

/**
 * A detection image's metrics: its precision, recall and mean IoU at the reporting confidence,
 * and which prediction matched which object. Indices refer to the image's `predictions.boxes`
 * and `ground_truth.objects`.
 */
export const DetectionImageMetricsSchema = z.object({
  /** Matched predictions / predictions shown; null without predictions. */
  precision: Metric,
  /** Matched objects / objects; null without objects. */
  recall: Metric,
  /** Mean IoU of the matched pairs; null without a match. */
  mean_iou: Metric,
  matched: z.array(z.object({ prediction: Count, ground_truth: Count, class_id: Count, class_name: z.string(), iou: Score })),
  wrong_class: z.array(
    z.object({
      prediction: Count,
      ground_truth: Count,
      predicted_class_id: Count,
      predicted_class_name: z.string(),
      true_class_id: Count,
      true_class_name: z.string(),
      iou: Score,
    }),
  ),
  missed: z.array(z.object({ ground_truth: Count, class_id: Count, class_name: z.string() })),
  false_positives: z.array(z.object({ prediction: Count, class_id: Count, class_name: z.string(), confidence: Score })),
});

export const ClassificationImageMetricsSchema = z.object({
  correct: z.boolean(),
  /** The true class is among the top five (all classes when the model has five or fewer). */
  top5_correct: z.boolean(),
});

/** A semantic segmentation image's metrics over its labelled pixels. */
export const SemanticImageMetricsSchema = z.object({
  pixel_accuracy: Metric,
  /** Mean of class_iou's values: the classes in the image's ground truth or prediction. */
  mean_iou: Metric,
  class_iou: z.array(z.object({ class_id: Count, class_name: z.string(), iou: Score })),
});

/** SAM 2 prompted by the ground-truth boxes: the mask IoU of each object (ground_truth: its index). */
export const PromptedMaskImageMetricsSchema = z.object({
  /** Mean of the objects' mask IoU; null without an outlined object. */
  mask_iou: Metric,
  objects: z.array(z.object({ ground_truth: Count, class_id: Count, class_name: z.string(), iou: Score })),
});

/** The design's per-image `metrics` ("IoU, precision, recall" for detection, correct/incorrect for classification; pixel accuracy and IoU for semantic segmentation). */
export const ImageMetricsSchema = z.union([
  DetectionImageMetricsSchema,
  ClassificationImageMetricsSchema,
  SemanticImageMetricsSchema,
  PromptedMaskImageMetricsSchema,
]);

// ---------------------------------------------------------------------------------------------
// Explanations

export const ActivationRegionSchema = z.object({ x: Count, y: Count, w: Count, h: Count, score: Metric });

/** The design's `<method>` member of `xai`: what the heatmap shows, in numbers. */
export const XaiStatisticsSchema = z.object({
  /** Heatmap values are scaled to 0-1 per image (as grad-cam does). */
  max_activation: Metric,
  mean_activation: Metric,
  /** Share of pixels at or above half the maximum activation. */
  high_activation_fraction: Metric.optional(),
  peak: z.object({ x: Count, y: Count }).optional(),
  /** Strongest connected regions above the 90th percentile, strongest first. */
  top_regions: z.array(ActivationRegionSchema),
  /** Detection: share of the activation inside the predicted boxes; null without boxes. */
  activation_in_predictions: Metric.optional(),
});

/** `method` when an image is explained by the LLM without a heatmap (ENABLE_XAI off). */
export const NO_HEATMAP_METHOD = 'none';

const statisticsByMethod = Object.fromEntries(XAI_METHODS.map((m) => [m, XaiStatisticsSchema.optional()])) as Record<
  (typeof XAI_METHODS)[number],
  z.ZodOptional<typeof XaiStatisticsSchema>
>;

/** What Python reports for one heatmap: the design's `{method, <method>: statistics}` plus what it explains; `error` set (and no statistics) when it failed. */
export const XaiOutcomeSchema = z.object({
  method: z.string(),
  target_layers: z.array(z.string()),
  /** What the heatmap explains: the predicted class, or the detections it covers. */
  target: z.record(z.string(), z.json()).nullable(),
  error: z.string().nullable(),
  ...statisticsByMethod,
});

export const ExplanationSchema = z.discriminatedUnion('available', [
  z.object({
    available: z.literal(true),
    /** "json": the model answered the JSON object asked for; "text": it did not, and `summary` is its raw answer (the other fields empty). */
    format: z.enum(['json', 'text']),
    summary: z.string(),
    key_factors: z.array(z.string()),
    confidence_reasoning: z.string(),
    alternative_considerations: z.string(),
    model: z.string(),
    generated_at: TimestampSchema,
  }),
  z.object({
    available: z.literal(false),
    /** Why there is no explanation (no API key, server error, empty answers, timeout). */
    reason: z.string(),
    // The design's fields all the same, empty: a backend reads the same shape either way.
    summary: z.literal(''),
    key_factors: z.array(z.string()).max(0),
    confidence_reasoning: z.literal(''),
    alternative_considerations: z.literal(''),
    /** The model that was to be asked (OPENAI_MODEL). */
    model: z.string(),
    /** When the runtime gave up on it. */
    generated_at: TimestampSchema,
  }),
]);

/** An image's `xai`: the heatmap's method, where it is stored, its statistics under the method's name, and the LLM's explanation. */
export const XaiResultSchema = XaiOutcomeSchema.extend({
  /** The overlay PNG under `xai/`; null when it was not stored (or there is no heatmap). */
  heatmap_path: z.string().nullable(),
  /** ENABLE_LLM_EXPLANATION: the explanation of this image; null when not asked for. */
  explanation: ExplanationSchema.nullable(),
});

// ---------------------------------------------------------------------------------------------
// One image

export const ImageResultSchema = z.object({
  /** Where the image came from: the s3:// URI given in IMAGE_PATHS, or the dataset-relative file name. */
  image_path: z.string(),
  predictions: PredictionsSchema.nullable(),
  ground_truth: GroundTruthSchema.nullable(),
  /** Test runs: this image judged against its ground truth. */
  metrics: ImageMetricsSchema.nullable(),
  xai: XaiResultSchema.nullable(),
  /** Position in the job's list of images (0-based). */
  index: Count,
  /** Dataset image id; for IMAGE_PATHS the path as given. */
  image_id: z.string(),
  file_name: z.string(),
  width: Count.nullable(),
  height: Count.nullable(),
  /** Set when the image could not be processed (missing, not an image); everything else is null then. */
  error: z.string().nullable(),
  /** The image's share of its batch's measured prediction time. */
  inference_time_ms: Metric,
  visualization_path: z.string().nullable(),
});

// ---------------------------------------------------------------------------------------------
// The whole file

export const TestRunMetricsSchema = z.object({
  /** accuracy/top5_accuracy/precision/recall/f1 (classification) or precision/recall/mAP50/mAP50-95 (+ box_ / mask_ variants). */
  overall_metrics: MetricsSchema,
  per_class_metrics: z.array(PerClassMetricSchema),
  /** Rows are true classes, columns predicted, in ascending class id; detection adds a last "background" row/column (misses / false positives). */
  confusion_matrix: ConfusionMatrixSchema,
  confusion_matrix_labels: z.array(z.string()),
  /** The class id of each row and column (null: background). */
  confusion_matrix_class_ids: ConfusionMatrixClassIdsSchema,
  /** Precision over recall at IoU 0.5, at most 101 points per class (detection tasks). */
  pr_curves: z.record(z.string(), PrCurveSchema),
  /** IoU above which a shown prediction matches a ground-truth object (confusion matrix, per-image lists). */
  match_iou_threshold: Metric,
  images_evaluated: Count,
});

/**
 * INFERENCE_PRECISION=bf16 measured on the job's own images: its first batch predicted again by
 * the PyTorch model in float32 and compared as reported (python/vision_trainer/common/precision_check.py).
 */
export const PrecisionCheckSchema = z.object({
  /** What the reduced-precision predictions were compared with: `pytorch float32`. */
  against: z.string(),
  images: z.number().int().nonnegative(),
  /** What was compared: a classifier's top-1 class, a detector's boxes above CONFIDENCE_THRESHOLD. */
  compared: z.string(),
  /** The share of images (classifiers) or boxes (detectors) that came out the same; null when the check failed. */
  agreement: z.number().min(0).max(1).nullable(),
  /** The largest difference of a confidence both sides reported for the same class or box. */
  max_score_difference: z.number().nonnegative().nullable(),
  /** Why the check could not be made (the predictions themselves stand). */
  error: z.string().optional(),
});
export type PrecisionCheck = z.infer<typeof PrecisionCheckSchema>;

/** What ran the model (INFERENCE_BACKEND), and what the heatmaps came from. */
export const InferenceBackendInfoSchema = z.object({
  name: z.enum(INFERENCE_BACKENDS),
  /** The runtime's package and version, e.g. `onnxruntime 1.31.1`, `torch 2.14.1`. */
  runtime: z.string(),
  /** Where it ran: cpu, cuda:0. */
  device: z.string(),
  /** Seconds spent exporting the checkpoint to the graph this job ran (null: pytorch). */
  export_seconds: z.number().nonnegative().nullable(),
  /** Grad-CAM needs gradients: heatmaps always come from the PyTorch model (null: no XAI). */
  xai_backend: z.literal('pytorch').nullable(),
  /** INFERENCE_BACKEND as configured: auto, or the backend named. */
  requested: z.enum(INFERENCE_BACKEND_CHOICES),
  /** Why this backend ran: `INFERENCE_BACKEND`, or what auto decided on (the device, the job's image count). */
  reason: z.string(),
  /** Threads the runtime computed with on the CPU (null on a GPU): what bench:infer compares with its native loop's. */
  cpu_threads: z.number().int().positive().nullable(),
  /** INFERENCE_MODEL_PATH: the export job's model this job ran (export_seconds is then null); null when the graph was exported here or PyTorch ran. */
  model_path: z.string().nullable().optional(),
  /** Threads that decoded and prepared each batch's images (DECODE_THREADS). */
  decode_threads: z.number().int().positive().optional(),
  /** Whether the next batch was decoded during this one's forward pass (PREFETCH_NEXT_BATCH). */
  prefetch: z.boolean().optional(),
  /** Why: PREFETCH_NEXT_BATCH, or what auto decided from the device and the model's threads against the CPU budget. */
  prefetch_reason: z.string().optional(),
  /** The allocator settings (GLIBC_TUNABLES) Python ran with; null: glibc's defaults (RETAIN_FREED_MEMORY=false). */
  malloc_tunables: z.string().nullable().optional(),
  /** GOMP_SPINCOUNT Python ran with (the job's 10000 unless the environment set it or OMP_WAIT_POLICY); null: libgomp's default. */
  omp_spin_count: z.string().nullable().optional(),
  /** How a PyTorch classifier's weights and batches were laid out in memory: channels_last on the CPU (faster convolutions), else contiguous. */
  memory_format: z.enum(['contiguous', 'channels_last']).optional(),
  /** What the forward pass computed in: fp32, or bf16 (INFERENCE_PRECISION=bf16 on OpenVINO, on a CPU with native bfloat16). */
  precision: z.enum(INFERENCE_PRECISIONS).optional(),
  /** INFERENCE_PRECISION as configured. */
  precision_requested: z.enum(INFERENCE_PRECISIONS).optional(),
  /** Why `precision` ran: `INFERENCE_PRECISION`, or why bf16 was not possible (the backend that ran, the CPU). */
  precision_reason: z.string().optional(),
  /** bf16 only: how its predictions compared with float32's on the job's first batch. */
  precision_check: PrecisionCheckSchema.optional(),
});

export const ModelInfoSchema = z.object({
  framework: z.enum(FRAMEWORKS),
  /** The checkpoint's task in the framework's words (detect, segment, pose, classify). */
  task: z.string(),
  /** In the model's output order. */
  class_names: z.array(z.string()),
  /** The dataset's class id of each output, from the checkpoint (its indices for a checkpoint that carries none). */
  class_ids: z.array(Count),
  /** Whether the checkpoint carried its class ids (false: written before they were stored, or not by this runtime). */
  class_ids_stored: z.boolean(),
  model_name: z.string().nullable(),
  architecture: z.string(),
  training_image_size: z.union([z.number(), z.array(z.number())]).nullable(),
  keypoint_shape: z.array(Count).nullable(),
  xai_layers: z.array(z.string()),
  /** Lowest confidence the model was asked for (test runs go down to 0.001 for mAP). */
  prediction_confidence: Score,
  inference_backend: InferenceBackendInfoSchema,
  /** A prompted model's prompts (SAM 2): the test run's ground-truth boxes, or PROMPT_CHECKPOINT_PATH's detector. Absent for other models. */
  prompts: z.enum(['ground_truth_boxes', 'detector']).nullable().optional(),
});

export const InferenceResultsSchema = z.object({
  job_id: z.string(),
  inference_type: z.enum(['test_run', 'inference_job']),
  task_type: z.enum(TASK_TYPES),
  num_images: Count,
  generated_at: TimestampSchema,
  schema_version: z.literal(RESULTS_SCHEMA_VERSION),
  checkpoint_path: z.string(),
  model: ModelInfoSchema,
  settings: z.object({
    batch_size: Count,
    image_size: Count,
    confidence_threshold: Score,
    iou_threshold: Score,
    device: z.string(),
    /** INFERENCE_BACKEND as configured (model.inference_backend: what ran). */
    inference_backend: z.enum(INFERENCE_BACKEND_CHOICES),
    /** INFERENCE_PRECISION as configured (model.inference_backend.precision: what ran). */
    inference_precision: z.enum(INFERENCE_PRECISIONS).optional(),
    dataset_id: z.string().nullable(),
    test_split: z.string().nullable(),
    split_source: z.string().nullable(),
    xai_method: z.string().nullable(),
    llm_model: z.string().nullable(),
    max_visualizations: Count,
  }),
  /** Images that could not be processed (listed with their `error`). */
  failed_images: Count,
  timing: z.object({
    /** Prediction time per image (pre- and post-processing included), measured in Python. */
    avg_inference_time_ms: Metric,
    /** Images per second over the whole prediction loop (downloads, bridge, drawing, XAI included). */
    images_per_second: Metric,
    total_seconds: z.number().nonnegative(),
    /** Where the prediction loop's time went (added fields, absent in documents written before them; null where unknown): its wall seconds; Python's decoding and preparing (ultralytics: its preprocess stage) and forward passes; CPU seconds of Python during its prediction calls and of this process over the loop. */
    loop_seconds: z.number().nonnegative().optional(),
    preprocess_seconds: z.number().nonnegative().nullable().optional(),
    forward_seconds: z.number().nonnegative().nullable().optional(),
    python_cpu_seconds: z.number().nonnegative().optional(),
    node_cpu_seconds: z.number().nonnegative().optional(),
  }),
  /** Test runs only. */
  metrics: TestRunMetricsSchema.nullable(),
  visualizations_path: z.string().nullable(),
  xai_results_path: z.string().nullable(),
  results: z.array(ImageResultSchema),
});

export type DetectionPredictions = z.infer<typeof DetectionPredictionsSchema>;
export type ClassificationPredictions = z.infer<typeof ClassificationPredictionsSchema>;
export type Predictions = z.infer<typeof PredictionsSchema>;
export type GroundTruthRecord = z.infer<typeof GroundTruthSchema>;
export type ImageMetrics = z.infer<typeof ImageMetricsSchema>;
export type XaiOutcome = z.infer<typeof XaiOutcomeSchema>;
export type XaiStatistics = z.infer<typeof XaiStatisticsSchema>;
export type XaiResult = z.infer<typeof XaiResultSchema>;
export type Explanation = z.infer<typeof ExplanationSchema>;
export type ImageResult = z.infer<typeof ImageResultSchema>;
export type TestRunMetrics = z.infer<typeof TestRunMetricsSchema>;
export type ModelInfo = z.infer<typeof ModelInfoSchema>;
export type InferenceResults = z.infer<typeof InferenceResultsSchema>;
