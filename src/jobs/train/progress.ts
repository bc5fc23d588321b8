/**
 * What a training run has achieved so far, kept in TypeScript (Python is busy training: it is
 * never polled), and the translation of the trainer's events into the run's events. Checkpoints
 * and each epoch's per-image validation results go to storage from here, in the background, as
 * the trainer writes them; which epoch is the best is decided here too (best.ts).
 */
import type { TrainConfig } from '../../config/schema.js';
import { asVisionTrainerError } from '../../errors.js';
import type { JsonValue, RunEvent, RunEventOf } from '../../events.js';
import type { TrainerAnswer, TrainerEvent, TrainerEventOf } from '../../frameworks/protocol.js';
import type { Storage } from '../../storage/types.js';
import type { JobContext } from '../context.js';
import { ANSWER_WAIT_MS, BestCheckpoint, type BestState } from './best.js';
import { BackgroundUploads } from './uploads.js';
import { answeredIsBest } from './validation-results.js';

export const checkpointKey = (jobId: string, name: string) => `checkpoints/job-${jobId}/${name}`;
export const plotsKey = (jobId: string) => `logs/job-${jobId}/plots`;
export const epochCheckpointKey = (jobId: string, epoch: number) => checkpointKey(jobId, `epoch-${epoch}.pt`);
/** The design's key of an epoch's per-image validation results. */
export const validationImagesKey = (jobId: string, epoch: number) => `validation-results/job-${jobId}/epoch-${epoch}/images.json`;

export class TrainingProgress {
  readonly started = Date.now();
  /** The best epoch and its weights (best.ts): the backend's is_best answers, else the score. */
  readonly bestCheckpoint: BestCheckpoint;
  /** The newest checkpoint the trainer wrote, and the newest epoch sent to storage. */
  lastSaved: { epoch: number; path: string } | undefined;
  lastUploadedEpoch: number | undefined;
  checkpointUri: string | null = null;
  /** TRAINER_ARGS as the framework resolved them, sent with training_started. */
  trainerArgs: Record<string, JsonValue> = {};
  private trainStart = Date.now();
  private totalBatches = 0;
  private batchesDone = 0;
  private readonly uploads: BackgroundUploads;
  private readonly config: TrainConfig;
  private readonly storage: Storage;
  /** Validations on their way to the backend (their images.json upload, then the callback). */
  private readonly reporting = new Set<Promise<unknown>>();

  constructor(private readonly ctx: JobContext<'train', RunEvent>) {
    this.config = ctx.config;
    this.storage = ctx.storage;
    this.uploads = new BackgroundUploads(ctx.storage, ctx.work.sub('upload-snapshots'), ctx.logger);
    this.bestCheckpoint = new BestCheckpoint(ctx.work.sub('best'), ctx.logger, (state, decision) =>
      this.emit({ type: 'best', epoch: decision.epoch, value: state.value, metrics: { ...state.metrics }, decidedBy: decision.decidedBy }),
    );
  }

  /** The best so far: epoch, primary metric value, that epoch's metrics. */
  get best(): Readonly<BestState> {
    return this.bestCheckpoint.current;
  }

  private emit(event: RunEvent): void {
    void this.ctx.events.emit(event);
  }

  /** Seconds since training started (Python's `start` event). */
  get trainingSeconds(): number {
    return (Date.now() - this.trainStart) / 1000;
  }

  /**
   * The handler Python calls for every trainer event. Python waits while it runs. An exception
   * here (ours or a subscriber's) must not cross into Python as a JavaScriptError mid-batch: it
   * becomes a stop request and fails the run.
   */
  readonly onTrainerEvent = (event: TrainerEvent): TrainerAnswer => {
    const stop = this.ctx.stop;
    try {
      const handler = this.handlers[event.kind] as (e: TrainerEvent) => Promise<void> | void;
      const pending = handler(event);
      if (pending) pending.catch((err: unknown) => stop.request({ kind: 'handler_error', error: err }));
    } catch (err) {
      stop.request({ kind: 'handler_error', error: err });
    }
    return stop.requested ? 'stop' : undefined;
  };

