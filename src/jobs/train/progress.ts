/**
 * What a training run has achieved so far, kept in TypeScript (Python is busy training: it is
 * never polled), and the translation of the trainer's events into the run's events. Checkpoints
 * and each epoch's per-image validation results go to storage from here, in the background, as
 * the trainer writes them; which epoch is the best is decided here too (best.ts).
 *
 * Two records are kept apart: what the trainer saved (`lastSaved`) and what storage confirmed
 * (`stored`). Only the second is ever reported as uploaded: the `checkpoint_saved` event, the
 * checkpoint_path of a stopped or failed run, the resume state (resume.ts). At every checkpoint
 * upload the best epoch's weights go to storage too when they are not there yet, so a retried
 * job continues with the true best of the job.
 */
import type { TrainConfig } from '../../config/schema.js';
import { asVisionTrainerError } from '../../errors.js';
import type { JsonValue, RunEvent, RunEventOf } from '../../events.js';
import type { TrainerAnswer, TrainerEvent, TrainerEventOf } from '../../frameworks/protocol.js';
import type { Storage } from '../../storage/types.js';
import type { JobContext } from '../context.js';
import { ANSWER_WAIT_MS, BestCheckpoint, type BestState } from './best.js';
import { type ResumePoint, type StoredBest, TrainingStateWriter } from './resume.js';
import { BackgroundUploads } from './uploads.js';
import { answeredIsBest } from './validation-results.js';

export const checkpointKey = (jobId: string, name: string) => `checkpoints/job-${jobId}/${name}`;
export const plotsKey = (jobId: string) => `logs/job-${jobId}/plots`;
export const epochCheckpointKey = (jobId: string, epoch: number) => checkpointKey(jobId, `epoch-${epoch}.pt`);
/** The design's key of an epoch's per-image validation results. */
export const validationImagesKey = (jobId: string, epoch: number) => `validation-results/job-${jobId}/epoch-${epoch}/images.json`;

type Reason = 'periodic' | 'stop' | 'best';

export class TrainingProgress {
  readonly started = Date.now();
  /** The best epoch and its weights (best.ts): the backend's is_best answers, else the score. */
  readonly bestCheckpoint: BestCheckpoint;
  /** The newest checkpoint the trainer wrote; `replaced`: the trainer never writes into that file, it replaces it. */
  lastSaved: { epoch: number; path: string; replaced: boolean } | undefined;
  /** The newest checkpoint storage confirmed (this attempt's or an earlier one's). */
  stored: { epoch: number; uri: string } | undefined;
  /** The URI of best.pt once it is stored. */
  checkpointUri: string | null = null;
  /** TRAINER_ARGS as the framework resolved them, sent with training_started. */
  trainerArgs: Record<string, JsonValue> = {};
  /** The epoch of the earlier attempt's checkpoint this attempt continues. */
  resumedFrom: number | undefined;
  /** The best of the earlier attempts (its metrics go with it when Python hands the best back). */
  private earlierBest: StoredBest | undefined;
  /** Seconds the earlier attempts of this job ran. */
  private earlierSeconds = 0;
  private trainStart = Date.now();
  private training = false;
  private totalBatches = 0;
  private batchesDone = 0;
  /** Epochs whose checkpoint is queued or stored, so none goes up twice. */
  private readonly sent = new Set<number>();
  /** Checkpoints whose upload finally failed: epoch → the local file kept in the work folder. */
  private readonly unsent = new Map<number, string>();
  private readonly uploads: BackgroundUploads;
  readonly state: TrainingStateWriter;
  private readonly config: TrainConfig;
  private readonly storage: Storage;
  /** Validations on their way to the backend (their images.json upload, then the callback). */
  private readonly reporting = new Set<Promise<unknown>>();

