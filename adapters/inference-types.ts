/**
 * What a framework offers inference jobs (test runs and inference jobs). The job talks to this
 * interface only: it opens a session on a checkpoint, feeds it batches of local images, and asks
 * for the test run's metrics at the end. Everything framework-specific (loading, predicting,
 * drawing, Grad-CAM targets) sits behind it.
 */
import type { PythonBridge } from '../src/bridge/python.js';
import type { InferConfig } from '../src/config/schema.js';
import type { Framework } from '../src/config/tasks.js';
import type { Evaluation, ModelInfo, Predictions, TestRunMetrics, XaiResult } from '../src/inference/results.js';

export type XaiMethod = InferConfig['xaiMethod'];

/**
 * Ground truth of one image in the model's class indices, coordinates in original pixels.
 * Detection tasks: every object (an empty list for a background image). Classification: the class.
 */
export type GroundTruthInput =
  | { boxes: Array<[number, number, number, number]>; classes: number[]; segmentations?: number[][][]; keypoints?: Array<Array<[number, number, number]>> }
  | { class: number };

export interface OpenSessionRequest {
  /** The checkpoint, downloaded. */
  checkpointPath: string;
  config: InferConfig;
  /** Test runs: evaluate predictions against ground truth. */
  evaluate: boolean;
  /** Grad-CAM settings when ENABLE_XAI; layers undefined = the architecture's defaults. */
  xai?: { method: XaiMethod; layers: string[] | undefined };
}

export interface BatchItem {
  /** Local image file. */
  path: string;
  /** Unique within the job (the image's index): the metrics' per-image key. */
  key: string;
  groundTruth?: GroundTruthInput | null;
  /** Write an annotated PNG here (the visualisation sample). */
  visualizationPath?: string | null;
  /** Write a heatmap overlay PNG here (the XAI sample). */
  xaiPath?: string | null;
}

/** One image's outcome; `error` alone when the image could not be read or predicted. */
export type ImageOutcome =
  | { error: string }
  | {
      width: number;
      height: number;
      predictions: Predictions;
      evaluation: Evaluation | null;
      xai: Omit<XaiResult, 'heatmap_path'> | null;
    };

export interface BatchOutcome {
  images: ImageOutcome[];
  /** Wall time of the framework's prediction call for the batch (pre/post-processing included). */
  inferenceSeconds: number;
}

export interface InferenceSession {
  readonly info: ModelInfo;
  predictBatch(items: BatchItem[]): Promise<BatchOutcome>;
  /** The test run's metrics, from everything evaluated so far; null when not evaluating. */
  finish(): Promise<TestRunMetrics | null>;
  close(): Promise<void>;
}

export interface InferenceAdapter {
  readonly framework: Framework;
  /** Environment the Python interpreter needs (offline switches, config folders). */
  pythonEnv(workDir: string): Record<string, string>;
  /**
   * Loads the checkpoint. Throws ConfigError when it does not fit TASK_TYPE, when XAI_METHOD does
   * not fit the model, or when XAI_TARGET_LAYERS names a layer the model lacks: all before any
   * image is processed.
   */
  open(bridge: PythonBridge, request: OpenSessionRequest): Promise<InferenceSession>;
}
