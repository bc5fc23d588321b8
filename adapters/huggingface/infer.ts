/**
 * transformers inference: image and zero-shot (CLIP) classification checkpoints
 * (python/vision_trainer/checkpoints.py format). Python side: python/vision_trainer/infer_classifier.py.
 */
import { openPythonSession } from '../../src/inference/python-session.js';
import type { InferenceAdapter } from '../inference-types.js';
import { huggingfaceTraining } from './train.js';

export const huggingfaceInference: InferenceAdapter = {
  framework: 'huggingface',
  // The same offline switches and caches as training.
  pythonEnv: (workDir) => huggingfaceTraining.pythonEnv(workDir),
  open: (bridge, request) => openPythonSession(bridge, 'huggingface', request),
};
