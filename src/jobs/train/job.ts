/**
 * The training job: earlier attempts → dataset → pretrained weights or the checkpoint to resume
 * → Python → the framework's training → checkpoints → `done`. It reports through the run's event
 * stream only; the HTTP callbacks (reporter.ts), the log lines (console.ts) and TypeScript
 * scripts subscribe to it.
 *
 * An attempt of a JOB_ID whose earlier attempt stored checkpoints continues from the latest
 * (resume.ts). A stopped or failed run reports the last checkpoint storage confirmed, never one
 * that was only meant to be uploaded.
 */
import { join } from 'node:path';
import { primaryMetric } from '../../config/tasks.js';
import type { PythonBridge } from '../../bridge/python.js';
import { ExitCode, NodeLostError, OutOfMemoryError, PythonError, VisionTrainerError, asVisionTrainerError } from '../../errors.js';
import type { JsonValue, Metrics, RunEvent } from '../../events.js';
import type { ChosenBest } from '../../frameworks/adapter.js';
import { adapterFor, type FrameworkAdapter, type PreparedDataset, type TrainOutcome } from '../../frameworks/index.js';
import { jobUrlPolicy } from '../../net/url-guard.js';
import { describeUrl, redact } from '../../redact.js';
import { downloadUrl } from '../../storage/download.js';
import type { JobContext, JobDefinition } from '../context.js';
import type { StoredOutcome } from '../outcome.js';
import { announceToNodeZero, checkIn, distributedPlan, reportsJob } from '../distributed.js';
import { preflight } from '../preflight.js';
import { fetchCheckpoint } from '../stages.js';
import { consoleReporter } from './console.js';
import { trainingDatasetBesidePreflight } from './dataset.js';
import { checkpointKey, plotsKey, TrainingProgress } from './progress.js';
import { trainingCompletion, trainingReporter } from './reporter.js';
import { findResumePoint, recoverBest, type ResumePoint } from './resume.js';
import { trainingTrackers } from '../../tracking/index.js';

export interface TrainResult {
  status: 'succeeded' | 'failed';
  exitCode: number;
  bestEpoch: number | null;
  bestMetricValue: number | null;
  checkpointUri: string | null;
  totalTimeSeconds: number;
  /** The best epoch's validation metrics ({} before the first validation). */
  bestMetrics?: Metrics;
  error?: VisionTrainerError;
}

type TrainContext = JobContext<'train', RunEvent>;

const MAX_WEIGHTS_BYTES = 4 * 1024 ** 3;

export const trainingLogKey = (jobId: string) => `logs/job-${jobId}/training.log`;
/** Beside training.log: every event of the run, TensorBoard's event files, the framework's plots (plotsKey). */
export const metricsLogKey = (jobId: string) => `logs/job-${jobId}/metrics.jsonl`;
export const tensorboardKey = (jobId: string) => `logs/job-${jobId}/tensorboard`;
export const trainingOutcomeKey = (jobId: string) => `logs/job-${jobId}/outcome.json`;
export { checkpointKey, plotsKey };

export const trainingJob: JobDefinition<'train', RunEvent, TrainResult> = {
  mode: 'train',
  reports: reportsJob,
  graceSeconds: (config) => config.stopGraceSeconds,
  stopping: 'stopping after the current batch and uploading the last checkpoint',
  reporter: (client, config) => trainingReporter(client, config.taskType),
  console: consoleReporter,
  logKey: (config) => trainingLogKey(config.jobId),
  outcomeKey: (config) => trainingOutcomeKey(config.jobId),
  eventLogKey: (config) => metricsLogKey(config.jobId),
  trackers: trainingTrackers,
  run: runTraining,
  failed: (_ctx, error) => ({
    status: 'failed',
    exitCode: error.exitCode,
    bestEpoch: null,
    bestMetricValue: null,
    checkpointUri: null,
    totalTimeSeconds: 0,
    error,
  }),
  done: doneEvent,
  completion: (_config, done) => trainingCompletion(done as Extract<RunEvent, { type: 'done' }>),
  // A time limit that left a checkpoint in storage: running the job again continues it.
  resumable: (result) => result.exitCode === ExitCode.timeLimit && result.checkpointUri !== null,
  restored,
};

