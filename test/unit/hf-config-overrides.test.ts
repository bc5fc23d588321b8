/**
 * HF_CONFIG_OVERRIDES (how a transformers model built without weights is shaped, e.g. a tiny
 * ViT or CLIP in tests): validated at start-up like every variable, and refused where it
 * cannot apply. Also: the timm and transformers adapters are registered for training.
 */
import { describe, expect, it } from 'vitest';
import { adapterFor } from '../../src/frameworks/index.js';
import { configFromEnv } from '../../src/config/env.js';
import { ConfigError } from '../../src/errors.js';

const base = {
  JOB_ID: 'job-1',
  TRACE_ID: 'trace-1',
  BACKEND_BASE_URL: 'http://127.0.0.1:9',
  CALLBACK_TOKEN: 'tok-very-secret-123',
  TASK_TYPE: 'image_classification',
  MODEL_NAME: 'vit-base-patch16-224',
  DATASET_ID: 'ds-1',
  EPOCHS: '3',
  STORAGE_TYPE: 'local',
};

function configError(env: Record<string, string>): ConfigError {
  try {
    configFromEnv('train', env);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('HF_CONFIG_OVERRIDES', () => {
  it('parses a nested JSON object for a huggingface model', () => {
    const overrides = { projection_dim: 16, vision_config: { hidden_size: 32, patch_size: 8 } };
    const c = configFromEnv('train', {
      ...base,
      TASK_TYPE: 'zero_shot_classification',
      MODEL_NAME: 'clip-vit-base-patch32',
      HF_CONFIG_OVERRIDES: JSON.stringify(overrides),
    });
    expect(c.framework).toBe('huggingface');
    expect(c.hfConfigOverrides).toEqual(overrides);
  });

  it('is absent unless set', () => {
    expect(configFromEnv('train', base).hfConfigOverrides).toBeUndefined();
  });

  it('refuses invalid JSON and non-objects, naming the variable', () => {
    expect(configError({ ...base, HF_CONFIG_OVERRIDES: '{hidden_size: 32}' }).message).toMatch(/HF_CONFIG_OVERRIDES.*is not valid JSON/s);
    expect(configError({ ...base, HF_CONFIG_OVERRIDES: '[1, 2]' }).message).toMatch(/HF_CONFIG_OVERRIDES.*must be a JSON object of configuration fields/s);
  });

  it('refuses other frameworks and a PRETRAINED_WEIGHT_URL (the weights folder decides the shape)', () => {
    expect(configError({ ...base, MODEL_NAME: 'resnet18', HF_CONFIG_OVERRIDES: '{"hidden_size":32}' }).message).toMatch(
      /HF_CONFIG_OVERRIDES.*applies to FRAMEWORK=huggingface only/s,
    );
    const e = configError({ ...base, HF_CONFIG_OVERRIDES: '{"hidden_size":32}', PRETRAINED_WEIGHT_URL: 'https://example.com/vit.zip' });
    expect(e.message).toMatch(/HF_CONFIG_OVERRIDES.*with PRETRAINED_WEIGHT_URL the folder's config\.json decides/s);
  });
});

describe('training adapters', () => {
  it('timm and huggingface are registered beside ultralytics', () => {
    expect(adapterFor('timm').framework).toBe('timm');
    expect(adapterFor('huggingface').framework).toBe('huggingface');
    expect(adapterFor('huggingface').pythonEnv('/work')).toMatchObject({ HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' });
  });
});
