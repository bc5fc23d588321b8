/**
 * metadata.json: everything a deployment needs to run an exported model correctly, laid out as
 * the platform's design lays it out (format_version, model, preprocessing,
 * postprocessing, runtime, optimization, validation) plus what the design leaves as estimates,
 * measured: the model's real input/output tensors and its latency. The runtime wrappers
 * (runtime/) read this file; the schema here is the one definition of its shape.
 */
import { z } from 'zod';
import type { WrapperMetadata } from '../../../runtime/node/model_wrapper.js';
import { FRAMEWORKS, TASK_TYPES } from '../../config/tasks.js';
import { EXPORT_FORMATS } from '../../config/variables.js';
import type { EmbeddedNms } from '../../frameworks/adapter.js';
import { type AbsentWrapper, FORMATS, type ExportFormat, type RuntimeLanguage } from './formats.js';

export const METADATA_FORMAT_VERSION = '1.0';

const Size = z.tuple([z.number().int().positive(), z.number().int().positive()]);
const Interpolation = z.enum(['bilinear', 'bicubic', 'nearest']);
/** ONNX and OpenVINO name dynamic axes; a dimension is a number or a name. */
export const TensorShapeSchema = z.array(z.union([z.number().int().nonnegative(), z.string()]));
export const TensorInfoSchema = z.strictObject({
  name: z.string(),
  shape: TensorShapeSchema,
  dtype: z.string(),
  /** Integer tensors of a quantized TFLite model (full-integer int8): real value = (q - zero_point) * scale. */
  quantization: z.strictObject({ scale: z.number(), zero_point: z.number().int() }).optional(),
});
export type TensorInfo = z.infer<typeof TensorInfoSchema>;

export const PreprocessingSchema = z.strictObject({
  resize: z.discriminatedUnion('method', [
    // ultralytics detection/segmentation/pose: keep the aspect ratio, pad with grey.
    z.strictObject({ method: z.literal('letterbox'), size: Size, fill_value: z.number().int().min(0).max(255), interpolation: Interpolation }),
    // timm (and ultralytics classification): resize the shorter side to size / crop_pct, centre-crop.
    z.strictObject({ method: z.literal('resize_shorter_center_crop'), size: Size, crop_pct: z.number().positive().max(1), interpolation: Interpolation }),
    // transformers image processors: resize straight to size.
    z.strictObject({ method: z.literal('resize'), size: Size, interpolation: Interpolation }),
  ]),
  /** "divide": (pixel - mean) / std on 0..255 values; "standardize": pixel / 255 first (ImageNet style). */
  normalize: z.strictObject({ method: z.enum(['divide', 'standardize']), mean: z.array(z.number()).length(3), std: z.array(z.number().positive()).length(3) }),
  channel_order: z.enum(['RGB', 'BGR']),
  /** The model input's element type and layout: uint8 NHWC (the resized image's pixels) when `embedded`. */
  data_type: z.enum(['float32', 'uint8']),
  layout: z.enum(['NCHW', 'NHWC']),
  /**
   * The exported graph itself normalises and transposes (INCLUDE_PREPROCESSING on ONNX and, for
   * timm and transformers, OpenVINO): the caller resizes the image to `resize.size` as `resize`
   * says and feeds its uint8 RGB pixels; `normalize` records what the graph does.
   */
  embedded: z.boolean(),
  /** INCLUDE_PREPROCESSING: the package's wrappers apply it in predict(). */
  included: z.boolean(),
});
export type PreprocessingSpec = z.infer<typeof PreprocessingSchema>;

/** `spec` for a model whose graph normalises and transposes: its input is the resized image's pixels, uint8 NHWC. */
export function embeddedPreprocessing(spec: PreprocessingSpec): PreprocessingSpec {
  return { ...spec, data_type: 'uint8', layout: 'NHWC', embedded: true };
}

/** The float32 NCHW input the original checkpoint takes, whatever the export embeds. */
export function checkpointPreprocessing(spec: PreprocessingSpec): PreprocessingSpec {
  return { ...spec, data_type: 'float32', layout: 'NCHW', embedded: false };
}

