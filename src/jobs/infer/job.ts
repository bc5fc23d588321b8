/**
 * One test run or inference job, from the configuration to results.json in storage:
 *
 *   1. check what the configuration alone shows (XAI layer paths, storage URIs)
 *   2. download the checkpoint and gather the images (inputs.ts) beside the preflight's imports
 *   3. choose the framework and open its session: it loads the checkpoint and checks the task
 *      and XAI layers
 *   4. predict batch by batch (predict-loop.ts)
 *   5. test runs: metrics from the framework's validated code; then results.json
 *
 * Progress and the outcome go out as events; reporter.ts sends them to the backend.
 */
import { inferenceSpinEnv, retainFreedMemoryEnv } from '../../bridge/environment.js';
import type { InferConfig } from '../../config/schema.js';
import { ConfigError, DatasetError, ExitCode, type ConfigProblem, StorageError, VisionTrainerError, asVisionTrainerError } from '../../errors.js';
import type { InferenceEvent } from '../../events.js';
import { adapterFor, chooseFramework, type InferenceSession, type OpenSessionRequest, pythonEnvFor } from '../../frameworks/index.js';
import { checkUrl, jobUrlPolicy } from '../../net/url-guard.js';
import type { Storage } from '../../storage/types.js';
import type { JobContext, JobDefinition } from '../context.js';
import { preflight } from '../preflight.js';
import type { StoredOutcome } from '../outcome.js';
import { ArtifactUploads, jobPrefix, resultsKey, visualizationsPrefix, xaiPrefix } from './artifacts.js';
import { InferenceDownloads, type ModelFiles } from './downloads.js';
import { graphModelProblems } from './graph-model.js';
import { mapClasses } from './ground-truth.js';
import { type ImagePlan, type JobImages, imagePlan, samePlan } from './inputs.js';
import { layerPathProblems } from './layers.js';
import { Explainer } from './llm.js';
import { type InferenceProgress, LoopStats, predictAll } from './predict-loop.js';
import { inferenceCompletion, inferenceReporter } from './reporter.js';
import { RESULTS_SCHEMA_VERSION, type ModelInfo, type TestRunMetrics } from './results.js';
import { ResultsWriter, type ResultsSummary } from './results-writer.js';

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

type InferContext = JobContext<'infer', InferenceEvent>;

/**
 * After SIGTERM the current batch finishes and the job reports `failed`; Python is killed if
 * that takes longer than this (a batch is seconds; there is no checkpoint to save).
 */
const STOP_GRACE_SECONDS = 30;

export const inferenceJob: JobDefinition<'infer', InferenceEvent, InferenceOutcome> = {
  mode: 'infer',
  graceSeconds: () => STOP_GRACE_SECONDS,
  stopping: 'stopping after the current batch',
  reporter: inferenceReporter,
  logKey: (config) => `${jobPrefix(config.inferenceType, config.jobId)}/job.log`,
  outcomeKey: (config) => `${jobPrefix(config.inferenceType, config.jobId)}/outcome.json`,
  run: runInference,
  failed: (_ctx, error) => failedOutcome(error, new LoopStats(), 0),
  completion: (config, done) => inferenceCompletion(config, done as Extract<InferenceEvent, { type: 'done' }>),
  restored,
  done: (ctx, outcome) => ({
    type: 'done',
    inferenceType: ctx.config.inferenceType,
    status: outcome.status,
    resultsUri: outcome.resultsUri,
    visualizationsUri: outcome.visualizationsUri,
    xaiUri: outcome.xaiUri,
    metrics: outcome.metrics,
    errorMessage: outcome.error ? outcome.error.describe() : null,
    exitCode: outcome.exitCode,
  }),
};

