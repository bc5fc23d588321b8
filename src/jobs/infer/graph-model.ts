/**
 * INFERENCE_MODEL_PATH: an export job's ONNX model run in place of a fresh export of the
 * checkpoint. The design's export job uploads `export-jobs/{JOB_ID}/model.onnx` with its
 * `metadata.json` beside it; both are downloaded, metadata.json is parsed with the export's own
 * schema, and what it says (task, framework, classes, input size, what the graph embeds) goes to
 * the Python session, which compares it with the checkpoint and the graph's outputs with the
 * checkpoint's before predicting (GraphModelMismatchError, exit code 2). Only an `.onnx` file is
 * read: ONNX Runtime and OpenVINO parse it as a protobuf graph, nothing in it is executed as code.
 */
import { posix } from 'node:path';
import { readFile } from 'node:fs/promises';
import type { InferConfig } from '../../config/schema.js';
import type { Framework } from '../../config/tasks.js';
import { ConfigError, asVisionTrainerError } from '../../errors.js';
import type { GraphModel } from '../../frameworks/protocol.js';
import type { Storage } from '../../storage/types.js';
import { MetadataSchema } from '../export/metadata.js';
import { fetchCheckpoint } from '../stages.js';

const VARIABLE = 'INFERENCE_MODEL_PATH';

function problem(uri: string, message: string): ConfigError {
  return new ConfigError([{ variable: VARIABLE, value: uri, message }], 'infer');
}

/** INFERENCE_MODEL_PATH's problems the configuration alone shows. */
export function graphModelProblems(config: InferConfig): string[] {
  if (!config.inferenceModelPath) return [];
  if (config.inferenceBackend === 'pytorch')
    return ['names an exported graph, but INFERENCE_BACKEND=pytorch runs the checkpoint itself: set INFERENCE_BACKEND=onnx, openvino or auto'];
  return [];
}

/** Downloads the model and its metadata.json into `dir` and reads what the session needs from it. */
export async function fetchGraphModel(config: InferConfig, storage: Storage, dir: string, signal?: AbortSignal): Promise<GraphModel> {
  const uri = config.inferenceModelPath!;
  const model = await fetchCheckpoint(storage, { variable: VARIABLE, uri, mode: 'infer', fileName: 'model.onnx', missingIsConfigError: true }, dir, signal);
  const metadataKey = posix.join(posix.dirname(storage.parseUri(uri)), 'metadata.json');
  const metadataUri = storage.uri(metadataKey);
  if (!(await storage.exists(metadataKey, { signal })))
    throw problem(uri, `has no metadata.json beside it (${metadataUri}): point it at the model.onnx of an export job's output, which uploads both`);
  const local = await fetchCheckpoint(storage, { variable: VARIABLE, uri: metadataUri, mode: 'infer', fileName: 'metadata.json' }, dir, signal);
  let metadata: ReturnType<typeof MetadataSchema.parse>;
  try {
    metadata = MetadataSchema.parse(JSON.parse(await readFile(local.path, 'utf8')));
  } catch (err) {
    throw problem(uri, `its metadata.json (${metadataUri}) is not an export job's metadata: ${asVisionTrainerError(err).message.slice(0, 300)}`);
  }
  if (metadata.export_format !== 'onnx')
    throw problem(uri, `its metadata.json describes an EXPORT_FORMAT=${metadata.export_format} model; only ONNX models (EXPORT_FORMAT=onnx) are run here`);
  if (metadata.task_type !== config.taskType)
    throw problem(uri, `was exported for TASK_TYPE=${metadata.task_type}, but this job's TASK_TYPE is ${config.taskType}`);
  const batch = metadata.model.inputs[0]!.shape[0];
  return {
    path: model.path,
    uri,
    framework: metadata.model.framework,
    task_type: metadata.task_type,
    class_names: metadata.model.class_names,
    input_size: metadata.model.input_size,
    embedded_preprocessing: metadata.preprocessing.embedded,
    embedded_softmax: metadata.postprocessing.embedded,
    batch: typeof batch === 'number' && batch > 0 ? batch : null,
    quantized: metadata.optimization.quantization !== null,
  };
}

/**
 * The graph session reads export jobs' classifiers (timm, transformers); an ultralytics model
 * from an export job (its own output layout, NMS that may be embedded) is not read yet: such a
 * job leaves INFERENCE_MODEL_PATH unset and exports the checkpoint itself.
 */
export function checkGraphModelFramework(config: InferConfig, framework: Framework): void {
  if (framework === 'ultralytics')
    throw problem(
      config.inferenceModelPath!,
      "runs timm and transformers classifiers from export jobs; an ultralytics checkpoint's inference job exports it itself: leave INFERENCE_MODEL_PATH unset (INFERENCE_BACKEND=onnx still runs the graph)",
    );
}