/** What the body of a stored training completion says, as a result. */
function restored(ctx: TrainContext, stored: StoredOutcome): TrainResult {
  const body = stored.body as { status: 'succeeded' | 'failed'; final_metrics?: Metrics; checkpoint_path?: string | null; error_message?: string | null };
  const metrics = body.final_metrics ?? {};
  const number = (v: unknown) => (typeof v === 'number' ? v : null);
  return {
    status: body.status,
    exitCode: stored.exit_code,
    bestEpoch: number(metrics.best_epoch),
    bestMetricValue: number(metrics[`best_${primaryMetric(ctx.config.taskType)}`]),
    checkpointUri: body.checkpoint_path ?? null,
    totalTimeSeconds: number(metrics.total_time_seconds) ?? 0,
    ...(body.status === 'failed' ? { error: new VisionTrainerError(body.error_message ?? 'failed', { exitCode: stored.exit_code }) } : {}),
  };
}

async function runTraining(ctx: TrainContext): Promise<TrainResult> {
  const { config, logger } = ctx;
  const progress = new TrainingProgress(ctx);
  // From here on a failure reaches the other nodes through the process group and the launchers.
  let launched = false;
  ctx.events.onAsyncError = (err, event) => {
    if (event.type !== 'done') ctx.stop.request({ kind: 'handler_error', error: err });
  };
  try {
    logger.info(`vision-trainer train: job ${config.jobId}, ${config.framework} ${config.modelName}, task ${config.taskType}`, {
      work_dir: ctx.work.path,
      storage: ctx.storage.describe(),
    });
    const earlier = await earlierAttempt(ctx);
    if (earlier) progress.continueFrom(earlier);
    if (earlier?.finished) return await finishFromStorage(ctx, progress, earlier);
    const adapter = adapterFor(config.framework);
    // The download starts once Python is up and runs beside the preflight's imports and checks.
    let layoutWritten: (layout: PreparedDataset) => void = () => {};
    const earlyLayout = new Promise<PreparedDataset>((resolve) => {
      layoutWritten = resolve;
    });
    const dataset = trainingDatasetBesidePreflight(ctx, adapter, (layout) => layoutWritten(layout));
    let bridge: PythonBridge;
    try {
      bridge = await preflight(ctx, {
        pythonEnv: adapter.pythonEnv(ctx.work.path),
        checkModel: (b) => adapter.training.checkModel(b, config),
        whileChecking: () => dataset.start(),
      });
      // Node 0 hosts the rendezvous store, every node beats in it from now on (the download may take long).
      await checkIn(bridge, distributedPlan(config), config.jobId);
      progress.trainerArgs = await resolveTrainerArgs(ctx, adapter);
    } catch (err) {
      await dataset.cancel('the job failed before it needed its dataset');
      throw err;
    }
    importFrameworkEarly(ctx, bridge, adapter);
    workWhileImagesArrive(ctx, bridge, adapter, earlyLayout, progress.trainerArgs);
    const data = await dataset.result();
    const resume = earlier ? await fetchEarlierAttempt(ctx, earlier, progress, adapter, bridge) : await fetchResumeCheckpoint(ctx);
    // A resumed run's weights come from its checkpoint (and a retried pod's presigned URL may have expired).
    const weightsPath = resume.resumeFrom ? undefined : await fetchWeights(ctx);
    // A resumed YOLO-World run embeds the class names again, so the text encoder comes every time.
    const textEncoderPath = await fetchTextEncoder(ctx);
    launched = true;
    const outcome = await train(ctx, adapter, progress, { data, weightsPath, textEncoderPath, ...resume });
    const byPeer = peerStop(ctx, outcome);
    if (ctx.stop.requested || byPeer) {
      // Stopped (signal, time limit, failing handler, another node's stop): the last checkpoint goes up, then the run fails.
      await progress.saveCheckpoint('stop');
      await progress.drainUploads();
      throw byPeer && !ctx.stop.requested ? new NodeLostError(byPeer, progress.lastCheckpointNote()) : ctx.stop.toError(progress.lastCheckpointNote());
    }
    return await uploadBest(ctx, progress, outcome, (path, best) => adapter.training.markBest(bridge, path, best));
  } catch (err) {
    if (!launched) await tellNodeZero(ctx, err);
    return await failed(ctx, progress, err);
  }
}

