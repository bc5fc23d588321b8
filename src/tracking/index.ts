/**
 * Experiment tracking: each integration is one small subscriber of the run's event stream, in
 * its own file (as ultralytics' utils/callbacks/ are), switched on by its variables. They see
 * what every other subscriber sees, so every framework is tracked the same way. TensorBoard is
 * the exception that proves the rule: its event files are written on the Python side by
 * tensorboardX from the same trainer events (python/vision_trainer/common/trainer_events.py),
 * and the training job uploads them (ENABLE_TENSORBOARD).
 */
import type { TrainConfig } from '../config/schema.js';
import type { RunEvent } from '../events.js';
import type { Logger } from '../log.js';
import type { Subscriber } from '../jobs/run-stream.js';
import { mlflowTracker } from './mlflow.js';

export function trainingTrackers(config: TrainConfig, logger: Logger): Subscriber<RunEvent>[] {
  return [mlflowTracker(config, logger)].filter((t): t is NonNullable<typeof t> => t !== undefined);
}
