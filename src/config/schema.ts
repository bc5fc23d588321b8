/**
 * Zod schemas of the three job configurations, built from the variable table. These are the
 * single source of the config types: the env parser and TypeScript callers (`train(config)`)
 * both go through them.
 */
import { z } from 'zod';
import { EXPORT_FORMATS, type Mode, PERTURBATION_XAI_METHODS, type Variable, variablesFor, XAI_METHODS } from './variables.js';
import { type DistributedSettings, distributedProblems } from '../jobs/distributed.js';
import { exportSettingProblems } from '../jobs/export/formats.js';
import { checkModelForTask, FRAMEWORKS, type Framework, inferFramework, isYoloWorld, TASK_TYPES, type TaskType } from './tasks.js';
import { trainerArgProblems } from './trainer-args.js';

type Shape = Record<string, z.ZodType>;

function buildShape(vars: Variable[]): Shape {
  const root: Shape = {};
  const groups: Record<string, Shape> = {};
  for (const v of vars) {
    const [head, leaf] = v.path.split('.') as [string, string | undefined];
    if (leaf === undefined) root[head] = v.schema;
    else {
      const group = groups[head] ?? {};
      group[leaf] = v.schema;
      groups[head] = group;
    }
  }
  for (const [name, shape] of Object.entries(groups)) {
    // Groups whose fields are all optional (openai) may be omitted by TypeScript callers.
    // prefault (not default) so the group's own field defaults are applied when it is omitted.
    root[name] = z.object(shape).prefault({});
  }
  return root;
}

type Ctx = z.RefinementCtx;
const problem = (ctx: Ctx, path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });

/** What TRAINER_ARGS' framework says about its keys without asking Python (src/config/trainer-args.ts). */
function checkTrainerArgs(c: { framework?: Framework; modelName?: string; trainerArgs?: unknown }, ctx: Ctx): void {
  if (!c.trainerArgs || typeof c.trainerArgs !== 'object' || Array.isArray(c.trainerArgs)) return;
  const framework = c.framework === undefined || (FRAMEWORKS as readonly string[]).includes(c.framework) ? resolveFramework(c) : undefined;
  if (!framework) return;
  for (const p of trainerArgProblems(framework, c.trainerArgs as Record<string, unknown>)) problem(ctx, ['trainerArgs', p.key], p.message);
}

function checkMlflow(m: MlflowConfig | undefined, ctx: Ctx): void {
  if (!m || typeof m !== 'object') return;
  if (m.username && !m.password) problem(ctx, ['mlflow', 'password'], 'is required when MLFLOW_TRACKING_USERNAME is set');
  if (m.password && !m.username) problem(ctx, ['mlflow', 'username'], 'is required when MLFLOW_TRACKING_PASSWORD is set');
  if (m.token && m.username) problem(ctx, ['mlflow', 'token'], 'and MLFLOW_TRACKING_USERNAME/PASSWORD are two ways to sign in: set one of them');
}

interface RawBackend {
  baseUrl?: string;
  token?: string;
}

interface RawStorage {
  type: 's3' | 'r2' | 'minio' | 'local';
  endpoint?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  bucket: string;
  region?: string;
  root: string;
  datasetPath?: string;
}

function checkStorage(storage: RawStorage | undefined, ctx: Ctx): void {
  if (!storage || typeof storage !== 'object' || storage.type === 'local') return;
  if (!['s3', 'r2', 'minio'].includes(storage.type)) return;
  // AWS S3 without keys uses the SDK's default chain (IRSA, Pod Identity, profiles, instance roles);
  // R2 and MinIO have no such chain: their keys are explicit.
  const keysRequired = storage.type !== 's3' || Boolean(storage.accessKeyId) || Boolean(storage.secretAccessKey) || Boolean(storage.sessionToken);
  const why =
    storage.type === 's3'
      ? 'is required with the other key (or leave both unset for the AWS default credential chain)'
      : `is required for STORAGE_TYPE=${storage.type}`;
  if (keysRequired && !storage.accessKeyId) problem(ctx, ['storage', 'accessKeyId'], why);
  if (keysRequired && !storage.secretAccessKey) problem(ctx, ['storage', 'secretAccessKey'], why);
  if ((storage.type === 'r2' || storage.type === 'minio') && !storage.endpoint) {
    problem(ctx, ['storage', 'endpoint'], `is required for STORAGE_TYPE=${storage.type} (there is no default endpoint)`);
  }
}

/** The storage section as the storage layer takes it. */
export type StorageConfig =
  | { type: 's3' | 'r2' | 'minio'; endpoint?: string; accessKeyId?: string; secretAccessKey?: string; sessionToken?: string; bucket: string; region?: string }
  | { type: 'local'; root: string; bucket: string; datasetPath?: string };