/** A node other than node 0 that fails before training: node 0 learns why now (announceToNodeZero). */
async function tellNodeZero(ctx: TrainContext, err: unknown): Promise<void> {
  const plan = distributedPlan(ctx.config);
  if (!plan || plan.reports) return;
  const error = ctx.stop.requested ? ctx.stop.toError() : asVisionTrainerError(err);
  try {
    const bridge = await ctx.startPython(adapterFor(ctx.config.framework).pythonEnv(ctx.work.path));
    const delivered = await announceToNodeZero(bridge, plan, ctx.config.jobId, {
      stopped: ctx.stop.requested,
      message: redact(error.message),
      exitCode: error.exitCode,
      stopWaitSeconds: Math.min(10, ctx.config.stopGraceSeconds),
    });
    if (!delivered)
      ctx.logger.warn(
        `node 0 did not open its rendezvous store at ${plan.masterAddr}:${plan.masterPort} in time: it learns of this failure at its rendezvous timeout`,
      );
  } catch (e) {
    ctx.logger.warn(`could not tell node 0 why this node failed: ${asVisionTrainerError(e).message}`);
  }
}

/**
 * The framework's remaining imports (what the trainer loads lazily; seconds of CPU) run in
 * Python while the dataset downloads and converts: the preflight has already started Python,
 * imported torch and checked the model. A failed import is not lost: the call that needs the
 * module imports it again and reports the error. A dataset error fails the job at once, and the
 * job's close shuts the interpreter down, importing or not.
 */
function importFrameworkEarly(ctx: TrainContext, bridge: PythonBridge, adapter: FrameworkAdapter): void {
  bridge
    .preload(adapter.training.pythonModules(ctx.config.taskType))
    .catch((err: unknown) => ctx.logger.debug('an early framework import failed; the train stage reports it', { error: String(err) }));
}

/**
 * The framework's work on the layout written from the annotations while its images download
 * (whileImagesArrive: ultralytics' image checks for its label cache), once the interpreter is
 * up too. A layout written only after the download never resolves `layout`: nothing starts. A
 * failure is not the job's: the framework does the same work itself when training starts.
 */
function workWhileImagesArrive(
  ctx: TrainContext,
  bridge: PythonBridge,
  adapter: FrameworkAdapter,
  layout: Promise<PreparedDataset>,
  trainerArgs: Record<string, JsonValue>,
): void {
  if (!adapter.training.whileImagesArrive) return;
  void layout
    .then((written) => adapter.training.whileImagesArrive?.(bridge, written, ctx.config.taskType, trainerArgs))
    .then((began) => {
      if (began?.started) ctx.logger.info(`${adapter.framework} checks the ${began.images} images for its label cache as they arrive`);
      else if (began) ctx.logger.debug(`no image checks during the download: ${began.reason}`);
    })
    .catch((err: unknown) =>
      ctx.logger.debug('the image checks during the download did not start; the framework makes them when training starts', { error: String(err) }),
    );
}

/**
 * TRAINER_ARGS as the framework will use them, checked before anything is downloaded (the
 * framework's own key list may need Python: the job's interpreter starts here then).
 */
async function resolveTrainerArgs(ctx: TrainContext, adapter: FrameworkAdapter): Promise<Record<string, JsonValue>> {
  const { config } = ctx;
  const python = () => ctx.startPython(adapter.pythonEnv(ctx.work.path));
  const resolved = await adapter.training.resolveTrainerArgs(config.trainerArgs ?? {}, config.taskType, python);
  if (config.trainerArgs) ctx.logger.info(`TRAINER_ARGS resolved: ${JSON.stringify(resolved)}`, { trainer_args: resolved });
  ctx.stop.throwIfRequested();
  return resolved;
}

/**
 * Checkpoints an earlier attempt of this JOB_ID stored, when this attempt should continue them:
 * RESUME=auto and no RESUME_CHECKPOINT_PATH (which names the checkpoint itself).
 */
