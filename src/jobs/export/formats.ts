/**
 * What can be exported, and how it is stored: the capability matrix (framework x format x
 * quantization), the file layout of each format, and the runtimes its package ships. Config
 * validation, the export job and the packager all read this one table.
 */
import type { Framework, TaskType } from '../../config/tasks.js';
import type { EXPORT_FORMATS } from '../../config/variables.js';

export type ExportFormat = (typeof EXPORT_FORMATS)[number];
export type QuantizationType = 'none' | 'dynamic' | 'static';
export type QuantizationDtype = 'int8' | 'int16' | 'float16';
export type RuntimeLanguage = 'python' | 'node' | 'cpp' | 'swift' | 'kotlin';

/** ultralytics exports through its own exporter; timm and transformers through torch's tools. */
export const FORMATS_BY_FRAMEWORK: Record<Framework, readonly ExportFormat[]> = {
  ultralytics: ['onnx', 'torchscript', 'openvino', 'coreml', 'tflite', 'tensorrt'],
  timm: ['onnx', 'torchscript', 'openvino', 'coreml', 'tflite'],
  huggingface: ['onnx', 'torchscript', 'openvino', 'coreml', 'tflite'],
};

/**
 * Formats a task cannot export to although its framework converts to them: the Swift and Kotlin
 * wrappers of CoreML and TFLite packages decode class scores and boxes, not the per-pixel class
 * maps of semantic segmentation (the converters themselves handle SegFormer).
 */
export const TASK_FORMAT_LIMITS: Partial<Record<TaskType, { formats: readonly ExportFormat[]; reason: string }>> = {
  semantic_segmentation: {
    formats: ['onnx', 'torchscript', 'openvino'],
    reason: 'the Swift and Kotlin wrappers of CoreML and TFLite packages decode class scores and boxes, not per-pixel class maps',
  },
};

export interface FormatInfo {
  /** The model's name inside package.zip (a folder for directory formats). */
  packageName: string;
  /** Folder formats (OpenVINO IR, CoreML packages) are uploaded as one zip at model.{fmt}. */
  directory: boolean;
  /** Runtime wrappers in the package: each really runs this format. */
  wrappers: readonly RuntimeLanguage[];
  /** The design's runtime table (metadata.json "runtime"). */
  engines: readonly string[];
  languages: readonly string[];
  platforms: readonly string[];
}

export const FORMATS: Record<ExportFormat, FormatInfo> = {
  onnx: {
    packageName: 'model.onnx',
    directory: false,
    wrappers: ['python', 'node', 'cpp'],
    engines: ['onnxruntime', 'opencv_dnn', 'tensorrt'],
    languages: ['python', 'javascript', 'cpp', 'csharp', 'java'],
    platforms: ['windows', 'linux', 'macos', 'android', 'ios'],
  },
  torchscript: {
    packageName: 'model.torchscript',
    directory: false,
    wrappers: ['python'],
    engines: ['pytorch'],
    languages: ['python', 'cpp'],
    platforms: ['windows', 'linux', 'macos', 'android', 'ios'],
  },
  openvino: {
    packageName: 'model.openvino',
    directory: true,
    wrappers: ['python'],
    engines: ['openvino'],
    languages: ['python', 'cpp'],
    platforms: ['windows', 'linux', 'macos'],
  },
  coreml: {
    packageName: 'model.mlpackage',
    directory: true,
    // The Python wrapper runs it through coremltools, which predicts on macOS only.
    wrappers: ['swift', 'python'],
    engines: ['coreml'],
    languages: ['swift', 'objective-c', 'python'],
    platforms: ['ios', 'macos'],
  },
  tflite: {
    packageName: 'model.tflite',
    directory: false,
    wrappers: ['python', 'kotlin'],
    engines: ['tflite'],
    languages: ['python', 'kotlin', 'java', 'swift'],
    platforms: ['android', 'ios', 'linux', 'raspberry_pi'],
  },
  tensorrt: {
    packageName: 'model.engine',
    directory: false,
    wrappers: ['python'],
    engines: ['tensorrt'],
    languages: ['python', 'cpp'],
    platforms: ['linux', 'windows'],
  },
};

/**
 * Formats whose predictions cannot be computed on this platform's Linux nodes: Core ML runs on
 * Apple's operating systems only, so a CoreML export is checked structurally (its spec loaded back
 * and compared with the checkpoint) and its latency is not measured. The value is the reason, for
 * metadata.json and the log.
 */
