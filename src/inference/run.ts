/**
 * One test run or inference job (TRAINER_DESIGN "Inference Execution"), from the configuration
 * to results.json in storage. The HTTP callbacks are the caller's business (src/jobs/infer.ts):
 * this module reports progress through `onProgress` and returns how the job ended.
 *
 *   1. check what the configuration alone shows (XAI layer paths, storage URIs)
 *   2. download the checkpoint while Python starts; gather the images (inputs.ts)
 *   3. open the framework's session: it loads the checkpoint and checks the task and XAI layers
 *   4. predict batch by batch (predict-loop.ts)
 *   5. test runs: metrics from the framework's validated code; then results.json
 */
import { basename, join } from 'node:path';
import type { InferenceAdapter, InferenceSession } from '../../adapters/inference-types.js';
import { adapterFor } from '../../adapters/index.js';
import { PythonBridge } from '../bridge/python.js';
import type { InferConfig } from '../config/schema.js';
import { FRAMEWORKS, type Framework } from '../config/tasks.js';
import { ConfigError, DatasetError, ExitCode, FrameworkError, StorageError, VisionTrainerError, asVisionTrainerError, type ConfigProblem } from '../errors.js';
import type { StopController } from '../jobs/stop.js';
import { createWorkDir } from '../jobs/workdir.js';
import type { Logger } from '../log.js';
import { checkUrl, jobUrlPolicy } from '../net/url-guard.js';
import { defaultPythonBin } from '../paths.js';
import { createStorage } from '../storage/index.js';
import type { Storage } from '../storage/types.js';
import { ArtifactUploads, resultsKey, visualizationsPrefix, xaiPrefix } from './artifacts.js';
import { mapClasses } from './ground-truth.js';
import { imagesForJob, type JobImages } from './inputs.js';
import { layerPathProblems } from './layers.js';
import { Explainer } from './llm.js';
import { LoopStats, predictAll, type InferenceProgress } from './predict-loop.js';
import { detectFramework } from './python-session.js';
import { RESULTS_SCHEMA_VERSION, type ModelInfo, type TestRunMetrics } from './results.js';
import { ResultsWriter, type ResultsSummary } from './results-writer.js';

export { PROGRESS_EVERY, type InferenceProgress } from './predict-loop.js';

export interface InferenceJobContext {
  logger: Logger;
  stop: StopController;
  onProgress?: (progress: InferenceProgress) => void;
}

export interface InferenceOutcome {
  status: 'succeeded' | 'failed';
  exitCode: number;
  resultsUri: string | null;
  visualizationsUri: string | null;
  xaiUri: string | null;
  metrics: TestRunMetrics | null;
  images: number;
  failedImages: number;
  avgInferenceTimeMs: number | null;
  error?: VisionTrainerError;
}

function storageFor(config: InferConfig): Storage {
  const s = config.storage;
  return createStorage(s.type === 'local' ? { type: 'local', root: s.root, bucket: s.bucket } : s);
}

/** Every adapter that offers inference. */
function inferenceAdapters(): Map<Framework, InferenceAdapter> {
  const found = new Map<Framework, InferenceAdapter>();
  for (const framework of FRAMEWORKS) {
    try {
      const inference = adapterFor(framework).inference;
      if (inference) found.set(framework, inference);
    } catch {
      // no adapter for this framework in this version
    }
  }
  return found;
}

function unavailable(framework: Framework, adapters: Map<Framework, InferenceAdapter>, what = `Inference with ${framework} is not available in this version`): FrameworkError {
  return new FrameworkError(what, { hint: `Available: ${[...adapters.keys()].join(', ')}.` });
}

/** Problems the configuration alone shows, reported before anything is downloaded. */
function upfrontProblems(config: InferConfig, storage: Storage): ConfigProblem[] {
  const problems = [...layerPathProblems(config.enableXai ? config.xaiTargetLayers : undefined)];
  const checkUri = (variable: string, uri: string) => {
    try {
      storage.parseUri(uri);
    } catch (err) {
      problems.push({ variable, value: uri, message: err instanceof StorageError ? err.describe() : String(err) });
    }
  };
  checkUri('CHECKPOINT_PATH', config.checkpointPath);
  if (config.enableLlmExplanation && config.openai.baseUrl) {
    try {
      checkUrl(jobUrlPolicy(config), config.openai.baseUrl, 'OPENAI_BASE_URL');
    } catch (err) {
      problems.push({ variable: 'OPENAI_BASE_URL', value: config.openai.baseUrl, message: asVisionTrainerError(err).message });
    }
  }
  if (config.inferenceType === 'inference_job' && !config.datasetId) for (const uri of config.imagePaths ?? []) checkUri('IMAGE_PATHS', uri);
  return problems;
}

