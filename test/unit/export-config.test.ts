/**
 * The export capability matrix (src/jobs/export/formats.ts) as the environment parser applies it:
 * impossible framework/format/quantization combinations are configuration errors that list
 * what is supported, before any download or Python start.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { configFromEnv } from '../../src/config/env.js';
import { ConfigError } from '../../src/errors.js';
import { checkFormat, exporterEntries } from '../../adapters/common/exporter.js';
import type { PythonBridge } from '../../src/bridge/python.js';
import { ExitCode } from '../../src/errors.js';
import { FORMATS, FORMATS_BY_FRAMEWORK, QUANTIZATIONS, exportSettingProblems, quantizationRule } from '../../src/jobs/export/formats.js';

const env = {
  JOB_ID: 'exp-1',
  TRACE_ID: 'trace-1',
  BACKEND_BASE_URL: 'http://127.0.0.1:9',
  CALLBACK_TOKEN: 'tok-export-123',
  TASK_TYPE: 'image_classification',
  MODEL_NAME: 'resnet18',
  EXPORT_FORMAT: 'onnx',
  CHECKPOINT_PATH: 's3://vision-platform/checkpoints/job-1/best.pt',
  AWS_ACCESS_KEY_ID: 'AKIAEXAMPLEKEY',
  AWS_SECRET_ACCESS_KEY: 'super-secret-storage-key',
};

function problemsOf(vars: Record<string, string>) {
  try {
    configFromEnv('export', { ...env, ...vars });
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

describe('export settings', () => {
  it('accepts every format a framework exports to, without quantization', () => {
    for (const [framework, formats] of Object.entries(FORMATS_BY_FRAMEWORK)) {
      for (const format of formats) expect(exportSettingProblems(framework as 'timm', format, 'none', 'int8')).toEqual([]);
    }
  });

  it('an unsupported framework/format pair names the supported formats', () => {
    const [p] = problemsOf({ EXPORT_FORMAT: 'tensorrt' });
    expect(p).toMatchObject({ variable: 'EXPORT_FORMAT', value: 'tensorrt' });
    expect(p!.message).toBe(`timm models export to ${FORMATS_BY_FRAMEWORK.timm.join(', ')}; tensorrt is not supported for timm`);
    expect(problemsOf({ MODEL_NAME: 'vit-base-patch16-224', EXPORT_FORMAT: 'tensorrt' })[0]!.message).toMatch(
      /^huggingface models export to onnx, torchscript, openvino, coreml, tflite; tensorrt/,
    );
    expect(problemsOf({ MODEL_NAME: 'vit-base-patch16-224', EXPORT_FORMAT: 'coreml' })).toEqual([]);
    // The converters take SegFormer, but the CoreML and TFLite packages' wrappers cannot decode class maps.
    const [semantic] = problemsOf({ TASK_TYPE: 'semantic_segmentation', MODEL_NAME: 'segformer-b0', EXPORT_FORMAT: 'tflite' });
    expect(semantic).toMatchObject({ variable: 'EXPORT_FORMAT', value: 'tflite' });
    expect(semantic!.message).toMatch(
      /^semantic_segmentation models export to onnx, torchscript, openvino; tflite is not supported for them \(the Swift and Kotlin wrappers/,
    );
    expect(problemsOf({ TASK_TYPE: 'object_detection', MODEL_NAME: 'yolo11n', EXPORT_FORMAT: 'tensorrt' })).toEqual([]);
  });

  it('a quantization the format cannot do lists the ones it can', () => {
    const [p] = problemsOf({ EXPORT_FORMAT: 'openvino', QUANTIZATION_TYPE: 'dynamic', QUANTIZATION_DTYPE: 'int8' });
    expect(p).toMatchObject({ variable: 'QUANTIZATION_TYPE' });
    expect(p!.message).toBe(
      'dynamic int8 quantization is not available for timm openvino; supported: QUANTIZATION_TYPE=dynamic with QUANTIZATION_DTYPE=float16, or none',
    );
    expect(problemsOf({ EXPORT_FORMAT: 'onnx', QUANTIZATION_TYPE: 'static', QUANTIZATION_DTYPE: 'float16', VALIDATION_DATASET_ID: 'ds' })[0]!.message).toMatch(
      /float16 needs no calibration: use QUANTIZATION_TYPE=dynamic/,
    );
    const yolo = { TASK_TYPE: 'object_detection', MODEL_NAME: 'yolo11n' };
    expect(problemsOf({ ...yolo, EXPORT_FORMAT: 'coreml', QUANTIZATION_TYPE: 'static', VALIDATION_DATASET_ID: 'ds' })[0]!.message).toMatch(
      /^static int8 quantization is not available for ultralytics coreml; supported: QUANTIZATION_TYPE=dynamic with QUANTIZATION_DTYPE=float16, or none$/,
    );
    // The combinations people ask for say why they are absent and name the one that works.
    expect(problemsOf({ ...yolo, EXPORT_FORMAT: 'torchscript', QUANTIZATION_TYPE: 'dynamic' })[0]!.message).toBe(
      "dynamic int8 quantization is not available for ultralytics torchscript (torch's dynamic quantization covers nn.Linear layers only and YOLO networks are convolutions, so nothing would shrink; static int8 quantizes the convolutions); supported: QUANTIZATION_TYPE=static with QUANTIZATION_DTYPE=int8, or none",
    );
    const vit = { MODEL_NAME: 'vit-base-patch16-224', EXPORT_FORMAT: 'torchscript', QUANTIZATION_TYPE: 'static', VALIDATION_DATASET_ID: 'ds' };
    expect(problemsOf(vit)[0]!.message).toMatch(
      /^static int8 quantization is not available for huggingface torchscript \(torch's FX tracer, .* cannot trace transformers models .*\); supported: QUANTIZATION_TYPE=dynamic with QUANTIZATION_DTYPE=int8, or none$/,
    );
    expect(problemsOf({ ...yolo, EXPORT_FORMAT: 'torchscript', QUANTIZATION_TYPE: 'static', VALIDATION_DATASET_ID: 'ds' })).toEqual([]);
  });

  it('TFLite static int8 for timm (PT2E) and ultralytics (ai-edge-quantizer); not for transformers', () => {
    expect(quantizationRule('timm', 'tflite', 'static', 'int8')?.method).toMatch(/PT2E/);
    expect(quantizationRule('ultralytics', 'tflite', 'static', 'int8')?.method).toMatch(/static_wi8_ai8/);
    expect(quantizationRule('huggingface', 'tflite', 'static', 'int8')).toBeUndefined();
    for (const framework of ['ultralytics', 'timm', 'huggingface'] as const) expect(quantizationRule(framework, 'tflite', 'dynamic', 'float16')).toBeDefined();
    expect(problemsOf({ EXPORT_FORMAT: 'tflite', QUANTIZATION_TYPE: 'static', VALIDATION_DATASET_ID: 'ds-val' })).toEqual([]);
  });

  it('quantizes ONNX exports of every framework, statically only with calibration images', () => {
    for (const framework of ['ultralytics', 'timm', 'huggingface'] as const) {
      expect(quantizationRule(framework, 'onnx', 'dynamic', 'int8')?.method).toMatch(/onnxruntime dynamic quantization/);
      expect(quantizationRule(framework, 'onnx', 'static', 'int16')).toBeDefined();
    }
    expect(problemsOf({ QUANTIZATION_TYPE: 'static' }).map((p) => p.variable)).toEqual(['VALIDATION_DATASET_ID']);
    expect(problemsOf({ QUANTIZATION_TYPE: 'static', VALIDATION_DATASET_ID: 'ds-val' })).toEqual([]);
  });

  it('the framework comes from MODEL_NAME when FRAMEWORK is unset', () => {
    expect(problemsOf({ MODEL_NAME: 'yolo11n-cls', EXPORT_FORMAT: 'coreml' })).toEqual([]);
    expect(problemsOf({ MODEL_NAME: 'resnet18', EXPORT_FORMAT: 'tensorrt' }).map((p) => p.variable)).toEqual(['EXPORT_FORMAT']);
    expect(problemsOf({ MODEL_NAME: 'resnet18', FRAMEWORK: 'timm', EXPORT_FORMAT: 'tensorrt' }).map((p) => p.variable)).toEqual(['EXPORT_FORMAT']);
  });

  it('every quantization names a format whose framework exports it; every format has a wrapper', () => {
    for (const q of QUANTIZATIONS) for (const f of q.frameworks) expect(FORMATS_BY_FRAMEWORK[f]).toContain(q.format);
    for (const info of Object.values(FORMATS)) expect(info.wrappers.length).toBeGreaterThan(0);
  });

  it('a converter of the optional export group that is not installed is a configuration error naming the group and the command', async () => {
    const entries = exporterEntries('vision_trainer.common.torch_export', z.any(), z.any());
    const bridge = { call: async () => ({ device: 'cpu', missing_packages: ['coremltools'] }) } as unknown as PythonBridge;
    const error = await checkFormat(bridge, entries, 'coreml', 'cpu').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).exitCode).toBe(ExitCode.config);
    expect((error as ConfigError).problems[0]!.message).toBe(
      'EXPORT_FORMAT=coreml needs the Python package(s) coremltools of the optional export group (python/requirements-export.txt), which this Python environment does not have: install it with `VISION_TRAINER_GROUPS=export bash scripts/setup-python.sh` (the container image includes it), or export to onnx, torchscript or openvino',
    );
    const installed = { call: async () => ({ device: 'cpu' }) } as unknown as PythonBridge;
    await expect(checkFormat(installed, entries, 'coreml', 'cpu')).resolves.toBeUndefined();
  });
});