export const NOT_RUNNABLE_HERE: Partial<Record<ExportFormat, string>> = {
  coreml:
    'Core ML runs models on macOS and iOS only, and export jobs run on Linux: the predictions and the latency of the CoreML model were not measured (run the package on a Mac to compare them)',
};

/** A runtime wrapper a format usually ships that this package leaves out, and why (README, metadata.json). */
export interface AbsentWrapper {
  wrapper: RuntimeLanguage;
  reason: string;
}

/** ONNX operators OpenCV's DNN importer (the C++ wrapper's engine) does not implement. */
const OPENCV_MISSING_OPS = [':DynamicQuantizeLinear', ':MatMulInteger', ':ConvInteger'];
/**
 * Standard operators that OpenCV's DNN importer of the distributions' OpenCV (Debian and Ubuntu
 * ship 4.6) cannot create: torch writes LayerNormalization for transformers (ViT, SegFormer) at
 * opset 17, and OpenCV 4.6 fails at `readNetFromONNX` ("Can't create layer ... LayerNormalization").
 */
const OPENCV_46_MISSING_OPS = [':LayerNormalization'];

/**
 * The wrappers and engines this model can really run on: the format's list, less the runtimes
 * that cannot load what the export produced (a quantized graph, ONNX Runtime's own operators).
 * `operators` are the final ONNX file's ("domain:op"), null for other formats.
 */
export function packageRuntimes(
  format: ExportFormat,
  model: {
    operators: readonly string[] | null;
    quantization: QuantizationRule | undefined;
    /** The fixed batch of an embedded-preprocessing (uint8 NHWC) input; absent for float inputs. */
    pixelInputBatch?: number;
  },
): { wrappers: RuntimeLanguage[]; engines: string[]; absent: AbsentWrapper[] } {
  const info = FORMATS[format];
  const absent: AbsentWrapper[] = [];
  let engines = [...info.engines];
  if (format === 'onnx') {
    const ops = model.operators ?? [];
    const foreign = ops.filter((op) => !op.startsWith(':'));
    const dynamic = ops.filter((op) => OPENCV_MISSING_OPS.includes(op));
    if (ops.includes(':NonMaxSuppression')) {
      // Checked first: it holds whatever else the graph is.
      absent.push({
        wrapper: 'cpp',
        reason:
          "the detector's NMS is built into the graph (INCLUDE_POSTPROCESSING=true: ONNX NonMaxSuppression), which OpenCV's DNN module (the C++ wrapper) does not implement; ONNX Runtime runs it (Python, Node). Export with INCLUDE_POSTPROCESSING=false for a graph OpenCV loads (raw outputs, NMS left to the caller).",
      });
      engines = foreign.length ? ['onnxruntime'] : engines.filter((e) => e !== 'opencv_dnn');
    } else if (foreign.length) {
      const domains = [...new Set(foreign.map((op) => op.split(':')[0]))].join(', ');
      absent.push({
        wrapper: 'cpp',
        reason: `OPTIMIZATION_LEVEL=3 baked ONNX Runtime's own operators (${domains}: ${foreign.map((op) => op.split(':')[1]).join(', ')}) into the graph; OpenCV's DNN module (the C++ wrapper) and TensorRT load standard ONNX operators only. Export with OPTIMIZATION_LEVEL=2 for them.`,
      });
      engines = ['onnxruntime'];
    } else if (dynamic.length) {
      absent.push({
        wrapper: 'cpp',
        reason: `the graph is dynamically quantized (${dynamic.map((op) => op.slice(1)).join(', ')}), which OpenCV's DNN module (the C++ wrapper) does not implement; ONNX Runtime runs it (Python, Node).`,
      });
      engines = engines.filter((e) => e !== 'opencv_dnn');
    } else if (ops.some((op) => OPENCV_46_MISSING_OPS.includes(op))) {
      const missing = ops.filter((op) => OPENCV_46_MISSING_OPS.includes(op)).map((op) => op.slice(1));
      absent.push({
        wrapper: 'cpp',
        reason: `the graph uses ${missing.join(', ')} (opset 17, transformer models), which the OpenCV DNN module of Debian and Ubuntu (OpenCV 4.6, the C++ wrapper's engine) cannot load; ONNX Runtime runs it (Python, Node).`,
      });
      engines = engines.filter((e) => e !== 'opencv_dnn');
    } else if (model.quantization) {
      absent.push({
        wrapper: 'cpp',
        reason: `the C++ wrapper (OpenCV DNN) runs float32 graphs; this ${model.quantization.dtype} graph (${model.quantization.type} quantization) needs ONNX Runtime (Python, Node).`,
      });
      engines = engines.filter((e) => e !== 'opencv_dnn');
    }
  }
  if (format === 'onnx' && !absent.length && (model.pixelInputBatch ?? 1) > 1) {
    // Measured: OpenCV 4.6 runs the uint8 NHWC graph at batch 1 and fails an assertion in its shape code at batch 2.
    absent.push({
      wrapper: 'cpp',
      reason: `OpenCV's DNN module (4.6, the C++ wrapper) fails on a uint8 NHWC input of batch ${model.pixelInputBatch} (the preprocessing built into the graph); ONNX Runtime runs it (Python, Node). Export with BATCH_SIZE=1, or INCLUDE_PREPROCESSING=false, for it.`,
    });
    engines = engines.filter((e) => e !== 'opencv_dnn');
  }
  const left = new Set(absent.map((a) => a.wrapper));
  return { wrappers: info.wrappers.filter((w) => !left.has(w)), engines, absent };
}