  constructor(private readonly ctx: JobContext<'train', RunEvent>) {
    this.config = ctx.config;
    this.storage = ctx.storage;
    this.uploads = new BackgroundUploads(ctx.storage, ctx.work.sub('upload-snapshots'));
    this.state = new TrainingStateWriter(
      ctx.storage,
      ctx.config.jobId,
      ctx.config.epochs,
      () => this.jobSeconds,
      (m) => ctx.logger.warn(m),
    );
    this.bestCheckpoint = new BestCheckpoint(ctx.work.sub('best'), ctx.logger, (state, decision) => {
      this.emit({ type: 'best', epoch: decision.epoch, value: state.value, metrics: { ...state.metrics }, decidedBy: decision.decidedBy });
      // Its checkpoint may be in storage already: a retry then starts from this best.
      if (this.state.has(decision.epoch)) this.recordStoredBest(decision.epoch);
    });
  }

  /** This attempt continues an earlier one: what it stored, its best epoch and its time count. */
  continueFrom(earlier: ResumePoint): void {
    this.earlierSeconds = earlier.seconds;
    this.resumedFrom = earlier.latest.epoch;
    this.earlierBest = earlier.best;
    this.state.continueFrom(earlier);
    this.stored = { epoch: earlier.latest.epoch, uri: this.storage.uri(earlier.latest.key) };
    // A stop's checkpoint of an epoch cut short is not that epoch's: this attempt trains the
    // epoch again and uploads its checkpoint over it.
    if (earlier.latest.complete) this.sent.add(earlier.latest.epoch);
    if (earlier.best) this.sent.add(earlier.best.epoch);
  }