export const PostprocessingSchema = z.strictObject({
  /** How to read the raw outputs, for readers without a wrapper. */
  output_layout: z.string(),
  nms: z
    .strictObject({
      method: z.literal('nms'),
      class_aware: z.boolean(),
      iou_threshold: z.number().min(0).max(1),
      confidence_threshold: z.number().min(0).max(1),
      max_detections: z.number().int().positive(),
      /**
       * Embedded NMS only (`embedded`): the graph keeps the detections scoring above this floor
       * (as low as validation's mAP needs); `confidence_threshold` is the wrappers' default filter above it.
       */
      min_confidence: z.number().min(0).max(1).optional(),
    })
    .optional(),
  coordinate_format: z.literal('xyxy').optional(),
  box_units: z.enum(['pixels', 'normalized']).optional(),
  mask_threshold: z.number().gt(0).lt(1).optional(),
  softmax: z.strictObject({ apply: z.boolean(), temperature: z.number().positive() }).optional(),
  top_k: z.number().int().positive().optional(),
  embedded: z.boolean(),
  /** INCLUDE_POSTPROCESSING: the package's wrappers apply it in predict(). */
  included: z.boolean(),
});
export type PostprocessingSpec = z.infer<typeof PostprocessingSchema>;

/** The NMS a detector's export builds in, from its post-processing spec; null for none. */
export function embeddedNms(post: PostprocessingSpec): EmbeddedNms | null {
  const nms = post.nms;
  return post.embedded && nms ? { ...nms, min_confidence: nms.min_confidence ?? 0 } : null;
}

const Milliseconds = z.number().nonnegative();

export const ValidationReportSchema = z.strictObject({
  /** The design's names: the primary metric of the exported and the original model. */
  accuracy: z.number().nullable(),
  original_accuracy: z.number().nullable(),
  /** original - exported: positive when the export scores lower. */
  accuracy_drop: z.number().nullable(),
  passed: z.boolean(),
  metric: z.enum(['accuracy', 'mAP50-95', 'mIoU']),
  threshold: z.number(),
  num_samples: z.number().int().nonnegative(),
  /** Largest |original - exported| over every raw output value of every validation image. */
  max_abs_output_diff: z.number().nullable(),
  mean_abs_output_diff: z.number().nullable(),
  latency_ms: z.strictObject({
    exported: z.strictObject({ p50: Milliseconds, p95: Milliseconds }),
    original: z.strictObject({ p50: Milliseconds, p95: Milliseconds }),
  }),
  exported_metrics: z.record(z.string(), z.number().nullable()),
  original_metrics: z.record(z.string(), z.number().nullable()),
  /** Where the exported model ran during validation, e.g. "onnxruntime-node 1.30.0". */
  exported_runtime: z.string(),
  dataset_id: z.string(),
  split: z.string(),
});
export type ValidationReport = z.infer<typeof ValidationReportSchema>;

export const PerformanceSchema = z.strictObject({
  /** Median latency of one batch (BATCH_SIZE images), measured on this machine. */
  inference_speed_ms: Milliseconds,
  p95_ms: Milliseconds,
  runs: z.number().int().positive(),
  warmup_runs: z.number().int().nonnegative(),
  batch_size: z.number().int().positive(),
  engine: z.string(),
  device: z.string(),
  cpu_threads: z.number().int().positive(),
});
export type Performance = z.infer<typeof PerformanceSchema>;

