/**
 * The backend as one subscriber of a run's events: each RunEvent becomes the HTTP callback the
 * design specifies. Progress callbacks are queued by the client and never block or fail the
 * run. The `done` event becomes the completion (`trainingCompletion`), which the job context
 * stores and then sends (src/jobs/context.ts).
 */
import type { CallbackClient } from '../../callbacks/client.js';
import type { ValidationResponse } from '../../callbacks/schemas.js';
import type { TaskType } from '../../config/tasks.js';
import type { Metrics, RunEvent, RunEventOf, RunSubscriber } from '../../events.js';
import type { Completion } from '../outcome.js';

export function trainingCompletion(done: RunEventOf<'done'>): Completion {
  return {
    kind: 'trainingDone',
    input: { status: done.status, final_metrics: done.finalMetrics, checkpoint_path: done.checkpointUri, error_message: done.errorMessage },
  };
}

/** Batch progress reaches the backend at most this often; epochs always do. */
const BATCH_HEARTBEAT_INTERVAL_MS = 5_000;

export function trainingReporter(client: CallbackClient, taskType: TaskType, options: { batchIntervalMs?: number } = {}): RunSubscriber {
  const reporter = new TrainingReporter(client, taskType, options.batchIntervalMs ?? BATCH_HEARTBEAT_INTERVAL_MS);
  // The validation callback's answer is the subscriber's answer to the event (best.ts reads it).
  return (event: RunEvent) => reporter.report(event) as Promise<void> | undefined;
}

class TrainingReporter {
  private lastBatchBeat = 0;
  /** The latest validation metrics, sent with every heartbeat until the next validation. */
  private latestValidation: Metrics = {};
  /** The learning rate of the last finished epoch (null before): batch heartbeats carry it too, as the design's heartbeat does. */
  private learningRate: number | null = null;

  constructor(
    private readonly client: CallbackClient,
    private readonly taskType: TaskType,
    private readonly batchIntervalMs: number,
  ) {}

  /** The validation callback's answer and the completion's delivery are promises; the rest is queued. */
  report(event: RunEvent): Promise<unknown> | undefined {
    switch (event.type) {
      case 'milestone':
        this.client.event({ event_type: event.name, message: event.message, data: event.data });
        return undefined;
      case 'batch':
        this.batch(event);
        return undefined;
      case 'epoch':
        this.epoch(event);
        return undefined;
      case 'validation':
        return this.validation(event);
      case 'checkpoint':
        this.checkpoint(event);
        return undefined;
      default:
        return undefined;
    }
  }

  /** A heartbeat between epochs, at most every batchIntervalMs: where the epoch is, and the ETA. */
  private batch(event: RunEventOf<'batch'>): void {
    const now = Date.now();
    if (now - this.lastBatchBeat < this.batchIntervalMs) return;
    this.lastBatchBeat = now;
    const done = event.epoch - 1 + event.batch / event.batches;
    this.client.heartbeat({
      epoch: event.epoch,
      progress: Math.min(100, (done / event.epochs) * 100),
      metrics: { loss: null, ...event.losses, ...this.latestValidation, learning_rate: this.learningRate },
      total_epochs: event.epochs,
      batch: event.batch,
      total_batches: event.batches,
      eta_seconds: event.etaSeconds,
    });
  }

  /** The epoch's heartbeat: real training losses, the learning rate, the latest validation. */
  private epoch(event: RunEventOf<'epoch'>): void {
    // The validation loss is reported as val_loss: `loss` in a heartbeat is the training loss.
    const { loss: valLoss, ...validation } = event.metrics;
    this.latestValidation = valLoss === undefined ? validation : { ...validation, val_loss: valLoss };
    this.lastBatchBeat = Date.now();
    this.learningRate = event.learningRate ?? null;
    this.client.heartbeat({
      epoch: event.epoch,
      progress: event.progress,
      metrics: { ...this.latestValidation, ...event.losses, learning_rate: event.learningRate },
      total_epochs: event.epochs,
    });
  }

  /** Resolves with the backend's answer ({status, is_best}), which decides the best epoch (best.ts). */
  private validation(event: RunEventOf<'validation'>): Promise<ValidationResponse | undefined> {
    return this.client.validation({
      epoch: event.epoch,
      task_type: this.taskType,
      primary_metric_name: event.primaryMetricName,
      primary_metric_value: event.primaryMetricValue,
      metrics: event.metrics,
      per_class_metrics: event.perClassMetrics,
      confusion_matrix: event.confusionMatrix,
      ...(event.confusionMatrixClassIds ? { confusion_matrix_class_ids: event.confusionMatrixClassIds } : {}),
      pr_curves: event.prCurves,
      image_results_path: event.imageResultsUri,
      num_images_validated: event.numImagesValidated,
      validation_time_seconds: event.validationTimeSeconds,
    });
  }

  private checkpoint(event: RunEventOf<'checkpoint'>): void {
    this.client.event({
      event_type: 'checkpoint_saved',
      message: event.reason === 'best' ? `Best checkpoint saved (epoch ${event.epoch})` : `Checkpoint saved at epoch ${event.epoch}`,
      data: {
        checkpoint_path: event.uri,
        epoch: event.epoch,
        is_best: event.isBest,
        best_epoch: event.bestEpoch ?? null,
        reason: event.reason,
        metrics: event.metrics,
      },
    });
  }
}