/** Storage key of the exported model: `export-jobs/{JOB_ID}/model.{fmt}` (docs/contract.md). */
export const exportKey = (jobId: string, name: string) => `export-jobs/${jobId}/${name}`;
export const modelObjectName = (format: ExportFormat) => `model.${format}`;

export interface QuantizationRule {
  format: ExportFormat;
  frameworks: readonly Framework[];
  type: Exclude<QuantizationType, 'none'>;
  dtype: QuantizationDtype;
  /** What is done, for metadata and logs. */
  method: string;
}

const ALL: readonly Framework[] = ['ultralytics', 'timm', 'huggingface'];

/**
 * Every supported quantization. ONNX quantization is one step after any framework's export
 * (onnxruntime's tools); the others are the format's own converter options. float16 is listed
 * as `dynamic`: it needs no calibration.
 */
export const QUANTIZATIONS: readonly QuantizationRule[] = [
  {
    format: 'onnx',
    frameworks: ALL,
    type: 'dynamic',
    dtype: 'int8',
    method: 'onnxruntime dynamic quantization: int8 weights, activations quantized at run time',
  },
  { format: 'onnx', frameworks: ALL, type: 'dynamic', dtype: 'float16', method: 'float16 weights and activations (inputs and outputs stay float32)' },
  {
    format: 'onnx',
    frameworks: ALL,
    type: 'static',
    dtype: 'int8',
    method: 'onnxruntime static QDQ quantization, int8 weights and activations calibrated on the validation dataset',
  },
  {
    format: 'onnx',
    frameworks: ALL,
    type: 'static',
    dtype: 'int16',
    method: 'onnxruntime static QDQ quantization, int16 weights and activations calibrated on the validation dataset',
  },
  { format: 'openvino', frameworks: ALL, type: 'dynamic', dtype: 'float16', method: 'OpenVINO float16 weight compression' },
  {
    format: 'torchscript',
    frameworks: ['timm', 'huggingface'],
    type: 'dynamic',
    dtype: 'int8',
    method: 'torch dynamic quantization of every nn.Linear layer (int8 weights, activations quantized at run time); convolutions stay float32',
  },
  {
    // FX graph mode traces timm's convolutional networks; transformers models are not FX-traceable by torch's tracer.
    format: 'torchscript',
    frameworks: ['timm'],
    type: 'static',
    dtype: 'int8',
    method: 'torch static int8 quantization of the whole network (FX graph mode, x86 backend, per-channel weights), calibrated on the validation dataset',
  },
  {
    // Our own trace of the fused network: the heads' shape-dependent decoding is beyond FX's tracer.
    format: 'torchscript',
    frameworks: ['ultralytics'],
    type: 'static',
    dtype: 'int8',
    method:
      'torch static int8 quantization of the backbone and neck (FX graph mode, x86 backend, per-channel weights), calibrated on the validation dataset; detection, segmentation and pose heads (box decoding) and attention blocks stay float32, classifiers are int8 up to the softmax',
  },
  { format: 'tensorrt', frameworks: ['ultralytics'], type: 'dynamic', dtype: 'float16', method: 'TensorRT FP16 engine' },
  { format: 'coreml', frameworks: ALL, type: 'dynamic', dtype: 'float16', method: 'CoreML float16 weights' },
  { format: 'tflite', frameworks: ALL, type: 'dynamic', dtype: 'int8', method: 'LiteRT dynamic-range int8 (int8 weights, float activations)' },
  { format: 'tflite', frameworks: ALL, type: 'dynamic', dtype: 'float16', method: 'LiteRT float16 weights (computed in float32)' },
  {
    format: 'tflite',
    frameworks: ['ultralytics'],
    type: 'static',
    dtype: 'int8',
    method:
      'LiteRT static int8 (ai-edge-quantizer static_wi8_ai8, as ultralytics applies it: int8 weights and activations, float32 input and output), calibrated on the validation dataset',
  },
  {
    format: 'tflite',
    frameworks: ['timm'],
    type: 'static',
    dtype: 'int8',
    method:
      'LiteRT full-integer int8 (litert-torch PT2E quantizer: per-channel int8 weights, int8 activations and input; int8 output unless an embedded softmax keeps it float32), calibrated on the validation dataset',
  },
];