async function earlierAttempt(ctx: TrainContext): Promise<ResumePoint | undefined> {
  const { config } = ctx;
  if (config.resume === 'never' || config.resumeCheckpointPath) return undefined;
  return findResumePoint(ctx.storage, config.jobId, config.epochs, (m) => ctx.logger.warn(m));
}

/** PRETRAINED_WEIGHT_URL, downloaded; undefined without one. */
async function fetchWeights(ctx: TrainContext): Promise<string | undefined> {
  const { config } = ctx;
  if (!config.pretrainedWeightUrl) return undefined;
  void ctx.events.emit({ type: 'stage', stage: 'downloading_weights', message: 'Downloading pretrained weights' });
  ctx.logger.stage('Downloading Pretrained Weight');
  const ext = /\.(pt|pth|safetensors|bin|zip)(?:$|\?)/i.exec(new URL(config.pretrainedWeightUrl).pathname)?.[1] ?? 'pt';
  const path = join(ctx.work.sub('weights'), `${config.modelName}.${ext.toLowerCase()}`);
  const d = await downloadUrl(config.pretrainedWeightUrl, path, { maxBytes: MAX_WEIGHTS_BYTES, policy: jobUrlPolicy(config), signal: ctx.stop.stopSignal });
  const message = `Pretrained weights downloaded from ${describeUrl(config.pretrainedWeightUrl)}`;
  void ctx.events.emit({ type: 'milestone', name: 'weights_downloaded', message, data: { bytes: d.bytes } });
  ctx.stop.throwIfRequested();
  return path;
}

/** TEXT_ENCODER_WEIGHT_URL (YOLO-World's CLIP text encoder, a zip), downloaded; undefined without one. */
async function fetchTextEncoder(ctx: TrainContext): Promise<string | undefined> {
  const { config } = ctx;
  if (!config.textEncoderWeightUrl) return undefined;
  void ctx.events.emit({ type: 'stage', stage: 'downloading_weights', message: 'Downloading the text encoder' });
  const path = join(ctx.work.sub('weights'), 'text-encoder.zip');
  const d = await downloadUrl(config.textEncoderWeightUrl, path, {
    maxBytes: MAX_WEIGHTS_BYTES,
    policy: jobUrlPolicy(config),
    signal: ctx.stop.stopSignal,
    variable: 'TEXT_ENCODER_WEIGHT_URL',
  });
  const message = `Text encoder downloaded from ${describeUrl(config.textEncoderWeightUrl)}`;
  void ctx.events.emit({ type: 'milestone', name: 'text_encoder_downloaded', message, data: { bytes: d.bytes } });
  ctx.stop.throwIfRequested();
  return path;
}

interface ResumeInputs {
  resumeFrom?: string | undefined;
  bestFrom?: { path: string; epoch: number; value: number | null } | undefined;
}

/** RESUME_CHECKPOINT_PATH: the checkpoint of a preempted run (ours: same key layout, same storage). */
async function fetchResumeCheckpoint(ctx: TrainContext): Promise<ResumeInputs> {
  const uri = ctx.config.resumeCheckpointPath;
  if (!uri) return {};
  void ctx.events.emit({ type: 'stage', stage: 'downloading_checkpoint', message: 'Downloading the checkpoint to resume from' });
  const source = { variable: 'RESUME_CHECKPOINT_PATH', uri, mode: 'train', fileName: 'resume.pt', missingIsConfigError: true } as const;
  const { path } = await fetchCheckpoint(ctx.storage, source, ctx.work.sub('resume'));
  ctx.stop.throwIfRequested();
  return { resumeFrom: path };
}

/**
 * The latest checkpoint of the earlier attempts, and their best one, for the trainer to continue
 * from. When state.json names no best, the best epoch the latest checkpoint records is taken
 * (resume.ts recoverBest) where the framework's checkpoints record one.
 */
