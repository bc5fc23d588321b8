/**
 * timm inference: image classification checkpoints (python/vision_trainer/checkpoints.py format).
 * Python side: python/vision_trainer/infer_classifier.py, driven by infer_session.py.
 */
import { openPythonSession } from '../../src/inference/python-session.js';
import type { InferenceAdapter } from '../inference-types.js';
import { timmTraining } from './train.js';

export const timmInference: InferenceAdapter = {
  framework: 'timm',
  // The same offline switches and caches as training.
  pythonEnv: (workDir) => timmTraining.pythonEnv(workDir),
  open: (bridge, request) => openPythonSession(bridge, 'timm', request),
};
