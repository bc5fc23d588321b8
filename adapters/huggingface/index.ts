/**
 * HuggingFace transformers. Its checkpoints are in the format the timm trainer writes too
 * (python/vision_trainer/common/checkpoints.py), so inference and export are the shared classifier
 * ones of adapters/common/.
 */
import { join } from 'node:path';
import type { FrameworkAdapter } from '../../src/frameworks/adapter.js';
import { classifierInference } from '../common/classifier.js';
import { torchModuleExport } from '../common/torch-export.js';
import { huggingfaceTraining } from './train.js';

export const huggingfaceAdapter: FrameworkAdapter = {
  framework: 'huggingface',
  // No hub at run time: weights come from PRETRAINED_WEIGHT_URL or are built from a config.
  pythonEnv: (workDir) => ({
    HF_HUB_OFFLINE: '1',
    TRANSFORMERS_OFFLINE: '1',
    HF_HUB_DISABLE_TELEMETRY: '1',
    HF_HOME: join(workDir, 'hf-home'),
    TORCH_HOME: join(workDir, 'torch-home'),
  }),
  training: huggingfaceTraining,
  inference: classifierInference('huggingface'),
  exporter: torchModuleExport('huggingface'),
};
