/**
 * The seam between TypeScript and Python: every value that crosses the bridge, as zod schemas.
 * Parameters are snake_case objects (Python's convention, and the wire format of every JSON
 * document this runtime writes); adapters map the camelCase TypeScript domain to them in one
 * function each. Every answer is parsed with its schema before TypeScript uses it, so a drift
 * on the Python side is a clear error, not `undefined` deep inside a job.
 *
 * python/vision_trainer/protocol.py mirrors these shapes as TypedDicts (the Python entry points
 * take and return them); test/python/test_protocol.py checks the two agree, field by field,
 * against the JSON Schemas generated from this file (docs/schemas/bridge.schema.json).
 */
import { z } from 'zod';
import { PerClassMetricSchema, PrCurveSchema } from '../callbacks/schemas.js';
import { FRAMEWORKS, TASK_TYPES } from '../config/tasks.js';
import { INFERENCE_BACKEND_CHOICES, INFERENCE_PRECISIONS } from '../config/variables.js';
import { TensorInfoSchema } from '../jobs/export/metadata.js';
import {
  GroundTruthSchema,
  ImageMetricsSchema,
  ModelInfoSchema,
  PrecisionCheckSchema,
  PredictionsSchema,
  TestRunMetricsSchema,
  XaiOutcomeSchema,
} from '../jobs/infer/results.js';

const Int = z.number().int();
const Num = z.number().nullable();
const Metrics = z.record(z.string(), Num);
const Size = z.tuple([Int, Int]);
const Nothing = z.null();

// ---------------------------------------------------------------------------------------------
// Bridge health (vision_trainer.support)

export const EnvironmentSchema = z.object({
  python: z.string(),
  executable: z.string(),
  torch: z.string().optional(),
  cuda_available: z.boolean().optional(),
  cuda_devices: Int.optional(),
  torch_error: z.string().optional(),
});

// ---------------------------------------------------------------------------------------------
// Preflight and doctor: vision_trainer.environment.report(params), and each framework's
// vision_trainer.<framework>.train.check_model(params), asked before any download

export const EnvironmentParamsSchema = z.object({
  /** Distributions whose installed versions are reported (read from their metadata: nothing is imported). */
  packages: z.array(z.string()),
  /** Modules imported to prove they load (a broken native library shows here), each timed. */
  imports: z.array(z.string()),
  /** DEVICE as configured: one torch cannot use is reported as `device_problem`. */
  device: z.string(),
});

export const GpuSchema = z.object({ index: Int, name: z.string(), memory_gb: z.number() });

export const EnvironmentReportSchema = z.object({
  python: z.string(),
  executable: z.string(),
  /** Installed version by distribution name; null when it is not installed. */
  packages: z.record(z.string(), z.string().nullable()),
  imports: z.array(z.object({ module: z.string(), seconds: z.number(), error: z.string().nullable() })),
  torch: z
    .object({
      version: z.string(),
      /** The CUDA version torch was built for; null for a CPU-only build. */
      cuda_build: z.string().nullable(),
      gpus: z.array(GpuSchema),
      mps_available: z.boolean(),
      threads: Int,
    })
    .nullable(),
  /** Why torch could not be imported; null when it could. */
  torch_error: z.string().nullable(),
  /** Why DEVICE cannot be used here; null when it can. */
  device_problem: z.string().nullable(),
});

export const ModelCheckParamsSchema = z.object({
  model_name: z.string(),
  task_type: z.enum(TASK_TYPES),
  imgsz: Int,
  /** PRETRAINED_WEIGHT_URL or a resume checkpoint is given: the file decides the architecture, read later. */
  has_weights: z.boolean(),
  /** transformers: HF_CONFIG_OVERRIDES. */
  config_overrides: z.record(z.string(), z.unknown()).nullable(),
});

export const ModelCheckSchema = z.object({
  /** What MODEL_NAME resolves to, for the log. */
  description: z.string(),
  /** Why this model cannot be trained here, and what to use instead; null when it can. */
  problem: z.string().nullable(),
  /** The variable the problem is about (MODEL_NAME, HF_CONFIG_OVERRIDES). */
  variable: z.string(),
});

// ---------------------------------------------------------------------------------------------
// Training: vision_trainer.<framework>.train.train(params, emit)

/**
 * One node of a distributed training (src/jobs/distributed.ts plans it). Its Python interpreter
 * starts `nproc_per_node` workers with torch's elastic launcher and joins the static rendezvous
 * at master_addr:master_port as node `node_rank`; global rank 0 (on node 0) sends the trainer
 * events to `events_socket`, every node's workers stop together once any node's `stop_file`
 * exists.
 */
