/**
 * `vision-trainer export` (TRAINER_DESIGN "Export Execution"): download a checkpoint, convert it
 * with the framework's exporter, optimise/quantize, validate it against the original, measure
 * it, package it with runtime wrappers, upload model, metadata.json and package.zip, report.
 *
 * The stages report progress as they start (`downloading` ... `uploading`); the one callback
 * that must arrive is the completion, `succeeded` with paths and figures or `failed` with a
 * message that says what went wrong and what to do.
 */
import { availableParallelism } from 'node:os';
import { basename, join } from 'node:path';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { adapterFor } from '../../adapters/index.js';
import type { ExportAdapter, ModelDescription } from '../../adapters/export-types.js';
import * as ort from 'onnxruntime-node';
import { createSession, ModelWrapper, preprocess, type Tensor } from '../../runtime/node/model_wrapper.js';
import { PythonBridge } from '../bridge/python.js';
import { CallbackClient } from '../callbacks/client.js';
import type { ExportConfig } from '../config/schema.js';
import { inferFramework, type Framework } from '../config/tasks.js';
import { loadDataset } from '../datasets/load.js';
import type { Dataset, DatasetImage } from '../datasets/model.js';
import { resolveSplits } from '../datasets/splits.js';
import { CancelledError, ConfigError, ExitCode, FrameworkError, StorageError, VisionTrainerError, asVisionTrainerError } from '../errors.js';
import { exportKey, FORMATS, modelObjectName, quantizationRule } from '../export/formats.js';
import { summarize } from '../export/latency.js';
import { buildMetadata, type PackageMetadata, type TensorInfo, type ValidationReport } from '../export/metadata.js';
import { buildPackage } from '../export/package.js';
import { quantizeOnnx } from '../export/quantize.js';
import { NodeOnnxRunner, PythonRunner, tileBatch, type ModelRunner } from '../export/runners.js';
import { ExportValidationError, validateExport, type SamplePrediction } from '../export/validate.js';
import type { Logger } from '../log.js';
import { defaultPythonBin, PROJECT_ROOT } from '../paths.js';
import { listFilesRecursive } from '../storage/files.js';
import { createStorage } from '../storage/index.js';
import type { Storage } from '../storage/types.js';
import { createZip } from '../storage/zip.js';
import { createWorkDir } from './workdir.js';

export type ExportStage = 'downloading' | 'converting' | 'optimizing' | 'validating' | 'packaging' | 'uploading';

export interface ExportProgress {
  stage: ExportStage;
  percent: number;
  message: string;
}

/** The design's model_info, every figure read or measured. */
export interface ModelInfo {
  model_size_mb: number;
  inference_speed_ms: number;
  inference_speed_p95_ms: number;
  input_shape: (number | string)[];
  output_shape: (number | string)[] | (number | string)[][];
  engine: string;
}

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

export interface ExportJobContext {
  logger: Logger;
  onProgress?: (progress: ExportProgress) => void;
  /** Aborting stops the job at the next stage and kills Python (SIGTERM). */
  signal?: AbortSignal;
}

/** Validation images kept in the package, with their expected predictions. */
const SAMPLE_IMAGES = 3;
const BENCHMARK = { warmup: 3, runs: 20 } as const;

function storageFor(config: ExportConfig): Storage {
  const s = config.storage;
  return createStorage(s.type === 'local' ? { type: 'local', root: s.root, bucket: s.bucket } : s);
}

function exporterFor(framework: Framework): ExportAdapter {
  const adapter = adapterFor(framework);
  if (!adapter.exporter) throw new FrameworkError(`Export of ${framework} models is not available in this version`, { hint: 'Export an ultralytics model, or update vision-trainer.' });
  return adapter.exporter;
}

const outputShape = (outputs: TensorInfo[]) => (outputs.length === 1 ? (outputs[0] as TensorInfo).shape : outputs.map((o) => o.shape));

async function sizeOf(path: string): Promise<number> {
  const s = await stat(path);
  if (!s.isDirectory()) return s.size;
  let total = 0;
  for (const f of await listFilesRecursive(path)) total += (await stat(join(path, f))).size;
  return total;
}

interface ValidationData {
  dataset: Dataset;
  datasetId: string;
  /** The validation split (as training resolved it), sorted by file name. */
  images: DatasetImage[];
  /** Static quantization calibrates on the training split (the validation split when it is empty). */
  calibration: DatasetImage[];
}

