/**
 * The typed events of every job. Everything a job reports flows through its event stream: the
 * HTTP callback reporter, the CLI's readable output and TypeScript scripts
 * (`for await (const e of train(config))`) are all subscribers of the same stream. `done` is the
 * last event of each job; it carries the outcome the completion callback reports.
 */
import type { z } from 'zod';
import type { ExportStage, PerClassMetric } from './callbacks/schemas.js';
import type { TestRunMetrics } from './jobs/infer/results.js';
import type { ValidationReport } from './jobs/export/metadata.js';

export type Metrics = Record<string, number | null>;
/** A plain JSON value, as event callbacks carry them. */
export type JsonValue = z.core.util.JSONType;
export type { PerClassMetric };

export type RunStage =
  | 'downloading_dataset'
  | 'preparing_dataset'
  | 'downloading_weights'
  | 'downloading_checkpoint'
  | 'starting_python'
  | 'training'
  | 'uploading'
  | 'finished';

export type RunEvent =
  | { type: 'stage'; stage: RunStage; message: string; data?: Record<string, unknown> }
  | { type: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; message: string }
  /** Things the backend hears about as `event` callbacks (event_type = name). */
  | {
      type: 'milestone';
      /**
       * training_resumed: this attempt continues an earlier one of the same JOB_ID from its checkpoint;
       * checkpoint_upload_failed: a checkpoint could not be stored after every retry (it stays in the kept work folder).
       */
      name:
        | 'dataset_downloaded'
        | 'dataset_prepared'
        | 'weights_downloaded'
        | 'text_encoder_downloaded'
        | 'training_started'
        | 'stop_requested'
        | 'training_resumed'
        | 'checkpoint_upload_failed';
      message: string;
      data: Record<string, JsonValue>;
    }
  | {
      type: 'start';
      epochs: number;
      startEpoch: number;
      batchesPerEpoch: number;
      device: string;
      /** What the framework resolved (arguments, threads, workers, AMP, validation, saving), when it says. */
      settings?: Record<string, JsonValue>;
    }
  | {
      type: 'batch';
      epoch: number;
      epochs: number;
      batch: number;
      batches: number;
      losses: Metrics;
      /** Seconds since training started, and the estimated seconds left for the whole run. */
      elapsedSeconds: number;
      etaSeconds: number | null;
    }
  | {
      type: 'epoch';
      epoch: number;
      epochs: number;
      /** Percent of planned epochs done. */
      progress: number;
      losses: Metrics;
      learningRate: number | null;
      /** Latest validation metrics (platform names, e.g. mAP50-95, accuracy). */
      metrics: Metrics;
      isBest: boolean;
      epochTimeSeconds: number | null;
    }
  | {
      type: 'validation';
      epoch: number;
      primaryMetricName: string;
      primaryMetricValue: number | null;
      metrics: Metrics;
      /** Keyed by the dataset's class ids, in ascending id order. */
      perClassMetrics: PerClassMetric[];
      /** Rows are true classes, columns predicted, both in the order of confusionMatrixClassIds. */
      confusionMatrix: number[][] | null;
      confusionMatrixClassIds: number[] | null;
      prCurves: Record<string, { precision: (number | null)[]; recall: (number | null)[] }> | null;
      /** The epoch's per-image results in storage (validation-results/job-{JOB_ID}/epoch-{N}/images.json). */
      imageResultsUri: string | null;
      numImagesValidated: number;
      validationTimeSeconds: number | null;
    }
  /**
   * An epoch became the best (src/jobs/train/best.ts): by the backend's is_best answer to its
   * validation, or by its score when there was no answer. A subscriber may answer a
   * `validation` event with `{ is_best: boolean }` (or a promise of it); the HTTP reporter
   * answers with the backend's response.
   */
  | { type: 'best'; epoch: number; value: number | null; metrics: Metrics; decidedBy: 'backend' | 'score' }
  | {
      type: 'checkpoint';
      epoch: number;
      uri: string;
      isBest: boolean;
      reason: 'periodic' | 'stop' | 'best';
      metrics: Metrics;
      bestEpoch?: number | null;
      /** best.pt: the local file, readable until the job's `done` has been handled (trackers upload it). */
      localPath?: string;
    }
  | {
      type: 'done';
      status: 'succeeded' | 'failed';
      bestEpoch: number | null;
      primaryMetricName: string;
      bestMetricValue: number | null;
      checkpointUri: string | null;
      totalTimeSeconds: number;
      finalMetrics: Metrics;
      errorMessage: string | null;
      exitCode: number;
    };

export type RunEventType = RunEvent['type'];
export type RunEventOf<T extends RunEventType> = Extract<RunEvent, { type: T }>;
export type RunSubscriber = (event: RunEvent) => void | Promise<void>;

/** Test runs and inference jobs. */
export type InferenceEvent =
  | {
      type: 'progress';
      processed: number;
      total: number;
      percent: number;
      /** Measured prediction time per image so far; null before the first prediction. */
      avgInferenceTimeMs: number | null;
      /**
       * Heatmaps made so far of the sample's (ENABLE_XAI): reported after each image while a
       * batch is still being explained, since LIME and SHAP take seconds to minutes per image.
       */
      explained?: { method: string; images: number; of: number; lastSeconds: number };
    }
  | {
      type: 'done';
      inferenceType: 'test_run' | 'inference_job';
      status: 'succeeded' | 'failed';
      resultsUri: string | null;
      visualizationsUri: string | null;
      xaiUri: string | null;
      /** Test runs that succeeded. */
      metrics: TestRunMetrics | null;
      errorMessage: string | null;
      exitCode: number;
    };

/** The design's model_info of an export, every figure read or measured. */
export interface ExportModelInfo {
  model_size_mb: number;
  /** null where the format cannot run on this machine (CoreML on Linux: metadata.json structural_validation). */
  inference_speed_ms: number | null;
  inference_speed_p95_ms: number | null;
  input_shape: (number | string)[];
  output_shape: (number | string)[] | (number | string)[][];
  engine: string;
}

/** Export jobs. */
export type ExportEvent =
  | { type: 'progress'; stage: ExportStage; percent: number; message: string }
  | {
      type: 'done';
      status: 'succeeded' | 'failed';
      exportUri: string | null;
      metadataUri: string | null;
      packageUri: string | null;
      modelInfo: ExportModelInfo | null;
      validation: ValidationReport | null;
      errorMessage: string | null;
      exitCode: number;
    };
