/**
 * YOLO-World's configuration: yolo_world_v2_* trains object detection only, and only with the
 * text encoder that TEXT_ENCODER_WEIGHT_URL brings; nothing else reads that variable. Refused at
 * start-up, before any download, naming the variable to change.
 */
import { describe, expect, it } from 'vitest';
import { configFromEnv } from '../../src/config/env.js';
import { ConfigError } from '../../src/errors.js';
import { redact } from '../../src/redact.js';

const base = {
  JOB_ID: 'job-1',
  TRACE_ID: 'trace-1',
  BACKEND_BASE_URL: 'http://127.0.0.1:9',
  CALLBACK_TOKEN: 'tok-very-secret-123',
  TASK_TYPE: 'object_detection',
  MODEL_NAME: 'yolo_world_v2_s',
  DATASET_ID: 'ds-1',
  EPOCHS: '3',
  STORAGE_TYPE: 'local',
};
const ENCODER = 'https://weights.example.com/clip-vit-base-patch32.zip?X-Amz-Signature=feedface0123456789';

function configError(env: Record<string, string>): string {
  try {
    configFromEnv('train', env);
  } catch (e) {
    if (e instanceof ConfigError) return e.describe();
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('YOLO-World configuration', () => {
  it('yolo_world_v2_s and _m train object detection with ultralytics, given TEXT_ENCODER_WEIGHT_URL (a secret)', () => {
    for (const model of ['yolo_world_v2_s', 'yolo_world_v2_m']) {
      const c = configFromEnv('train', { ...base, MODEL_NAME: model, TEXT_ENCODER_WEIGHT_URL: ENCODER });
      expect(c.framework).toBe('ultralytics');
      expect(c.textEncoderWeightUrl).toBe(ENCODER);
    }
    expect(redact(`fetching ${ENCODER}`)).not.toContain('feedface0123456789');
  });

  it('without TEXT_ENCODER_WEIGHT_URL: refused, naming the variable and what it must hold', () => {
    const text = configError(base);
    expect(text).toContain('TEXT_ENCODER_WEIGHT_URL');
    expect(text).toMatch(/is required for yolo_world_v2_s: YOLO-World embeds the class names with a CLIP text encoder/);
  });

  it('other tasks are refused for YOLO-World; other models refuse TEXT_ENCODER_WEIGHT_URL', () => {
    const seg = configError({ ...base, TASK_TYPE: 'instance_segmentation', TEXT_ENCODER_WEIGHT_URL: ENCODER });
    expect(seg).toMatch(
      /yolo_world_v2_s \(YOLO-World\) detects boxes only \(TASK_TYPE=object_detection\); for instance_segmentation use a yolo11 model \(e\.g\. yolo11n-seg\)/,
    );
    const other = configError({ ...base, MODEL_NAME: 'yolo11n', TEXT_ENCODER_WEIGHT_URL: ENCODER });
    expect(other).toMatch(/TEXT_ENCODER_WEIGHT_URL.*is read by YOLO-World models \(yolo_world_v2_s, yolo_world_v2_m\) only, not yolo11n/);
    expect(configError({ ...base, MODEL_NAME: 'yolo_world_v3_s', TEXT_ENCODER_WEIGHT_URL: ENCODER })).toMatch(/open-vocabulary\/segment-anything model/);
  });
});
