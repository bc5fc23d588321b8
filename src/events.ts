/**
 * The typed event stream of a training run. Everything a run reports flows through these
 * events: the HTTP callback reporter, the CLI's readable output and TypeScript scripts
 * (`for await (const e of train(config))`) are all subscribers of the same stream.
 */
export type Metrics = Record<string, number | null>;

export interface PerClassMetric {
  class_id: number;
  class_name: string;
  precision?: number | null;
  recall?: number | null;
  ap?: number | null;
  support?: number;
  [extra: string]: number | string | null | undefined;
}

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
  | { type: 'milestone'; name: 'dataset_downloaded' | 'dataset_prepared' | 'weights_downloaded' | 'training_started' | 'stop_requested'; message: string; data: Record<string, unknown> }
  | { type: 'start'; epochs: number; startEpoch: number; batchesPerEpoch: number; device: string }
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
      perClassMetrics: PerClassMetric[];
      confusionMatrix: number[][] | null;
      prCurves: Record<string, { precision: (number | null)[]; recall: (number | null)[] }> | null;
      numImagesValidated: number;
      validationTimeSeconds: number | null;
    }
  | { type: 'checkpoint'; epoch: number; uri: string; isBest: boolean; reason: 'periodic' | 'stop' | 'best'; metrics: Metrics }
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