/** What the body of a stored completion says, as an outcome. */
function restored(_ctx: InferContext, stored: StoredOutcome): InferenceOutcome {
  const body = stored.body as {
    status: 'succeeded' | 'failed';
    results_path?: string | null;
    visualizations_path?: string | null;
    xai_results_path?: string | null;
    error_message?: string | null;
    overall_metrics?: TestRunMetrics['overall_metrics'];
    per_class_metrics?: TestRunMetrics['per_class_metrics'];
    confusion_matrix?: TestRunMetrics['confusion_matrix'];
    pr_curves?: TestRunMetrics['pr_curves'];
  };
  const metrics =
    body.status === 'succeeded' && body.overall_metrics
      ? ({
          overall_metrics: body.overall_metrics,
          per_class_metrics: body.per_class_metrics ?? [],
          confusion_matrix: body.confusion_matrix ?? null,
          pr_curves: body.pr_curves ?? {},
        } as TestRunMetrics)
      : null;
  return {
    status: body.status,
    exitCode: stored.exit_code,
    resultsUri: body.results_path ?? null,
    visualizationsUri: body.visualizations_path ?? null,
    xaiUri: body.xai_results_path ?? null,
    metrics,
    images: 0,
    failedImages: 0,
    avgInferenceTimeMs: null,
    ...(body.status === 'failed' ? { error: new VisionTrainerError(body.error_message ?? 'failed', { exitCode: stored.exit_code }) } : {}),
  };
}

