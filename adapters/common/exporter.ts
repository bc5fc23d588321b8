/**
 * What every framework's exporter shares: its four Python entry points (one module per
 * framework, the same functions), the parameters every exporter is told, and the two steps that
 * need nothing of the framework but its module.
 */
import { type PythonBridge, pythonEntry } from '../../src/bridge/python.js';
import type { EmbeddedNms, EmbeddedSteps, ExportRequest } from '../../src/frameworks/adapter.js';
import {
  CheckFormatAnswerSchema,
  CheckFormatParamsSchema,
  CheckpointParamsSchema,
  ExportAnswerSchema,
  type NmsParams,
  OpenedModelSchema,
  OpenOriginalParamsSchema,
} from '../../src/frameworks/protocol.js';
import type { z } from 'zod';
import { ConfigError } from '../../src/errors.js';

/** `check_format`, `describe`, `export` and `open_original` of one framework's export module. */
export function exporterEntries<F extends z.ZodType, P extends z.ZodType>(module: string, facts: F, params: P) {
  return {
    checkFormat: pythonEntry(module, 'check_format', CheckFormatParamsSchema, CheckFormatAnswerSchema),
    describe: pythonEntry(module, 'describe', CheckpointParamsSchema, facts, { long: true }),
    export: pythonEntry(module, 'export', params, ExportAnswerSchema, { long: true }),
    openOriginal: pythonEntry(module, 'open_original', OpenOriginalParamsSchema, OpenedModelSchema, { long: true }),
  };
}

type Entries = ReturnType<typeof exporterEntries>;

/** The optional requirements group of the heavy converters (CoreML, TFLite). */
export const EXPORT_GROUP = 'python/requirements-export.txt';

/**
 * Fails, saying what is missing and what to do, when this machine cannot write the format: a
 * converter of the optional export group that is not installed is a configuration error (the
 * image lacks it; retrying cannot help), a missing GPU the framework's error.
 */
export async function checkFormat(bridge: PythonBridge, entries: Entries, format: string, device: string): Promise<void> {
  const answer = await bridge.call(entries.checkFormat, { format, device });
  const missing = answer.missing_packages ?? [];
  if (missing.length) {
    const message = `EXPORT_FORMAT=${format} needs the Python package(s) ${missing.join(', ')} of the optional export group (${EXPORT_GROUP}), which this Python environment does not have: install it with \`VISION_TRAINER_GROUPS=export bash scripts/setup-python.sh\` (the container image includes it), or export to onnx, torchscript or openvino`;
    throw new ConfigError([{ variable: 'EXPORT_FORMAT', value: format, message }], 'export');
  }
}

/** Loads the checkpoint under `handle` for validation; returns the device it runs on. */
export async function openOriginal(
  bridge: PythonBridge,
  entries: Entries,
  handle: string,
  checkpoint: string,
  device: string,
  embedded: EmbeddedSteps,
): Promise<string> {
  const params = {
    handle,
    checkpoint,
    device,
    embedded_postprocessing: embedded.postprocessing,
    normalized_coordinates: embedded.normalizedCoordinates ?? false,
    nms: nmsParams(embedded.nms),
  };
  return (await bridge.call(entries.openOriginal, params)).device;
}

/** The embedded NMS as Python takes it. */
export function nmsParams(nms: EmbeddedNms | null): NmsParams | null {
  return nms && { iou_threshold: nms.iou_threshold, min_confidence: nms.min_confidence, max_detections: nms.max_detections };
}

/** What every exporter is told, in the seam's terms; a framework adds its own options. */
export function exportParams(request: ExportRequest, opset: number) {
  return {
    checkpoint: request.checkpointPath,
    format: request.format,
    out_dir: request.outDir,
    input_size: request.inputSize,
    batch: request.batchSize,
    device: request.device,
    opset,
    embed_preprocessing: request.embedPreprocessing,
  };
}
