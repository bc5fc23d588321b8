/**
 * ultralytics export through ultralytics' own exporter (onnx, torchscript, openvino, coreml,
 * litert/tflite, tensorrt). Python side: python/vision_trainer/ultralytics/export.py.
 */
import type { TaskType } from '../../src/config/tasks.js';
import { ConfigError, PythonError } from '../../src/errors.js';
import type { ExportAdapter, ExportRequest, ProcessingOptions } from '../../src/frameworks/adapter.js';
import { type UltralyticsFacts, UltralyticsExportParamsSchema, UltralyticsFactsSchema } from '../../src/frameworks/protocol.js';
import { embeddedPreprocessing, type PostprocessingSpec, type PreprocessingSpec } from '../../src/jobs/export/metadata.js';
import { checkFormat, exporterEntries, exportParams, nmsParams, openOriginal } from '../common/exporter.js';

const PYTHON = exporterEntries('vision_trainer.ultralytics.export', UltralyticsFactsSchema, UltralyticsExportParamsSchema);

/** ultralytics' `quantize=` value for the format-native quantizations of src/jobs/export/formats.ts. */
function nativeQuantize(request: ExportRequest): 16 | 'w8a32' | 8 | null {
  const q = request.quantization;
  if (!q) return null;
  if (q.dtype === 'float16') return 16;
  if (q.format === 'tflite' && q.dtype === 'int8') return q.type === 'static' ? 8 : 'w8a32';
  return null;
}

/** Decoding of the raw outputs, written out for readers without a wrapper. */
const OUTPUT_LAYOUT: Partial<Record<TaskType, string>> = {
  object_detection: 'output0 [batch, 4 + classes, anchors]: rows 0-3 box centre x, y, width, height in input pixels, then one score per class',
  instance_segmentation:
    'output0 [batch, 4 + classes + 32, anchors]: box, class scores, 32 mask coefficients; output1 [batch, 32, H/4, W/4]: prototype masks (mask = sigmoid(coefficients . prototypes))',
  pose_estimation: 'output0 [batch, 4 + classes + K*3, anchors]: box, class scores, then x, y, visibility (already sigmoid) per keypoint, in input pixels',
  image_classification: 'output0 [batch, classes]: class probabilities (softmax applied in the model)',
};

const NMS_ROWS =
  'output0 [batch, max_detections, 6 + extras]: one row per detection kept by the NMS in the model, best first, then zero rows; x1, y1, x2, y2 in input pixels, score, the dataset class id';
/** Decoding of a model with NMS built in (INCLUDE_POSTPROCESSING). */
const EMBEDDED_NMS_LAYOUT: Partial<Record<TaskType, string>> = {
  object_detection: NMS_ROWS,
  instance_segmentation: `${NMS_ROWS}, then 32 mask coefficients; output1 [batch, 32, H/4, W/4]: prototype masks (mask = sigmoid(coefficients . prototypes))`,
  pose_estimation: `${NMS_ROWS}, then x, y, visibility (already sigmoid) per keypoint, in input pixels`,
};