function toStorageConfig(s: RawStorage): StorageConfig {
  if (s.type === 'local') return { type: 'local', root: s.root, bucket: s.bucket, ...(s.datasetPath ? { datasetPath: s.datasetPath } : {}) };
  return {
    type: s.type,
    ...(s.accessKeyId && s.secretAccessKey ? { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey } : {}),
    ...(s.sessionToken ? { sessionToken: s.sessionToken } : {}),
    bucket: s.bucket,
    ...(s.endpoint ? { endpoint: s.endpoint } : {}),
    ...(s.region ? { region: s.region } : {}),
  };
}

/** The storage variables on their own (`vision-trainer doctor`), checked by the jobs' rules. */
export const StorageSectionSchema = z
  .object(buildShape(variablesFor('train').filter((v) => v.path.startsWith('storage.'))))
  .superRefine((v, ctx) => checkStorage((v as { storage: RawStorage }).storage, ctx), { when: () => true })
  .transform((v) => toStorageConfig((v as { storage: RawStorage }).storage));

function checkBackend(backend: { baseUrl?: string; token?: string } | undefined, ctx: Ctx): void {
  if (!backend || typeof backend !== 'object') return;
  if (backend.baseUrl && !backend.token) problem(ctx, ['backend', 'token'], 'is required when BACKEND_BASE_URL is set');
  if (backend.token && !backend.baseUrl) problem(ctx, ['backend', 'baseUrl'], 'is required when CALLBACK_TOKEN is set');
}

/** An absent backend means "no HTTP callbacks" (TypeScript scripts); the CLI requires one. */
function toBackend(b: { baseUrl?: string; token?: string }): { baseUrl: string; token: string } | undefined {
  return b.baseUrl && b.token ? { baseUrl: b.baseUrl, token: b.token } : undefined;
}

function resolveFramework(v: { framework?: Framework; modelName?: string }): Framework | undefined {
  return v.framework ?? (v.modelName ? inferFramework(v.modelName) : undefined);
}

function checkModel(v: { framework?: Framework; modelName?: string; taskType: TaskType }, ctx: Ctx): void {
  if (typeof v.modelName !== 'string' || !(TASK_TYPES as readonly string[]).includes(v.taskType)) return;
  if (v.framework !== undefined && !(FRAMEWORKS as readonly string[]).includes(v.framework)) return;
  const framework = resolveFramework(v);
  if (!framework || !v.modelName) return;
  const why = checkModelForTask(framework, v.taskType, v.modelName);
  if (why) problem(ctx, ['modelName'], why);
}

/** YOLO-World embeds the class names with a CLIP text encoder that only TEXT_ENCODER_WEIGHT_URL brings; nothing else reads it. */
function checkTextEncoder(c: RawTrain, ctx: Ctx): void {
  if (typeof c.modelName !== 'string') return;
  const world = isYoloWorld(c.modelName);
  if (world && !c.textEncoderWeightUrl)
    problem(
      ctx,
      ['textEncoderWeightUrl'],
      `is required for ${c.modelName}: YOLO-World embeds the class names with a CLIP text encoder (a zip of a transformers CLIP save_pretrained folder, e.g. openai/clip-vit-base-patch32); nothing is fetched at run time`,
    );
  if (!world && c.textEncoderWeightUrl)
    problem(ctx, ['textEncoderWeightUrl'], `is read by YOLO-World models (yolo_world_v2_s, yolo_world_v2_m) only, not ${c.modelName}: unset it`);
}

/** The framework/format/quantization matrix of src/jobs/export/formats.ts, checked before any work. */
function checkExportSettings(c: RawExport, ctx: Ctx): void {
  const framework = (FRAMEWORKS as readonly string[]).includes(c.framework ?? '') || c.framework === undefined ? resolveFramework(c) : undefined;
  if (!framework || !(EXPORT_FORMATS as readonly string[]).includes(c.exportFormat)) return;
  if (!['none', 'dynamic', 'static'].includes(c.quantizationType) || !['int8', 'int16', 'float16'].includes(c.quantizationDtype)) return;
  for (const p of exportSettingProblems(framework, c.exportFormat, c.quantizationType, c.quantizationDtype, c.taskType)) problem(ctx, [p.field], p.message);
}

/** Inference and export run on one device: a GPU list would be a silent first GPU. */
function checkSingleDevice(device: unknown, mode: string, ctx: Ctx): void {
  if (typeof device === 'string' && /^\d+(,\d+)+$/.test(device)) {
    problem(
      ctx,
      ['device'],
      `lists several GPUs, but ${mode} runs on one device: name one, e.g. DEVICE=${device.split(',')[0]} (several GPUs are for training)`,
    );
  }
}

