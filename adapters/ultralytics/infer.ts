/**
 * ultralytics inference: detection, segmentation, pose and classification checkpoints.
 * Python side: python/vision_trainer/ultralytics/infer.py on the shared session of
 * python/vision_trainer/common/infer_session.py.
 */
import { z } from 'zod';
import { pythonEntry } from '../../src/bridge/python.js';
import type { InferenceAdapter } from '../../src/frameworks/adapter.js';
import { CheckpointParamsSchema, ModelInfoSchema, SessionParamsSchema } from '../../src/frameworks/protocol.js';
import { openSession } from '../common/session.js';

const MODULE = 'vision_trainer.ultralytics.infer';
const RECOGNIZES = pythonEntry(MODULE, 'recognizes', CheckpointParamsSchema, z.boolean(), { long: true });
const OPEN = pythonEntry(MODULE, 'open_session', SessionParamsSchema, ModelInfoSchema, { long: true });

export const ultralyticsInference: InferenceAdapter = {
  recognizes: (bridge, checkpointPath) => bridge.call(RECOGNIZES, { checkpoint: checkpointPath }),
  open: (bridge, request) => openSession(bridge, OPEN, request),
};
