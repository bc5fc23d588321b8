/**
 * Export of the checkpoints the timm and transformers trainers write
 * (python/vision_trainer/common/checkpoints.py): ONNX through torch.onnx.export, TorchScript through
 * torch.jit.trace, OpenVINO converted from the ONNX file. Both frameworks share it: their
 * checkpoints rebuild to the same `pixels -> logits` module. Python side:
 * python/vision_trainer/common/torch_export.py.
 */
import type { Framework } from '../../src/config/tasks.js';
import { ConfigError } from '../../src/errors.js';
import type { ExportAdapter, ProcessingOptions } from '../../src/frameworks/adapter.js';
import { type TorchFacts, TorchExportParamsSchema, TorchFactsSchema } from '../../src/frameworks/protocol.js';
import { embeddedPreprocessing, type PostprocessingSpec, type PreprocessingSpec } from '../../src/jobs/export/metadata.js';
import { checkFormat, exporterEntries, exportParams, openOriginal } from './exporter.js';

/** How torch hands each format its module (the rest go through ONNX). */
const TORCH_STEP: Partial<Record<string, string>> = { torchscript: 'jit.trace', coreml: 'jit.trace', tflite: 'export (litert-torch)' };

const PYTHON = exporterEntries('vision_trainer.common.torch_export', TorchFactsSchema, TorchExportParamsSchema);

/** The normalisation and resize rules the trainer stored in the checkpoint. */
function processingOf(f: TorchFacts, options: ProcessingOptions): { preprocessing: PreprocessingSpec; postprocessing: PostprocessingSpec } {
  const interpolation = f.interpolation === 'bicubic' ? 'bicubic' : 'bilinear';
  let preprocessing: PreprocessingSpec = {
    resize:
      f.resize_mode === 'squash'
        ? { method: 'resize', size: options.inputSize, interpolation }
        : { method: 'resize_shorter_center_crop', size: options.inputSize, crop_pct: f.crop_pct, interpolation },
    normalize: { method: 'standardize', mean: f.mean, std: f.std },
    channel_order: 'RGB',
    data_type: 'float32',
    layout: 'NCHW',
    embedded: false,
    included: options.includePreprocessing,
  };
  // ONNX, and OpenVINO converted from it, take the normalisation into the graph; TorchScript keeps the float input.
  if (options.includePreprocessing && (options.format === 'onnx' || options.format === 'openvino')) preprocessing = embeddedPreprocessing(preprocessing);
  if (f.task_type === 'semantic_segmentation') {
    const postprocessing: PostprocessingSpec = {
      output_layout:
        'logits [batch, classes, height, width] at the input size; the class map is their argmax over classes, resized to the image by nearest neighbour (the wrappers return one mask per class present)',
      embedded: false,
      included: options.includePostprocessing,
    };
    return { preprocessing, postprocessing };
  }
  const zeroShot = f.task_type === 'zero_shot_classification' ? ' of the scaled image-prompt similarities' : '';
  // INCLUDE_POSTPROCESSING builds the softmax into the model; top-k stays with the wrappers (a fixed k would cut what callers may want).
  const embedded = options.includePostprocessing;
  const postprocessing: PostprocessingSpec = {
    output_layout: embedded
      ? `probabilities [batch, classes]: softmax${zeroShot} applied in the model`
      : `logits [batch, classes]${zeroShot ? ' (scaled image-prompt similarities)' : ''}`,
    softmax: { apply: !embedded, temperature: 1 },
    top_k: Math.min(5, f.class_names.length),
    embedded,
    included: options.includePostprocessing,
  };
  return { preprocessing, postprocessing };
}

export function torchModuleExport(framework: Framework): ExportAdapter {
  return {
    checkFormat: (bridge, format, device) => checkFormat(bridge, PYTHON, format, device),

    async describe(bridge, checkpointPath) {
      const f = await bridge.call(PYTHON.describe, { checkpoint: checkpointPath });
      if (f.framework !== framework) {
        throw new ConfigError(
          [
            {
              variable: 'FRAMEWORK',
              value: framework,
              message: `CHECKPOINT_PATH holds a ${f.framework} checkpoint (${f.model_name}); set FRAMEWORK=${f.framework}, or MODEL_NAME=${f.model_name}`,
            },
          ],
          'export',
        );
      }
      return {
        framework,
        taskType: f.task_type,
        architecture: f.architecture,
        classNames: f.class_names,
        classIds: f.class_ids,
        trainedSize: f.image_size,
        keypointShape: null,
        versions: f.versions,
        processing: (options) => processingOf(f, options),
      };
    },

    async export(bridge, request) {
      const q = request.quantization;
      const r = await bridge.call(PYTHON.export, {
        ...exportParams(request, 17),
        optimization_level: request.optimizationLevel,
        half: (q?.format === 'openvino' || q?.format === 'coreml' || q?.format === 'tflite') && q.dtype === 'float16',
        embed_softmax: request.embedPostprocessing,
        quantize_dynamic: (q?.format === 'torchscript' || q?.format === 'tflite') && q.type === 'dynamic' && q.dtype === 'int8',
        quantize_static: (q?.format === 'torchscript' || q?.format === 'tflite') && q.type === 'static' && q.dtype === 'int8',
        calibration: request.calibration?.files ?? [],
        calibration_shape: request.calibration?.shape ?? [],
      });
      return {
        path: r.path,
        directory: r.directory,
        notes: [
          `torch ${TORCH_STEP[request.format] ?? 'onnx.export (opset 17)'}`,
          ...(request.embedPostprocessing ? ['softmax built into the model (INCLUDE_POSTPROCESSING)'] : []),
          ...r.notes,
        ],
        ...(r.unquantized_size_bytes === undefined ? {} : { unquantizedSizeBytes: r.unquantized_size_bytes }),
      };
    },

    openOriginal: (bridge, handle, checkpointPath, device, embedded) => openOriginal(bridge, PYTHON, handle, checkpointPath, device, embedded),
  };
}
