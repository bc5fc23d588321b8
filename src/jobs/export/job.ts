/**
 * The export job: download a checkpoint, convert it with the framework's exporter,
 * optimise/quantize, validate it against the original, measure it, package it with runtime
 * wrappers, upload model, metadata.json and package.zip.
 *
 * The stages report progress as they start (`downloading` ... `uploading`); the one callback
 * that must arrive is the completion, `succeeded` with paths and figures or `failed` with a
 * message that says what went wrong and what to do (reporter.ts).
 */
import { mkdir, readFile, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { createSession, ModelWrapper, preprocess, type Tensor } from '../../../runtime/node/model_wrapper.js';
import { type PythonBridge, pythonEntry } from '../../bridge/python.js';
import type { ExportConfig } from '../../config/schema.js';
import type { Framework } from '../../config/tasks.js';
import { loadDataset } from '../../datasets/load.js';
import type { Dataset, DatasetImage } from '../../datasets/model.js';
import { resolveSplits } from '../../datasets/splits.js';
import { ConfigError, ExitCode, VisionTrainerError, asVisionTrainerError } from '../../errors.js';
import type { ExportEvent, ExportModelInfo } from '../../events.js';
import { adapterFor, chooseFramework, configuredFramework, type ExportAdapter, type ModelDescription, pythonEnvFor } from '../../frameworks/index.js';
import { CoremlInspectionSchema, InspectCoremlParamsSchema, type ModelIo, ModelIoSchema, PathParamsSchema } from '../../frameworks/protocol.js';
import { PROJECT_ROOT } from '../../paths.js';
import { listFilesRecursive } from '../../storage/files.js';
import { createZip } from '../../storage/zip.js';
import type { JobContext, JobDefinition } from '../context.js';
import { preflight } from '../preflight.js';
import { fetchCheckpoint, fetchDataset } from '../stages.js';
import { exportKey, FORMATS, modelObjectName, NOT_RUNNABLE_HERE, packageRuntimes, type QuantizationRule, quantizationRule } from './formats.js';
import { summarize } from './latency.js';
import {
  buildMetadata,
  checkpointPreprocessing,
  embeddedNms,
  MetadataSchema,
  type PackageMetadata,
  type TensorInfo,
  type ValidationReport,
} from './metadata.js';
import { buildPackage } from './package.js';
import { calibrationTensors, finalizeOnnx, quantizeOnnx, specializeOnnx } from './quantize.js';
import { exportCompletion, exportReporter } from './reporter.js';
import type { StoredOutcome } from '../outcome.js';
import { type ModelRunner, NodeOnnxRunner, PythonRunner, tileBatch } from './runners.js';
import { ExportValidationError, type SamplePrediction, validateExport } from './validate.js';

export type ExportStage = Extract<ExportEvent, { type: 'progress' }>['stage'];
export type ExportProgress = Omit<Extract<ExportEvent, { type: 'progress' }>, 'type'>;
export type ModelInfo = ExportModelInfo;

export interface ExportResult {
  status: 'succeeded' | 'failed';
  exitCode: number;
  exportPath: string | null;
  metadataPath: string | null;
  packagePath: string | null;
  modelInfo: ModelInfo | null;
  validation: ValidationReport | null;
  metadata: PackageMetadata | null;
  error?: VisionTrainerError;
}

type ExportContext = JobContext<'export', ExportEvent>;

/** Validation images kept in the package, with their expected predictions. */
const SAMPLE_IMAGES = 3;
const BENCHMARK = { warmup: 3, runs: 20 } as const;
const OPENVINO_IO = pythonEntry('vision_trainer.common.export_validation', 'openvino_io', PathParamsSchema, ModelIoSchema, { long: true });
/** The LiteRT model's own tensors: names, dtypes (int8 for full-integer exports) and their quantization. */
const TFLITE_IO = pythonEntry('vision_trainer.common.export_validation', 'tflite_io', PathParamsSchema, ModelIoSchema, { long: true });
const INSPECT_COREML = pythonEntry('vision_trainer.common.mobile_export', 'inspect_coreml', InspectCoremlParamsSchema, CoremlInspectionSchema, {
  long: true,
});

export const exportJob: JobDefinition<'export', ExportEvent, ExportResult> = {
  mode: 'export',
  // An export has no safe point to stop at: a stop kills Python at once.
  graceSeconds: () => 0,
  stopping: 'stopping the export',
  reporter: exportReporter,
  logKey: (config) => exportKey(config.jobId, 'job.log'),
  outcomeKey: (config) => exportKey(config.jobId, 'outcome.json'),
  run: runExport,
  failed: (_ctx, error) => failedResult(error, null),
  completion: (_config, done) => exportCompletion(done as Extract<ExportEvent, { type: 'done' }>),
  restored,
  done: (_ctx, r) => ({
    type: 'done',
    status: r.status,
    exportUri: r.exportPath,
    metadataUri: r.metadataPath,
    packageUri: r.packagePath,
    modelInfo: r.modelInfo,
    validation: r.validation,
    errorMessage: r.error ? r.error.describe() : null,
    exitCode: r.exitCode,
  }),
};

/** What the body of a stored completion says, as a result. */
function restored(_ctx: ExportContext, stored: StoredOutcome): ExportResult {
  const body = stored.body as {
    status: 'succeeded' | 'failed';
    export_path?: string | null;
    metadata_path?: string | null;
    package_path?: string | null;
    model_info?: ModelInfo;
    validation_metrics?: ValidationReport | null;
    error_message?: string | null;
  };
  return {
    status: body.status,
    exitCode: stored.exit_code,
    exportPath: body.export_path ?? null,
    metadataPath: body.metadata_path ?? null,
    packagePath: body.package_path ?? null,
    modelInfo: body.status === 'succeeded' ? (body.model_info ?? null) : null,
    validation: body.validation_metrics ?? null,
    metadata: null,
    ...(body.status === 'failed' ? { error: new VisionTrainerError(body.error_message ?? 'failed', { exitCode: stored.exit_code }) } : {}),
  };
}

/** Where the export stands; every stage adds to it. */
interface Export {
  bridge: PythonBridge;
  framework: Framework;
  exporter: ExportAdapter;
  rule: QuantizationRule | undefined;
  checkpointPath: string;
  data: ValidationData | undefined;
  description: ModelDescription;
  inputSize: [number, number];
  modelPath: string;
  metadata: PackageMetadata;
  /** Where the exported model runs; null for formats this machine cannot run (NOT_RUNNABLE_HERE). */
  exported: ModelRunner | null;
  wrapper: ModelWrapper;
}

async function runExport(ctx: ExportContext): Promise<ExportResult> {
  const { config, logger, stop } = ctx;
  const runners: ModelRunner[] = [];
  let validation: ValidationReport | null = null;
  stop.onRequest(() => stop.force());
  await mkdir(scratch(ctx), { recursive: true });
  try {
    logger.info(`vision-trainer export: job ${config.jobId}, ${configuredFramework(config) ?? 'framework from the checkpoint'} to ${config.exportFormat}`, {
      work_dir: ctx.work.path,
      storage: ctx.storage.describe(),
    });
    const inputs = await fetchInputs(ctx);
    const converted = await convert(ctx, inputs);
    const loaded = await loadExported(ctx, converted, runners);
    const checked = await validate(ctx, loaded, runners);
    validation = checked.validation;
    const measured = await measure(ctx, loaded, checked);
    return await packageAndUpload(ctx, loaded, measured, validation, checked.samples);
  } catch (err) {
    const error = stop.requested ? stop.toError() : asVisionTrainerError(err);
    logger.error(error.describe());
    // A failed validation is reported with its figures: they say how far the export was off.
    return failedResult(error, err instanceof ExportValidationError ? err.report : validation);
  } finally {
    for (const r of runners.reverse()) await r.close().catch(() => {});
  }
}

/** Progress for the backend and the log; a stopped job goes no further. */
function progress(ctx: ExportContext, stage: ExportStage, percent: number, message: string): void {
  ctx.stop.throwIfRequested();
  ctx.logger.stage(message);
  void ctx.events.emit({ type: 'progress', stage, percent, message });
}

interface ValidationData {
  dataset: Dataset;
  datasetId: string;
  /** The validation split (as training resolved it), sorted by file name. */
  images: DatasetImage[];
  /** Static quantization calibrates on the training split (the validation split when it is empty). */
  calibration: DatasetImage[];
}

/** 1. The export tools, the checkpoint (its framework, when not configured), the validation images. */
async function fetchInputs(ctx: ExportContext): Promise<Pick<Export, 'bridge' | 'framework' | 'exporter' | 'rule' | 'checkpointPath' | 'data'>> {
  const { config } = ctx;
  const format = config.exportFormat;
  progress(ctx, 'downloading', 2, `Checking the ${format} export tools`);
  const configured = configuredFramework(config);
  const bridge = await preflight(ctx, { pythonEnv: pythonEnvFor(configured, ctx.work.path) });
  // Fail before any download when the framework is known and the format cannot be written here.
  if (configured) await adapterFor(configured).exporter.checkFormat(bridge, format, config.device);

  progress(ctx, 'downloading', 5, 'Downloading checkpoint...');
  const { path: checkpointPath } = await fetchCheckpoint(
    ctx.storage,
    { variable: 'CHECKPOINT_PATH', uri: config.checkpointPath, mode: 'export' },
    ctx.work.sub('checkpoint'),
  );
  const framework = await chooseFramework(config, 'export', bridge, checkpointPath);
  const exporter = adapterFor(framework).exporter;
  if (!configured) await exporter.checkFormat(bridge, format, config.device);
  const rule = quantizationRule(framework, format, config.quantizationType, config.quantizationDtype);

  let data: ValidationData | undefined;
  // A model that cannot run here is checked without images (structural validation).
  if ((config.enableValidation && !NOT_RUNNABLE_HERE[format]) || rule?.type === 'static') {
    progress(ctx, 'downloading', 12, `Downloading validation dataset ${config.validationDatasetId}...`);
    data = await fetchValidationData(ctx);
  }
  return { bridge, framework, exporter, rule, checkpointPath, data };
}

async function fetchValidationData(ctx: ExportContext): Promise<ValidationData> {
  const datasetId = ctx.config.validationDatasetId as string;
  const { root } = await fetchDataset(ctx.config, ctx.storage, datasetId, ctx.work.sub('validation-dataset'));
  const dataset = await loadDataset(root, { taskType: ctx.config.taskType });
  const splits = resolveSplits(dataset);
  const byName = (a: DatasetImage, b: DatasetImage) => a.fileName.localeCompare(b.fileName);
  const images = dataset.images.filter((img) => splits.get(img.id) === 'val').sort(byName);
  const train = dataset.images.filter((img) => splits.get(img.id) === 'train').sort(byName);
  return { dataset, datasetId, images, calibration: train.length ? train : images };
}

type Converted = Omit<Export, 'metadata' | 'exported' | 'wrapper'> & {
  passes: string[];
  /** The model's size before quantization, when quantized and known. */
  unquantizedSizeBytes: number | null;
  /** Module classes the converter's quantization left in float32. */
  float32Modules: string[] | undefined;
  /** The final ONNX file's operators ("domain:op"); null for other formats. */
  operators: string[] | null;
};

/** 2-3. The framework's conversion, then ONNX graph passes and quantization (other formats' converters did theirs). */
async function convert(ctx: ExportContext, inputs: Awaited<ReturnType<typeof fetchInputs>>): Promise<Converted> {
  const { config } = ctx;
  const { bridge, exporter, rule } = inputs;
  const format = config.exportFormat;
  progress(ctx, 'converting', 25, `Converting to ${format.toUpperCase()} format...`);
  const description = await exporter.describe(bridge, inputs.checkpointPath);
  if (description.taskType !== config.taskType) {
    const message = `the checkpoint is a ${description.taskType} model (${description.architecture}); set TASK_TYPE=${description.taskType}`;
    throw new ConfigError([{ variable: 'TASK_TYPE', value: config.taskType, message }], 'export');
  }
  const inputSize = config.inputSize ?? description.trainedSize;
  const { preprocessing, postprocessing } = description.processing(processingOptions(config, inputSize));
  const calibrationInput = { calibrationImages: inputs.data?.calibration ?? [], preprocessing, batchSize: config.batchSize, scratchDir: scratch(ctx) };
  // A converter's own static quantization (TorchScript, TFLite) calibrates on the same tensors as ONNX's.
  const calibration = rule?.type === 'static' && format !== 'onnx' ? await calibrationTensors(bridge, calibrationInput) : null;
  const artifact = await exporter.export(bridge, {
    checkpointPath: inputs.checkpointPath,
    format,
    outDir: ctx.work.sub('export'),
    inputSize,
    batchSize: config.batchSize,
    device: config.device,
    optimizationLevel: config.optimizationLevel,
    quantization: rule && rule.format !== 'onnx' ? rule : null,
    calibration,
    embedPostprocessing: postprocessing.embedded,
    embedPreprocessing: preprocessing.embedded ? preprocessing.normalize : null,
    embedNms: embeddedNms(postprocessing),
  });
  const passes = [...artifact.notes];
  let modelPath = artifact.path;
  let unquantizedSizeBytes = artifact.unquantizedSizeBytes ?? null;
  let operators: string[] | null = null;

  const optimizing =
    format !== 'onnx'
      ? `${format}: ${rule ? `${rule.method}, applied by the converter` : 'no quantization'}`
      : rule
        ? `Applying ${rule.type} ${rule.dtype} quantization...`
        : 'Optimizing the ONNX graph...';
  progress(ctx, 'optimizing', 40, optimizing);
  if (format === 'onnx') {
    passes.push(...(await finalizeOnnx(bridge, modelPath, config.optimizationLevel)));
    if (rule) {
      const quantized = join(ctx.work.sub('export'), `model.${rule.dtype}.onnx`);
      unquantizedSizeBytes = await sizeOf(modelPath);
      passes.push(await quantizeOnnx(bridge, { source: modelPath, output: quantized, rule, ...calibrationInput }));
      modelPath = quantized;
    }
    const last = await specializeOnnx(bridge, modelPath, config.optimizationLevel);
    passes.push(...last.passes);
    operators = last.operators;
  }
  return { ...inputs, description, inputSize, modelPath, passes, unquantizedSizeBytes, float32Modules: artifact.float32Modules, operators };
}

const processingOptions = (config: ExportConfig, inputSize: [number, number]) => ({
  inputSize,
  includePreprocessing: config.includePreprocessing,
  includePostprocessing: config.includePostprocessing,
  format: config.exportFormat,
});

/** Tensors and pictures passed between the runners (created by runExport). */
const scratch = (ctx: ExportContext) => ctx.work.sub('scratch');

/** 4. The exported model, loaded where it will run, and metadata from its real input/output tensors. */
async function loadExported(ctx: ExportContext, c: Converted, runners: ModelRunner[]): Promise<Export> {
  const { config } = ctx;
  const { description, inputSize, modelPath, rule, framework } = c;
  const format = config.exportFormat;
  const { preprocessing, postprocessing } = description.processing(processingOptions(config, inputSize));
  const megabytes = (bytes: number) => Math.round((bytes / 1024 ** 2) * 100) / 100;
  const draft = {
    format,
    taskType: config.taskType,
    modelName: config.modelName ?? description.architecture,
    framework,
    architecture: description.architecture,
    inputSize,
    classNames: description.classNames,
    classIds: description.classIds,
    keypointShape: description.keypointShape,
    sizeBytes: await sizeOf(modelPath),
    sourceCheckpoint: config.checkpointPath,
    versions: { ...description.versions, 'vision-trainer': await projectVersion() },
    preprocessing,
    postprocessing,
    optimization: {
      level: config.optimizationLevel,
      // The design's string: QUANTIZATION_TYPE (dynamic or static), null for none; dtype and method in quantization_details.
      quantization: rule ? rule.type : null,
      quantization_details: rule
        ? {
            type: rule.type,
            dtype: rule.dtype,
            method: rule.method,
            unquantized_size_mb: c.unquantizedSizeBytes === null ? null : megabytes(c.unquantizedSizeBytes),
            // Filled in by validation (ENABLE_VALIDATION), the quantized model against the original checkpoint.
            accuracy_drop: null,
            ...(c.float32Modules?.length ? { float32_modules: c.float32Modules } : {}),
          }
        : null,
      include_preprocessing: config.includePreprocessing,
      include_postprocessing: config.includePostprocessing,
      passes: c.passes,
    },
    runtimes: packageRuntimes(format, {
      operators: c.operators,
      quantization: rule,
      ...(preprocessing.embedded ? { pixelInputBatch: config.batchSize } : {}),
    }),
  };
  if (format === 'onnx') {
    // The session is the Node wrapper's; the wrapper itself is made once the metadata is final.
    const session = await createSession(modelPath);
    const metadata = buildMetadata({ ...draft, ...onnxIo(session) });
    const wrapper = new ModelWrapper(metadata, session);
    const exported = new NodeOnnxRunner(wrapper, `onnxruntime-node ${ort.env.versions.node}`);
    runners.push(exported);
    return { ...c, metadata, wrapper, exported };
  }
  const notRunnable = NOT_RUNNABLE_HERE[format];
  if (format === 'coreml' && notRunnable) {
    // Always run (the metadata's tensors come from it); it is the validation ENABLE_VALIDATION asks for.
    if (config.enableValidation) progress(ctx, 'validating', 60, 'Validating the CoreML model structurally (Core ML runs on Apple platforms only)...');
    const inspected = await c.bridge.call(INSPECT_COREML, {
      path: modelPath,
      input_shape: [config.batchSize, 3, ...inputSize],
      class_names: description.classNames,
      classifier: config.taskType === 'image_classification' || config.taskType === 'zero_shot_classification',
    });
    ctx.logger.info(`CoreML structural validation passed: ${inspected.checks.join('; ')}`);
    const metadata = MetadataSchema.parse({
      ...buildMetadata({ ...draft, inputs: inspected.inputs, outputs: inspected.outputs }),
      structural_validation: { method: 'structural', passed: true, checks: inspected.checks, predictions_compared: false, reason: notRunnable },
    });
    return { ...c, metadata, wrapper: new ModelWrapper(metadata), exported: null };
  }
  const python = await PythonRunner.open(
    c.bridge,
    'exported',
    { kind: 'exported', format, path: modelPath },
    scratch(ctx),
    `python ${format} runtime (package wrapper)`,
  );
  runners.push(python);
  const io: ModelIo =
    format === 'openvino'
      ? await c.bridge.call(OPENVINO_IO, { path: modelPath })
      : format === 'tflite'
        ? await c.bridge.call(TFLITE_IO, { path: modelPath })
        : await python.io([config.batchSize, 3, ...inputSize]);
  const metadata = buildMetadata({ ...draft, ...io });
  return { ...c, metadata, wrapper: new ModelWrapper(metadata), exported: python };
}

interface Measured {
  metadata: PackageMetadata;
  /** null where the model cannot run here. */
  latency: { p50: number; p95: number } | null;
}

interface Checked {
  validation: ValidationReport | null;
  samples: SamplePrediction[];
  sampleInput: Tensor | undefined;
}

/** 5. Validation against the original checkpoint (ENABLE_VALIDATION). */
async function validate(ctx: ExportContext, e: Export, runners: ModelRunner[]): Promise<Checked> {
  const { config, logger } = ctx;
  if (!config.enableValidation || !e.data || !e.exported) {
    // The structural checks ran when the model was loaded (metadata.json structural_validation).
    if (config.enableValidation && !e.exported) logger.info(`validation: predictions not compared (${NOT_RUNNABLE_HERE[config.exportFormat]})`);
    return { validation: null, samples: [], sampleInput: undefined };
  }
  progress(ctx, 'validating', 60, `Validating the exported model on ${e.data.images.length} images...`);
  const original = await PythonRunner.open(
    e.bridge,
    'original',
    {
      kind: 'original',
      exporter: e.exporter,
      checkpoint: e.checkpointPath,
      device: config.device,
      embedded: {
        postprocessing: e.metadata.postprocessing.embedded,
        normalizedCoordinates: e.metadata.postprocessing.box_units === 'normalized',
        nms: embeddedNms(e.metadata.postprocessing),
      },
    },
    scratch(ctx),
    `pytorch (${e.framework} checkpoint)`,
  );
  runners.push(original);
  const outcome = await validateExport({
    bridge: e.bridge,
    taskType: config.taskType,
    wrapper: e.wrapper,
    original,
    exported: e.exported,
    batchSize: config.batchSize,
    dataset: e.data.dataset,
    images: e.data.images,
    datasetId: e.data.datasetId,
    split: 'val',
    classNames: e.description.classNames,
    classIds: e.description.classIds,
    keypointShape: e.description.keypointShape,
    threshold: config.accuracyDropMax,
    // The checkpoint runs its usual float input; an export with embedded preprocessing gets the pixels.
    ...(e.metadata.preprocessing.embedded ? { originalPreprocessing: checkpointPreprocessing(e.metadata.preprocessing) } : {}),
    samples: config.includePreprocessing && config.includePostprocessing ? SAMPLE_IMAGES : 0,
    scratchDir: scratch(ctx),
    logger,
  });
  const v = outcome.report;
  logger.info(
    `validation: ${v.metric} original ${v.original_accuracy} exported ${v.accuracy} drop ${v.accuracy_drop} (max ${v.threshold}); max output difference ${v.max_abs_output_diff}`,
  );
  if (!v.passed) throw new ExportValidationError(v);
  return { validation: v, samples: outcome.samples, sampleInput: outcome.sampleInput };
}

/** 6. Latency, measured on this machine (on a validation image when there is one). */
async function measure(ctx: ExportContext, e: Export, checked: Checked): Promise<Measured> {
  const { config } = ctx;
  if (!e.exported) return { metadata: e.metadata, latency: null };
  const [height, width] = e.inputSize;
  const grey = { data: new Uint8Array(height * width * 3).fill(114), width, height };
  const input = checked.sampleInput ?? tileBatch(preprocess(grey, e.metadata.preprocessing).tensor, config.batchSize);
  const latency = summarize(await e.exported.benchmark(input, BENCHMARK.warmup, BENCHMARK.runs));
  const performance = {
    inference_speed_ms: latency.p50,
    p95_ms: latency.p95,
    runs: BENCHMARK.runs,
    warmup_runs: BENCHMARK.warmup,
    batch_size: config.batchSize,
    engine: e.exported.engine,
    device: e.exported.device,
    cpu_threads: availableParallelism(),
  };
  const v = checked.validation;
  const details = e.metadata.optimization.quantization_details;
  const optimization =
    details && v ? { ...e.metadata.optimization, quantization_details: { ...details, accuracy_drop: v.accuracy_drop } } : e.metadata.optimization;
  return { metadata: { ...e.metadata, optimization, performance, ...(v ? { validation: v } : {}) }, latency };
}

/** 7-8. The package, then the model, metadata.json and package.zip to storage. */
async function packageAndUpload(
  ctx: ExportContext,
  e: Export,
  measured: Measured,
  validation: ValidationReport | null,
  samples: SamplePrediction[],
): Promise<ExportResult> {
  const { config, logger, storage } = ctx;
  const format = config.exportFormat;
  const { metadata, latency } = measured;
  progress(ctx, 'packaging', 80, 'Generating metadata and runtime wrappers...');
  const packageZip = ctx.work.sub('package.zip');
  const files = await buildPackage({ dir: ctx.work.sub('package'), zipPath: packageZip, format, metadata, modelPath: e.modelPath, samples });
  logger.info(`package: ${files.length} files`, { files: files.slice(0, 40) });

  progress(ctx, 'uploading', 90, 'Uploading exported model...');
  let modelUpload = e.modelPath;
  if (FORMATS[format].directory) {
    modelUpload = ctx.work.sub(`${modelObjectName(format)}.zip`);
    await createZip(e.modelPath, modelUpload);
  }
  const exportPath = await storage.uploadFile(modelUpload, exportKey(config.jobId, modelObjectName(format)), { contentType: 'application/octet-stream' });
  const metadataPath = await storage.putJson(exportKey(config.jobId, 'metadata.json'), metadata);
  const packagePath = await storage.uploadFile(packageZip, exportKey(config.jobId, 'package.zip'), { contentType: 'application/zip' });
  const outputs = metadata.model.outputs;
  const modelInfo: ModelInfo = {
    model_size_mb: metadata.model.size_mb,
    inference_speed_ms: latency?.p50 ?? null,
    inference_speed_p95_ms: latency?.p95 ?? null,
    input_shape: metadata.model.inputs[0]?.shape ?? [],
    output_shape: outputs.length === 1 ? (outputs[0] as TensorInfo).shape : outputs.map((o) => o.shape),
    engine: e.exported?.engine ?? `none: ${NOT_RUNNABLE_HERE[format] ?? 'not run'}`,
  };
  return { status: 'succeeded', exitCode: ExitCode.ok, exportPath, metadataPath, packagePath, modelInfo, validation, metadata };
}

function failedResult(error: VisionTrainerError, validation: ValidationReport | null): ExportResult {
  return {
    status: 'failed',
    exitCode: error.exitCode,
    exportPath: null,
    metadataPath: null,
    packagePath: null,
    modelInfo: null,
    validation,
    metadata: null,
    error,
  };
}

/** Input/output tensors as the ONNX file declares them (dynamic axes by name). */
function onnxIo(session: ort.InferenceSession): ModelIo {
  const tensor = (m: ort.InferenceSession.ValueMetadata): TensorInfo =>
    m.isTensor
      ? { name: m.name, shape: m.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : String(d))), dtype: m.type }
      : { name: m.name, shape: [], dtype: 'non-tensor' };
  return { inputs: session.inputMetadata.map(tensor), outputs: session.outputMetadata.map(tensor) };
}

async function sizeOf(path: string): Promise<number> {
  const s = await stat(path);
  if (!s.isDirectory()) return s.size;
  let total = 0;
  for (const f of await listFilesRecursive(path)) total += (await stat(join(path, f))).size;
  return total;
}

async function projectVersion(): Promise<string> {
  return (JSON.parse(await readFile(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}