export const MetadataSchema = z.strictObject({
  format_version: z.literal(METADATA_FORMAT_VERSION),
  export_format: z.enum(EXPORT_FORMATS),
  task_type: z.enum(TASK_TYPES),
  model_name: z.string(),
  generated_at: z.iso.datetime({ offset: false }),
  model: z.strictObject({
    framework: z.enum(FRAMEWORKS),
    architecture: z.string(),
    /** The model inside the package (a folder for OpenVINO/CoreML). */
    file: z.string(),
    directory: z.boolean(),
    input_size: Size,
    num_classes: z.number().int().positive(),
    /** In the model's output order. */
    class_names: z.array(z.string()),
    /** The dataset's class id of each output: what `class_id` means in every prediction the wrappers return. */
    class_ids: z.array(z.number().int().nonnegative()),
    keypoints: z.strictObject({ shape: Size }).nullable(),
    /** Read from the exported model, not assumed. */
    inputs: z.array(TensorInfoSchema).min(1),
    outputs: z.array(TensorInfoSchema).min(1),
    size_mb: z.number().nonnegative(),
    source_checkpoint: z.string(),
    versions: z.record(z.string(), z.string()),
  }),
  preprocessing: PreprocessingSchema,
  postprocessing: PostprocessingSchema,
  runtime: z.strictObject({
    engines: z.array(z.string()),
    languages: z.array(z.string()),
    platforms: z.array(z.string()),
    /** Wrappers in runtimes/ of package.zip: those that can load this model. */
    wrappers: z.array(z.string()),
    /** The format's other wrappers, left out because they cannot load this model, each with the reason. */
    absent_wrappers: z.array(z.strictObject({ wrapper: z.string(), reason: z.string() })),
  }),
  optimization: z.strictObject({
    level: z.number().int().min(0).max(3),
    /** The design's string: QUANTIZATION_TYPE (dynamic or static), null when not quantized. */
    quantization: z.enum(['dynamic', 'static']).nullable(),
    /** Not in the design: the type again, the dtype (int8, int16, float16) and the method that applied it. */
    quantization_details: z
      .strictObject({
        type: z.enum(['dynamic', 'static']),
        dtype: z.enum(['int8', 'int16', 'float16']),
        method: z.string(),
        /** The model's size before quantization (MB), null where the converter quantizes in one step (OpenVINO, LiteRT). */
        unquantized_size_mb: z.number().nonnegative().nullable(),
        /** validation.accuracy_drop: the quantized model against the original checkpoint; null without ENABLE_VALIDATION. */
        accuracy_drop: z.number().nullable(),
        /** Module classes the quantization left in float32 on purpose (ultralytics TorchScript static int8: the detection-family head's box decoding, attention blocks); absent when none. */
        float32_modules: z.array(z.string()).optional(),
      })
      .nullable(),
    include_preprocessing: z.boolean(),
    include_postprocessing: z.boolean(),
    passes: z.array(z.string()),
  }),
  performance: PerformanceSchema.optional(),
  validation: ValidationReportSchema.optional(),
  /**
   * Formats this platform cannot run (CoreML on Linux): the checks that did run on the saved
   * model instead of comparing predictions, and why predictions were not compared.
   */
  structural_validation: z
    .strictObject({
      method: z.literal('structural'),
      passed: z.boolean(),
      checks: z.array(z.string()),
      predictions_compared: z.literal(false),
      reason: z.string(),
    })
    .optional(),
});
export type PackageMetadata = z.infer<typeof MetadataSchema>;

// The Node wrapper reads a subset of this file: a change here that breaks it fails to compile.
const wrapperReadsMetadata = (m: PackageMetadata): WrapperMetadata => m;
void wrapperReadsMetadata;

export interface MetadataInput {
  format: ExportFormat;
  taskType: PackageMetadata['task_type'];
  modelName: string;
  framework: PackageMetadata['model']['framework'];
  architecture: string;
  inputSize: [number, number];
  classNames: string[];
  classIds: number[];
  keypointShape: [number, number] | null;
  inputs: TensorInfo[];
  outputs: TensorInfo[];
  sizeBytes: number;
  sourceCheckpoint: string;
  versions: Record<string, string>;
  preprocessing: PreprocessingSpec;
  postprocessing: PostprocessingSpec;
  optimization: PackageMetadata['optimization'];
  /** What the package can run the model with (formats.ts packageRuntimes); the format's full list when absent. */
  runtimes?: { wrappers: RuntimeLanguage[]; engines: string[]; absent: AbsentWrapper[] };
}

export function buildMetadata(input: MetadataInput, now = new Date()): PackageMetadata {
  const info = FORMATS[input.format];
  const runtimes = input.runtimes ?? { wrappers: [...info.wrappers], engines: [...info.engines], absent: [] };
  return MetadataSchema.parse({
    format_version: METADATA_FORMAT_VERSION,
    export_format: input.format,
    task_type: input.taskType,
    model_name: input.modelName,
    generated_at: now.toISOString(),
    model: {
      framework: input.framework,
      architecture: input.architecture,
      file: info.packageName,
      directory: info.directory,
      input_size: input.inputSize,
      num_classes: input.classNames.length,
      class_names: input.classNames,
      class_ids: input.classIds,
      keypoints: input.keypointShape ? { shape: input.keypointShape } : null,
      inputs: input.inputs,
      outputs: input.outputs,
      size_mb: Math.round((input.sizeBytes / 1024 ** 2) * 100) / 100,
      source_checkpoint: input.sourceCheckpoint,
      versions: input.versions,
    },
    preprocessing: input.preprocessing,
    postprocessing: input.postprocessing,
    runtime: {
      engines: runtimes.engines,
      languages: [...info.languages],
      platforms: [...info.platforms],
      wrappers: runtimes.wrappers,
      absent_wrappers: runtimes.absent,
    },
    optimization: input.optimization,
  });
}
