/**
 * Export of the checkpoints the timm and transformers trainers write
 * (python/vision_trainer/checkpoints.py): ONNX through torch.onnx.export, TorchScript through
 * torch.jit.trace, OpenVINO converted from the ONNX file. Both frameworks share it: their
 * checkpoints rebuild to the same `pixels -> logits` module. Python side:
 * python/vision_trainer/export_torch.py.
 */
import type { PythonBridge } from '../../src/bridge/python.js';
import { ConfigError } from '../../src/errors.js';
import type { Framework, TaskType } from '../../src/config/tasks.js';
import type { PostprocessingSpec, PreprocessingSpec } from '../../src/export/metadata.js';
import type { ExportAdapter, ExportedArtifact, ExportRequest, ModelDescription, ProcessingOptions } from '../export-types.js';

const MODULE = 'vision_trainer.export_torch';

interface Facts {
  framework: Framework;
  model_name: string;
  task_type: TaskType;
  architecture: string;
  class_names: string[];
  image_size: [number, number];
  mean: [number, number, number];
  std: [number, number, number];
  interpolation: 'bilinear' | 'bicubic';
  resize_mode: 'shorter_side_center_crop' | 'squash';
  crop_pct: number;
  versions: Record<string, string>;
}

/** The normalisation and resize rules the trainer stored in the checkpoint. */
function processingOf(f: Facts, options: ProcessingOptions): { preprocessing: PreprocessingSpec; postprocessing: PostprocessingSpec } {
  const interpolation = f.interpolation === 'bicubic' ? 'bicubic' : 'bilinear';
  const preprocessing: PreprocessingSpec = {
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
  const postprocessing: PostprocessingSpec = {
    output_layout: `logits [batch, classes]${f.task_type === 'zero_shot_classification' ? ' (scaled image-prompt similarities)' : ''}`,
    softmax: { apply: true, temperature: 1 },
    top_k: Math.min(5, f.class_names.length),
    embedded: false,
    included: options.includePostprocessing,
  };
  return { preprocessing, postprocessing };
}

export function torchModuleExport(framework: Framework): ExportAdapter {
  return {
    pythonEnv: (workDir) => ({
      HF_HUB_OFFLINE: '1',
      TRANSFORMERS_OFFLINE: '1',
      HF_HOME: `${workDir}/huggingface`,
      TORCH_HOME: `${workDir}/torch`,
    }),

    async checkFormat(bridge: PythonBridge, format, device) {
      await bridge.call(MODULE, 'check_format', [format, device]);
    },

    async describe(bridge: PythonBridge, checkpointPath: string): Promise<ModelDescription> {
      const f = await bridge.call<Facts>(MODULE, 'describe', [checkpointPath], {}, { long: true });
      if (f.framework !== framework) {
        throw new ConfigError([{ variable: 'FRAMEWORK', value: framework, message: `CHECKPOINT_PATH holds a ${f.framework} checkpoint (${f.model_name}); set FRAMEWORK=${f.framework}, or MODEL_NAME=${f.model_name}` }], 'export');
      }
      return {
        framework,
        taskType: f.task_type,
        architecture: f.architecture,
        classNames: f.class_names,
        trainedSize: f.image_size,
        keypointShape: null,
        versions: f.versions,
        processing: (options) => processingOf(f, options),
      };
    },

    async export(bridge: PythonBridge, request: ExportRequest): Promise<ExportedArtifact> {
      const q = request.quantization;
      const r = await bridge.call<{ path: string; directory: boolean; notes: string[] }>(
        MODULE,
        'export',
        [
          {
            checkpoint: request.checkpointPath,
            format: request.format,
            out_dir: request.outDir,
            input_size: request.inputSize,
            batch: request.batchSize,
            device: request.device,
            opset: 17,
            optimization_level: request.optimizationLevel,
            half: q?.format === 'openvino' && q.dtype === 'float16',
            quantize_dynamic: q?.format === 'torchscript' && q.dtype === 'int8',
          },
        ],
        {},
        { long: true },
      );
      return { path: r.path, directory: r.directory, notes: [`torch ${request.format === 'torchscript' ? 'jit.trace' : 'onnx.export (opset 17)'}`, ...r.notes] };
    },
  };
}

export const timmExport = torchModuleExport('timm');
