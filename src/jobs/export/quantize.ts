/**
 * ONNX graph passes and quantization after any framework's export (python/vision_trainer/common/export_onnx.py):
 * dynamic int8, float16, and static int8/int16 calibrated on images of VALIDATION_DATASET_ID,
 * pre-processed exactly as the wrappers do.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { preprocess } from '../../../runtime/node/model_wrapper.js';
import { type PythonBridge, pythonEntry } from '../../bridge/python.js';
import type { DatasetImage } from '../../datasets/model.js';
import { FinalizeAnswerSchema, FinalizeParamsSchema, QuantizeAnswerSchema, QuantizeParamsSchema, SpecializeAnswerSchema } from '../../frameworks/protocol.js';
import type { QuantizationRule } from './formats.js';
import type { PreprocessingSpec } from './metadata.js';
import { tileBatch } from './runners.js';
import { decodeImages } from './validate.js';

const MODULE = 'vision_trainer.common.export_onnx';
const FINALIZE = pythonEntry(MODULE, 'finalize', FinalizeParamsSchema, FinalizeAnswerSchema, { long: true });
const SPECIALIZE = pythonEntry(MODULE, 'specialize', FinalizeParamsSchema, SpecializeAnswerSchema, { long: true });
const QUANTIZE = pythonEntry(MODULE, 'quantize', QuantizeParamsSchema, QuantizeAnswerSchema, { long: true });
/** Enough images for stable MinMax ranges; more only costs time. */
export const MAX_CALIBRATION_IMAGES = 32;

export interface QuantizeInput {
  source: string;
  output: string;
  rule: QuantizationRule;
  /** Static quantization only. */
  calibrationImages: readonly DatasetImage[];
  preprocessing: PreprocessingSpec;
  batchSize: number;
  scratchDir: string;
}

export async function calibrationTensors(
  bridge: PythonBridge,
  input: Pick<QuantizeInput, 'calibrationImages' | 'preprocessing' | 'batchSize' | 'scratchDir'>,
): Promise<{ files: string[]; shape: number[] }> {
  const dir = join(input.scratchDir, 'calibration');
  await mkdir(dir, { recursive: true });
  const images = input.calibrationImages.slice(0, MAX_CALIBRATION_IMAGES);
  const decoded = await decodeImages(bridge, images, dir);
  const files: string[] = [];
  let shape: number[] = [];
  for (const [i, rgb] of decoded.entries()) {
    const tensor = tileBatch(preprocess(rgb, input.preprocessing).tensor, input.batchSize);
    shape = tensor.dims;
    const file = join(dir, `tensor-${i}.bin`);
    await writeFile(file, Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength));
    files.push(file);
  }
  return { files, shape };
}

/** Writes the quantized model to `output`; returns what was done, for metadata. */
export async function quantizeOnnx(bridge: PythonBridge, input: QuantizeInput): Promise<string> {
  const calibration = input.rule.type === 'static' ? await calibrationTensors(bridge, input) : { files: [], shape: [] };
  const { rule } = input;
  const r = await bridge.call(QUANTIZE, {
    source: input.source,
    output: input.output,
    type: rule.type,
    dtype: rule.dtype,
    calibration: calibration.files,
    input_shape: calibration.shape,
  });
  return r.method;
}

/** ONNX graph passes for OPTIMIZATION_LEVEL (after any framework's ONNX export); returns what was done. */
export async function finalizeOnnx(bridge: PythonBridge, path: string, level: number): Promise<string[]> {
  return (await bridge.call(FINALIZE, { path, level })).passes;
}

/** The last ONNX pass, after quantization (level 3's runtime-specific optimizations); returns what was done and the file's operators. */
export async function specializeOnnx(bridge: PythonBridge, path: string, level: number): Promise<{ passes: string[]; operators: string[] }> {
  return bridge.call(SPECIALIZE, { path, level });
}