export const DistributedParamsSchema = z.object({
  nnodes: Int.min(1),
  node_rank: Int.min(0),
  /** A number, or resolved on the node: "auto" (its GPUs, else one process), "gpu" (its GPUs). */
  nproc_per_node: z.union([Int.min(1), z.enum(['auto', 'gpu'])]),
  master_addr: z.string(),
  master_port: Int.min(1).max(65535),
  /** The rendezvous id: the same on every node (JOB_ID). */
  run_id: z.string(),
  rendezvous_timeout_seconds: z.number().positive(),
  /** How long node 0 waits for a node to check in (reach its store), and a node for node 0's store; at most rendezvous_timeout_seconds. */
  join_timeout_seconds: z.number().positive(),
  /** A node whose heartbeat stops for this long is lost (before the launch as during training). */
  node_timeout_seconds: z.number().positive(),
  /** The Unix socket of the reporting node's Node process; null on the other nodes. */
  events_socket: z.string().nullable(),
  stop_file: z.string(),
});

export type DistributedParams = z.output<typeof DistributedParamsSchema>;

/**
 * A node of a multi-node job checks in once its Python runs, before its dataset download: node 0
 * hosts the rendezvous store, every node beats in it from then on, so a node that dies before it
 * joins is noticed by its silence, one that never starts after join_timeout_seconds.
 */
export const CheckInParamsSchema = z.object({ distributed: DistributedParamsSchema });
export const CheckInAnswerSchema = z.object({
  /** Whether this node hosts the store (node 0). */
  hosting: z.boolean(),
});

/**
 * A node other than node 0 that fails (or is stopped) before its launcher joins the rendezvous
 * tells node 0 through the rendezvous store, so node 0 fails the job at once with this node's
 * reason and exit code instead of waiting RENDEZVOUS_TIMEOUT_SECONDS.
 */
export const AnnounceFailureParamsSchema = z.object({
  distributed: DistributedParamsSchema,
  kind: z.enum(['failed', 'stopped']),
  message: z.string(),
  /** This node's exit code; node 0's job exits with it. */
  exit_code: Int,
  /** How long to wait for node 0 to host the store (it may still be downloading the dataset). */
  wait_seconds: z.number().nonnegative(),
});
export type AnnounceFailureParams = z.output<typeof AnnounceFailureParamsSchema>;

export const AnnounceFailureAnswerSchema = z.object({ delivered: z.boolean() });

export const TrainParamsSchema = z.object({
  model_name: z.string(),
  task_type: z.enum(TASK_TYPES),
  /** What the framework is pointed at: a data.yaml, an ImageFolder root or a manifest folder. */
  data: z.string(),
  /** Class names in the framework's index order. */
  class_names: z.array(z.string()),
  /** The dataset's class id of each index (PreparedDataset.classIds); stored in every checkpoint. */
  class_ids: z.array(Int),
  /** val_images.jsonl: the val split's images, to name them in the per-image validation results. */
  val_images: z.string().nullable(),
  epochs: Int,
  batch: Int,
  imgsz: Int,
  device: z.string(),
  workers: Int,
  /** Framework outputs (runs/, weights) go under this folder. */
  project: z.string(),
  /** Local pretrained weights: a file, or for transformers an extracted save_pretrained folder. */
  weights: z.string().nullable(),
  lr: z.number().nullable(),
  /** A checkpoint of an unfinished run to continue (optimizer state included). */
  resume_from: z.string().nullable(),
  /**
   * With resume_from: the best checkpoint of the earlier attempts (its file, epoch and primary
   * metric), when it is not resume_from itself. The trainer starts with it as its best, so a
   * later epoch is best only when it beats it and best.pt holds the best weights of the job.
   */
  best_from: z.object({ path: z.string(), epoch: Int, value: z.number().nullable() }).nullable(),
  /** Python's log lines are appended here too (uploaded as training.log). */
  log_file: z.string(),
  primary_metric: z.string(),
  job_id: z.string(),
  /** transformers: HF_CONFIG_OVERRIDES, deep-merged into the model configuration. */
  config_overrides: z.record(z.string(), z.unknown()).nullable(),
  /** Several processes (DDP): how this node joins the job (python/vision_trainer/common/distributed.py). */
  distributed: DistributedParamsSchema.nullable(),
  /** TRAINER_ARGS as the preflight resolved them (framework-native names); {} when unset. */
  trainer_args: z.record(z.string(), z.unknown()),
  /** SEED: seed everything and switch on deterministic algorithms; null = the framework's fixed seed. */
  seed: Int.nullable(),
  /** ENABLE_TENSORBOARD: the folder the trainer writes TensorBoard event files into; null = none. */
  tensorboard_dir: z.string().nullable(),
  /** YOLO-World: the extracted transformers CLIP folder (TEXT_ENCODER_WEIGHT_URL) that embeds the class names; null = none. */
  text_encoder: z.string().nullable(),
});

/**
 * The preflight of TRAINER_ARGS (vision_trainer.<framework>.trainer_args.check): the keys
 * checked against the installed framework's own list, before any download.
 */
export const TrainerArgsParamsSchema = z.object({ trainer_args: z.record(z.string(), z.unknown()), task_type: z.enum(TASK_TYPES) });
export const TrainerArgsAnswerSchema = z.object({
  /** The settings as the framework will use them (types coerced, enums as their values). */
  resolved: z.record(z.string(), z.json()),
  problems: z.array(z.object({ key: z.string(), message: z.string() })),
});

