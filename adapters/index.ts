/** Framework adapters by name. */
import type { Framework } from '../src/config/tasks.js';
import { FrameworkError } from '../src/errors.js';
import type { FrameworkAdapter } from './types.js';
import { huggingfaceAdapter } from './huggingface/index.js';
import { timmAdapter } from './timm/index.js';
import { ultralyticsAdapter } from './ultralytics/index.js';

const ADAPTERS: Partial<Record<Framework, FrameworkAdapter>> = {
  ultralytics: ultralyticsAdapter,
  timm: timmAdapter,
  huggingface: huggingfaceAdapter,
};

export function adapterFor(framework: Framework): FrameworkAdapter {
  const adapter = ADAPTERS[framework];
  if (!adapter) {
    throw new FrameworkError(`Training with ${framework} is not available in this version`, {
      hint: `Available: ${Object.keys(ADAPTERS).join(', ')}.`,
    });
  }
  return adapter;
}

export type { FrameworkAdapter, PreparedDataset, TrainingAdapter, TrainOutcome, TrainRequest } from './types.js';
export type { TrainerEvent } from './trainer-events.js';
