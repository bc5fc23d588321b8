/**
 * The inference session every adapter opens: python/vision_trainer/infer_session.py behind the
 * bridge, one framework backend on the Python side. What comes back is checked with the
 * results.json schemas, so a Python change that breaks the contract fails loudly here.
 *
 * Python's configuration errors (checkpoint for another task, a layer the model lacks, an XAI
 * method that does not fit) become ConfigErrors naming the variable, exit code 2: retrying the
 * job cannot help.
 */
import { z } from 'zod';
import type { BatchItem, BatchOutcome, ImageOutcome, InferenceSession, OpenSessionRequest } from '../../adapters/inference-types.js';
import type { PythonBridge } from '../bridge/python.js';
import type { Framework } from '../config/tasks.js';
import { ConfigError, FrameworkError, PythonError } from '../errors.js';
import { EvaluationSchema, ModelInfoSchema, PredictionsSchema, TestRunMetricsSchema, XaiResultSchema } from './results.js';

const MODULE = 'vision_trainer.infer_session';

/** Python exception type → the variable a user changes to fix it. */
const CONFIG_ERRORS: Record<string, { variable: string; value: (r: OpenSessionRequest) => string | undefined }> = {
  UnknownLayerError: { variable: 'XAI_TARGET_LAYERS', value: (r) => (r.xai?.layers ? JSON.stringify(r.xai.layers) : undefined) },
  XaiMethodError: { variable: 'XAI_METHOD', value: (r) => r.xai?.method },
  CheckpointMismatchError: { variable: 'TASK_TYPE', value: (r) => r.config.taskType },
  FrameworkMismatchError: { variable: 'FRAMEWORK', value: (r) => r.config.framework },
};

const ImageOutcomeSchema = z.union([
  z.object({ error: z.string() }),
  z.object({
    width: z.number().int().positive(),
    height: z.number().int().positive(),
    predictions: PredictionsSchema,
    evaluation: EvaluationSchema.nullable(),
    xai: XaiResultSchema.omit({ heatmap_path: true }).nullable(),
  }),
]);
const BatchOutcomeSchema = z.object({ images: z.array(ImageOutcomeSchema), inference_seconds: z.number().nonnegative() });

function checked<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new FrameworkError(`The Python inference session returned ${what} this version does not understand: ${issues.join('; ')}`);
  }
  return parsed.data;
}

export async function openPythonSession(bridge: PythonBridge, framework: Framework, request: OpenSessionRequest): Promise<InferenceSession> {
  const { config } = request;
  const params = {
    framework,
    checkpoint: request.checkpointPath,
    task_type: config.taskType,
    image_size: config.imageSize,
    conf_threshold: config.confidenceThreshold,
    iou_threshold: config.iouThreshold,
    device: config.device,
    evaluate: request.evaluate,
    xai: request.xai ? { method: request.xai.method, layers: request.xai.layers ?? null } : null,
  };
  let rawInfo: unknown;
  try {
    rawInfo = await bridge.call(MODULE, 'open_session', [params], {}, { long: true });
  } catch (err) {
    const known = err instanceof PythonError ? CONFIG_ERRORS[err.pythonType] : undefined;
    if (!known || !(err instanceof PythonError)) throw err;
    const message = err.message.slice(err.pythonType.length + 2);
    throw new ConfigError([{ variable: known.variable, value: known.value(request), message }], 'infer');
  }
  const info = checked(ModelInfoSchema, rawInfo, 'model information');

  return {
    info,
    async predictBatch(items: BatchItem[]): Promise<BatchOutcome> {
      const raw = await bridge.call(
        MODULE,
        'predict_batch',
        [
          items.map((item) => ({
            path: item.path,
            key: item.key,
            ground_truth: item.groundTruth ?? null,
            visualization_path: item.visualizationPath ?? null,
            xai_path: item.xaiPath ?? null,
          })),
        ],
        {},
        { long: true },
      );
      const batch = checked(BatchOutcomeSchema, raw, 'a batch result');
      if (batch.images.length !== items.length) throw new FrameworkError(`The Python inference session answered ${batch.images.length} results for ${items.length} images`);
      return { images: batch.images as ImageOutcome[], inferenceSeconds: batch.inference_seconds };
    },
    async finish() {
      const raw = await bridge.call(MODULE, 'finish', [], {}, { long: true });
      return raw === null ? null : checked(TestRunMetricsSchema, raw, 'test-run metrics');
    },
    async close() {
      if (bridge.isOpen) await bridge.call(MODULE, 'close_session');
    },
  };
}

/** The framework that wrote a checkpoint, read from its contents; undefined when it cannot tell. */
export async function detectFramework(bridge: PythonBridge, checkpointPath: string): Promise<Framework | undefined> {
  const found = await bridge.call<string | null>(MODULE, 'detect_framework', [checkpointPath], {}, { long: true });
  return found === 'ultralytics' || found === 'timm' || found === 'huggingface' ? found : undefined;
}