async function fetchValidationData(config: ExportConfig, storage: Storage, destDir: string): Promise<ValidationData> {
  const datasetId = config.validationDatasetId as string;
  const root =
    config.storage.type === 'local' && config.storage.datasetPath ? config.storage.datasetPath : (await storage.downloadDataset(datasetId, destDir)).root;
  const dataset = await loadDataset(root, { taskType: config.taskType });
  const splits = resolveSplits(dataset);
  const byName = (a: DatasetImage, b: DatasetImage) => a.fileName.localeCompare(b.fileName);
  const images = dataset.images.filter((img) => splits.get(img.id) === 'val').sort(byName);
  const train = dataset.images.filter((img) => splits.get(img.id) === 'train').sort(byName);
  return { dataset, datasetId, images, calibration: train.length ? train : images };
}

type ModelIo = { inputs: TensorInfo[]; outputs: TensorInfo[] };

/** Input/output tensors as the ONNX file declares them (dynamic axes by name). */
function onnxIo(session: ort.InferenceSession): ModelIo {
  const tensor = (m: ort.InferenceSession.ValueMetadata): TensorInfo =>
    m.isTensor ? { name: m.name, shape: m.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : String(d))), dtype: m.type } : { name: m.name, shape: [], dtype: 'non-tensor' };
  return { inputs: session.inputMetadata.map(tensor), outputs: session.outputMetadata.map(tensor) };
}

