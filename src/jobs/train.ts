/**
 * The training job: everything a run does before, around and after the framework's train call.
 * It reports through the run's event stream only; the HTTP callbacks, the CLI output and
 * TypeScript scripts subscribe to that stream.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { adapterFor } from '../../adapters/index.js';
import type { TrainerEvent, TrainerEventOf } from '../../adapters/trainer-events.js';
import { PythonBridge } from '../bridge/python.js';
import type { TrainConfig } from '../config/schema.js';
import { primaryMetric } from '../config/tasks.js';
import { loadDataset } from '../datasets/load.js';
import { resolveSplits } from '../datasets/splits.js';
import { ConfigError, ExitCode, OutOfMemoryError, VisionTrainerError, asVisionTrainerError } from '../errors.js';
import type { Metrics, RunEvent } from '../events.js';
import type { Logger } from '../log.js';
import { defaultPythonBin } from '../paths.js';
import { describeUrl } from '../redact.js';
import { jobUrlPolicy } from '../net/url-guard.js';
import { downloadUrl } from '../storage/download.js';
import { createStorage } from '../storage/index.js';
import type { Storage } from '../storage/types.js';
import type { RunStream } from './run-stream.js';
import type { StopController } from './stop.js';
import { BackgroundUploads } from './uploads.js';
import { createWorkDir } from './workdir.js';

export interface TrainResult {
  status: 'succeeded' | 'failed';
  exitCode: number;
  bestEpoch: number | null;
  bestMetricValue: number | null;
  checkpointUri: string | null;
  totalTimeSeconds: number;
  error?: VisionTrainerError;
}

export interface TrainJobContext {
  stream: RunStream;
  stop: StopController;
  logger: Logger;
}

const MAX_WEIGHTS_BYTES = 4 * 1024 ** 3;

export const checkpointKey = (jobId: string, name: string) => `checkpoints/job-${jobId}/${name}`;
export const trainingLogKey = (jobId: string) => `logs/job-${jobId}/training.log`;

function storageFor(config: TrainConfig): Storage {
  const s = config.storage;
  return createStorage(s.type === 'local' ? { type: 'local', root: s.root, bucket: s.bucket } : s);
}

export async function runTrainingJob(config: TrainConfig, ctx: TrainJobContext): Promise<TrainResult> {
  const { stream, stop, logger } = ctx;
  const started = Date.now();
  const primary = primaryMetric(config.taskType);
  const emit = (event: RunEvent) => stream.emit(event);
  const work = await createWorkDir({ parent: config.workDir, jobId: config.jobId, keep: config.keepWorkDir });
  const logFile = work.sub('training.log');
  logger.teeTo(logFile);
  const storage = storageFor(config);
  const uploads = new BackgroundUploads(storage, work.sub('upload-snapshots'), logger);
  let bridge: PythonBridge | undefined;
  const unforce = stop.onForce(() => void bridge?.close());
  stream.onAsyncError = (err, event) => {
    if (event.type !== 'done') stop.request({ kind: 'handler_error', error: err });
  };

  // What the run has achieved so far, kept in JS (Python is busy training: never poll it).
  const best = { epoch: null as number | null, value: null as number | null, metrics: {} as Metrics };
  let lastSaved: { epoch: number; path: string } | undefined;
  let lastUploadedEpoch: number | undefined;
  let checkpointUri: string | null = null;
  let result: TrainResult;

  try {
    logger.info(`vision-trainer train: job ${config.jobId}, ${config.framework} ${config.modelName}, task ${config.taskType}`, { work_dir: work.path, storage: storage.describe() });
    const adapter = adapterFor(config.framework).training;

    // 1. Dataset
    void emit({ type: 'stage', stage: 'downloading_dataset', message: 'Downloading dataset' });
    logger.stage('Downloading Dataset');
    let datasetRoot: string;
    if (config.storage.type === 'local' && config.storage.datasetPath) {
      datasetRoot = config.storage.datasetPath;
      void emit({ type: 'milestone', name: 'dataset_downloaded', message: `Using local dataset ${datasetRoot}`, data: { source: 'local' } });
    } else {
      const d = await storage.downloadDataset(config.datasetId, work.sub('dataset'), config.snapshotId ? { snapshotId: config.snapshotId } : {});
      datasetRoot = d.root;
      void emit({ type: 'milestone', name: 'dataset_downloaded', message: 'Dataset downloaded successfully', data: { source: d.source, files: d.files, bytes: d.bytes, ...(d.snapshotKey ? { snapshot: d.snapshotKey } : {}) } });
    }
    stop.throwIfRequested();

    void emit({ type: 'stage', stage: 'preparing_dataset', message: 'Validating and converting dataset' });
    logger.stage('Preparing Dataset');
    const dataset = await loadDataset(datasetRoot, { taskType: config.taskType });
    const splits = resolveSplits(dataset, config.splitStrategy);
    const prepared = await adapter.prepareDataset(dataset, splits, work.sub('data'));
    void emit({
      type: 'milestone',
      name: 'dataset_prepared',
      message: `Dataset ready: ${dataset.images.length} images, ${dataset.classes.length} classes (${splits.description})`,
      data: { images: dataset.images.length, classes: prepared.classNames, splits: prepared.counts, split_source: splits.description },
    });
    stop.throwIfRequested();

    // 2. Pretrained weights
    let weightsPath: string | undefined;
    if (config.pretrainedWeightUrl) {
      void emit({ type: 'stage', stage: 'downloading_weights', message: 'Downloading pretrained weights' });
      logger.stage('Downloading Pretrained Weight');
      const ext = /\.(pt|pth|safetensors|bin|zip)(?:$|\?)/i.exec(new URL(config.pretrainedWeightUrl).pathname)?.[1] ?? 'pt';
      weightsPath = join(work.sub('weights'), `${config.modelName}.${ext.toLowerCase()}`);
      const d = await downloadUrl(config.pretrainedWeightUrl, weightsPath, { maxBytes: MAX_WEIGHTS_BYTES, policy: jobUrlPolicy(config) });
      void emit({ type: 'milestone', name: 'weights_downloaded', message: `Pretrained weights downloaded from ${describeUrl(config.pretrainedWeightUrl)}`, data: { bytes: d.bytes } });
    }
    stop.throwIfRequested();

    // Resume: the checkpoint of a preempted run (ours: same key layout, same storage).
    let resumeFrom: string | undefined;
    if (config.resumeCheckpointPath) {
      void emit({ type: 'stage', stage: 'downloading_checkpoint', message: 'Downloading the checkpoint to resume from' });
      const resumeProblem = (message: string) =>
        new ConfigError([{ variable: 'RESUME_CHECKPOINT_PATH', value: config.resumeCheckpointPath, message }], 'train');
      let key: string;
      try {
        key = storage.parseUri(config.resumeCheckpointPath);
      } catch (err) {
        throw resumeProblem(asVisionTrainerError(err).message);
      }
      if (!(await storage.exists(key))) throw resumeProblem(`does not exist in ${storage.describe()}; point it at a checkpoint this platform uploaded, e.g. checkpoints/job-{JOB_ID}/epoch-5.pt`);
      resumeFrom = join(work.sub('resume'), 'resume.pt');
      await storage.downloadFile(key, resumeFrom);
    }
    stop.throwIfRequested();

    // 3. Train through the bridge
    void emit({ type: 'stage', stage: 'starting_python', message: 'Starting Python' });
    logger.stage('Loading Model');
    bridge = await PythonBridge.open({ pythonBin: config.pythonBin ?? defaultPythonBin(), env: adapter.pythonEnv(work.path), logger });
    stop.throwIfRequested();

    void emit({ type: 'stage', stage: 'training', message: 'Training' });
    logger.stage('Starting Training');
    let trainStart = Date.now();
    let totalBatches = 0;
    let batchesDone = 0;
    const timeLimit = setInterval(() => {
      if ((Date.now() - trainStart) / 1000 > config.maxTrainingTimeSeconds) stop.request({ kind: 'time_limit', limitSeconds: config.maxTrainingTimeSeconds });
    }, 1000);
    timeLimit.unref();

    const uploadCheckpoint = async (path: string, epoch: number, isBest: boolean, reason: 'periodic' | 'stop') => {
      lastUploadedEpoch = epoch;
      await uploads.enqueue(path, checkpointKey(config.jobId, `epoch-${epoch}.pt`), (uri) => {
        void emit({ type: 'checkpoint', epoch, uri, isBest, reason, metrics: { ...best.metrics } });
      });
    };

    const handlers: { [K in TrainerEvent['kind']]: (e: TrainerEventOf<K>) => Promise<void> | void } = {
      start: (e) => {
        trainStart = Date.now();
        totalBatches = e.batches_per_epoch * (e.epochs - e.start_epoch);
        void emit({ type: 'start', epochs: e.epochs, startEpoch: e.start_epoch, batchesPerEpoch: e.batches_per_epoch, device: e.device });
        void emit({ type: 'milestone', name: 'training_started', message: `Training ${e.epochs} epochs on ${e.device}`, data: { epochs: e.epochs, device: e.device } });
      },
      batch: (e) => {
        batchesDone++;
        const elapsed = (Date.now() - trainStart) / 1000;
        const eta = batchesDone > 0 && totalBatches > 0 ? (elapsed / batchesDone) * Math.max(0, totalBatches - batchesDone) : null;
        void emit({ type: 'batch', epoch: e.epoch, epochs: e.epochs, batch: e.batch, batches: e.batches, losses: e.losses, elapsedSeconds: elapsed, etaSeconds: eta });
      },
      checkpoint: async (e) => {
        lastSaved = { epoch: e.epoch, path: e.last_path };
        if (e.epoch % config.checkpointFrequency === 0 || stop.requested) await uploadCheckpoint(e.last_path, e.epoch, e.is_best, stop.requested ? 'stop' : 'periodic');
      },
      epoch: (e) => {
        const v = e.validation;
        if (e.is_best && v) {
          best.epoch = e.epoch;
          best.value = v.primary_metric_value;
          best.metrics = { ...v.metrics };
        }
        void emit({
          type: 'epoch',
          epoch: e.epoch,
          epochs: e.epochs,
          progress: Math.min(100, (e.epoch / e.epochs) * 100),
          losses: e.losses,
          learningRate: e.learning_rate,
          metrics: e.metrics,
          isBest: e.is_best,
          epochTimeSeconds: e.epoch_time_seconds ?? null,
        });
        if (v) {
          void emit({
            type: 'validation',
            epoch: e.epoch,
            primaryMetricName: v.primary_metric_name,
            primaryMetricValue: v.primary_metric_value,
            metrics: v.metrics,
            perClassMetrics: v.per_class_metrics as never,
            confusionMatrix: v.confusion_matrix ?? null,
            prCurves: v.pr_curves ?? null,
            numImagesValidated: v.num_images_validated,
            validationTimeSeconds: v.validation_time_seconds,
          });
        }
      },
      end: () => {},
    };

    // Python waits while this runs. An exception here (ours or a subscriber's) must not cross
    // into Python as a JavaScriptError mid-batch: it becomes a stop request and fails the run.
    const onEvent = (event: TrainerEvent): 'stop' | undefined => {
      try {
        const r = (handlers[event.kind] as (e: TrainerEvent) => Promise<void> | void)(event);
        if (r) r.catch((err: unknown) => stop.request({ kind: 'handler_error', error: err }));
      } catch (err) {
        stop.request({ kind: 'handler_error', error: err });
      }
      return stop.requested ? 'stop' : undefined;
    };

    let outcome;
    try {
      outcome = await adapter.train(
        bridge,
        { config, data: prepared, outputDir: work.sub('runs'), ...(weightsPath ? { weightsPath } : {}), ...(resumeFrom ? { resumeFrom } : {}), logFile, primaryMetric: primary },
        onEvent,
      );
    } finally {
      clearInterval(timeLimit);
    }

    // 4. Stopped (signal, time limit, failing handler): the last checkpoint goes up, then the run fails.
    if (stop.requested) {
      if (lastSaved && lastUploadedEpoch !== lastSaved.epoch) await uploadCheckpoint(lastSaved.path, lastSaved.epoch, false, 'stop');
      await uploads.drain();
      throw stop.toError(lastSaved ? `; last checkpoint: epoch ${lastSaved.epoch} uploaded to ${storage.uri(checkpointKey(config.jobId, `epoch-${lastSaved.epoch}.pt`))}` : '');
    }

    // 5. Final checkpoint
    void emit({ type: 'stage', stage: 'uploading', message: 'Uploading best checkpoint' });
    logger.stage('Training Complete');
    const finalPath = outcome.bestPath ?? outcome.lastPath;
    if (!finalPath) throw new VisionTrainerError('Training finished without writing a checkpoint', { exitCode: ExitCode.framework });
    checkpointUri = await storage.uploadFile(finalPath, checkpointKey(config.jobId, 'best.pt'));
    void emit({ type: 'checkpoint', epoch: best.epoch ?? outcome.bestEpoch ?? lastSaved?.epoch ?? config.epochs, uri: checkpointUri, isBest: true, reason: 'best', metrics: { ...best.metrics } });
    const { failed } = await uploads.drain();
    if (failed > 0) logger.warn(`${failed} intermediate checkpoint upload(s) failed; best.pt was uploaded`);

    result = {
      status: 'succeeded',
      exitCode: ExitCode.ok,
      bestEpoch: best.epoch ?? outcome.bestEpoch,
      bestMetricValue: best.value,
      checkpointUri,
      totalTimeSeconds: (Date.now() - started) / 1000,
    };
  } catch (err) {
    if (err instanceof OutOfMemoryError) {
      const smaller = Math.max(1, Math.floor(config.batchSize / 2));
      err = new OutOfMemoryError(
        `${err.message} (BATCH_SIZE=${config.batchSize}, IMAGE_SIZE=${config.imageSize})`,
        `Try BATCH_SIZE=${smaller}${config.batchSize === 1 ? ` and a smaller IMAGE_SIZE than ${config.imageSize}` : ''}; ultralytics already halves the batch by itself during the first epoch, so an out-of-memory error after it needs a smaller configuration.`,
      );
    }
    const error = stop.isForced || (stop.requested && !(err instanceof VisionTrainerError && err.exitCode !== ExitCode.framework)) ? stop.toError() : asVisionTrainerError(err);
    if (stop.requested && lastSaved && lastUploadedEpoch !== lastSaved.epoch) {
      // A forced stop may leave last.pt unsent: try once more, the run is failing anyway.
      await uploads.enqueue(lastSaved.path, checkpointKey(config.jobId, `epoch-${lastSaved.epoch}.pt`), () => {}).catch(() => {});
    }
    await uploads.drain();
    logger.error(error.describe());
    result = {
      status: 'failed',
      exitCode: error.exitCode,
      bestEpoch: best.epoch,
      bestMetricValue: best.value,
      checkpointUri,
      totalTimeSeconds: (Date.now() - started) / 1000,
      error,
    };
  } finally {
    unforce();
    await bridge?.close();
  }

  // 6. Log, then the one callback that must arrive.
  logger.untee(logFile);
  try {
    await storage.uploadFile(logFile, trainingLogKey(config.jobId), { contentType: 'text/plain' });
  } catch (err) {
    logger.warn(`training log upload failed: ${asVisionTrainerError(err).message}`);
  }
  const finalMetrics: Metrics = {
    best_epoch: result.bestEpoch,
    [`best_${primary}`]: result.bestMetricValue,
    total_time_seconds: Math.round(result.totalTimeSeconds * 10) / 10,
  };
  if (typeof best.metrics.loss === 'number') finalMetrics.best_loss = best.metrics.loss;
  try {
    await emit({
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
    });
  } catch (err) {
    const e = asVisionTrainerError(err);
    logger.error(`completion could not be delivered: ${e.message}`);
    // The work may have succeeded, but the backend does not know: the process must fail.
    result = { ...result, exitCode: result.status === 'succeeded' ? e.exitCode : result.exitCode, error: result.error ?? e };
  }
  await work.cleanup();
  return result;
}