async function runInference(ctx: InferContext): Promise<InferenceOutcome> {
  const { config, logger, stop } = ctx;
  const started = Date.now();
  const uploads = new ArtifactUploads(ctx.storage, logger);
  const writer = new ResultsWriter(ctx.work.sub('results.jsonl'));
  const stats = new LoopStats();
  let session: InferenceSession | undefined;
  try {
    logger.info(`vision-trainer infer: job ${config.jobId}, ${config.inferenceType}, task ${config.taskType}`, {
      work_dir: ctx.work.path,
      storage: ctx.storage.describe(),
    });
    const problems = upfrontProblems(config, ctx.storage);
    if (problems.length > 0) throw new ConfigError(problems, 'infer');

    // 1. Python (its requirements, torch, DEVICE); the checkpoint and the images download beside its imports.
    const downloads = new InferenceDownloads(ctx);
    let images: JobImages;
    try {
      await preflight(ctx, {
        pythonEnv: {
          ...pythonEnvFor(config.framework, ctx.work.path),
          ...inferenceSpinEnv(process.env),
          ...(config.retainFreedMemory ? retainFreedMemoryEnv(process.env) : {}),
        },
        whileChecking: () => downloads.start(),
      });
      // 2. The checkpoint, and what the images are: known from the annotations while they still download.
      const { model: files, plan, early } = await downloads.ready();
      stop.throwIfRequested();

      // 3. The model, opened while the images download where their plan came early.
      logger.stage('Loading Model');
      if (early) logger.info(`Opening the model while the images download (${plan.total} images to predict, from the annotations)`);
      session = await openSession(ctx, files, plan);
      images = await downloads.allImages();
      if (!samePlan(plan, imagePlan(images))) {
        // Only when a retried download brought other annotations than the first attempt's.
        logger.warn('The downloaded dataset selects other images or classes than its annotations did at first: the model is opened again');
        await session.close();
        session = undefined;
        session = await openSession(ctx, files, imagePlan(images));
      }
    } catch (err) {
      await downloads.stop('the job failed before it predicted');
      throw err;
    }
    const model = session.info;
    const explainer = config.enableLlmExplanation
      ? new Explainer({ apiKey: config.openai.apiKey, baseUrl: config.openai.baseUrl, model: config.openai.model, logger, policy: jobUrlPolicy(config) })
      : undefined;
    stop.throwIfRequested();

    // 4. Prediction
    logger.stage(`Processing ${images.source.total} Images`);
    logger.info(`Images: ${images.source.description}; batch size ${config.batchSize}`);
    const truth = images.dataset ? { dataset: images.dataset, mapping: mapClasses(images.dataset, model) } : undefined;
    for (const r of truth?.mapping.renumbered ?? []) {
      logger.warn(
        `Class ${JSON.stringify(r.name)} is id ${r.testId} in the test dataset and id ${r.modelId} in the model's training dataset: results use ${r.modelId}, as the model's predictions do`,
      );
    }
    const onProgress = (p: InferenceProgress) => void ctx.events.emit({ type: 'progress', ...p });
    await predictAll(images.source, { config, session, writer, uploads, explainer, truth, scratchDir: ctx.work.path, stop, logger, onProgress }, stats);
    await writer.flush();
    const failed = writer.written.failed;
    if (stats.predicted === 0)
      throw new DatasetError(
        `None of the ${images.source.total} images could be processed`,
        [],
        "Each image's problem is in the log above; check IMAGE_PATHS or the dataset's images.",
      );
    logger.info(
      `Processed ${stats.processed} images (${failed} failed) in ${stats.loopSeconds.toFixed(1)} s, ${stats.avgInferenceTimeMs!.toFixed(1)} ms per image in prediction`,
    );

    // 5. Metrics and results
    const metrics = await testRunMetrics(ctx, session);
    return await saveResults(ctx, { model, images, stats, failed, metrics, explainer, uploads, writer, started });
  } catch (err) {
    const error = stop.requested && !(err instanceof ConfigError) ? stop.toError(` after ${stats.processed} images`) : asVisionTrainerError(err);
    logger.error(error.describe());
    await uploads.drain();
    return failedOutcome(error, stats, writer.written.failed);
  } finally {
    await session?.close().catch(() => {});
    await writer.close();
  }
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
  if (config.promptCheckpointPath) checkUri('PROMPT_CHECKPOINT_PATH', config.promptCheckpointPath);
  if (config.inferenceModelPath) checkUri('INFERENCE_MODEL_PATH', config.inferenceModelPath);
  for (const message of graphModelProblems(config)) problems.push({ variable: 'INFERENCE_MODEL_PATH', value: config.inferenceModelPath, message });
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

/**
 * The framework (FRAMEWORK, or read from the checkpoint) opens a session on the checkpoint.
 * `prompts`: PROMPT_CHECKPOINT_PATH's detector and the test dataset's classes, which only a
 * prompted model (SAM 2) uses; ultralytics refuses a detector given to another checkpoint.
 * `imageCount`: how many images the job predicts, which INFERENCE_BACKEND=auto weighs.
 */
/** The checkpoint's session, opened for `plan`'s images (INFERENCE_BACKEND=auto weighs an export against their number). */
async function openSession(ctx: InferContext, files: ModelFiles, plan: ImagePlan): Promise<InferenceSession> {
  const { config } = ctx;
  const checkpointPath = files.checkpoint.path;
  const prompts: Pick<OpenSessionRequest, 'promptCheckpointPath' | 'datasetClasses' | 'imageCount' | 'graphModel'> = {
    imageCount: plan.total,
    ...(files.graphModel ? { graphModel: files.graphModel } : {}),
    ...(files.prompt ? { promptCheckpointPath: files.prompt.path } : {}),
    ...(plan.classes ? { datasetClasses: plan.classes } : {}),
  };
  const bridge = await ctx.bridge;
  const framework = await chooseFramework(config, 'infer', bridge, checkpointPath);
  const session = await adapterFor(framework).inference.open(bridge, {
    checkpointPath,
    config,
    evaluate: config.inferenceType === 'test_run',
    graphDir: ctx.work.sub('graph'),
    ...prompts,
    ...(config.enableXai ? { xai: { method: config.xaiMethod, layers: config.xaiTargetLayers, samples: config.xaiSamples } } : {}),
  });
  const model = session.info;
  const xai = config.enableXai ? `; XAI ${config.xaiMethod} on ${model.xai_layers.join(', ')}` : '';
  const ran = model.inference_backend;
  const exported = ran.export_seconds === null ? '' : `, exported in ${ran.export_seconds.toFixed(1)} s`;
  ctx.logger.info(
    `Model loaded: ${framework} ${model.model_name ?? model.architecture} (${model.task}, ${model.class_names.length} classes) on ${ran.runtime} (${ran.device}${exported}; ${ran.reason})${xai}`,
  );
  return session;
}

async function testRunMetrics(ctx: InferContext, session: InferenceSession): Promise<TestRunMetrics | null> {
  if (ctx.config.inferenceType !== 'test_run') return null;
  ctx.logger.stage('Computing Metrics');
  const metrics = await session.finish();
  if (metrics)
    ctx.logger.info(
      `Test-run metrics: ${Object.entries(metrics.overall_metrics)
        .map(([k, v]) => `${k} ${v === null ? 'n/a' : v.toFixed(4)}`)
        .join(', ')}`,
    );
  return metrics;
}

interface Finished {
  model: ModelInfo;
  images: JobImages;
  stats: LoopStats;
  failed: number;
  metrics: TestRunMetrics | null;
  explainer: Explainer | undefined;
  uploads: ArtifactUploads;
  writer: ResultsWriter;
  started: number;
}

/** results.json, once every picture is stored, and the outcome that points at it. */
async function saveResults(ctx: InferContext, f: Finished): Promise<InferenceOutcome> {
  const { config, logger, storage } = ctx;
  logger.stage('Saving Results');
  await f.uploads.drain();
  const visualizationsUri = f.stats.stored.visualizations > 0 ? storage.uri(visualizationsPrefix(config.inferenceType, config.jobId)) : null;
  const xaiUri = f.stats.stored.heatmaps > 0 ? storage.uri(xaiPrefix(config.inferenceType, config.jobId)) : null;
  const resultsFile = ctx.work.sub('results.json');
  await f.writer.finish(summary(config, f, { visualizationsUri, xaiUri, totalSeconds: (Date.now() - f.started) / 1000 }), resultsFile);
  const resultsUri = await storage.uploadFile(resultsFile, resultsKey(config.inferenceType, config.jobId), { contentType: 'application/json' });
  logger.stage('Inference Complete');
  logger.info(`Results: ${resultsUri}`);
  const { stats } = f;
  return {
    status: 'succeeded',
    exitCode: ExitCode.ok,
    resultsUri,
    visualizationsUri,
    xaiUri,
    metrics: f.metrics,
    images: f.images.source.total,
    failedImages: f.failed,
    avgInferenceTimeMs: stats.avgInferenceTimeMs,
  };
}

function failedOutcome(error: VisionTrainerError, stats: LoopStats, failedImages: number): InferenceOutcome {
  return {
    status: 'failed',
    exitCode: error.exitCode,
    resultsUri: null,
    visualizationsUri: null,
    xaiUri: null,
    metrics: null,
    images: stats.processed,
    failedImages,
    avgInferenceTimeMs: stats.avgInferenceTimeMs,
    error,
  };
}

function summary(config: InferConfig, f: Finished, extra: { visualizationsUri: string | null; xaiUri: string | null; totalSeconds: number }): ResultsSummary {
  return {
    schema_version: RESULTS_SCHEMA_VERSION,
    job_id: config.jobId,
    inference_type: config.inferenceType,
    task_type: config.taskType,
    checkpoint_path: config.checkpointPath,
    // What bf16 changed, measured on the first batch (known only once it ran).
    model: f.stats.precisionCheck ? { ...f.model, inference_backend: { ...f.model.inference_backend, precision_check: f.stats.precisionCheck } } : f.model,
    settings: {
      batch_size: config.batchSize,
      image_size: config.imageSize,
      confidence_threshold: config.confidenceThreshold,
      iou_threshold: config.iouThreshold,
      device: config.device,
      inference_backend: config.inferenceBackend,
      inference_precision: config.inferencePrecision,
      dataset_id: config.datasetId ?? null,
      test_split: config.inferenceType === 'test_run' ? config.testSplit : null,
      split_source: f.images.splitDescription,
      xai_method: config.enableXai ? config.xaiMethod : null,
      llm_model: f.explainer ? f.explainer.model : null,
      max_visualizations: config.maxVisualizations,
    },
    generated_at: new Date().toISOString(),
    num_images: f.images.source.total,
    failed_images: f.failed,
    timing: {
      avg_inference_time_ms: f.stats.avgInferenceTimeMs,
      images_per_second: f.stats.loopSeconds > 0 ? f.stats.processed / f.stats.loopSeconds : null,
      total_seconds: extra.totalSeconds,
      loop_seconds: f.stats.loopSeconds,
      preprocess_seconds: f.stats.predicted > 0 ? f.stats.preprocessSeconds : null,
      forward_seconds: f.stats.predicted > 0 ? f.stats.forwardSeconds : null,
      python_cpu_seconds: f.stats.pythonCpuSeconds,
      node_cpu_seconds: f.stats.nodeCpuSeconds,
    },
    metrics: f.metrics,
    visualizations_path: extra.visualizationsUri,
    xai_results_path: extra.xaiUri,
  };
}