/**
 * ultralytics' per-image checks for its label cache, begun on the dataset's layout while the
 * images still download (vision_trainer.ultralytics.label_cache.start; the cache itself is
 * written when training starts).
 */
export const LabelCheckParamsSchema = z.object({
  /** data.yaml of the layout written from the annotations. */
  data: z.string(),
  task_type: z.enum(TASK_TYPES),
  /** Resolved TRAINER_ARGS: single_cls and fraction change what ultralytics checks. */
  trainer_args: z.record(z.string(), z.unknown()),
});
export const LabelCheckAnswerSchema = z.object({
  started: z.boolean(),
  /** Why no checks started (null when they did). */
  reason: z.string().nullable(),
  /** Images the checks cover (train and val lists); 0 when none started. */
  images: Int,
});

/**
 * best.pt stamped with the epoch the job chose (src/jobs/train/best.ts), so the file's own record
 * of its best epoch is what `done` reports: the trainer wrote the chosen epoch's checkpoint
 * before the backend's is_best answer, with its score-based view of the best
 * (vision_trainer.<module>.mark_best).
 */
export const MarkBestParamsSchema = z.object({
  path: z.string(),
  /** The chosen epoch (1-based, as in the validation callbacks). */
  epoch: Int,
  /** Its primary metric value. */
  value: Num,
  /** Its framework score (ultralytics' fitness, else the primary metric). */
  score: Num,
  /** Who chose it: the backend's is_best answer, or the score. */
  decided_by: z.enum(['backend', 'score']).nullable(),
});
export const MarkBestAnswerSchema = z.object({
  /** The best epoch the file recorded before (null when it had none). */
  previous_best_epoch: Int.nullable(),
});

/**
 * The best epoch a checkpoint of ours records (`best_epoch`, `best_metric`: the trainer's view
 * when it wrote the file), read when a retried job's state.json names no best
 * (src/jobs/train/resume.ts). Null where the checkpoint records none.
 */
export const RecordedBestSchema = z.object({ epoch: Int.nullable(), value: Num });

export const TrainAnswerSchema = z.object({
  best_epoch: Int.nullable(),
  best_path: z.string().nullable(),
  last_path: z.string().nullable(),
  stopped_early: z.boolean(),
  /** Distributed runs: the node whose stop request ended the training early, if one did. */
  stopped_by_node: Int.nullable().optional(),
});

/**
 * What every trainer (ultralytics, timm, transformers) sends while it trains, through the `emit`
 * function it was given (python/vision_trainer/common/trainer_events.py builds these). Per epoch:
 * batches, validation, `checkpoint`, then `epoch`.
 */
export const EpochValidationSchema = z.object({
  primary_metric_name: z.string(),
  primary_metric_value: Num,
  metrics: Metrics,
  /** Keyed by the dataset's class ids, in ascending id order (python/vision_trainer/common/class_ids.py). */
  per_class_metrics: z.array(PerClassMetricSchema),
  confusion_matrix: z.array(z.array(z.number())).nullable().optional(),
  /** The class id of each row and column of `confusion_matrix`. */
  confusion_matrix_class_ids: z.array(Int).nullable().optional(),
  pr_curves: z.record(z.string(), PrCurveSchema).nullable().optional(),
  num_images_validated: Int,
  validation_time_seconds: Num,
  /** The epoch's per-image results (images.json), written by the trainer; uploaded by the job. */
  image_results_file: z.string().nullable().optional(),
});

export const TrainerEventSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('start'),
    epochs: Int,
    start_epoch: Int,
    batches_per_epoch: Int,
    device: z.string(),
    save_dir: z.string().optional(),
    /** A resumed run whose checkpoint was the best so far: that epoch, its primary metric and its weights. */
    best: z.object({ epoch: Int, value: Num, path: z.string() }).nullable().optional(),
    /** What the run resolved: framework arguments, threads, workers, AMP, validation and saving (common/run_settings.py). */
    settings: z.record(z.string(), z.json()).optional(),
  }),
  z.object({ kind: z.literal('batch'), epoch: Int, epochs: Int, batch: Int, batches: Int, losses: Metrics }),
  z.object({
    kind: z.literal('epoch'),
    epoch: Int,
    epochs: Int,
    losses: Metrics,
    learning_rate: Num,
    metrics: Metrics,
    validation: EpochValidationSchema.nullable(),
    fitness: Num.optional(),
    is_best: z.boolean(),
    epoch_time_seconds: Num.optional(),
  }),
  z.object({
    kind: z.literal('checkpoint'),
    epoch: Int,
    last_path: z.string(),
    best_path: z.string().nullable(),
    is_best: z.boolean(),
    /**
     * Written after a stop (this node's, or another node's through the stop vote): it may hold an
     * epoch cut short, which a resume trains again. Absent from trainers of earlier versions.
     */
    stopping: z.boolean().optional(),
    /**
     * The trainer never writes into last_path: each save is a new file renamed over it, so the
     * file this event names never changes and the job hard-links it instead of copying it (a
     * ViT-Base checkpoint with its optimizer is about 1 GB, copied while Python waits). Absent
     * or false (ultralytics rewrites last.pt in place): copied.
     */
    last_replaced: z.boolean().optional(),
  }),
  z.object({
    kind: z.literal('end'),
    best_epoch: Int.nullable(),
    last_epoch: Int.nullable(),
    best_path: z.string().nullable(),
    last_path: z.string().nullable(),
  }),
]);

