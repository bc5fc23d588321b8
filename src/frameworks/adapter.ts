/**
 * What every framework offers the jobs: training, inference and export, all three required.
 * Jobs reach Python only through these interfaces, and never know which framework they drive;
 * what is framework-specific (dataset layout, Python module, checkpoint facts, pre/post-processing
 * conventions) stays inside one folder of adapters/.
 */
import type { PythonBridge } from '../bridge/python.js';
import type { InferConfig, TrainConfig } from '../config/schema.js';
import type { Framework, TaskType } from '../config/tasks.js';
import type { Dataset } from '../datasets/model.js';
import type { SplitAssignment } from '../datasets/splits.js';
import type { DistributedPlan } from '../jobs/distributed.js';
import type { ExportFormat, QuantizationRule } from '../jobs/export/formats.js';
import type { PostprocessingSpec, PreprocessingSpec } from '../jobs/export/metadata.js';
import type { ModelInfo, PrecisionCheck, TestRunMetrics } from '../jobs/infer/results.js';
import type { JsonValue } from '../events.js';
import type { BatchItem, GraphModel, ImageOutcome, ModelCheck, TrainerAnswer, TrainerEvent, XaiProgress } from './protocol.js';

export interface FrameworkAdapter {
  readonly framework: Framework;
  /** Environment the Python interpreter needs for this framework (offline switches, caches). */
  pythonEnv(workDir: string): Record<string, string>;
  readonly training: TrainingAdapter;
  readonly inference: InferenceAdapter;
  readonly exporter: ExportAdapter;
}

// ---------------------------------------------------------------------------------------------
// Training

/** What whileImagesArrive began: nothing (with the reason) or checks over `images` images. */
export interface WhileImagesArrive {
  started: boolean;
  reason: string | null;
  images: number;
}

export interface PreparedDataset {
  /** What the framework is pointed at: a data.yaml, an ImageFolder root or a manifest folder. */
  dataPath: string;
  /** Class names in the framework's contiguous index order. */
  classNames: string[];
  /**
   * The dataset's class id of each framework index: the one mapping from index to id. It goes
   * to Python as `class_ids`, into every checkpoint, and from there into every callback,
   * results.json, metadata.json and the deployment wrappers' outputs.
   */
  classIds: number[];
  /** val_images.jsonl: the val split's images as the framework reads them (per-image validation results). */
  valImagesFile: string;
  counts: Record<string, number>;
}

export interface TrainRequest {
  config: TrainConfig;
  data: PreparedDataset;
  /** Framework outputs (runs/, weights) go under this folder. */
  outputDir: string;
  /** Local pretrained weights (downloaded from PRETRAINED_WEIGHT_URL), if any. */
  weightsPath?: string | undefined;
  /** YOLO-World: the text encoder's zip (downloaded from TEXT_ENCODER_WEIGHT_URL), if any. */
  textEncoderPath?: string | undefined;
  /** Python-side log lines are appended here too (uploaded as training.log). */
  logFile: string;
  /**
   * The checkpoint to continue (RESUME_CHECKPOINT_PATH, or the latest of an earlier attempt of
   * this JOB_ID), downloaded: continue from the epoch after the checkpoint's with its optimizer
   * state. The trainer refuses a checkpoint of another model or class list.
   */
  resumeFrom?: string | undefined;
  /** With resumeFrom: the earlier attempts' best checkpoint, its epoch and primary metric (the best to beat). */
  bestFrom?: { path: string; epoch: number; value: number | null } | undefined;
  primaryMetric: string;
  /** TRAINER_ARGS as `resolveTrainerArgs` resolved them ({} when unset). */
  trainerArgs: Record<string, JsonValue>;
  /** ENABLE_TENSORBOARD: the trainer writes TensorBoard event files into this folder. */
  tensorboardDir?: string | undefined;
  /** This node's part of a training on several processes (src/jobs/distributed.ts); undefined for one process. */
  distributed?: DistributedPlan | undefined;
  /**
   * Calls `fn` with the reason once the job is asked to stop (at once if it already was). A
   * distributed training passes the request on to its workers through a file.
   */
  onStopRequest?: ((fn: (reason: string) => void) => void) | undefined;
}

export interface TrainOutcome {
  bestEpoch: number | null;
  bestPath: string | null;
  lastPath: string | null;
  stoppedEarly: boolean;
  /** A distributed training stopped early at the request of this node (preempted, stopped). */
  stoppedByNode?: number | null;
}

export type TrainerEventHandler = (event: TrainerEvent) => TrainerAnswer;

