import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFromEnv } from '../../src/config/env.js';
import { closestFirst, resolveTimmArgs, TIMM_TRAINER_ARGS, timmTrainerArgsHelp, trainerArgProblems } from '../../src/config/trainer-args.js';
import { ConfigError } from '../../src/errors.js';
import { PROJECT_ROOT } from '../../src/paths.js';

const base = {
  JOB_ID: 'job-1',
  TRACE_ID: 'trace-1',
  BACKEND_BASE_URL: 'http://127.0.0.1:9',
  CALLBACK_TOKEN: 'tok-very-secret-123',
  TASK_TYPE: 'image_classification',
  DATASET_ID: 'ds-1',
  EPOCHS: '3',
  STORAGE_TYPE: 'local',
};

function problemsOf(env: Record<string, string>): string[] {
  try {
    configFromEnv('train', { ...base, ...env });
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map((p) => `${p.variable}: ${p.message}`);
    throw e;
  }
  return [];
}

describe('TRAINER_ARGS at configuration time', () => {
  it('passes a framework-native object through unchanged', () => {
    const c = configFromEnv('train', { ...base, MODEL_NAME: 'yolo11n-cls', TRAINER_ARGS: '{"patience":10,"mosaic":0.5,"optimizer":"SGD"}', SEED: '7' });
    expect(c.trainerArgs).toEqual({ patience: 10, mosaic: 0.5, optimizer: 'SGD' });
    expect(c.seed).toBe(7);
  });

  it('names the contract variable for every duplicated key, per framework', () => {
    expect(problemsOf({ MODEL_NAME: 'yolo11n-cls', TRAINER_ARGS: '{"epochs":5,"lr0":0.1,"imgsz":64,"batch":4,"device":"cpu","workers":2}' })).toEqual([
      'TRAINER_ARGS: epochs: duplicates a contract variable: set EPOCHS instead',
      'TRAINER_ARGS: lr0: duplicates a contract variable: set LEARNING_RATE instead',
      'TRAINER_ARGS: imgsz: duplicates a contract variable: set IMAGE_SIZE instead',
      'TRAINER_ARGS: batch: duplicates a contract variable: set BATCH_SIZE instead',
      'TRAINER_ARGS: device: duplicates a contract variable: set DEVICE instead',
      'TRAINER_ARGS: workers: duplicates a contract variable: set NUM_WORKERS instead',
    ]);
    expect(problemsOf({ MODEL_NAME: 'vit-base-patch16-224', FRAMEWORK: 'huggingface', TRAINER_ARGS: '{"learning_rate":0.1,"num_train_epochs":2}' })).toEqual([
      'TRAINER_ARGS: learning_rate: duplicates a contract variable: set LEARNING_RATE instead',
      'TRAINER_ARGS: num_train_epochs: duplicates a contract variable: set EPOCHS instead',
    ]);
    expect(problemsOf({ MODEL_NAME: 'resnet18', TRAINER_ARGS: '{"lr":0.1,"seed":3}' })).toEqual([
      'TRAINER_ARGS: lr: duplicates a contract variable: set LEARNING_RATE instead',
      'TRAINER_ARGS: seed: duplicates a contract variable: set SEED instead',
    ]);
  });

  it('refuses keys that break the contract, with the reason', () => {
    const ultralytics = problemsOf({ MODEL_NAME: 'yolo11n-cls', TRAINER_ARGS: '{"project":"/tmp/x","save_period":2,"resume":true}' });
    expect(ultralytics[0]).toMatch(/^TRAINER_ARGS: project: cannot be set: the job decides where files go/);
    expect(ultralytics[1]).toBe('TRAINER_ARGS: save_period: duplicates a contract variable: set CHECKPOINT_FREQUENCY instead');
    expect(ultralytics[2]).toBe('TRAINER_ARGS: resume: duplicates a contract variable: set RESUME_CHECKPOINT_PATH instead');
    const hf = problemsOf({ MODEL_NAME: 'vit-base-patch16-224', FRAMEWORK: 'huggingface', TRAINER_ARGS: '{"output_dir":"/x","report_to":"mlflow"}' });
    expect(hf[0]).toMatch(/^TRAINER_ARGS: output_dir: cannot be set: the job decides where files go/);
    expect(hf[1]).toMatch(/^TRAINER_ARGS: report_to: cannot be set: tracking is the job's own \(MLFLOW_TRACKING_URI/);
  });

  it('checks timm options by name and value, the closest valid key first', () => {
    const [unknown, bad] = problemsOf({ MODEL_NAME: 'resnet18', TRAINER_ARGS: '{"smothing":0.2,"opt":"adamz"}' });
    expect(unknown).toMatch(/^TRAINER_ARGS: smothing: is not a setting of the timm loop; valid keys \(closest first\): smoothing, /);
    expect(bad).toMatch(/^TRAINER_ARGS: opt: "adamz" is not allowed: /);
  });

  it('refuses a value that is not a JSON object', () => {
    expect(problemsOf({ MODEL_NAME: 'resnet18', TRAINER_ARGS: '[1,2]' })).toEqual(['TRAINER_ARGS: must be a JSON object of framework settings']);
    expect(problemsOf({ MODEL_NAME: 'resnet18', TRAINER_ARGS: '{patience:1}' })[0]).toMatch(/^TRAINER_ARGS: is not valid JSON/);
  });

  it('fills timm defaults in and keeps the given values', () => {
    const r = resolveTimmArgs({ mixup: 0.2, opt: 'sgd' });
    expect(r).toMatchObject({ mixup: 0.2, opt: 'sgd', smoothing: 0.1, sched: 'cosine', scale: [0.5, 1.0] });
    expect(Object.keys(r)).toEqual(Object.keys(TIMM_TRAINER_ARGS));
    expect(trainerArgProblems('timm', r)).toEqual([]);
  });

  it("the README lists the timm loop's options as the table defines them", () => {
    expect(readFileSync(join(PROJECT_ROOT, 'README.md'), 'utf8')).toContain(timmTrainerArgsHelp());
  });

  it('orders candidates by closeness', () => {
    expect(closestFirst('mosiac', ['mixup', 'mosaic', 'momentum'])).toEqual(['mosaic', 'mixup', 'momentum']);
  });
});

describe('SEED and the tracking variables', () => {
  it('checks SEED and the MLflow sign-in pairs', () => {
    expect(problemsOf({ MODEL_NAME: 'resnet18', SEED: '-1' })).toEqual(['SEED: must be at least 0']);
    const mlflow = problemsOf({ MODEL_NAME: 'resnet18', MLFLOW_TRACKING_URI: 'http://127.0.0.1:5000', MLFLOW_TRACKING_USERNAME: 'me' });
    expect(mlflow).toEqual(['MLFLOW_TRACKING_PASSWORD: is required when MLFLOW_TRACKING_USERNAME is set']);
  });

  it('never shows the MLflow token or password', () => {
    const e = problemsOf({
      MODEL_NAME: 'resnet18',
      MLFLOW_TRACKING_URI: 'not a url',
      MLFLOW_TRACKING_TOKEN: 'mlflow-secret-token',
      MLFLOW_TRACKING_USERNAME: 'me',
    }).join('\n');
    expect(e).toContain('MLFLOW_TRACKING_URI');
    expect(e).not.toContain('mlflow-secret-token');
    const c = configFromEnv('train', { ...base, MODEL_NAME: 'resnet18', MLFLOW_TRACKING_URI: 'http://127.0.0.1:5000', ENABLE_TENSORBOARD: 'true' });
    expect(c.mlflow).toEqual({ trackingUri: 'http://127.0.0.1:5000', experimentName: 'vision-trainer' });
    expect(c.tensorboard).toBe(true);
  });
});