/** The trainer's answer to an event: "stop" ends training after the current batch. */
export const TrainerAnswerSchema = z.literal('stop').optional();

// ---------------------------------------------------------------------------------------------
// Inference: vision_trainer.<framework>.infer.{recognizes, open_session}, then the shared
// session entry points of vision_trainer.common.infer_session.

export const CheckpointParamsSchema = z.object({ checkpoint: z.string() });

/** What the session checks an export job's ONNX model against the checkpoint with, and how it feeds it (metadata.json). */
export const GraphModelSchema = z.object({
  /** The downloaded model.onnx, or the .xml of the extracted model.openvino. */
  path: z.string(),
  /** The export's format: ONNX, or OpenVINO IR (which only OpenVINO runs). */
  format: z.enum(['onnx', 'openvino']),
  /** INFERENCE_MODEL_PATH, as results.json names it. */
  uri: z.string(),
  framework: z.enum(FRAMEWORKS),
  task_type: z.enum(TASK_TYPES),
  class_names: z.array(z.string()),
  /** The dataset class id of each output index (metadata.json model.class_ids): what an embedded NMS writes. */
  class_ids: z.array(Int),
  input_size: z.tuple([Int, Int]),
  /** The graph normalises itself and takes the resized image's uint8 NHWC pixels. */
  embedded_preprocessing: z.boolean(),
  /** The graph ends in a softmax: its output is probabilities, not logits. */
  embedded_softmax: z.boolean(),
  /** Detectors: the NMS built into the graph (rows of x1, y1, x2, y2, score, dataset class id), or null. */
  nms: z
    .object({
      iou_threshold: z.number(),
      min_confidence: z.number(),
      max_detections: Int,
      class_aware: z.boolean(),
    })
    .nullable(),
  /** Box coordinates in input pixels, or as fractions of the input size. */
  box_units: z.enum(['pixels', 'normalized']),
  /** The graph's fixed batch size, or null for a dynamic batch. */
  batch: Int.nullable(),
  quantized: z.boolean(),
});
export type GraphModel = z.infer<typeof GraphModelSchema>;

export const SessionParamsSchema = z.object({
  checkpoint: z.string(),
  task_type: z.enum(TASK_TYPES),
  image_size: Int,
  conf_threshold: z.number(),
  iou_threshold: z.number(),
  device: z.string(),
  /** Test runs: evaluate predictions against ground truth. */
  evaluate: z.boolean(),
  /** Grad-CAM when ENABLE_XAI; layers null = the architecture's defaults. */
  /** samples: XAI_SAMPLES, the model evaluations per image of a perturbation method (lime, shap). */
  xai: z.object({ method: z.string(), layers: z.array(z.string()).nullable(), samples: Int.nullable().optional() }).nullable(),
  /** INFERENCE_BACKEND; onnx and openvino export the checkpoint into `graph_dir` first; auto decides in Python. */
  inference_backend: z.enum(INFERENCE_BACKEND_CHOICES),
  /** A folder of the job's work folder for the exported graph. */
  graph_dir: z.string(),
  /** SAM 2 inference jobs: the downloaded PROMPT_CHECKPOINT_PATH, a detector whose boxes prompt it. */
  prompt_checkpoint: z.string().nullable().optional(),
  /** Test runs: the test dataset's classes (ids and names in its order), the classes of a model that has none of its own (SAM 2). */
  dataset_classes: z
    .object({ ids: z.array(Int), names: z.array(z.string()) })
    .nullable()
    .optional(),
  /** How many images the job predicts: INFERENCE_BACKEND=auto exports only when enough images pay for it. */
  image_count: Int.nullable().optional(),
  /** INFERENCE_MODEL_PATH: an export job's ONNX or OpenVINO model (downloaded) and what its metadata.json says, instead of exporting the checkpoint. */
  graph_model: GraphModelSchema.nullable().optional(),
  /** DECODE_THREADS: threads decoding each batch's images (null: the CPU budget's). */
  decode_threads: Int.nullable().optional(),
  /** PREFETCH_NEXT_BATCH: decode the next batch while this one runs through the model (auto: Python decides from the CPU budget). */
  prefetch: z.union([z.literal('auto'), z.boolean()]).optional(),
  /** INFERENCE_PRECISION: bf16 asks OpenVINO for bfloat16 (auto's graph is then OpenVINO's). */
  inference_precision: z.enum(INFERENCE_PRECISIONS).optional(),
});

/**
 * Ground truth of one image in the model's class indices (what the evaluator compares with the
 * model's outputs; the results carry dataset ids), coordinates in original pixels.
 * Detection tasks: every object (an empty list for a background image). Classification: the class.
 */