/**
 * Cross-field rules run even when single fields failed, so one message lists every problem.
 * They therefore see unvalidated values and check types before trusting them.
 */
const ALWAYS = { when: () => true } as const;

const shapeOf = (mode: Mode) => buildShape(variablesFor(mode));

// Output types are spelled out once here; `satisfies` below keeps them in step with the table.
export const TrainConfigSchema = z
  .object(shapeOf('train'))
  .superRefine((v, ctx) => {
    const c = v as unknown as RawTrain;
    checkStorage(c.storage, ctx);
    checkBackend(c.backend, ctx);
    checkModel(c, ctx);
    if (c.hfConfigOverrides !== undefined && resolveFramework(c) !== 'huggingface')
      problem(ctx, ['hfConfigOverrides'], 'applies to FRAMEWORK=huggingface only');
    if (c.hfConfigOverrides !== undefined && c.pretrainedWeightUrl)
      problem(
        ctx,
        ['hfConfigOverrides'],
        "shapes a model built from its configuration; with PRETRAINED_WEIGHT_URL the folder's config.json decides (unset one of them)",
      );
    checkTextEncoder(c, ctx);
    checkTrainerArgs(c, ctx);
    checkMlflow(c.mlflow, ctx);
    for (const p of distributedProblems(c)) problem(ctx, p.path.split('.'), p.message);
  }, ALWAYS)
  .transform((v) => {
    const c = v as unknown as RawTrain;
    return { ...c, framework: resolveFramework(c)!, backend: toBackend(c.backend), storage: toStorageConfig(c.storage) } as TrainConfig;
  });

export const InferConfigSchema = z
  .object(shapeOf('infer'))
  .superRefine((v, ctx) => {
    const c = v as unknown as RawInfer;
    checkStorage(c.storage, ctx);
    checkBackend(c.backend, ctx);
    checkSingleDevice(c.device, 'inference', ctx);
    if (c.inferenceType === 'test_run' && !c.datasetId)
      problem(ctx, ['datasetId'], 'is required for INFERENCE_TYPE=test_run (the labelled dataset to evaluate)');
    if (c.inferenceType === 'inference_job' && !c.datasetId && !c.imagePaths) {
      problem(ctx, ['imagePaths'], 'INFERENCE_TYPE=inference_job needs IMAGE_PATHS (JSON list of s3:// paths) or DATASET_ID');
    }
    // Refused before any download: only OpenVINO computes in bfloat16 here.
    if (c.inferencePrecision === 'bf16' && (c.inferenceBackend === 'pytorch' || c.inferenceBackend === 'onnx'))
      problem(
        ctx,
        ['inferencePrecision'],
        `bf16 runs on OpenVINO, not INFERENCE_BACKEND=${c.inferenceBackend} (${c.inferenceBackend === 'onnx' ? "ONNX Runtime's CPU provider" : 'the PyTorch path'} computes in float32): set INFERENCE_BACKEND=openvino or auto, or INFERENCE_PRECISION=fp32`,
      );
    if (c.promptCheckpointPath && c.inferenceType === 'test_run')
      problem(ctx, ['promptCheckpointPath'], 'is for inference jobs: a test run prompts SAM 2 with the ground-truth boxes; unset it');
    if (c.promptCheckpointPath && c.taskType !== 'instance_segmentation')
      problem(ctx, ['promptCheckpointPath'], `prompts SAM 2, which segments instances: set TASK_TYPE=instance_segmentation (not ${c.taskType})`);
    // Refused before any download: no explanation method covers a per-pixel class map yet.
    if (c.enableXai && c.taskType === 'semantic_segmentation')
      problem(ctx, ['enableXai'], 'no XAI_METHOD explains semantic_segmentation models yet (each pixel is its own prediction); set ENABLE_XAI=false');
    else if (c.enableXai && PERTURBATION_XAI_METHODS.includes(c.xaiMethod) && !c.taskType.endsWith('classification'))
      problem(
        ctx,
        ['xaiMethod'],
        `${c.xaiMethod} explains classifiers' class scores only; for ${c.taskType} use ${XAI_METHODS.filter((m) => !PERTURBATION_XAI_METHODS.includes(m)).join(', ')}`,
      );
  }, ALWAYS)
  .transform((v) => {
    const c = v as unknown as RawInfer;
    return { ...c, backend: toBackend(c.backend), storage: toStorageConfig(c.storage) } as InferConfig;
  });

