/** vision-trainer as a library: the same jobs the container runs, with typed events. */
export { train, type TrainingRun, type TrainOptions } from './train.js';
export type { TrainResult } from './jobs/train.js';
export type { RunEvent, RunEventOf, RunEventType, RunSubscriber, Metrics, PerClassMetric, RunStage } from './events.js';
export { configFromEnv, parseConfig } from './config/env.js';
export { helpText } from './config/help.js';
export {
  TrainConfigSchema,
  InferConfigSchema,
  ExportConfigSchema,
  type TrainConfig,
  type TrainConfigInput,
  type InferConfig,
  type ExportConfig,
  type StorageConfig,
} from './config/schema.js';
export { TASK_TYPES, FRAMEWORKS, type TaskType, type Framework } from './config/tasks.js';
export * from './errors.js';
export * as callbacks from './callbacks/index.js';
export { CallbackClient } from './callbacks/client.js';
export { Logger, log, setLogger } from './log.js';
export { runInferenceJob, type InferenceOutcome, type InferenceProgress } from './inference/run.js';
export * as inference from './inference/index.js';
export { runExportJob, type ExportResult, type ExportProgress } from './jobs/export.js';
export { MetadataSchema } from './export/metadata.js';