export const GroundTruthInputSchema = z.union([
  z.object({
    boxes: z.array(z.tuple([z.number(), z.number(), z.number(), z.number()])),
    classes: z.array(Int),
    segmentations: z.array(z.array(z.array(z.number()))).optional(),
    keypoints: z.array(z.array(z.tuple([z.number(), z.number(), z.number()]))).optional(),
  }),
  z.object({ class: Int }),
  /** Semantic segmentation: the mask file and, for each test dataset class id, the model's index (classes matched by name). */
  z.object({ mask: z.string(), class_map: z.array(z.tuple([Int, Int])) }),
]);

export const BatchItemSchema = z.object({
  /** Local image file. */
  path: z.string(),
  /** Unique within the job (the image's index): the metrics' per-image key. */
  key: z.string(),
  ground_truth: GroundTruthInputSchema.nullable(),
  /** Write an annotated PNG here (the visualisation sample). */
  visualization_path: z.string().nullable(),
  /** Write a heatmap overlay PNG here (the XAI sample). */
  xai_path: z.string().nullable(),
  /** Semantic segmentation: write the predicted class map here as an indexed PNG (every image). */
  mask_path: z.string().nullable().optional(),
});
/**
 * Python's word after each image it explained (heatmap written), during `predict_batch`: LIME and
 * SHAP take seconds to minutes per image, so the job reports them one by one (predict-loop.ts).
 */
export const XaiProgressSchema = z.object({ method: z.string(), seconds: z.number().nonnegative() });

export const PredictParamsSchema = z.object({
  items: z.array(BatchItemSchema),
  /** The next batch's image paths: Python decodes them while this batch runs through the model. */
  prefetch: z.array(z.string()).optional(),
});

/** One image's outcome; `error` alone when the image could not be read or predicted. */
export const ImageOutcomeSchema = z.union([
  z.object({ error: z.string() }),
  z.object({
    width: Int.positive(),
    height: Int.positive(),
    /** Dataset class ids (python/vision_trainer/common/class_ids.py). */
    predictions: PredictionsSchema,
    /** Test runs: the image judged against its ground truth. */
    metrics: ImageMetricsSchema.nullable(),
    xai: XaiOutcomeSchema.nullable(),
    /** Semantic segmentation: the ground truth's classes, which only Python (reading the mask) knows. */
    ground_truth: GroundTruthSchema.nullable().optional(),
  }),
]);
export const BatchAnswerSchema = z.object({
  images: z.array(ImageOutcomeSchema),
  /** Wall time of the framework's prediction call for the batch (pre/post-processing included). */
  inference_seconds: z.number().nonnegative(),
  /** Of that, decoding and preparing the images (not counted when prefetched; ultralytics: its own preprocess stage), and the model's forward pass; null where the backend does not time them (SAM 2). */
  preprocess_seconds: z.number().nonnegative().nullable(),
  forward_seconds: z.number().nonnegative().nullable(),
  /** CPU time (user + system) of the whole Python process during the call: every thread, results and drawing included. */
  cpu_seconds: z.number().nonnegative(),
  /** The first batch under INFERENCE_PRECISION=bf16: compared with float32 (not timed with the batch). */
  precision_check: PrecisionCheckSchema.optional(),
});
export { ModelInfoSchema, TestRunMetricsSchema };

// ---------------------------------------------------------------------------------------------
// Export: vision_trainer.<framework>.export.{check_format, describe, export, open_original}

export const CheckFormatParamsSchema = z.object({ format: z.string(), device: z.string() });
export const CheckFormatAnswerSchema = z.object({
  device: z.string(),
  note: z.string().optional(),
  /** pip requirements of the format's optional group (python/requirements-export.txt) that are not installed. */
  missing_packages: z.array(z.string()).optional(),
});

/** What an export needs to know about a checkpoint; each framework adds its own facts. */
const ModelFactsBase = z.object({
  task_type: z.enum(TASK_TYPES),
  architecture: z.string(),
  class_names: z.array(z.string()),
  /** The dataset's class id of each output (the checkpoint's, or its indices when it carries none). */
  class_ids: z.array(Int),
  /** The size the model was trained at, [height, width]. */
  image_size: Size,
  versions: z.record(z.string(), z.string()),
});
export const UltralyticsFactsSchema = ModelFactsBase.extend({
  framework: z.literal('ultralytics'),
  keypoint_shape: Size.nullable(),
  stride: Int,
  mask_coefficients: Int.nullable(),
});
/** timm and transformers checkpoints (python/vision_trainer/common/checkpoints.py). */
export const TorchFactsSchema = ModelFactsBase.extend({
  framework: z.enum(['timm', 'huggingface']),
  model_name: z.string(),
  mean: z.tuple([z.number(), z.number(), z.number()]),
  std: z.tuple([z.number(), z.number(), z.number()]),
  interpolation: z.enum(['bilinear', 'bicubic']),
  resize_mode: z.enum(['shorter_side_center_crop', 'squash']),
  crop_pct: z.number(),
});

