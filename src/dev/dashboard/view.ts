/**
 * What the dashboard page is sent: one `JobView` per job the dev stack has heard from, and one
 * `LogEntry` per request the receiver answered. Types only (the page's JavaScript checks
 * itself against them with JSDoc), so this file imports nothing at run time.
 */
import type { CallbackKind, ExportDonePayload, PerClassMetric, TestRunDonePayload, ValidationPayload } from '../../callbacks/schemas.js';
import type { ReceiverOutcome } from '../outcomes.js';

/** Callback paths group into three families; a job is one id within one family. */
export type JobFamily = 'training' | 'inference' | 'export';

export type JobStatus = 'running' | 'succeeded' | 'failed';

/** A series of values over a shared x axis; null where a point has no value. */
export interface Series {
  x: number[];
  values: Record<string, Array<number | null>>;
}

export interface Milestone {
  at: string;
  type: string;
  message: string;
}

export interface CheckpointView {
  uri: string;
  epoch: number | null;
  reason: string | null;
  isBest: boolean;
  metrics: Record<string, number | null>;
  /** Object size when the dev stack's storage holds it; null when not (yet) found there. */
  sizeBytes: number | null;
  /** True when the object was found in this stack's S3 bucket. */
  inStorage: boolean;
}

/** One image of a test run or inference job with its pictures, served by the dashboard. */
export interface ResultImageView {
  index: number;
  fileName: string;
  /** Dashboard URL of the annotated image, or null when none was stored. */
  visualizationUrl: string | null;
  /** Dashboard URL of the Grad-CAM (or other method) overlay, or null. */
  heatmapUrl: string | null;
  xaiMethod: string | null;
  xaiError: string | null;
  prediction: string;
  groundTruth: string | null;
  /** Classification: prediction correct; detection: nothing missed and no false positive; null without ground truth. */
  correct: boolean | null;
  error: string | null;
}

export interface InferenceResultsView {
  /** Set when results.json could not be read or did not match its schema. */
  error: string | null;
  numImages: number;
  failedImages: number;
  avgInferenceTimeMs: number | null;
  confusionMatrixLabels: string[] | null;
  images: ResultImageView[];
}

export interface TrainingView {
  taskType: string | null;
  totalEpochs: number | null;
  epoch: number;
  batch: number | null;
  totalBatches: number | null;
  /** Per-epoch values from the epoch heartbeats and validations (x = epoch). */
  epochs: Series;
  /** Training losses reported between epochs (x = fractional epoch, e.g. 2.5 = half of epoch 3). */
  batches: Series;
  primaryMetricName: string | null;
  bestEpoch: number | null;
  bestValue: number | null;
  /** The most recent validation callback, whole (confusion matrix, PR curves, per-class table). */
  latestValidation: ValidationPayload | null;
  checkpoints: CheckpointView[];
  finalMetrics: Record<string, number | null> | null;
  checkpointPath: string | null;
}

export interface InferenceView {
  /** test_run or inference_job once the completion says which; null while running. */
  type: 'test_run' | 'inference_job' | null;
  processed: number;
  total: number;
  avgInferenceTimeMs: number | null;
  done: TestRunDonePayload | null;
  resultsPath: string | null;
  visualizationsPath: string | null;
  xaiResultsPath: string | null;
  results: InferenceResultsView | null;
  perClassMetrics: PerClassMetric[];
}

export interface ExportView {
  stage: string | null;
  message: string | null;
  stages: Array<{ stage: string; percent: number; message: string; at: string }>;
  done: ExportDonePayload | null;
  /** Size of each reported object (model, package, metadata) found in the stack's bucket; null when not found. */
  stored: Record<string, number | null>;
  /** metadata.json as stored (untrusted: the page shows it as text), or why it could not be read. */
  metadata: unknown;
  metadataError: string | null;
}

export interface JobView {
  /** `{family}:{jobId}`: unique across families. */
  key: string;
  id: string;
  family: JobFamily;
  /** What to call it: training, test run, inference job, export. */
  label: string;
  status: JobStatus;
  /** One line saying where the job is, e.g. "training: epoch 3/10, batch 4/7". */
  stage: string;
  /** 0-100, or null when not known. */
  progress: number | null;
  /** Estimated seconds left as of `etaAt`, or null. */
  etaSeconds: number | null;
  etaAt: string | null;
  firstSeen: string;
  lastSeen: string;
  errorMessage: string | null;
  milestones: Milestone[];
  /** Requests for this job by outcome, e.g. { accepted: 40, invalid: 1 }. */
  requestCounts: Partial<Record<ReceiverOutcome, number>>;
  training: TrainingView | null;
  inference: InferenceView | null;
  export: ExportView | null;
}

/** One request the receiver answered, as the log shows it; the whole body is at `/api/requests/{seq}`. */
export interface LogEntry {
  seq: number;
  at: string;
  method: string;
  path: string;
  kind: CallbackKind | null;
  jobKey: string | null;
  jobId: string | null;
  status: number;
  outcome: ReceiverOutcome;
  /** The body passed its endpoint's schema. */
  valid: boolean;
  errors: string[];
  summary: string;
}

export interface StackInfo {
  s3Endpoint: string;
  bucket: string;
  receiverUrl: string;
  dashboardUrl: string;
}

/** The first SSE message and the answer of `/api/state`. */
export interface Snapshot {
  stack: StackInfo;
  jobs: JobView[];
  log: LogEntry[];
}
