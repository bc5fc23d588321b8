/** ultralytics (YOLO): one adapter, its parts in the files beside this one. */
import type { FrameworkAdapter } from '../types.js';
import { ultralyticsTraining } from './train.js';

export const ultralyticsAdapter: FrameworkAdapter = {
  framework: 'ultralytics',
  training: ultralyticsTraining,
};