export async function runExportJob(config: ExportConfig, ctx: ExportJobContext): Promise<ExportResult> {
  const { logger } = ctx;
  const format = config.exportFormat;
  const framework = config.framework ?? inferFramework(config.modelName ?? '');
  const work = await createWorkDir({ parent: config.workDir, jobId: config.jobId, keep: config.keepWorkDir });
  const storage = storageFor(config);
  const scratch = work.sub('scratch');
  await mkdir(scratch, { recursive: true });
  const runners: ModelRunner[] = [];
  let bridge: PythonBridge | undefined;
  let validation: ValidationReport | null = null;
  const onAbort = () => void bridge?.close();
  ctx.signal?.addEventListener('abort', onAbort);
  const progress = (stage: ExportStage, percent: number, message: string) => {
    if (ctx.signal?.aborted) throw new CancelledError(String(ctx.signal.reason ?? 'a signal'));
    logger.stage(message);
    ctx.onProgress?.({ stage, percent, message });
  };

  try {
    logger.info(`vision-trainer export: job ${config.jobId}, ${framework} to ${format}`, { work_dir: work.path, storage: storage.describe() });
    const exporter = exporterFor(framework);
    const rule = quantizationRule(framework, format, config.quantizationType, config.quantizationDtype);

    // 1. Tools, checkpoint, validation images
    progress('downloading', 2, `Checking the ${format} export tools`);
    bridge = await PythonBridge.open({ pythonBin: config.pythonBin ?? defaultPythonBin(), env: exporter.pythonEnv(work.path), logger });
    await exporter.checkFormat(bridge, format, config.device);

    progress('downloading', 5, 'Downloading checkpoint...');
    let checkpointPath: string;
    try {
      const key = storage.parseUri(config.checkpointPath);
      checkpointPath = join(work.sub('checkpoint'), basename(key) || 'checkpoint.pt');
      await storage.downloadFile(key, checkpointPath);
    } catch (err) {
      const e = asVisionTrainerError(err);
      throw new StorageError(`CHECKPOINT_PATH ${config.checkpointPath} could not be downloaded: ${e.message}`, { cause: err, hint: 'Point CHECKPOINT_PATH at a checkpoint this platform uploaded, e.g. s3://bucket/checkpoints/job-{JOB_ID}/best.pt.' });
    }
    const needsImages = config.enableValidation || rule?.type === 'static';
    let data: ValidationData | undefined;
    if (needsImages) {
      progress('downloading', 12, `Downloading validation dataset ${config.validationDatasetId}...`);
      data = await fetchValidationData(config, storage, work.sub('validation-dataset'));
    }

    // 2. Conversion
    progress('converting', 25, `Converting to ${format.toUpperCase()} format...`);
    const description: ModelDescription = await exporter.describe(bridge, checkpointPath);
    if (description.taskType !== config.taskType) {
      throw new ConfigError([{ variable: 'TASK_TYPE', value: config.taskType, message: `the checkpoint is a ${description.taskType} model (${description.architecture}); set TASK_TYPE=${description.taskType}` }], 'export');
    }
    const inputSize = config.inputSize ?? description.trainedSize;
    const artifact = await exporter.export(bridge, {
      checkpointPath,
      format,
      outDir: work.sub('export'),
      inputSize,
      batchSize: config.batchSize,
      device: config.device,
      optimizationLevel: config.optimizationLevel,
      quantization: rule && rule.format !== 'onnx' ? rule : null,
    });
    const passes = [...artifact.notes];
    let modelPath = artifact.path;
    const { preprocessing, postprocessing } = description.processing({ inputSize, includePreprocessing: config.includePreprocessing, includePostprocessing: config.includePostprocessing, format });

    // 3. Graph passes and quantization (ONNX; other formats' converters did theirs while converting)
    progress('optimizing', 40, format !== 'onnx' ? `${format}: ${rule ? `${rule.method}, applied by the converter` : 'no quantization'}` : rule ? `Applying ${rule.type} ${rule.dtype} quantization...` : 'Optimizing the ONNX graph...');
    if (format === 'onnx') {
      const finalized = await bridge.call<{ passes: string[] }>('vision_trainer.export_onnx', 'finalize', [modelPath, config.optimizationLevel], {}, { long: true });
      passes.push(...finalized.passes);
      if (rule) {
        const quantized = join(work.sub('export'), `model.${rule.dtype}.onnx`);
        passes.push(
          await quantizeOnnx(bridge, { source: modelPath, output: quantized, rule, calibrationImages: data?.calibration ?? [], preprocessing, batchSize: config.batchSize, scratchDir: scratch }),
        );
        modelPath = quantized;
      }
    }

    // 4. The exported model, loaded where it will run; its real input/output tensors
    const draft = {
      format,
      taskType: config.taskType,
      modelName: config.modelName ?? description.architecture,
      framework,
      architecture: description.architecture,
      inputSize,
      classNames: description.classNames,
      keypointShape: description.keypointShape,
      sizeBytes: await sizeOf(modelPath),
      sourceCheckpoint: config.checkpointPath,
      versions: { ...description.versions, 'vision-trainer': await projectVersion() },
      preprocessing,
      postprocessing,
      optimization: { level: config.optimizationLevel, quantization: rule ? { type: rule.type, dtype: rule.dtype, method: rule.method } : null, include_preprocessing: config.includePreprocessing, include_postprocessing: config.includePostprocessing, passes },
    };
    const expectedInput = [config.batchSize, 3, ...inputSize];
    let metadata: PackageMetadata;
    let wrapper: ModelWrapper;
    let exported: ModelRunner;
    if (format === 'onnx') {
      // The session is the Node wrapper's; the wrapper itself is made once the metadata is final.
      const session = await createSession(modelPath);
      metadata = buildMetadata({ ...draft, ...onnxIo(session) });
      wrapper = new ModelWrapper(metadata, session);
      exported = new NodeOnnxRunner(wrapper, `onnxruntime-node ${ort.env.versions.node}`);
    } else {
      const python = await PythonRunner.open(bridge, 'exported', { kind: 'exported', format, path: modelPath }, scratch, `python ${format} runtime (package wrapper)`);
      const io = format === 'openvino' ? await bridge.call<ModelIo>('vision_trainer.export_validation', 'openvino_io', [modelPath], {}, { long: true }) : await python.io(expectedInput);
      metadata = buildMetadata({ ...draft, ...io });
      wrapper = new ModelWrapper(metadata);
      exported = python;
    }
    runners.push(exported);

    // 5. Validation against the original
    let samples: SamplePrediction[] = [];
    let sampleInput: Tensor | undefined;
    if (config.enableValidation && data) {
      progress('validating', 60, `Validating the exported model on ${data.images.length} images...`);
      const original = await PythonRunner.open(bridge, 'original', { kind: 'original', framework, checkpoint: checkpointPath, device: config.device }, scratch, `pytorch (${framework} checkpoint)`);
      runners.push(original);
      const outcome = await validateExport({
        bridge,
        taskType: config.taskType,
        wrapper,
        original,
        exported,
        batchSize: config.batchSize,
        dataset: data.dataset,
        images: data.images,
        datasetId: data.datasetId,
        split: 'val',
        classNames: description.classNames,
        keypointShape: description.keypointShape,
        threshold: config.accuracyDropMax,
        samples: config.includePreprocessing && config.includePostprocessing ? SAMPLE_IMAGES : 0,
        scratchDir: scratch,
        logger,
      });
      validation = outcome.report;
      samples = outcome.samples;
      sampleInput = outcome.sampleInput;
      logger.info(`validation: ${validation.metric} original ${validation.original_accuracy} exported ${validation.accuracy} drop ${validation.accuracy_drop} (max ${validation.threshold}); max output difference ${validation.max_abs_output_diff}`);
      if (!validation.passed) throw new ExportValidationError(validation);
    }

    // 6. Latency, measured on this machine
    const benchInput = sampleInput ?? tileBatch(preprocess({ data: new Uint8Array(inputSize[0] * inputSize[1] * 3).fill(114), width: inputSize[1], height: inputSize[0] }, preprocessing).tensor, config.batchSize);
    const latency = summarize(await exported.benchmark(benchInput, BENCHMARK.warmup, BENCHMARK.runs));
    metadata = { ...metadata, performance: { inference_speed_ms: latency.p50, p95_ms: latency.p95, runs: BENCHMARK.runs, warmup_runs: BENCHMARK.warmup, batch_size: config.batchSize, engine: exported.engine, device: exported.device, cpu_threads: availableParallelism() }, ...(validation ? { validation } : {}) };

    // 7. Package
    progress('packaging', 80, 'Generating metadata and runtime wrappers...');
    const packageZip = work.sub('package.zip');
    const files = await buildPackage({ dir: work.sub('package'), zipPath: packageZip, format, metadata, modelPath, samples });
    logger.info(`package: ${files.length} files`, { files: files.slice(0, 40) });

    // 8. Upload
    progress('uploading', 90, 'Uploading exported model...');
    let modelUpload = modelPath;
    if (FORMATS[format].directory) {
      modelUpload = work.sub(`${modelObjectName(format)}.zip`);
      await createZip(modelPath, modelUpload);
    }
    const exportPath = await storage.uploadFile(modelUpload, exportKey(config.jobId, modelObjectName(format)), { contentType: 'application/octet-stream' });
    const metadataPath = await storage.putJson(exportKey(config.jobId, 'metadata.json'), metadata);
    const packagePath = await storage.uploadFile(packageZip, exportKey(config.jobId, 'package.zip'), { contentType: 'application/zip' });

    return {
      status: 'succeeded',
      exitCode: ExitCode.ok,
      exportPath,
      metadataPath,
      packagePath,
      modelInfo: {
        model_size_mb: metadata.model.size_mb,
        inference_speed_ms: latency.p50,
        inference_speed_p95_ms: latency.p95,
        input_shape: metadata.model.inputs[0]?.shape ?? [],
        output_shape: outputShape(metadata.model.outputs),
        engine: exported.engine,
      },
      validation,
      metadata,
    };
  } catch (err) {
    const error = ctx.signal?.aborted ? new CancelledError(String(ctx.signal.reason ?? 'a signal')) : asVisionTrainerError(err);
    logger.error(error.describe());
    return { status: 'failed', exitCode: error.exitCode, exportPath: null, metadataPath: null, packagePath: null, modelInfo: null, validation, metadata: null, error };
  } finally {
    ctx.signal?.removeEventListener('abort', onAbort);
    for (const r of runners.reverse()) await r.close().catch(() => {});
    await bridge?.close();
    await work.cleanup();
  }
}

