/** vision-trainer as a library: the same jobs the container runs, with typed events. */
export { train, type TrainingRun, type TrainOptions, type TrainResult } from './jobs/train/index.js';
export { infer, type InferenceRun, type InferOptions, type InferenceOutcome, type InferenceProgress } from './jobs/infer/index.js';
export * as inference from './jobs/infer/index.js';
export { exportModel, type ExportRun, type ExportOptions, type ExportResult, type ExportProgress } from './jobs/export/index.js';
export { MetadataSchema } from './jobs/export/metadata.js';
export type { JobOptions, JobOutcome, JobRun } from './jobs/context.js';
export type { Subscriber } from './jobs/run-stream.js';
export type {
  RunEvent,
  RunEventOf,
  RunEventType,
  RunSubscriber,
  InferenceEvent,
  ExportEvent,
  Metrics,
  PerClassMetric,
  RunStage,
} from './events.js';
export { configFromEnv, parseConfig } from './config/env.js';
export { helpText } from './config/help.js';
export {
  TrainConfigSchema,
  InferConfigSchema,
  ExportConfigSchema,
  type TrainConfig,
  type TrainConfigInput,
  type InferConfig,
  type InferConfigInput,
  type ExportConfig,
  type ExportConfigInput,
  type StorageConfig,
} from './config/schema.js';
export { TASK_TYPES, FRAMEWORKS, type TaskType, type Framework } from './config/tasks.js';
export * from './errors.js';
export * as callbacks from './callbacks/index.js';
export { CallbackClient } from './callbacks/client.js';
export { Logger, log, setLogger } from './log.js';