async function fetchEarlierAttempt(
  ctx: TrainContext,
  earlier: ResumePoint,
  progress: TrainingProgress,
  adapter: FrameworkAdapter,
  bridge: PythonBridge,
): Promise<ResumeInputs> {
  const { storage } = ctx;
  void ctx.events.emit({
    type: 'stage',
    stage: 'downloading_checkpoint',
    message: `Downloading the checkpoint of epoch ${earlier.latest.epoch} to resume from`,
  });
  const resumeFrom = ctx.work.sub(join('resume', 'resume.pt'));
  await storage.downloadFile(earlier.latest.key, resumeFrom);
  if (!earlier.best && earlier.stored.length > 0 && adapter.training.recordedBest) {
    const recovered = recoverBest(earlier, await adapter.training.recordedBest(bridge, resumeFrom));
    if (recovered) {
      ctx.logger.info(
        `The training state names no best epoch; the checkpoint of epoch ${earlier.latest.epoch} records epoch ${recovered.epoch} as the best so far (${storage.uri(recovered.key)})`,
      );
      earlier.best = recovered;
      progress.continueFrom(earlier);
    }
  }
  let bestFrom: ResumeInputs['bestFrom'];
  if (earlier.best) {
    const path = earlier.best.key === earlier.latest.key ? resumeFrom : ctx.work.sub(join('resume', 'best.pt'));
    if (path !== resumeFrom) await storage.downloadFile(earlier.best.key, path);
    bestFrom = { path, epoch: earlier.best.epoch, value: earlier.best.value };
  }
  ctx.stop.throwIfRequested();
  announceResume(ctx, earlier);
  return { resumeFrom, bestFrom };
}

function announceResume(ctx: TrainContext, earlier: ResumePoint, finished = false): void {
  const uri = ctx.storage.uri(earlier.latest.key);
  const best = earlier.best ? `; best so far: epoch ${earlier.best.epoch} (${primaryMetric(ctx.config.taskType)} ${earlier.best.value ?? 'n/a'})` : '';
  const message = finished
    ? `Resuming job ${ctx.config.jobId}: an earlier attempt trained all ${ctx.config.epochs} epochs (${uri}) but did not store best.pt; it is taken from storage${best}`
    : `Resuming job ${ctx.config.jobId} from the checkpoint of epoch ${earlier.latest.epoch} that an earlier attempt stored (${uri})${best}`;
  ctx.logger.info(message);
  const data = { from_epoch: earlier.latest.epoch, checkpoint_path: uri, best_epoch: earlier.best?.epoch ?? null, epochs: ctx.config.epochs, finished };
  void ctx.events.emit({ type: 'milestone', name: 'training_resumed', message, data });
}

/**
 * Every epoch was trained by an earlier attempt, whose best.pt upload never finished: the best
 * checkpoint it stored becomes best.pt, without Python or the dataset.
 */
async function finishFromStorage(ctx: TrainContext, progress: TrainingProgress, earlier: ResumePoint): Promise<TrainResult> {
  announceResume(ctx, earlier, true);
  const source = earlier.best ?? { epoch: earlier.latest.epoch, key: earlier.latest.key };
  const local = ctx.work.sub(join('resume', 'best.pt'));
  await ctx.storage.downloadFile(source.key, local);
  progress.restoreEarlierBest(local);
  return uploadBest(ctx, progress, { bestEpoch: source.epoch, bestPath: local, lastPath: local, stoppedEarly: false });
}

/** Python, then the framework's training, with MAX_TRAINING_TIME_SECONDS watched from here. */
async function train(
  ctx: TrainContext,
  adapter: FrameworkAdapter,
  progress: TrainingProgress,
  inputs: { data: PreparedDataset; weightsPath: string | undefined; textEncoderPath: string | undefined } & ResumeInputs,
): Promise<TrainOutcome> {
  const { config, events, logger, stop } = ctx;
  void events.emit({ type: 'stage', stage: 'starting_python', message: 'Starting Python' });
  logger.stage('Loading Model');
  const bridge = await ctx.startPython(adapter.pythonEnv(ctx.work.path));
  stop.throwIfRequested();

  void events.emit({ type: 'stage', stage: 'training', message: 'Training' });
  logger.stage('Starting Training');
  const limit = config.maxTrainingTimeSeconds;
  const timeLimit = setInterval(() => {
    if (progress.trainingSeconds > limit) stop.request({ kind: 'time_limit', limitSeconds: limit });
  }, 1000);
  timeLimit.unref();
  const tensorboardDir = config.tensorboard ? ctx.work.sub('tensorboard') : undefined;
  if (tensorboardDir) ctx.uploadAtEnd(tensorboardDir, tensorboardKey(config.jobId));
  try {
    const request = {
      config,
      ...inputs,
      outputDir: ctx.work.sub('runs'),
      logFile: ctx.logPath ?? ctx.work.sub('training.log'),
      primaryMetric: primaryMetric(config.taskType),
      trainerArgs: progress.trainerArgs,
      tensorboardDir,
      distributed: distributedPlan(config),
      onStopRequest: (fn: (reason: string) => void) => {
        if (stop.requested) fn(stop.toError().message);
        else stop.onRequest(() => fn(stop.toError().message));
      },
    };
    return await adapter.training.train(bridge, request, progress.onTrainerEvent);
  } finally {
    clearInterval(timeLimit);
  }
}