export const ExportConfigSchema = z
  .object(shapeOf('export'))
  .superRefine((v, ctx) => {
    const c = v as unknown as RawExport;
    checkStorage(c.storage, ctx);
    checkBackend(c.backend, ctx);
    checkSingleDevice(c.device, 'export', ctx);
    if (c.modelName) checkModel(c, ctx);
    if (c.enableValidation && !c.validationDatasetId) problem(ctx, ['validationDatasetId'], 'is required when ENABLE_VALIDATION=true');
    if (c.quantizationType === 'static' && !c.validationDatasetId) {
      problem(ctx, ['validationDatasetId'], 'is required for QUANTIZATION_TYPE=static (its images calibrate the quantizer)');
    }
    checkExportSettings(c, ctx);
  }, ALWAYS)
  .transform((v) => {
    const c = v as unknown as RawExport;
    return { ...c, backend: toBackend(c.backend), storage: toStorageConfig(c.storage) } as ExportConfig;
  });

interface Common {
  jobId: string;
  traceId: string;
  /** Where callbacks go; absent for TypeScript scripts that only consume the event stream. */
  backend?: { baseUrl: string; token: string } | undefined;
  callbackMaxAttempts: number;
  /** RESUME: continue what an earlier attempt of this JOB_ID stored, or start from scratch. */
  resume: 'auto' | 'never';
  /** STORAGE_RETRY_SECONDS: how long one storage operation keeps retrying. */
  storageRetrySeconds: number;
  /** LOG_UPLOAD_INTERVAL_SECONDS: the job log goes to storage at least this often. */
  logUploadIntervalSeconds: number;
  taskType: TaskType;
  device: string;
  numWorkers: number;
  /** CPU_THREADS: the Python process's thread budget (python/vision_trainer/cpu_budget.py). */
  cpuThreads?: number;
  workDir?: string;
  keepWorkDir: boolean;
  pythonBin?: string;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  logFormat: 'auto' | 'json' | 'text';
  /** RETRY_EXIT_CODE_BASE: added to the exit code of a retryable failure (0 or 128). */
  retryExitCodeBase: number;
}
type JsonValue = z.core.util.JSONType;
type SplitStrategy = z.infer<typeof import('../datasets/splits.js').SplitStrategySchema>;

export interface TrainConfig extends Common {
  framework: Framework;
  modelName: string;
  datasetId: string;
  snapshotId?: string;
  epochs: number;
  batchSize: number;
  learningRate?: number;
  imageSize: number;
  splitStrategy?: SplitStrategy;
  pretrainedWeightUrl?: string;
  /** TEXT_ENCODER_WEIGHT_URL: YOLO-World's CLIP text encoder (a zip of a transformers save_pretrained folder). */
  textEncoderWeightUrl?: string;
  /** ALLOWED_PRIVATE_HOSTS: private hosts configuration URLs may reach (see src/net/url-guard.ts). */
  allowedPrivateHosts: string[];
  checkpointFrequency: number;
  maxTrainingTimeSeconds: number;
  stopGraceSeconds: number;
  resumeCheckpointPath?: string;
  /** HF_CONFIG_OVERRIDES: merged into a transformers configuration built without weights. */
  hfConfigOverrides?: Record<string, unknown>;
  /** TRAINER_ARGS: framework-native settings (src/config/trainer-args.ts). */
  trainerArgs?: Record<string, JsonValue>;
  /** SEED: a seeded, deterministic-where-possible run; unset = the framework's fixed seed. */
  seed?: number;
  /** MLFLOW_*: the run is logged to this MLflow server when trackingUri is set. */
  mlflow: MlflowConfig;
  /** ENABLE_TENSORBOARD: event files uploaded under logs/job-{JOB_ID}/tensorboard/. */
  tensorboard: boolean;
  /** Several processes and machines (src/jobs/distributed.ts). */
  distributed: DistributedSettings;
  storage: StorageConfig;
}

export interface MlflowConfig {
  trackingUri?: string;
  experimentName: string;
  runName?: string;
  token?: string;
  username?: string;
  password?: string;
}
type RawTrain = Omit<TrainConfig, 'storage' | 'backend' | 'framework'> & { framework?: Framework; storage: RawStorage; backend: RawBackend };

