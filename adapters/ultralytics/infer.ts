/**
 * ultralytics inference: detection, segmentation, pose and classification checkpoints.
 * Python side: python/vision_trainer/infer_ultralytics.py, driven by infer_session.py.
 */
import { openPythonSession } from '../../src/inference/python-session.js';
import type { InferenceAdapter } from '../inference-types.js';
import { ultralyticsTraining } from './train.js';

export const ultralyticsInference: InferenceAdapter = {
  framework: 'ultralytics',
  // The same offline switches and config folder as training.
  pythonEnv: (workDir) => ultralyticsTraining.pythonEnv(workDir),
  open: (bridge, request) => openPythonSession(bridge, 'ultralytics', request),
};
