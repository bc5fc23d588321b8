/**
 * timm (PyTorch Image Models). Its checkpoints are in the format the transformers trainer
 * writes too (python/vision_trainer/common/checkpoints.py), so inference and export are the shared
 * classifier ones of adapters/common/.
 */
import { join } from 'node:path';
import type { FrameworkAdapter } from '../../src/frameworks/adapter.js';
import { classifierInference } from '../common/classifier.js';
import { torchModuleExport } from '../common/torch-export.js';
import { timmTraining } from './train.js';

export const timmAdapter: FrameworkAdapter = {
  framework: 'timm',
  // Weights come from PRETRAINED_WEIGHT_URL only: timm must never reach for the hub.
  pythonEnv: (workDir) => ({ HF_HUB_OFFLINE: '1', HF_HOME: join(workDir, 'hf-home'), TORCH_HOME: join(workDir, 'torch-home') }),
  training: timmTraining,
  inference: classifierInference('timm'),
  exporter: torchModuleExport('timm'),
};