export const NmsParamsSchema = z.object({ iou_threshold: z.number(), min_confidence: z.number(), max_detections: Int });
export type NmsParams = z.infer<typeof NmsParamsSchema>;

const ExportParamsBase = z.object({
  checkpoint: z.string(),
  format: z.string(),
  out_dir: z.string(),
  input_size: Size,
  batch: Int,
  device: z.string(),
  opset: Int,
  /** INCLUDE_PREPROCESSING where the format carries it: this normalisation (metadata.json's) and NHWC -> NCHW go into the graph, whose input becomes uint8 NHWC. */
  embed_preprocessing: z
    .object({ method: z.enum(['divide', 'standardize']), mean: z.array(z.number()).length(3), std: z.array(z.number()).length(3) })
    .nullable(),
});
export const UltralyticsExportParamsSchema = ExportParamsBase.extend({
  /** onnxslim after the export (OPTIMIZATION_LEVEL >= 1). */
  simplify: z.boolean(),
  /**
   * ultralytics' `quantize=` vocabulary: 16 (float16), "w8a32" (LiteRT dynamic int8), 8 (static
   * int8). For TFLite, 16 and 8 are applied by python/vision_trainer/common/mobile_export.py to
   * ultralytics' float32 file (8 calibrated on `calibration`).
   */
  quantize: z.union([z.literal(16), z.literal('w8a32'), z.literal(8)]).nullable(),
  /** Detectors' NMS built into the graph (ultralytics' `nms=True`, INCLUDE_POSTPROCESSING), as metadata.json's `postprocessing.nms` says. */
  nms: NmsParamsSchema.nullable(),
  /** Static int8 TorchScript (our own trace, not ultralytics' exporter): 2 and 3 frozen. */
  optimization_level: Int,
  /** TorchScript static int8 of the backbone and neck (FX graph mode, x86 backend), calibrated on `calibration`. */
  quantize_static: z.boolean(),
  /** float32 tensor files of preprocessed calibration images, each of `calibration_shape` (TorchScript and TFLite static int8). */
  calibration: z.array(z.string()),
  calibration_shape: z.array(Int),
});
export const TorchExportParamsSchema = ExportParamsBase.extend({
  optimization_level: Int,
  /** float16 weights: OpenVINO's compression, CoreML's compute precision, TFLite's float casting. */
  half: z.boolean(),
  /** Dynamic int8: TorchScript's of Linear layers, TFLite's dynamic-range recipe. */
  quantize_dynamic: z.boolean(),
  /** A softmax after the logits, in the exported model (INCLUDE_POSTPROCESSING). */
  embed_softmax: z.boolean(),
  /** Static int8 quantization calibrated on `calibration`: TorchScript's FX graph mode (x86 backend), TFLite's PT2E full-integer int8. */
  quantize_static: z.boolean(),
  /** float32 tensor files of preprocessed calibration images, each of `calibration_shape`. */
  calibration: z.array(z.string()),
  calibration_shape: z.array(Int),
});
export const ExportAnswerSchema = z.object({
  /** The exported file, or folder (OpenVINO IR, CoreML package). */
  path: z.string(),
  directory: z.boolean(),
  /** What the exporter did beyond the plain conversion. */
  notes: z.array(z.string()).default([]),
  /** The model's size before the exporter quantized it (bytes), when it did. */
  unquantized_size_bytes: Int.optional(),
  /** Module classes the quantization left in float32, when it left some on purpose. */
  float32_modules: z.array(z.string()).optional(),
});