  /** The earlier attempts' best, with its weights at `path`, as this attempt's best so far. */
  restoreEarlierBest(path: string): void {
    const best = this.earlierBest;
    if (best)
      this.bestCheckpoint.restore(
        { epoch: best.epoch, value: best.value, score: best.score ?? best.value, metrics: { ...best.metrics }, decidedBy: 'score' },
        path,
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
    return this.training ? (Date.now() - this.trainStart) / 1000 : 0;
  }

  /** Seconds of the whole job: the earlier attempts' and this one's. */
  get jobSeconds(): number {
    return this.earlierSeconds + (Date.now() - this.started) / 1000;
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
      this.training = true;
      // A resumed run continues with its best so far (weights included): the earlier attempts'
      // best that Python put in place, or the checkpoint it resumed from when that was the best.
      if (e.best) {
        const earlier = this.earlierBest?.epoch === e.best.epoch ? this.earlierBest : undefined;
        this.bestCheckpoint.restore(
          { epoch: e.best.epoch, value: e.best.value, score: earlier?.score ?? e.best.value, metrics: { ...(earlier?.metrics ?? {}) }, decidedBy: 'score' },
          e.best.path,
        );
      }
      this.totalBatches = e.batches_per_epoch * (e.epochs - e.start_epoch);
      this.emit({
        type: 'start',
        epochs: e.epochs,
        startEpoch: e.start_epoch,
        batchesPerEpoch: e.batches_per_epoch,
        device: e.device,
        ...(e.settings ? { settings: e.settings } : {}),
      });
      const what = e.start_epoch > 0 ? `epochs ${e.start_epoch + 1}-${e.epochs} of ${e.epochs}` : `${e.epochs} epochs`;
      this.emit({
        type: 'milestone',
        name: 'training_started',
        message: `Training ${what} on ${e.device}`,
        data: { epochs: e.epochs, start_epoch: e.start_epoch, device: e.device, trainer_args: this.trainerArgs, seed: this.config.seed ?? null },
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
      this.lastSaved = { epoch: e.epoch, path: e.last_path, replaced: e.last_replaced === true };
      const stopping = this.ctx.stop.requested || e.stopping === true;
      if (e.epoch % this.config.checkpointFrequency === 0 || stopping) await this.saveCheckpoint(stopping ? 'stop' : 'periodic');
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
      this.ctx.uploadLog();
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
          replaced: saved.replaced,
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

  /**
   * The trainer's newest checkpoint as epoch-N.pt, and the best epoch's weights when storage
   * does not have them yet. Both are snapshotted now and uploaded in the background.
   */
  async saveCheckpoint(reason: 'periodic' | 'stop'): Promise<void> {
    const last = this.lastSaved;
    if (!last || this.sent.has(last.epoch)) return;
    // Both are queued before the first await, so a drain that follows waits for both.
    const queued = [this.upload(last.path, last.epoch, reason, { complete: reason === 'periodic', replaced: last.replaced })];
    const bestPath = this.bestCheckpoint.path;
    const bestEpoch = this.best.epoch;
    if (bestPath && bestEpoch !== null && bestEpoch !== last.epoch && !this.sent.has(bestEpoch)) {
      // best.ts replaces its copy when a later epoch wins: a copy gone before the snapshot only costs this extra upload.
      queued.push(
        // best.ts's own file, which only mark_best rewrites, by replacing it: linked.
        this.upload(bestPath, bestEpoch, 'best', { complete: true, replaced: true }).catch((err: unknown) => {
          this.sent.delete(bestEpoch);
          this.ctx.logger.warn(`The best epoch's weights (epoch ${bestEpoch}) were not snapshotted for upload: ${asVisionTrainerError(err).message}`);
        }),
      );
    }
    await Promise.all(queued);
  }

  private upload(path: string, epoch: number, reason: Reason, { complete, replaced }: { complete: boolean; replaced: boolean }): Promise<void> {
    this.sent.add(epoch);
    const key = epochCheckpointKey(this.config.jobId, epoch);
    return this.uploads.enqueue({ path, replaced }, key, {
      uploaded: (uri) => {
        if (this.stored === undefined || epoch >= this.stored.epoch) this.stored = { epoch, uri };
        this.state.stored(epoch, complete);
        if (epoch === this.best.epoch) this.recordStoredBest(epoch);
        else void this.state.write();
        // Whether this epoch is the best is known once its validation is answered (best.ts).
        const report = (isBest: boolean) =>
          this.emit({
            type: 'checkpoint',
            epoch,
            uri,
            isBest,
            reason: reason === 'best' ? 'periodic' : reason,
            metrics: { ...this.best.metrics },
            bestEpoch: this.best.epoch,
          });
        const decision = this.bestCheckpoint.decisionFor(epoch);
        if (!decision) return report(this.best.epoch === epoch);
        void decision.then((d) => report(d.isBest));
      },
      failed: (error, localPath) => {
        this.sent.delete(epoch);
        this.unsent.set(epoch, localPath);
        this.ctx.keepWorkDir(`the checkpoint of epoch ${epoch} is not in storage: ${localPath}`);
        this.ctx.logger.error(`Checkpoint of epoch ${epoch} could not be uploaded to ${this.storage.uri(key)}; it is kept at ${localPath}: ${error.message}`);
        this.emit({
          type: 'milestone',
          name: 'checkpoint_upload_failed',
          message: `The checkpoint of epoch ${epoch} could not be uploaded; training goes on and the file is kept`,
          data: { epoch, checkpoint_path: this.storage.uri(key), local_path: localPath, error: error.message },
        });
      },
    });
  }

  private recordStoredBest(epoch: number): void {
    this.state.storedBest(epoch, this.best.value, this.best.score, this.best.metrics);
    void this.state.write();
  }

  /** Where the last stored checkpoint is, for the message a stopped or failed run ends with. */
  lastCheckpointNote(): string {
    const stored = this.stored ? `; last checkpoint in storage: epoch ${this.stored.epoch} at ${this.stored.uri}` : '; no checkpoint reached storage';
    const newest = Math.max(...this.unsent.keys());
    const kept = this.unsent.get(newest);
    const newer = kept && newest > (this.stored?.epoch ?? -1) ? ` (epoch ${newest} is only in the kept work folder: ${kept})` : '';
    return stored + newer;
  }

  /** Waits for every background upload and state write; returns how many uploads failed. */
  async drainUploads(): Promise<number> {
    const { failed } = await this.uploads.drain();
    await this.state.settled();
    return failed;
  }
}
