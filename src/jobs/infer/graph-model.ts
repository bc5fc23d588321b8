/**
 * INFERENCE_MODEL_PATH: an export job's ONNX or OpenVINO model run in place of a fresh export of
 * the checkpoint. The design's export job uploads `export-jobs/{JOB_ID}/model.onnx` (or
 * `model.openvino`, the IR folder zipped) with its `metadata.json` beside it; both are downloaded, metadata.json is parsed with the export's own
 * schema, and what it says (task, framework, classes and their dataset ids, input size, what the
 * graph embeds: normalisation, softmax, NMS) goes to the Python session, which compares it with
 * the checkpoint and the graph's scores with the checkpoint's before predicting
 * (GraphModelMismatchError, exit code 2). Only an `.onnx` file or an IR folder's `.xml` and `.bin`
 * are read: ONNX Runtime and OpenVINO parse them as graphs, nothing in them is executed as code.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { InferConfig } from '../../config/schema.js';
import { ConfigError, asVisionTrainerError } from '../../errors.js';
import type { GraphModel } from '../../frameworks/protocol.js';
import type { Storage } from '../../storage/types.js';
import { extractZip } from '../../storage/zip.js';
import { embeddedNms, MetadataSchema } from '../export/metadata.js';
import { fetchCheckpoint } from '../stages.js';

const VARIABLE = 'INFERENCE_MODEL_PATH';

function problem(uri: string, message: string): ConfigError {
  return new ConfigError([{ variable: VARIABLE, value: uri, message }], 'infer');
}

/** The export job's format INFERENCE_MODEL_PATH names: its model.onnx, or its model.openvino (the IR folder, zipped). */
export function graphModelFormat(uri: string): 'onnx' | 'openvino' {
  return uri.endsWith('.openvino') ? 'openvino' : 'onnx';
}

/** INFERENCE_MODEL_PATH's problems the configuration alone shows. */
export function graphModelProblems(config: InferConfig): string[] {
  if (!config.inferenceModelPath) return [];
  if (config.inferenceBackend === 'pytorch')
    return ['names an exported graph, but INFERENCE_BACKEND=pytorch runs the checkpoint itself: set INFERENCE_BACKEND=onnx, openvino or auto'];
  if (graphModelFormat(config.inferenceModelPath) === 'openvino' && config.inferenceBackend === 'onnx')
    return ["names an OpenVINO IR model, which ONNX Runtime does not read: set INFERENCE_BACKEND=openvino or auto, or point it at the export's model.onnx"];
  return [];
}

/**
 * The IR folder of an export job's model.openvino, extracted with the dataset zips' checks (no
 * path outside the folder, bounded size): the path of its one .xml file, its .bin beside it.
 */
async function extractOpenVino(uri: string, zipPath: string, dir: string): Promise<string> {
  // ultralytics recognises an OpenVINO folder by this suffix.
  const folder = join(dir, 'model_openvino_model');
  try {
    await extractZip(zipPath, folder);
  } catch (err) {
    throw problem(uri, `is not a readable zip of an OpenVINO IR folder: ${asVisionTrainerError(err).message.slice(0, 300)}`);
  }
  const xml = (await readdir(folder, { recursive: true })).filter((name) => name.endsWith('.xml'));
  if (xml.length !== 1) throw problem(uri, `holds ${xml.length} OpenVINO .xml files; an export job's model.openvino holds exactly one`);
  return join(folder, xml[0]!);
}

/** Downloads the model and its metadata.json into `dir` and reads what the session needs from it. */
export async function fetchGraphModel(config: InferConfig, storage: Storage, dir: string, signal?: AbortSignal): Promise<GraphModel> {
  const uri = config.inferenceModelPath!;
  const format = graphModelFormat(uri);
  const model = await fetchCheckpoint(
    storage,
    { variable: VARIABLE, uri, mode: 'infer', fileName: `model.${format}`, missingIsConfigError: true },
    dir,
    signal,
  );
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
  if (metadata.export_format !== format)
    throw problem(
      uri,
      `its metadata.json describes an EXPORT_FORMAT=${metadata.export_format} model, not the ${format} file it names; ONNX (EXPORT_FORMAT=onnx: model.onnx) and OpenVINO (EXPORT_FORMAT=openvino: model.openvino) models are run here`,
    );
  if (metadata.task_type !== config.taskType)
    throw problem(uri, `was exported for TASK_TYPE=${metadata.task_type}, but this job's TASK_TYPE is ${config.taskType}`);
  const batch = metadata.model.inputs[0]!.shape[0];
  const post = metadata.postprocessing;
  return {
    path: format === 'openvino' ? await extractOpenVino(uri, model.path, dir) : model.path,
    format,
    uri,
    framework: metadata.model.framework,
    task_type: metadata.task_type,
    class_names: metadata.model.class_names,
    class_ids: metadata.model.class_ids,
    input_size: metadata.model.input_size,
    embedded_preprocessing: metadata.preprocessing.embedded,
    embedded_softmax: post.embedded && post.nms === undefined,
    // The session's schema keeps the fields Python reads (IoU, floor, row count, class-aware).
    nms: embeddedNms(post),
    box_units: post.box_units ?? 'pixels',
    batch: typeof batch === 'number' && batch > 0 ? batch : null,
    quantized: metadata.optimization.quantization !== null,
  };
}