/** ultralytics' own conventions: LetterBox for detection tasks, classify_transforms otherwise. */
function processingOf(f: UltralyticsFacts, options: ProcessingOptions): { preprocessing: PreprocessingSpec; postprocessing: PostprocessingSpec } {
  const classification = f.task_type === 'image_classification';
  let preprocessing: PreprocessingSpec = {
    resize: classification
      ? { method: 'resize_shorter_center_crop', size: options.inputSize, crop_pct: 1, interpolation: 'bilinear' }
      : { method: 'letterbox', size: options.inputSize, fill_value: 114, interpolation: 'bilinear' },
    normalize: { method: 'divide', mean: [0, 0, 0], std: [255, 255, 255] },
    channel_order: 'RGB',
    data_type: 'float32',
    layout: 'NCHW',
    embedded: false,
    included: options.includePreprocessing,
  };
  // The ONNX graph takes the normalisation (the other formats come from ultralytics' exporter as they are).
  if (options.includePreprocessing && options.format === 'onnx') preprocessing = embeddedPreprocessing(preprocessing);
  const layout = OUTPUT_LAYOUT[f.task_type] ?? '';
  // INCLUDE_POSTPROCESSING builds a detector's NMS into its ONNX graph (ultralytics' nms=True).
  const nmsEmbedded = !classification && options.includePostprocessing && options.format === 'onnx';
  const postprocessing: PostprocessingSpec = classification
    ? {
        output_layout: layout,
        softmax: { apply: false, temperature: 1 },
        top_k: Math.min(5, f.class_names.length),
        // ultralytics' classifiers end in a softmax in every export.
        embedded: true,
        included: options.includePostprocessing,
      }
    : {
        output_layout: nmsEmbedded ? (EMBEDDED_NMS_LAYOUT[f.task_type] ?? '') : layout,
        nms: {
          method: 'nms',
          class_aware: true,
          iou_threshold: 0.45,
          confidence_threshold: 0.25,
          max_detections: 300,
          // The graph thresholds nothing (every score above 0 enters its NMS): the wrappers' confidence_threshold, or the caller's, decides.
          ...(nmsEmbedded ? { min_confidence: 0 } : {}),
        },
        coordinate_format: 'xyxy',
        // ultralytics' LiteRT export divides coordinates by the input size (for int8 ranges).
        box_units: options.format === 'tflite' ? 'normalized' : 'pixels',
        ...(f.task_type === 'instance_segmentation' ? { mask_threshold: 0.5 } : {}),
        embedded: nmsEmbedded,
        included: options.includePostprocessing,
      };
  return { preprocessing, postprocessing };
}

export const ultralyticsExport: ExportAdapter = {
  checkFormat: (bridge, format, device) => checkFormat(bridge, PYTHON, format, device),

  async describe(bridge, checkpointPath) {
    const f = await bridge.call(PYTHON.describe, { checkpoint: checkpointPath }).catch((err: unknown) => {
      if (err instanceof PythonError && err.pythonType === 'Sam2WeightsError')
        throw new ConfigError([{ variable: 'CHECKPOINT_PATH', message: err.message.slice(err.pythonType.length + 2) }], 'export');
      throw err;
    });
    return {
      framework: 'ultralytics',
      taskType: f.task_type,
      architecture: f.architecture,
      classNames: f.class_names,
      classIds: f.class_ids,
      trainedSize: f.image_size,
      keypointShape: f.keypoint_shape,
      versions: f.versions,
      processing: (options) => processingOf(f, options),
    };
  },

  async export(bridge, request) {
    const r = await bridge.call(PYTHON.export, {
      ...exportParams(request, 12),
      simplify: request.optimizationLevel >= 1,
      quantize: nativeQuantize(request),
      nms: nmsParams(request.embedNms),
      optimization_level: request.optimizationLevel,
      quantize_static: request.quantization?.format === 'torchscript' && request.quantization.type === 'static',
      calibration: request.calibration?.files ?? [],
      calibration_shape: request.calibration?.shape ?? [],
    });
    const own = request.quantization?.format === 'torchscript';
    const notes = [
      own
        ? 'torch.jit.trace of the fused network (ultralytics export-mode heads)'
        : `ultralytics ${request.format} exporter${request.format === 'onnx' ? ` (opset 12${request.optimizationLevel >= 1 ? ', onnxslim' : ''})` : ''}`,
      ...r.notes,
    ];
    if (request.quantization && !own) notes.push(request.quantization.method);
    return {
      path: r.path,
      directory: r.directory,
      notes,
      ...(r.unquantized_size_bytes === undefined ? {} : { unquantizedSizeBytes: r.unquantized_size_bytes }),
      ...(r.float32_modules === undefined ? {} : { float32Modules: r.float32_modules }),
    };
  },

  openOriginal: (bridge, handle, checkpointPath, device, embedded) => openOriginal(bridge, PYTHON, handle, checkpointPath, device, embedded),
};