/** Why a combination someone is likely to ask for is absent, where the list of what works does not say it. */
const UNAVAILABLE_BECAUSE: readonly (Omit<QuantizationRule, 'method'> & { reason: string })[] = [
  {
    format: 'torchscript',
    frameworks: ['huggingface'],
    type: 'static',
    dtype: 'int8',
    reason:
      "torch's FX tracer, which static quantization needs, cannot trace transformers models (their forward branches on tensor shapes and optional arguments); dynamic int8 quantizes every nn.Linear, most of a transformer's weights",
  },
  {
    format: 'torchscript',
    frameworks: ['ultralytics'],
    type: 'dynamic',
    dtype: 'int8',
    reason:
      "torch's dynamic quantization covers nn.Linear layers only and YOLO networks are convolutions, so nothing would shrink; static int8 quantizes the convolutions",
  },
];

export function quantizationRule(framework: Framework, format: ExportFormat, type: QuantizationType, dtype: QuantizationDtype): QuantizationRule | undefined {
  if (type === 'none') return undefined;
  return QUANTIZATIONS.find((q) => q.format === format && q.frameworks.includes(framework) && q.type === type && q.dtype === dtype);
}

export interface ExportSettingProblem {
  /** Config field at fault (the env parser names its variable). */
  field: 'exportFormat' | 'quantizationType' | 'quantizationDtype';
  message: string;
}

/** Why a framework/format/quantization combination (for this task, when known) cannot be exported, or nothing. */
export function exportSettingProblems(
  framework: Framework,
  format: ExportFormat,
  type: QuantizationType,
  dtype: QuantizationDtype,
  taskType?: TaskType,
): ExportSettingProblem[] {
  const formats = FORMATS_BY_FRAMEWORK[framework];
  if (!formats.includes(format)) {
    return [{ field: 'exportFormat', message: `${framework} models export to ${formats.join(', ')}; ${format} is not supported for ${framework}` }];
  }
  const limit = taskType ? TASK_FORMAT_LIMITS[taskType] : undefined;
  if (limit && !limit.formats.includes(format)) {
    return [
      { field: 'exportFormat', message: `${taskType} models export to ${limit.formats.join(', ')}; ${format} is not supported for them (${limit.reason})` },
    ];
  }
  if (type === 'none' || quantizationRule(framework, format, type, dtype)) return [];
  const options = QUANTIZATIONS.filter((q) => q.format === format && q.frameworks.includes(framework)).map(
    (q) => `QUANTIZATION_TYPE=${q.type} with QUANTIZATION_DTYPE=${q.dtype}`,
  );
  const because = UNAVAILABLE_BECAUSE.find((u) => u.format === format && u.frameworks.includes(framework) && u.type === type && u.dtype === dtype);
  const hint = because
    ? ` (${because.reason})`
    : type === 'static' && dtype === 'float16'
      ? ' (float16 needs no calibration: use QUANTIZATION_TYPE=dynamic)'
      : '';
  return [
    {
      field: 'quantizationType',
      message: options.length
        ? `${type} ${dtype} quantization is not available for ${framework} ${format}${hint}; supported: ${options.join('; ')}, or none`
        : `${framework} ${format} exports support no quantization here; use QUANTIZATION_TYPE=none, or export to onnx to quantize`,
    },
  ];
}