  private readonly handlers: { [K in TrainerEvent['kind']]: (e: TrainerEventOf<K>) => Promise<void> | void } = {
    start: (e) => {
      this.trainStart = Date.now();
      // A resumed run whose checkpoint was its best continues with that best (weights included).
      if (e.best) this.bestCheckpoint.restore({ epoch: e.best.epoch, value: e.best.value, score: e.best.value, metrics: {}, decidedBy: 'score' }, e.best.path);
      this.totalBatches = e.batches_per_epoch * (e.epochs - e.start_epoch);
      this.emit({
        type: 'start',
        epochs: e.epochs,
        startEpoch: e.start_epoch,
        batchesPerEpoch: e.batches_per_epoch,
        device: e.device,
        ...(e.settings ? { settings: e.settings } : {}),
      });
      this.emit({
        type: 'milestone',
        name: 'training_started',
        message: `Training ${e.epochs} epochs on ${e.device}`,
        data: { epochs: e.epochs, device: e.device, trainer_args: this.trainerArgs, seed: this.config.seed ?? null },
      });
      // The framework's own result plots (ultralytics: results.png, confusion matrix, PR curves), its per-epoch table and the arguments it ran with.
      if (e.save_dir) this.ctx.uploadAtEnd(e.save_dir, plotsKey(this.config.jobId), (file) => /^[^/]+\.(png|jpe?g)$|^results\.csv$|^args\.yaml$/.test(file));
    },
    batch: (e) => {
      this.batchesDone++;
      const elapsed = this.trainingSeconds;
      const left = Math.max(0, this.totalBatches - this.batchesDone);
      const eta = this.batchesDone > 0 && this.totalBatches > 0 ? (elapsed / this.batchesDone) * left : null;
      this.emit({
        type: 'batch',
        epoch: e.epoch,
        epochs: e.epochs,
        batch: e.batch,
        batches: e.batches,
        losses: e.losses,
        elapsedSeconds: elapsed,
        etaSeconds: eta,
      });
    },
    checkpoint: async (e) => {
      this.lastSaved = { epoch: e.epoch, path: e.last_path };
      const stopping = this.ctx.stop.requested;
      if (e.epoch % this.config.checkpointFrequency === 0 || stopping) await this.uploadCheckpoint(e.last_path, e.epoch, stopping ? 'stop' : 'periodic');
    },
    epoch: (e) => {
      const v = e.validation;
      this.emit({
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
      if (!v) return;
      const answer = this.track(this.reportValidation(e.epoch, v));
      const saved = this.lastSaved?.epoch === e.epoch ? this.lastSaved : undefined;
      if (saved) {
        const candidate = {
          epoch: e.epoch,
          value: v.primary_metric_value,
          score: e.fitness ?? v.primary_metric_value,
          metrics: { ...v.metrics },
          checkpointPath: saved.path,
        };
        void this.bestCheckpoint.consider(candidate, answer);
      }
    },
    end: () => {},
  };

  /**
   * The epoch's images.json to storage, then the validation event with its URI; resolves with
   * the answer a subscriber gave (the HTTP reporter: the backend's is_best), or undefined.
   */
  private async reportValidation(epoch: number, v: NonNullable<TrainerEventOf<'epoch'>['validation']>): Promise<boolean | undefined> {
    let imageResultsUri: string | null = null;
    if (v.image_results_file) {
      try {
        imageResultsUri = await this.storage.uploadFile(v.image_results_file, validationImagesKey(this.config.jobId, epoch), {
          contentType: 'application/json',
        });
      } catch (err) {
        this.ctx.logger.warn(
          `Per-image validation results of epoch ${epoch} were not uploaded; the validation callback goes without them: ${asVisionTrainerError(err).message}`,
        );
      }
    }
    const event: RunEventOf<'validation'> = {
      type: 'validation',
      epoch,
      primaryMetricName: v.primary_metric_name,
      primaryMetricValue: v.primary_metric_value,
      metrics: v.metrics,
      perClassMetrics: v.per_class_metrics,
      confusionMatrix: v.confusion_matrix ?? null,
      confusionMatrixClassIds: v.confusion_matrix_class_ids ?? null,
      prCurves: v.pr_curves ?? null,
      imageResultsUri,
      numImagesValidated: v.num_images_validated,
      validationTimeSeconds: v.validation_time_seconds,
    };
    const answers = await this.ctx.events.emit(event).catch(() => []);
    return answeredIsBest(answers);
  }

  private track<T>(work: Promise<T>): Promise<T> {
    this.reporting.add(work);
    void work.finally(() => this.reporting.delete(work)).catch(() => {});
    return work;
  }

  /**
   * Waits for the validations still being reported and for the best epoch's decision (answers
   * not in after `answerWaitMs` count as none: the score decides).
   */
  async settleBest(answerWaitMs: number = ANSWER_WAIT_MS): Promise<void> {
    const deadline = Date.now() + answerWaitMs;
    let timer: NodeJS.Timeout | undefined;
    const reported = (async () => {
      while (this.reporting.size > 0) await Promise.allSettled([...this.reporting]);
    })();
    // A backend that never answers holds the end of training for answerWaitMs at most.
    await Promise.race([reported, new Promise<void>((resolve) => (timer = setTimeout(resolve, answerWaitMs)))]);
    clearTimeout(timer);
    await this.bestCheckpoint.settle(Math.max(0, deadline - Date.now()));
  }

  /** Snapshots the checkpoint now and uploads it in the background as epoch-N.pt. */
  async uploadCheckpoint(path: string, epoch: number, reason: 'periodic' | 'stop'): Promise<void> {
    this.lastUploadedEpoch = epoch;
    await this.uploads.enqueue(path, epochCheckpointKey(this.config.jobId, epoch), (uri) => {
      // Whether this epoch is the best is known once its validation is answered (best.ts).
      const decision = this.bestCheckpoint.decisionFor(epoch);
      const report = (isBest: boolean) =>
        this.emit({ type: 'checkpoint', epoch, uri, isBest, reason, metrics: { ...this.best.metrics }, bestEpoch: this.best.epoch });
      if (!decision) return report(this.best.epoch === epoch);
      return decision.then((d) => report(d.isBest));
    });
  }

  /** A stopped run's last checkpoint, when the trainer wrote one that has not gone up yet. */
  async uploadLastCheckpoint(): Promise<void> {
    const last = this.lastSaved;
    if (last && this.lastUploadedEpoch !== last.epoch) await this.uploadCheckpoint(last.path, last.epoch, 'stop');
  }

  /** A forced stop may leave the last checkpoint unsent: one more try, the run is failing anyway. */
  async retryLastCheckpoint(): Promise<void> {
    const last = this.lastSaved;
    if (!last || this.lastUploadedEpoch === last.epoch) return;
    await this.uploads.enqueue(last.path, epochCheckpointKey(this.config.jobId, last.epoch), () => {}).catch(() => {});
  }

  /** Where the last checkpoint went, for the message a stopped run ends with. */
  lastCheckpointNote(): string {
    return this.lastSaved
      ? `; last checkpoint: epoch ${this.lastSaved.epoch} uploaded to ${this.storage.uri(epochCheckpointKey(this.config.jobId, this.lastSaved.epoch))}`
      : '';
  }

  /** Waits for every background upload; returns how many failed. */
  async drainUploads(): Promise<number> {
    return (await this.uploads.drain()).failed;
  }
}