export interface TrainingAdapter {
  /**
   * The preflight, before anything is downloaded: whether MODEL_NAME (given the job's weights and
   * overrides) is a model this framework can build. Importing the trainer's module here also
   * proves the framework loads.
   */
  checkModel(bridge: PythonBridge, config: TrainConfig): Promise<ModelCheck>;
  /**
   * Python modules training of `taskType` imports later than the preflight's model check does (a
   * framework's lazily loaded trainer, the first validation's metrics): the training job imports
   * them while the dataset downloads.
   */
  pythonModules(taskType: TaskType): readonly string[];
  /**
   * TRAINER_ARGS checked against what the framework knows and resolved to the values it will
   * use; unknown keys and bad values throw a ConfigError. Runs before any download: `python`
   * starts the job's interpreter when the framework must be asked (ultralytics, transformers).
   */
  resolveTrainerArgs(args: Record<string, JsonValue>, taskType: TaskType, python: () => Promise<PythonBridge>): Promise<Record<string, JsonValue>>;
  /** Writes the dataset in the layout the framework reads (symlinks, not copies). */
  prepareDataset(dataset: Dataset, splits: SplitAssignment, outDir: string): Promise<PreparedDataset>;
  /**
   * Work the framework can do on the layout written from the annotations while its images still
   * download (the layout's links lead to files that arrive one by one): ultralytics checks each
   * image for its label cache as it arrives. Optional; the framework must stay correct whatever
   * arrives or changes after this call (training starts only once the download is complete).
   */
  whileImagesArrive?(bridge: PythonBridge, layout: PreparedDataset, taskType: TaskType, trainerArgs: Record<string, JsonValue>): Promise<WhileImagesArrive>;
  /**
   * Trains through the bridge. `onEvent` is called from Python's main thread for each trainer
   * event; answering "stop" ends training after the current batch (a checkpoint is still saved).
   */
  train(bridge: PythonBridge, request: TrainRequest, onEvent: TrainerEventHandler): Promise<TrainOutcome>;
  /**
   * Rewrites the checkpoint that becomes best.pt (in place, atomically) so its own record of the
   * best epoch is the epoch the job chose (src/jobs/train/best.ts), not the trainer's score-based
   * view when it wrote the file. Resolves with the best epoch the file recorded before.
   */
  markBest(bridge: PythonBridge, checkpointPath: string, best: ChosenBest): Promise<number | null>;
  /**
   * The best epoch (and its primary metric) a stored epoch checkpoint records, for a retried job
   * whose state.json names no best. Absent where the framework's checkpoints record none
   * (ultralytics keeps only its best fitness, not the epoch).
   */
  recordedBest?(bridge: PythonBridge, checkpointPath: string): Promise<{ epoch: number | null; value: number | null }>;
}

/** The epoch best.ts chose, as markBest stamps it into best.pt. */
export interface ChosenBest {
  epoch: number;
  value: number | null;
  score: number | null;
  decidedBy: 'backend' | 'score' | null;
}

// ---------------------------------------------------------------------------------------------
// Inference (test runs and inference jobs)

export type XaiMethod = InferConfig['xaiMethod'];

export interface OpenSessionRequest {
  /** The checkpoint, downloaded. */
  checkpointPath: string;
  config: InferConfig;
  /** Test runs: evaluate predictions against ground truth. */
  evaluate: boolean;
  /** Grad-CAM settings when ENABLE_XAI; layers undefined = the architecture's defaults. */
  xai?: { method: XaiMethod; layers: string[] | undefined; samples?: number };
  /** A folder of the job's work folder where INFERENCE_BACKEND=onnx|openvino writes its graph. */
  graphDir: string;
  /** The downloaded PROMPT_CHECKPOINT_PATH: a detector whose boxes prompt a SAM 2 checkpoint. */
  promptCheckpointPath?: string;
  /** Test runs: the test dataset's classes, which a model without classes of its own (SAM 2) reports. */
  datasetClasses?: { ids: number[]; names: string[] };
  /** How many images the job predicts (INFERENCE_BACKEND=auto weighs the export against it). */
  imageCount?: number;
  /** INFERENCE_MODEL_PATH, downloaded: the export job's graph to run instead of exporting the checkpoint. */
  graphModel?: GraphModel;
}

export interface BatchOutcome {
  images: ImageOutcome[];
  /** Wall time of the framework's prediction call for the batch (pre/post-processing included). */
  inferenceSeconds: number;
  /** Python's timing of the batch's stages (null where the backend has none) and its CPU time (BatchAnswerSchema). */
  stages?: { preprocessSeconds: number | null; forwardSeconds: number | null; cpuSeconds: number };
  /** INFERENCE_PRECISION=bf16's first batch compared with float32 (once per job). */
  precisionCheck?: PrecisionCheck;
}

export interface InferenceSession {
  readonly info: ModelInfo;
  /**
   * `prefetch`: the next batch's image paths, which Python decodes while this batch predicts.
   * `onExplained`: called after each image's heatmap, while the batch is still running.
   */
  predictBatch(items: BatchItem[], prefetch?: string[], onExplained?: (progress: XaiProgress) => void): Promise<BatchOutcome>;
  /** The test run's metrics, from everything evaluated so far; null when not evaluating. */
  finish(): Promise<TestRunMetrics | null>;
  close(): Promise<void>;
}