/** The model runners of export validation (vision_trainer.common.export_validation). */
export const OpenOriginalParamsSchema = z.object({
  handle: z.string(),
  checkpoint: z.string(),
  device: z.string(),
  /** The exported model embeds its post-processing (softmax): the original applies it too. */
  embedded_postprocessing: z.boolean(),
  /** The export gives box and keypoint coordinates as fractions of the input size (ultralytics' LiteRT exports): the original's are divided too. */
  normalized_coordinates: z.boolean().optional(),
  /** The exported detector embeds this NMS: the original runs the same (ultralytics). */
  nms: NmsParamsSchema.nullable().optional(),
});
export const OpenExportedParamsSchema = z.object({ handle: z.string(), format: z.string(), path: z.string() });
export const OpenedModelSchema = z.object({ handle: z.string(), device: z.string() });
export const HandleParamsSchema = z.object({ handle: z.string() });
/** A float32 tensor file of `shape` (C order), written by TypeScript, for the model under `handle`. */
const ModelInputSchema = z.object({ handle: z.string(), input_file: z.string(), shape: z.array(Int) });
export const RunModelParamsSchema = ModelInputSchema.extend({ output_prefix: z.string() });
export const RunModelAnswerSchema = z.object({ outputs: z.array(z.object({ path: z.string(), shape: z.array(Int) })), seconds: z.number() });
export const BenchmarkParamsSchema = ModelInputSchema.extend({ warmup: Int, runs: Int });
export const ModelIoParamsSchema = z.object({ handle: z.string(), shape: z.array(Int) });
export const ModelIoSchema = z.object({ inputs: z.array(TensorInfoSchema), outputs: z.array(TensorInfoSchema) });
export const PathParamsSchema = z.object({ path: z.string() });
/** The structural check of a CoreML package (vision_trainer.common.mobile_export.inspect_coreml). */
export const InspectCoremlParamsSchema = z.object({ path: z.string(), input_shape: z.array(Int), class_names: z.array(z.string()), classifier: z.boolean() });
export const CoremlInspectionSchema = ModelIoSchema.extend({
  spec_type: z.string(),
  class_labels: z.array(z.string()).nullable(),
  /** What was checked, in words (metadata.json validation_checks). */
  checks: z.array(z.string()),
  user_metadata: z.record(z.string(), z.string()),
});
export const DecodeImagesParamsSchema = z.object({ items: z.array(z.object({ path: z.string(), out: z.string() })) });
export const DecodedImageSchema = z.object({ width: Int.positive(), height: Int.positive() });
/** A validation split's labels as the model's class ids (the ids its predictions carry; src/jobs/export/validate.ts). */
export const ValidationGroundTruthSchema = z.object({
  class_names: z.array(z.string()),
  /** The model's class id of each class name. */
  class_ids: z.array(Int),
  keypoint_count: Int,
  /** Semantic segmentation: [validation dataset class id, the model's class id] of each class the model knows (matched by name). */
  mask_class_ids: z.array(z.tuple([Int, Int])).optional(),
  images: z.array(
    z.object({
      width: z.number(),
      height: z.number(),
      label: Int.optional(),
      /** Semantic segmentation: the image's indexed PNG mask (values: the validation dataset's class ids). */
      mask: z.string().optional(),
      objects: z.array(
        z.object({
          class_id: Int,
          bbox: z.array(z.number()),
          segmentation: z.array(z.array(z.number())).optional(),
          keypoints: z.array(z.array(z.number())).optional(),
          iscrowd: z.boolean().optional(),
        }),
      ),
    }),
  ),
});
export const EvaluateParamsSchema = z.object({
  task: z.enum(TASK_TYPES),
  ground_truth: ValidationGroundTruthSchema,
  /** Per image, the wrapper's predictions as JSON (runtime/node/model_wrapper.ts predictionsToJson). */
  predictions: z.array(z.array(z.record(z.string(), z.unknown()))),
});

/** ONNX graph passes and quantization after any framework's export (vision_trainer.common.export_onnx). */
export const FinalizeParamsSchema = z.object({ path: z.string(), level: Int });
export const FinalizeAnswerSchema = z.object({ level: Int, opset: Int, passes: z.array(z.string()) });
/** The last ONNX pass (level 3's runtime-specific optimizations) and the final file's operators, "domain:op". */
export const SpecializeAnswerSchema = z.object({ passes: z.array(z.string()), operators: z.array(z.string()) });
export const QuantizeParamsSchema = z.object({
  source: z.string(),
  output: z.string(),
  type: z.enum(['dynamic', 'static']),
  dtype: z.enum(['int8', 'int16', 'float16']),
  /** Static quantization: float32 tensor files of preprocessed calibration images. */
  calibration: z.array(z.string()),
  input_shape: z.array(Int),
});
export const QuantizeAnswerSchema = z.object({ method: z.string(), output: z.string() });

export { Nothing as NothingSchema, Metrics as MetricsAnswerSchema };

export type EnvironmentReport = z.output<typeof EnvironmentReportSchema>;
export type ModelCheck = z.output<typeof ModelCheckSchema>;
export type TrainParams = z.input<typeof TrainParamsSchema>;
export type TrainAnswer = z.output<typeof TrainAnswerSchema>;
export type TrainerEvent = z.output<typeof TrainerEventSchema>;
export type TrainerEventOf<K extends TrainerEvent['kind']> = Extract<TrainerEvent, { kind: K }>;
export type TrainerAnswer = z.output<typeof TrainerAnswerSchema>;
export type SessionParams = z.input<typeof SessionParamsSchema>;
export type BatchItem = z.input<typeof BatchItemSchema>;
export type XaiProgress = z.output<typeof XaiProgressSchema>;
export type GroundTruthInput = z.output<typeof GroundTruthInputSchema>;
export type ImageOutcome = z.output<typeof ImageOutcomeSchema>;
export type UltralyticsFacts = z.output<typeof UltralyticsFactsSchema>;
export type TorchFacts = z.output<typeof TorchFactsSchema>;
export type ModelIo = z.output<typeof ModelIoSchema>;
export type ValidationGroundTruth = z.output<typeof ValidationGroundTruthSchema>;

/**
 * Every shape of the seam by the name its Python TypedDict has (python/vision_trainer/protocol.py),
 * with the side that writes it: parameters are checked as TypeScript sends them (`output`),
 * answers and events as Python must write them (`input`: defaults may be left out).
 */
