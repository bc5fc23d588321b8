/** HuggingFace transformers: one adapter, its parts in the files beside this one. */
import type { FrameworkAdapter } from '../types.js';
import { huggingfaceExport } from './export.js';
import { huggingfaceInference } from './infer.js';
import { huggingfaceTraining } from './train.js';

export const huggingfaceAdapter: FrameworkAdapter = {
  framework: 'huggingface',
  training: huggingfaceTraining,
  inference: huggingfaceInference,
  exporter: huggingfaceExport,
};
