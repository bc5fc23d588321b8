/**
 * What a training run has achieved so far, kept in TypeScript (Python is busy training: it is
 * never polled), and the translation of the trainer's events into the run's events. Checkpoints
 * go to storage from here, in the background, as the trainer writes them.
 */
import type { TrainConfig } from '../../config/schema.js';
import type { Metrics, RunEvent } from '../../events.js';
import type { TrainerAnswer, TrainerEvent, TrainerEventOf } from '../../frameworks/protocol.js';
import type { Storage } from '../../storage/types.js';
import type { JobContext } from '../context.js';
import { BackgroundUploads } from './uploads.js';

export const checkpointKey = (jobId: string, name: string) => `checkpoints/job-${jobId}/${name}`;
export const epochCheckpointKey = (jobId: string, epoch: number) => checkpointKey(jobId, `epoch-${epoch}.pt`);

export class TrainingProgress {
  readonly started = Date.now();
  readonly best = { epoch: null as number | null, value: null as number | null, metrics: {} as Metrics };
  /** The newest checkpoint the trainer wrote, and the newest epoch sent to storage. */
  lastSaved: { epoch: number; path: string } | undefined;
  lastUploadedEpoch: number | undefined;
  checkpointUri: string | null = null;
  private trainStart = Date.now();
  private totalBatches = 0;
  private batchesDone = 0;
  private readonly uploads: BackgroundUploads;
  private readonly config: TrainConfig;
  private readonly storage: Storage;

  constructor(private readonly ctx: JobContext<'train', RunEvent>) {
    this.config = ctx.config;
    this.storage = ctx.storage;
    this.uploads = new BackgroundUploads(ctx.storage, ctx.work.sub('upload-snapshots'), ctx.logger);
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
      this.totalBatches = e.batches_per_epoch * (e.epochs - e.start_epoch);
      this.emit({ type: 'start', epochs: e.epochs, startEpoch: e.start_epoch, batchesPerEpoch: e.batches_per_epoch, device: e.device });
      this.emit({
        type: 'milestone',
        name: 'training_started',
        message: `Training ${e.epochs} epochs on ${e.device}`,
        data: { epochs: e.epochs, device: e.device },
      });
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
      if (e.epoch % this.config.checkpointFrequency === 0 || stopping)
        await this.uploadCheckpoint(e.last_path, e.epoch, e.is_best, stopping ? 'stop' : 'periodic');
    },
    epoch: (e) => {
      const v = e.validation;
      if (e.is_best && v) {
        this.best.epoch = e.epoch;
        this.best.value = v.primary_metric_value;
        this.best.metrics = { ...v.metrics };
      }
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
      this.emit({
        type: 'validation',
        epoch: e.epoch,
        primaryMetricName: v.primary_metric_name,
        primaryMetricValue: v.primary_metric_value,
        metrics: v.metrics,
        perClassMetrics: v.per_class_metrics,
        confusionMatrix: v.confusion_matrix ?? null,
        prCurves: v.pr_curves ?? null,
        numImagesValidated: v.num_images_validated,
        validationTimeSeconds: v.validation_time_seconds,
      });
    },
    end: () => {},
  };

  /** Snapshots the checkpoint now and uploads it in the background as epoch-N.pt. */
  async uploadCheckpoint(path: string, epoch: number, isBest: boolean, reason: 'periodic' | 'stop'): Promise<void> {
    this.lastUploadedEpoch = epoch;
    await this.uploads.enqueue(path, epochCheckpointKey(this.config.jobId, epoch), (uri) => {
      this.emit({ type: 'checkpoint', epoch, uri, isBest, reason, metrics: { ...this.best.metrics } });
    });
  }

  /** A stopped run's last checkpoint, when the trainer wrote one that has not gone up yet. */
  async uploadLastCheckpoint(): Promise<void> {
    const last = this.lastSaved;
    if (last && this.lastUploadedEpoch !== last.epoch) await this.uploadCheckpoint(last.path, last.epoch, false, 'stop');
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
