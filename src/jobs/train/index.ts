/**
 * Training for TypeScript scripts, over the same job the container runs:
 *
 *   const run = train({ jobId: 'exp-1', taskType: 'object_detection', modelName: 'yolo11n', ... });
 *   for await (const event of run) if (event.type === 'epoch') console.log(event.metrics);
 *   const result = await run.result;
 *
 * `config` is the same zod-validated shape the container's env parser builds. Several runs may
 * go one after another in one process.
 */
import type { TrainConfig, TrainConfigInput } from '../../config/schema.js';
import type { RunEvent } from '../../events.js';
import { type JobOptions, type JobRun, startRun } from '../context.js';
import { type TrainResult, trainingJob } from './job.js';

export type { TrainResult } from './job.js';

/**
 * How a script runs training: `signal` (an AbortSignal) stops it like `run.stop()`; `onEvent`
 * is one more subscriber (a throw in it stops training and fails the run); `logger: false`
 * silences the log lines; `callbacks: false` sends no HTTP callbacks even when `config.backend`
 * is set; `signals: true` handles SIGTERM/SIGINT as the container does.
 */
export type TrainOptions = JobOptions<RunEvent>;
export type TrainingRun = JobRun<TrainConfig, RunEvent, TrainResult>;

export function train(config: TrainConfigInput | TrainConfig, options: TrainOptions = {}): TrainingRun {
  return startRun(trainingJob, config, options);
}
