/**
 * Inference on the checkpoints the timm and transformers trainers write. Both write one format
 * (python/vision_trainer/common/checkpoints.py) that rebuilds to a `pixels -> logits` module, so one
 * Python backend serves them (python/vision_trainer/common/classifier_infer.py); each adapter checks
 * that the checkpoint is its own.
 */
import { z } from 'zod';
import { pythonEntry } from '../../src/bridge/python.js';
import type { Framework } from '../../src/config/tasks.js';
import { ConfigError } from '../../src/errors.js';
import type { InferenceAdapter } from '../../src/frameworks/adapter.js';
import { CheckpointParamsSchema, ModelInfoSchema, SessionParamsSchema } from '../../src/frameworks/protocol.js';
import { openSession } from './session.js';

const MODULE = 'vision_trainer.common.classifier_infer';
/** The framework a checkpoint's metadata names; null when the file is not one of ours. */
export const CHECKPOINT_FRAMEWORK = pythonEntry(MODULE, 'checkpoint_framework', CheckpointParamsSchema, z.string().nullable(), { long: true });
const OPEN = pythonEntry(MODULE, 'open_session', SessionParamsSchema, ModelInfoSchema, { long: true });

export function classifierInference(framework: Framework): InferenceAdapter {
  return {
    recognizes: async (bridge, checkpointPath) => (await bridge.call(CHECKPOINT_FRAMEWORK, { checkpoint: checkpointPath })) === framework,
    open: (bridge, request) =>
      openSession(bridge, OPEN, request, (info) => {
        if (info.framework === framework) return;
        const message = `FRAMEWORK=${framework}, but the checkpoint was written by ${info.framework}`;
        throw new ConfigError([{ variable: 'FRAMEWORK', value: request.config.framework, message }], 'infer');
      }),
  };
}