export interface InferConfig extends Common {
  inferenceType: 'test_run' | 'inference_job';
  framework?: Framework;
  checkpointPath: string;
  /** SAM 2 inference jobs: the detector checkpoint whose boxes prompt it. */
  promptCheckpointPath?: string;
  datasetId?: string;
  snapshotId?: string;
  testSplit: 'train' | 'val' | 'test';
  /** Test runs: the training job's SPLIT_STRATEGY, so TEST_SPLIT selects the same images. */
  splitStrategy?: SplitStrategy;
  imagePaths?: string[];
  batchSize: number;
  imageSize: number;
  confidenceThreshold: number;
  iouThreshold: number;
  saveVisualizations: boolean;
  maxVisualizations: number;
  /** INFERENCE_BACKEND: what runs the model. */
  inferenceBackend: 'auto' | 'pytorch' | 'onnx' | 'openvino';
  /** INFERENCE_PRECISION: float32, or bfloat16 on OpenVINO where the CPU has it. */
  inferencePrecision: 'fp32' | 'bf16';
  /** INFERENCE_MODEL_PATH: an export job's ONNX model run instead of exporting the checkpoint. */
  inferenceModelPath?: string;
  /** DECODE_THREADS: threads that decode a batch's images (undefined: the CPU budget's). */
  decodeThreads?: number;
  /** PREFETCH_NEXT_BATCH: decode the next batch during this one's forward pass (auto: when the model's runtime leaves a CPU free). */
  prefetchNextBatch: 'auto' | boolean;
  /** RETAIN_FREED_MEMORY: Python's allocator keeps freed memory for the next batch (GLIBC_TUNABLES). */
  retainFreedMemory: boolean;
  enableXai: boolean;
  xaiMethod: (typeof XAI_METHODS)[number];
  xaiTargetLayers?: string[];
  xaiSamples: number;
  enableLlmExplanation: boolean;
  openai: { apiKey?: string; baseUrl?: string; model: string };
  /** ALLOWED_PRIVATE_HOSTS: private hosts configuration URLs may reach (see src/net/url-guard.ts). */
  allowedPrivateHosts: string[];
  storage: StorageConfig;
}
type RawInfer = Omit<InferConfig, 'storage' | 'backend'> & { storage: RawStorage; backend: RawBackend };

export interface ExportConfig extends Common {
  exportFormat: 'onnx' | 'torchscript' | 'openvino' | 'coreml' | 'tflite' | 'tensorrt';
  framework?: Framework;
  checkpointPath: string;
  modelName?: string;
  inputSize?: [number, number];
  optimizationLevel: number;
  includePreprocessing: boolean;
  includePostprocessing: boolean;
  quantizationType: 'none' | 'dynamic' | 'static';
  quantizationDtype: 'int8' | 'int16' | 'float16';
  enableValidation: boolean;
  validationDatasetId?: string;
  accuracyDropMax: number;
  batchSize: number;
  storage: StorageConfig;
}
type RawExport = Omit<ExportConfig, 'storage' | 'backend'> & { storage: RawStorage; backend: RawBackend };

export type JobConfig = TrainConfig | InferConfig | ExportConfig;
export const SCHEMAS = { train: TrainConfigSchema, infer: InferConfigSchema, export: ExportConfigSchema } as const;
export type ConfigFor<M extends Mode> = M extends 'train' ? TrainConfig : M extends 'infer' ? InferConfig : ExportConfig;
type Loose<T> = { [K in keyof T]?: T[K] | string };
/**
 * What a TypeScript caller passes to `train()`: the same fields as TrainConfig, native values or
 * env-style strings, with everything that has a default optional.
 */
export type TrainConfigInput = Loose<Omit<TrainConfig, 'storage' | 'backend' | 'mlflow'>> &
  Pick<TrainConfig, 'jobId' | 'taskType' | 'modelName' | 'datasetId' | 'epochs'> & {
    traceId?: string;
    storage?: Partial<RawStorage>;
    backend?: RawBackend;
    mlflow?: Partial<MlflowConfig>;
  };
/** What a TypeScript caller passes to `infer()`: InferConfig's fields, defaults optional. */
export type InferConfigInput = Loose<Omit<InferConfig, 'storage' | 'backend' | 'openai'>> &
  Pick<InferConfig, 'jobId' | 'taskType' | 'inferenceType' | 'checkpointPath'> & {
    traceId?: string;
    storage?: Partial<RawStorage>;
    backend?: RawBackend;
    openai?: Partial<InferConfig['openai']>;
  };
/** What a TypeScript caller passes to `exportModel()`: ExportConfig's fields, defaults optional. */
export type ExportConfigInput = Loose<Omit<ExportConfig, 'storage' | 'backend'>> &
  Pick<ExportConfig, 'jobId' | 'taskType' | 'exportFormat' | 'checkpointPath'> & {
    /** MODEL_NAME is required for export too (metadata.json and the package carry it). */
    modelName: string;
    traceId?: string;
    storage?: Partial<RawStorage>;
    backend?: RawBackend;
  };
