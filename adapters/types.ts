/**
 * The interface every framework adapter implements. Jobs (train, infer, export) talk to this
 * interface only; what is framework-specific (dataset layout, Python module, model names)
 * stays inside one adapter module.
 */
import type { PythonBridge } from '../src/bridge/python.js';
import type { TrainConfig } from '../src/config/schema.js';
import type { Framework } from '../src/config/tasks.js';
import type { Dataset } from '../src/datasets/model.js';
import type { SplitAssignment } from '../src/datasets/splits.js';
import type { ExportAdapter } from './export-types.js';
import type { InferenceAdapter } from './inference-types.js';
import type { TrainerAnswer, TrainerEvent } from './trainer-events.js';

export interface PreparedDataset {
  /** What the framework is pointed at: a data.yaml, an ImageFolder root or a manifest folder. */
  dataPath: string;
  /** Class names in the framework's contiguous index order. */
  classNames: string[];
  counts: Record<string, number>;
}

export interface TrainRequest {
  config: TrainConfig;
  data: PreparedDataset;
  /** Framework outputs (runs/, weights) go under this folder. */
  outputDir: string;
  /** Local pretrained weights (downloaded from PRETRAINED_WEIGHT_URL), if any. */
  weightsPath?: string;
  /** Python-side log lines are appended here too (uploaded as training.log). */
  logFile: string;
  /**
   * RESUME_CHECKPOINT_PATH, downloaded: continue from the epoch after the checkpoint's with its
   * optimizer state. The trainer refuses a checkpoint of another model or class list.
   */
  resumeFrom?: string;
  primaryMetric: string;
}

export interface TrainOutcome {
  bestEpoch: number | null;
  bestPath: string | null;
  lastPath: string | null;
  stoppedEarly: boolean;
}

/** What a framework offers training jobs. */
export interface TrainingAdapter {
  /** Environment the Python interpreter needs (offline switches, config folders). */
  pythonEnv(workDir: string): Record<string, string>;
  /** Writes the dataset in the layout the framework reads (symlinks, not copies). */
  prepareDataset(dataset: Dataset, splits: SplitAssignment, outDir: string): Promise<PreparedDataset>;
  /**
   * Trains through the bridge. `onEvent` is called from Python's main thread for each trainer
   * event; answering "stop" ends training after the current batch (a checkpoint is still saved).
   */
  train(bridge: PythonBridge, request: TrainRequest, onEvent: (event: TrainerEvent) => TrainerAnswer): Promise<TrainOutcome>;
}

/**
 * One framework: training, and (as they land) inference and export, each behind its own
 * interface so jobs never know which framework they drive.
 */
export interface FrameworkAdapter {
  readonly framework: Framework;
  readonly training: TrainingAdapter;
  /** Test runs and inference jobs (adapters/inference-types.ts). */
  readonly inference?: InferenceAdapter;
  /** Export jobs (adapters/export-types.ts). */
  readonly exporter?: ExportAdapter;
}
