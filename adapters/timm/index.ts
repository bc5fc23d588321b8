/** timm (PyTorch Image Models): one adapter, its parts in the files beside this one. */
import type { FrameworkAdapter } from '../types.js';
import { timmExport } from './export.js';
import { timmInference } from './infer.js';
import { timmTraining } from './train.js';

export const timmAdapter: FrameworkAdapter = {
  framework: 'timm',
  training: timmTraining,
  inference: timmInference,
  exporter: timmExport,
};
