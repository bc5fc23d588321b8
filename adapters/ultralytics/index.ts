/** ultralytics (YOLO): one adapter, its parts in the files beside this one. */
import type { FrameworkAdapter } from '../types.js';
import { ultralyticsExport } from './export.js';
import { ultralyticsInference } from './infer.js';
import { ultralyticsTraining } from './train.js';

export const ultralyticsAdapter: FrameworkAdapter = {
  framework: 'ultralytics',
  training: ultralyticsTraining,
  exporter: ultralyticsExport,
  inference: ultralyticsInference,
};