export interface InferenceAdapter {
  /** Whether this framework wrote the checkpoint (asked when FRAMEWORK is not set). */
  recognizes(bridge: PythonBridge, checkpointPath: string): Promise<boolean>;
  /**
   * Loads the checkpoint. Throws ConfigError when it does not fit TASK_TYPE, when XAI_METHOD does
   * not fit the model, or when XAI_TARGET_LAYERS names a layer the model lacks: all before any
   * image is processed.
   */
  open(bridge: PythonBridge, request: OpenSessionRequest): Promise<InferenceSession>;
}

// ---------------------------------------------------------------------------------------------
// Export. The job owns what is the same for every framework (downloads, ONNX graph passes and
// quantization, validation, metadata, packaging, uploads); an ExportAdapter owns reading a
// checkpoint, the framework's pre/post-processing conventions, and writing a format.

/** A checkpoint as the export sees it. */
export interface ModelDescription {
  framework: Framework;
  taskType: TaskType;
  /** e.g. yolo11n-seg, resnet18, ViTForImageClassification. */
  architecture: string;
  classNames: string[];
  /** The dataset's class id of each output (the checkpoint's; its indices when it carries none). */
  classIds: number[];
  /** The size the model was trained at, [height, width]: the default export size. */
  trainedSize: [number, number];
  /** Pose models: [keypoints, values per keypoint]. */
  keypointShape: [number, number] | null;
  versions: Record<string, string>;
  /** The framework's pre- and post-processing for this model, as metadata.json states them. */
  processing(options: ProcessingOptions): { preprocessing: PreprocessingSpec; postprocessing: PostprocessingSpec };
}

export interface ProcessingOptions {
  inputSize: [number, number];
  includePreprocessing: boolean;
  includePostprocessing: boolean;
  /** Set for LiteRT exports, whose boxes come as fractions of the input size. */
  format: ExportFormat;
}

/** What the exported model carries beyond the network, so that validation runs the original the same way. */
export interface EmbeddedSteps {
  /** The post-processing (a classifier's softmax, a detector's NMS) is part of the exported model. */
  postprocessing: boolean;
  /** The exported model gives coordinates as fractions of the input size (metadata box_units "normalized"). */
  normalizedCoordinates?: boolean;
  /** The detector's NMS the exported model embeds (metadata.json `postprocessing.nms`), null when none. */
  nms: EmbeddedNms | null;
}

/** NMS built into an exported detector. */
export type EmbeddedNms = Required<NonNullable<PostprocessingSpec['nms']>>;

export interface ExportRequest {
  /** The checkpoint on local disk. */
  checkpointPath: string;
  format: ExportFormat;
  outDir: string;
  inputSize: [number, number];
  batchSize: number;
  device: string;
  /** OPTIMIZATION_LEVEL 0-3. */
  optimizationLevel: number;
  /** A quantization the format's own converter applies (never ONNX's: the job does those). */
  quantization: QuantizationRule | null;
  /** INCLUDE_POSTPROCESSING where the model can carry it: the exporter builds it into the model (a classifier's softmax). */
  embedPostprocessing: boolean;
  /** A detector's NMS to build into the model (INCLUDE_POSTPROCESSING where the format carries it), null otherwise. */
  embedNms: EmbeddedNms | null;
  /**
   * INCLUDE_PREPROCESSING where the format can carry it (`preprocessing.embedded`): the
   * normalisation the exporter builds into the graph, with the NHWC -> NCHW transpose; null
   * when the wrappers normalise.
   */
  embedPreprocessing: PreprocessingSpec['normalize'] | null;
  /** Static quantization by the converter: float32 tensor files of preprocessed calibration images, and their shape. */
  calibration: { files: string[]; shape: number[] } | null;
}

export interface ExportedArtifact {
  /** The exported file, or folder (OpenVINO IR, CoreML package). */
  path: string;
  directory: boolean;
  /** What the exporter did beyond the plain conversion, for metadata.optimization.passes. */
  notes: string[];
  /** The size the model had before the converter quantized it (bytes), when it did and knows. */
  unquantizedSizeBytes?: number;
  /** Module classes the converter's quantization left in float32 (ultralytics' TorchScript int8: heads, attention). */
  float32Modules?: string[];
}

export interface ExportAdapter {
  /** Fails, saying what is missing and what to do, when this machine cannot write the format. */
  checkFormat(bridge: PythonBridge, format: ExportFormat, device: string): Promise<void>;
  describe(bridge: PythonBridge, checkpointPath: string): Promise<ModelDescription>;
  export(bridge: PythonBridge, request: ExportRequest): Promise<ExportedArtifact>;
  /**
   * Loads the checkpoint in Python under `handle` for export validation, its head in export
   * mode so that its raw outputs have the exported model's layout. Returns the device it runs on.
   */
  openOriginal(bridge: PythonBridge, handle: string, checkpointPath: string, device: string, embedded: EmbeddedSteps): Promise<string>;
}