/** Why training ended early when another node of a distributed training asked it to (undefined otherwise). */
function peerStop(ctx: TrainContext, outcome: TrainOutcome): string | undefined {
  const plan = distributedPlan(ctx.config);
  const node = outcome.stoppedByNode;
  if (!plan || node === null || node === undefined || node === plan.nodeRank) return undefined;
  return `node ${node} of the job was stopped (preempted or asked to stop), so every node stopped with it; retry the job: it resumes from its last checkpoint`;
}

/**
 * best.pt (or the last checkpoint) to storage, once every epoch checkpoint has gone up. With
 * `markBest` (Python is running), the chosen epoch's checkpoint is first stamped with that epoch
 * (its best_epoch / best_metric), so the file agrees with `done`.
 */
async function uploadBest(
  ctx: TrainContext,
  progress: TrainingProgress,
  outcome: TrainOutcome,
  markBest?: (path: string, best: ChosenBest) => Promise<number | null>,
): Promise<TrainResult> {
  const { config, logger } = ctx;
  void ctx.events.emit({ type: 'stage', stage: 'uploading', message: 'Uploading best checkpoint' });
  logger.stage('Training Complete');
  if (!ctx.reports) return nodeDone(progress);
  // The backend's is_best answers decide the best epoch (best.ts): wait for those still out, then
  // upload the weights of the epoch they chose. Without a chosen epoch (no validation, or every
  // epoch refused) the framework's own best, else its last checkpoint, becomes best.pt.
  await progress.settleBest();
  const best = progress.best;
  const finalPath = progress.bestCheckpoint.path ?? outcome.bestPath ?? outcome.lastPath;
  if (!finalPath) throw new VisionTrainerError('Training finished without writing a checkpoint', { exitCode: ExitCode.framework });
  if (markBest && progress.bestCheckpoint.path && best.epoch !== null) {
    const chosen: ChosenBest = { epoch: best.epoch, value: best.value, score: best.score, decidedBy: best.decidedBy };
    // The weights are right either way: a file that could not be stamped still goes up, and the log says so.
    try {
      const before = await markBest(finalPath, chosen);
      if (before !== chosen.epoch)
        logger.info(
          `best.pt holds epoch ${chosen.epoch} (chosen by ${chosen.decidedBy}); its file recorded epoch ${before ?? 'none'} as the best, now ${chosen.epoch}`,
        );
    } catch (err) {
      logger.warn(
        `best.pt (epoch ${chosen.epoch}) could not be stamped with its best epoch; its own best_epoch may name another: ${asVisionTrainerError(err).message}`,
      );
    }
  }
  try {
    progress.checkpointUri = await ctx.storage.uploadFile(finalPath, checkpointKey(config.jobId, 'best.pt'));
  } catch (err) {
    // The trained model exists only here now: the work folder outlives the job.
    ctx.keepWorkDir(`best.pt is not in storage: ${finalPath}`);
    throw err;
  }
  const epoch = best.epoch ?? outcome.bestEpoch ?? progress.lastSaved?.epoch ?? config.epochs;
  void ctx.events.emit({
    type: 'checkpoint',
    epoch,
    uri: progress.checkpointUri,
    isBest: true,
    reason: 'best',
    metrics: { ...best.metrics },
    localPath: finalPath,
  });
  const failedUploads = await progress.drainUploads();
  if (failedUploads > 0) logger.warn(`${failedUploads} intermediate checkpoint upload(s) failed; best.pt was uploaded`);
  return {
    status: 'succeeded',
    exitCode: ExitCode.ok,
    bestEpoch: best.epoch ?? outcome.bestEpoch,
    bestMetricValue: best.value,
    checkpointUri: progress.checkpointUri,
    totalTimeSeconds: progress.jobSeconds,
    bestMetrics: { ...best.metrics },
  };
}

