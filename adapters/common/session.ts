/**
 * The inference session every framework opens: the framework's own `open_session` loads the
 * checkpoint, then the shared entry points of python/vision_trainer/common/infer_session.py predict
 * batch by batch and compute the test run's metrics. Every answer is parsed with the
 * results.json schemas, so a Python change that breaks the contract fails loudly here.
 *
 * Python's configuration errors (checkpoint for another task, a layer the model lacks, an XAI
 * method that does not fit) become ConfigErrors naming the variable, exit code 2: retrying the
 * job cannot help.
 */
import { type PythonBridge, type PythonEntry, pythonCallback, pythonEntry } from '../../src/bridge/python.js';
import { ConfigError, FrameworkError, PythonError } from '../../src/errors.js';
import type { BatchOutcome, InferenceSession, OpenSessionRequest } from '../../src/frameworks/adapter.js';
import {
  BatchAnswerSchema,
  type BatchItem,
  NothingSchema,
  PredictParamsSchema,
  type SessionParams,
  TestRunMetricsSchema,
  type XaiProgress,
  XaiProgressSchema,
} from '../../src/frameworks/protocol.js';
import type { ModelInfo } from '../../src/jobs/infer/results.js';

const MODULE = 'vision_trainer.common.infer_session';
const PREDICT = pythonEntry(MODULE, 'predict_batch', PredictParamsSchema, BatchAnswerSchema, { long: true });
const FINISH = pythonEntry(MODULE, 'finish', undefined, TestRunMetricsSchema.nullable(), { long: true });
const CLOSE = pythonEntry(MODULE, 'close_session', undefined, NothingSchema);

export type OpenEntry = PythonEntry<SessionParams, ModelInfo>;

/** Python exception type → the variable a user changes to fix it. */
const CONFIG_ERRORS: Record<string, { variable: string; value: (r: OpenSessionRequest) => string | undefined }> = {
  UnknownLayerError: { variable: 'XAI_TARGET_LAYERS', value: (r) => (r.xai?.layers ? JSON.stringify(r.xai.layers) : undefined) },
  XaiMethodError: { variable: 'XAI_METHOD', value: (r) => r.xai?.method },
  CheckpointMismatchError: { variable: 'TASK_TYPE', value: (r) => r.config.taskType },
  FrameworkMismatchError: { variable: 'FRAMEWORK', value: (r) => r.config.framework },
  InferenceBackendError: { variable: 'INFERENCE_BACKEND', value: (r) => r.config.inferenceBackend },
  PromptError: { variable: 'PROMPT_CHECKPOINT_PATH', value: (r) => r.config.promptCheckpointPath },
  Sam2WeightsError: { variable: 'CHECKPOINT_PATH', value: (r) => r.config.checkpointPath },
  GraphModelMismatchError: { variable: 'INFERENCE_MODEL_PATH', value: (r) => r.config.inferenceModelPath },
};

function sessionParams(request: OpenSessionRequest): SessionParams {
  const { config } = request;
  return {
    checkpoint: request.checkpointPath,
    task_type: config.taskType,
    image_size: config.imageSize,
    conf_threshold: config.confidenceThreshold,
    iou_threshold: config.iouThreshold,
    device: config.device,
    evaluate: request.evaluate,
    xai: request.xai ? { method: request.xai.method, layers: request.xai.layers ?? null, samples: request.xai.samples ?? null } : null,
    inference_backend: config.inferenceBackend,
    graph_dir: request.graphDir,
    prompt_checkpoint: request.promptCheckpointPath ?? null,
    dataset_classes: request.datasetClasses ?? null,
    image_count: request.imageCount ?? null,
    graph_model: request.graphModel ?? null,
    decode_threads: config.decodeThreads ?? null,
    prefetch: config.prefetchNextBatch,
    inference_precision: config.inferencePrecision,
  };
}

/** Opens a session through a framework's `open_session`; `check` may refuse what it loaded. */
export async function openSession(
  bridge: PythonBridge,
  open: OpenEntry,
  request: OpenSessionRequest,
  check?: (info: ModelInfo) => void,
): Promise<InferenceSession> {
  let info: ModelInfo;
  try {
    info = await bridge.call(open, sessionParams(request));
    check?.(info);
  } catch (err) {
    const known = err instanceof PythonError ? CONFIG_ERRORS[err.pythonType] : undefined;
    if (!known || !(err instanceof PythonError)) throw err;
    const message = err.message.slice(err.pythonType.length + 2);
    throw new ConfigError([{ variable: known.variable, value: known.value(request), message }], 'infer');
  }

  return {
    info,
    async predictBatch(items: BatchItem[], prefetch?: string[], onExplained?: (progress: XaiProgress) => void): Promise<BatchOutcome> {
      const params = prefetch?.length ? { items, prefetch } : { items };
      const batch = onExplained
        ? await bridge.call(PREDICT, params, pythonCallback(XaiProgressSchema, 'An explanation progress event', onExplained))
        : await bridge.call(PREDICT, params);
      if (batch.images.length !== items.length)
        throw new FrameworkError(`The Python inference session answered ${batch.images.length} results for ${items.length} images`);
      return {
        images: batch.images,
        inferenceSeconds: batch.inference_seconds,
        stages: { preprocessSeconds: batch.preprocess_seconds, forwardSeconds: batch.forward_seconds, cpuSeconds: batch.cpu_seconds },
        ...(batch.precision_check ? { precisionCheck: batch.precision_check } : {}),
      };
    },
    finish: () => bridge.call(FINISH),
    async close() {
      if (bridge.isOpen) await bridge.call(CLOSE);
    },
  };
}
