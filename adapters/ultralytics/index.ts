/** ultralytics (YOLO): one adapter, its parts in the files beside this one. */
import { join } from 'node:path';
import type { FrameworkAdapter } from '../../src/frameworks/adapter.js';
import { ultralyticsExport } from './export.js';
import { ultralyticsInference } from './infer.js';
import { ultralyticsTraining } from './train.js';

export const ultralyticsAdapter: FrameworkAdapter = {
  framework: 'ultralytics',
  // "true" (not "1") switches ultralytics offline; no pip at run time; settings in the work folder.
  pythonEnv: (workDir) => ({ YOLO_OFFLINE: 'true', YOLO_AUTOINSTALL: 'false', YOLO_CONFIG_DIR: join(workDir, 'ultralytics-config') }),
  training: ultralyticsTraining,
  inference: ultralyticsInference,
  exporter: ultralyticsExport,
};