export const BRIDGE_SCHEMAS = {
  Environment: { schema: EnvironmentSchema, io: 'input' },
  EnvironmentParams: { schema: EnvironmentParamsSchema, io: 'output' },
  Gpu: { schema: GpuSchema, io: 'input' },
  EnvironmentReport: { schema: EnvironmentReportSchema, io: 'input' },
  ModelCheckParams: { schema: ModelCheckParamsSchema, io: 'output' },
  ModelCheck: { schema: ModelCheckSchema, io: 'input' },
  TrainParams: { schema: TrainParamsSchema, io: 'output' },
  DistributedParams: { schema: DistributedParamsSchema, io: 'output' },
  CheckInParams: { schema: CheckInParamsSchema, io: 'output' },
  CheckInAnswer: { schema: CheckInAnswerSchema, io: 'input' },
  AnnounceFailureParams: { schema: AnnounceFailureParamsSchema, io: 'output' },
  AnnounceFailureAnswer: { schema: AnnounceFailureAnswerSchema, io: 'input' },
  TrainAnswer: { schema: TrainAnswerSchema, io: 'input' },
  TrainerArgsParams: { schema: TrainerArgsParamsSchema, io: 'output' },
  TrainerArgsAnswer: { schema: TrainerArgsAnswerSchema, io: 'input' },
  LabelCheckParams: { schema: LabelCheckParamsSchema, io: 'output' },
  LabelCheckAnswer: { schema: LabelCheckAnswerSchema, io: 'input' },
  MarkBestParams: { schema: MarkBestParamsSchema, io: 'output' },
  MarkBestAnswer: { schema: MarkBestAnswerSchema, io: 'input' },
  RecordedBest: { schema: RecordedBestSchema, io: 'input' },
  EpochValidation: { schema: EpochValidationSchema, io: 'input' },
  StartEvent: { schema: TrainerEventSchema.options[0], io: 'input' },
  BatchEvent: { schema: TrainerEventSchema.options[1], io: 'input' },
  EpochEvent: { schema: TrainerEventSchema.options[2], io: 'input' },
  CheckpointEvent: { schema: TrainerEventSchema.options[3], io: 'input' },
  EndEvent: { schema: TrainerEventSchema.options[4], io: 'input' },
  CheckpointParams: { schema: CheckpointParamsSchema, io: 'output' },
  SessionParams: { schema: SessionParamsSchema, io: 'output' },
  BatchItem: { schema: BatchItemSchema, io: 'output' },
  PredictParams: { schema: PredictParamsSchema, io: 'output' },
  XaiProgress: { schema: XaiProgressSchema, io: 'input' },
  ModelInfo: { schema: ModelInfoSchema, io: 'input' },
  BatchAnswer: { schema: BatchAnswerSchema, io: 'input' },
  CheckFormatParams: { schema: CheckFormatParamsSchema, io: 'output' },
  CheckFormatAnswer: { schema: CheckFormatAnswerSchema, io: 'input' },
  UltralyticsFacts: { schema: UltralyticsFactsSchema, io: 'input' },
  TorchFacts: { schema: TorchFactsSchema, io: 'input' },
  UltralyticsExportParams: { schema: UltralyticsExportParamsSchema, io: 'output' },
  TorchExportParams: { schema: TorchExportParamsSchema, io: 'output' },
  ExportAnswer: { schema: ExportAnswerSchema, io: 'input' },
  OpenOriginalParams: { schema: OpenOriginalParamsSchema, io: 'output' },
  OpenExportedParams: { schema: OpenExportedParamsSchema, io: 'output' },
  OpenedModel: { schema: OpenedModelSchema, io: 'input' },
  HandleParams: { schema: HandleParamsSchema, io: 'output' },
  RunModelParams: { schema: RunModelParamsSchema, io: 'output' },
  RunModelAnswer: { schema: RunModelAnswerSchema, io: 'input' },
  BenchmarkParams: { schema: BenchmarkParamsSchema, io: 'output' },
  ModelIoParams: { schema: ModelIoParamsSchema, io: 'output' },
  ModelIo: { schema: ModelIoSchema, io: 'input' },
  PathParams: { schema: PathParamsSchema, io: 'output' },
  InspectCoremlParams: { schema: InspectCoremlParamsSchema, io: 'output' },
  CoremlInspection: { schema: CoremlInspectionSchema, io: 'input' },
  DecodeImagesParams: { schema: DecodeImagesParamsSchema, io: 'output' },
  DecodedImage: { schema: DecodedImageSchema, io: 'input' },
  ValidationGroundTruth: { schema: ValidationGroundTruthSchema, io: 'output' },
  EvaluateParams: { schema: EvaluateParamsSchema, io: 'output' },
  FinalizeParams: { schema: FinalizeParamsSchema, io: 'output' },
  FinalizeAnswer: { schema: FinalizeAnswerSchema, io: 'input' },
  SpecializeAnswer: { schema: SpecializeAnswerSchema, io: 'input' },
  QuantizeParams: { schema: QuantizeParamsSchema, io: 'output' },
  QuantizeAnswer: { schema: QuantizeAnswerSchema, io: 'input' },
} as const satisfies Record<string, { schema: z.ZodType; io: 'input' | 'output' }>;
