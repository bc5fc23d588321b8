/**
 * The backend as one subscriber of a run's events: each RunEvent becomes the HTTP callback the
 * design specifies. Progress callbacks are queued by the client and never block or fail the
 * run; the `done` event's completion is awaited and its final failure fails the process.
 */
import type { CallbackClient } from '../../callbacks/client.js';
import type { TaskType } from '../../config/tasks.js';
import type { Metrics, RunEvent, RunSubscriber } from '../../events.js';

/** Batch progress reaches the backend at most this often; epochs always do. */
const BATCH_HEARTBEAT_INTERVAL_MS = 5_000;

export function trainingReporter(client: CallbackClient, taskType: TaskType, options: { batchIntervalMs?: number } = {}): RunSubscriber {
  const interval = options.batchIntervalMs ?? BATCH_HEARTBEAT_INTERVAL_MS;
  let lastBatchBeat = 0;
  let latestValidation: Metrics = {};

  return (event: RunEvent) => {
    switch (event.type) {
      case 'milestone':
        client.event({ event_type: event.name, message: event.message, data: event.data });
        return;
      case 'batch': {
        const now = Date.now();
        if (now - lastBatchBeat < interval) return;
        lastBatchBeat = now;
        const done = event.epoch - 1 + event.batch / event.batches;
        client.heartbeat({
          epoch: event.epoch,
          progress: Math.min(100, (done / event.epochs) * 100),
          metrics: { ...event.losses, ...latestValidation },
          total_epochs: event.epochs,
          batch: event.batch,
          total_batches: event.batches,
          eta_seconds: event.etaSeconds,
        });
        return;
      }
      case 'epoch': {
        // The validation loss is reported as val_loss: `loss` in a heartbeat is the training loss.
        const { loss: valLoss, ...validation } = event.metrics;
        latestValidation = valLoss === undefined ? validation : { ...validation, val_loss: valLoss };
        lastBatchBeat = Date.now();
        client.heartbeat({
          epoch: event.epoch,
          progress: event.progress,
          metrics: { ...latestValidation, ...event.losses, learning_rate: event.learningRate },
          total_epochs: event.epochs,
        });
        return;
      }
      case 'validation':
        void client.validation({
          epoch: event.epoch,
          task_type: taskType,
          primary_metric_name: event.primaryMetricName,
          primary_metric_value: event.primaryMetricValue,
          metrics: event.metrics,
          per_class_metrics: event.perClassMetrics,
          confusion_matrix: event.confusionMatrix,
          pr_curves: event.prCurves,
          num_images_validated: event.numImagesValidated,
          validation_time_seconds: event.validationTimeSeconds,
        });
        return;
      case 'checkpoint':
        client.event({
          event_type: 'checkpoint_saved',
          message: event.reason === 'best' ? `Best checkpoint saved (epoch ${event.epoch})` : `Checkpoint saved at epoch ${event.epoch}`,
          data: { checkpoint_path: event.uri, epoch: event.epoch, is_best: event.isBest, reason: event.reason, metrics: event.metrics },
        });
        return;
      case 'done':
        return client.trainingDone({
          status: event.status,
          final_metrics: event.finalMetrics,
          checkpoint_path: event.checkpointUri,
          error_message: event.errorMessage,
        });
      default:
        return;
    }
  };
}