export async function runInferenceJob(config: InferConfig, ctx: InferenceJobContext): Promise<InferenceOutcome> {
  const { logger, stop } = ctx;
  const started = Date.now();
  const work = await createWorkDir({ parent: config.workDir, jobId: config.jobId, keep: config.keepWorkDir });
  const storage = storageFor(config);
  const uploads = new ArtifactUploads(storage, logger);
  const writer = new ResultsWriter(work.sub('results.jsonl'));
  const adapters = inferenceAdapters();
  const stats = new LoopStats();
  let python: Promise<PythonBridge> | undefined;
  let session: InferenceSession | undefined;
  const unforce = stop.onForce(() => void python?.then((bridge) => bridge.close()));

  try {
    logger.info(`vision-trainer infer: job ${config.jobId}, ${config.inferenceType}, task ${config.taskType}`, { work_dir: work.path, storage: storage.describe() });
    const problems = upfrontProblems(config, storage);
    if (problems.length > 0) throw new ConfigError(problems, 'infer');
    const chosen = config.framework ? adapters.get(config.framework) : undefined;
    if (config.framework && !chosen) throw unavailable(config.framework, adapters);

    // 1. Checkpoint, with Python starting meanwhile (importing torch takes seconds too).
    logger.stage('Downloading Checkpoint');
    const env = Object.assign({}, ...(chosen ? [chosen] : [...adapters.values()]).map((a) => a.pythonEnv(work.path))) as Record<string, string>;
    python = PythonBridge.open({ pythonBin: config.pythonBin ?? defaultPythonBin(), env, logger });
    python.catch(() => {}); // awaited below; an earlier failure must not leave it unobserved
    const checkpointKey = storage.parseUri(config.checkpointPath);
    const checkpointPath = join(work.sub('checkpoint'), basename(checkpointKey));
    const bytes = await storage.downloadFile(checkpointKey, checkpointPath);
    logger.info(`Checkpoint downloaded: ${config.checkpointPath} (${(bytes / 1024 / 1024).toFixed(1)} MB)`);
    stop.throwIfRequested();

    // 2. Images
    logger.stage(config.inferenceType === 'test_run' ? 'Loading Test Dataset' : 'Preparing Images');
    const images = await imagesForJob(config, storage, work, logger);
    stop.throwIfRequested();

    // 3. Model
    logger.stage('Loading Model');
    const bridge = await python;
    const framework = config.framework ?? (await detectFramework(bridge, checkpointPath));
    if (!framework) {
      throw new ConfigError([{ variable: 'FRAMEWORK', message: `is not set, and the checkpoint ${config.checkpointPath} does not show which framework wrote it; set FRAMEWORK to ${FRAMEWORKS.join(', ')}` }], 'infer');
    }
    const adapter = adapters.get(framework);
    if (!adapter) throw unavailable(framework, adapters, `The checkpoint was written by ${framework}, and inference with ${framework} is not available in this version`);
    session = await adapter.open(bridge, {
      checkpointPath,
      config,
      evaluate: config.inferenceType === 'test_run',
      ...(config.enableXai ? { xai: { method: config.xaiMethod, layers: config.xaiTargetLayers } } : {}),
    });
    const model = session.info;
    logger.info(`Model loaded: ${framework} ${model.model_name ?? model.architecture} (${model.task}, ${model.class_names.length} classes)${config.enableXai ? `; XAI ${config.xaiMethod} on ${model.xai_layers.join(', ')}` : ''}`);
    const explainer = config.enableLlmExplanation ? new Explainer({ apiKey: config.openai.apiKey, baseUrl: config.openai.baseUrl, model: config.openai.model, logger, policy: jobUrlPolicy(config) }) : undefined;
    stop.throwIfRequested();

    // 4. Prediction
    logger.stage(`Processing ${images.source.total} Images`);
    logger.info(`Images: ${images.source.description}; batch size ${config.batchSize}`);
    await predictAll(images.source, {
      config,
      session,
      writer,
      uploads,
      explainer,
      truth: images.dataset ? { dataset: images.dataset, mapping: mapClasses(images.dataset, model.class_names) } : undefined,
      scratchDir: work.path,
      stop,
      logger,
      onProgress: ctx.onProgress,
    }, stats);
    await writer.flush();
    const failed = writer.written.failed;
    if (stats.predicted === 0) throw new DatasetError(`None of the ${images.source.total} images could be processed`, [], "Each image's problem is in the log above; check IMAGE_PATHS or the dataset's images.");
    logger.info(`Processed ${stats.processed} images (${failed} failed) in ${stats.loopSeconds.toFixed(1)} s, ${stats.avgInferenceTimeMs!.toFixed(1)} ms per image in prediction`);

    // 5. Metrics and results
    let metrics: TestRunMetrics | null = null;
    if (config.inferenceType === 'test_run') {
      logger.stage('Computing Metrics');
      metrics = await session.finish();
      if (metrics) logger.info(`Test-run metrics: ${Object.entries(metrics.overall_metrics).map(([k, v]) => `${k} ${v === null ? 'n/a' : v.toFixed(4)}`).join(', ')}`);
    }
    logger.stage('Saving Results');
    await uploads.drain();
    const visualizationsUri = stats.stored.visualizations > 0 ? storage.uri(visualizationsPrefix(config.inferenceType, config.jobId)) : null;
    const xaiUri = stats.stored.heatmaps > 0 ? storage.uri(xaiPrefix(config.inferenceType, config.jobId)) : null;
    const resultsFile = work.sub('results.json');
    await writer.finish(summary(config, model, images, stats, { failed, metrics, explainer, visualizationsUri, xaiUri, totalSeconds: (Date.now() - started) / 1000 }), resultsFile);
    const resultsUri = await storage.uploadFile(resultsFile, resultsKey(config.inferenceType, config.jobId), { contentType: 'application/json' });
    logger.stage('Inference Complete');
    logger.info(`Results: ${resultsUri}`);
    return { status: 'succeeded', exitCode: ExitCode.ok, resultsUri, visualizationsUri, xaiUri, metrics, images: images.source.total, failedImages: failed, avgInferenceTimeMs: stats.avgInferenceTimeMs };
  } catch (err) {
    const error = stop.requested && !(err instanceof ConfigError) ? stop.toError(` after ${stats.processed} images`) : asVisionTrainerError(err);
    logger.error(error.describe());
    await uploads.drain();
    return { status: 'failed', exitCode: error.exitCode, resultsUri: null, visualizationsUri: null, xaiUri: null, metrics: null, images: stats.processed, failedImages: writer.written.failed, avgInferenceTimeMs: stats.avgInferenceTimeMs, error };
  } finally {
    unforce();
    await session?.close().catch(() => {});
    const bridge = await python?.catch(() => undefined);
    await bridge?.close();
    await writer.close();
    await work.cleanup();
  }
}