async function projectVersion(): Promise<string> {
  return (JSON.parse(await readFile(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

/** Runs one export job as the container does and returns the process exit code. */
export async function runExportCommand(config: ExportConfig, logger: Logger): Promise<number> {
  const client = config.backend
    ? new CallbackClient({ baseUrl: config.backend.baseUrl, token: config.backend.token, jobId: config.jobId, traceId: config.traceId, logger, retry: { completion: { maxAttempts: config.callbackMaxAttempts } } })
    : undefined;
  const abort = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    logger.warn(`${signal} received: stopping the export`);
    abort.abort(signal);
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  let result: ExportResult;
  try {
    result = await runExportJob(config, {
      logger,
      signal: abort.signal,
      onProgress: (p) => client?.exportProgress({ progress_percent: p.percent, stage: p.stage, message: p.message }),
    });
  } finally {
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('SIGINT', onSignal);
  }
  if (!client) return result.exitCode;
  try {
    if (result.status === 'succeeded') {
      await client.exportDone({
        status: 'succeeded',
        export_path: result.exportPath,
        metadata_path: result.metadataPath,
        package_path: result.packagePath,
        model_info: { ...result.modelInfo },
        validation_metrics: result.validation,
      });
    } else {
      await client.exportDone({ status: 'failed', error_message: result.error?.describe() ?? 'export failed', validation_metrics: result.validation });
    }
    return result.exitCode;
  } catch (err) {
    const e = asVisionTrainerError(err);
    logger.error(`completion could not be delivered: ${e.message}`);
    return result.status === 'succeeded' ? e.exitCode : result.exitCode;
  } finally {
    await client.close();
  }
}