/** A node other than node 0 of a distributed training: it trained; node 0 has the checkpoints and reports. */
function nodeDone(progress: TrainingProgress): TrainResult {
  return {
    status: 'succeeded',
    exitCode: ExitCode.ok,
    bestEpoch: null,
    bestMetricValue: null,
    checkpointUri: null,
    totalTimeSeconds: (Date.now() - progress.started) / 1000,
  };
}

/** A failed run: the error that explains it best, with every checkpoint it can still save. */
async function failed(ctx: TrainContext, progress: TrainingProgress, err: unknown): Promise<TrainResult> {
  const { config, stop } = ctx;
  if (progress.resumedFrom !== undefined && err instanceof PythonError && /RESUME_CHECKPOINT_PATH/.test(err.message)) {
    err = new PythonError(
      err.pythonType,
      `${err.message.replace(/^\w+: /, '').replace(/RESUME_CHECKPOINT_PATH/g, `the checkpoint of epoch ${progress.resumedFrom} that an earlier attempt of this JOB_ID stored`)}`,
      err.traceback,
      {
        exitCode: err.exitCode,
        hint: 'Run the job with RESUME=never to start it over (what it stored is overwritten), or give the new setup a new JOB_ID.',
      },
    );
  }
  if (err instanceof OutOfMemoryError) {
    const smaller = Math.max(1, Math.floor(config.batchSize / 2));
    err = new OutOfMemoryError(
      `${err.message} (BATCH_SIZE=${config.batchSize}, IMAGE_SIZE=${config.imageSize})`,
      `Try BATCH_SIZE=${smaller}${config.batchSize === 1 ? ` and a smaller IMAGE_SIZE than ${config.imageSize}` : ''}; ultralytics already halves the batch by itself during the first epoch, so an out-of-memory error after it needs a smaller configuration.`,
    );
  }
  // A stop explains a framework error (Python interrupted or killed); any other error explains itself.
  const explainedByStop = stop.isForced || (stop.requested && !(err instanceof VisionTrainerError && err.exitCode !== ExitCode.framework));
  // A stop that interrupted Python before it sent its last checkpoint: what the trainer wrote goes up now (until the stop is forced).
  if (stop.requested && !stop.isForced) await progress.saveCheckpoint('stop');
  await progress.drainUploads();
  const error = explainedByStop ? stop.toError(progress.lastCheckpointNote()) : asVisionTrainerError(err);
  ctx.logger.error(error.describe());
  return {
    status: 'failed',
    exitCode: error.exitCode,
    bestEpoch: progress.best.epoch,
    bestMetricValue: progress.best.value,
    // What storage holds, never what was only meant to go there.
    checkpointUri: progress.checkpointUri ?? progress.stored?.uri ?? null,
    totalTimeSeconds: progress.jobSeconds,
    bestMetrics: { ...progress.best.metrics },
    error,
  };
}

/** The last event: what the backend's `done` callback carries. */
function doneEvent(ctx: TrainContext, result: TrainResult): RunEvent {
  const primary = primaryMetric(ctx.config.taskType);
  const finalMetrics: Metrics = {
    best_epoch: result.bestEpoch,
    [`best_${primary}`]: result.bestMetricValue,
    total_time_seconds: Math.round(result.totalTimeSeconds * 10) / 10,
  };
  // The design's final_metrics always name best_loss: null when the best epoch's validation had no loss.
  const bestLoss = result.bestMetrics?.loss;
  finalMetrics.best_loss = typeof bestLoss === 'number' ? bestLoss : null;
  return {
    type: 'done',
    status: result.status,
    bestEpoch: result.bestEpoch,
    primaryMetricName: primary,
    bestMetricValue: result.bestMetricValue,
    checkpointUri: result.checkpointUri,
    totalTimeSeconds: result.totalTimeSeconds,
    finalMetrics,
    errorMessage: result.error ? result.error.describe() : null,
    exitCode: result.exitCode,
  };
}