function summary(
  config: InferConfig,
  model: ModelInfo,
  images: JobImages,
  stats: LoopStats,
  extra: { failed: number; metrics: TestRunMetrics | null; explainer: Explainer | undefined; visualizationsUri: string | null; xaiUri: string | null; totalSeconds: number },
): ResultsSummary {
  return {
    schema_version: RESULTS_SCHEMA_VERSION,
    job_id: config.jobId,
    inference_type: config.inferenceType,
    task_type: config.taskType,
    checkpoint_path: config.checkpointPath,
    model,
    settings: {
      batch_size: config.batchSize,
      image_size: config.imageSize,
      confidence_threshold: config.confidenceThreshold,
      iou_threshold: config.iouThreshold,
      device: config.device,
      dataset_id: config.datasetId ?? null,
      test_split: config.inferenceType === 'test_run' ? config.testSplit : null,
      split_source: images.splitDescription,
      xai_method: config.enableXai ? config.xaiMethod : null,
      llm_model: extra.explainer ? extra.explainer.model : null,
      max_visualizations: config.maxVisualizations,
    },
    generated_at: new Date().toISOString(),
    num_images: images.source.total,
    failed_images: extra.failed,
    timing: {
      avg_inference_time_ms: stats.avgInferenceTimeMs,
      images_per_second: stats.loopSeconds > 0 ? stats.processed / stats.loopSeconds : null,
      total_seconds: extra.totalSeconds,
    },
    metrics: extra.metrics,
    visualizations_path: extra.visualizationsUri,
    xai_results_path: extra.xaiUri,
  };
}
