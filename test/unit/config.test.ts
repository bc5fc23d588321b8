import { describe, expect, it } from 'vitest';
import { configFromEnv, parseConfig } from '../../src/config/env.js';
import { helpText } from '../../src/config/help.js';
import { VARIABLES } from '../../src/config/variables.js';
import { ConfigError } from '../../src/errors.js';
import { graphModelFormat, graphModelProblems } from '../../src/jobs/infer/graph-model.js';

const base = {
  JOB_ID: 'job-1',
  TRACE_ID: 'trace-1',
  BACKEND_BASE_URL: 'http://127.0.0.1:9',
  CALLBACK_TOKEN: 'tok-very-secret-123',
  TASK_TYPE: 'object_detection',
  MODEL_NAME: 'yolo11n',
  DATASET_ID: 'ds-1',
  EPOCHS: '3',
  S3_ENDPOINT: 'http://127.0.0.1:8333',
  AWS_ACCESS_KEY_ID: 'AKIAEXAMPLEKEY',
  AWS_SECRET_ACCESS_KEY: 'super-secret-storage-key',
};

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('configFromEnv (train)', () => {
  it('parses the design example with defaults filled in', () => {
    const c = configFromEnv('train', base);
    expect(c).toMatchObject({
      jobId: 'job-1',
      framework: 'ultralytics',
      epochs: 3,
      batchSize: 16,
      imageSize: 640,
      checkpointFrequency: 5,
      maxTrainingTimeSeconds: 86400,
      backend: { baseUrl: 'http://127.0.0.1:9', token: 'tok-very-secret-123' },
      storage: { type: 's3', endpoint: 'http://127.0.0.1:8333', bucket: 'vision-platform', accessKeyId: 'AKIAEXAMPLEKEY' },
    });
    expect(c.learningRate).toBeUndefined();
  });

  it('accepts the R2 spelling of the storage variables', () => {
    const { S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...rest } = base;
    const c = configFromEnv('train', {
      ...rest,
      STORAGE_TYPE: 'r2',
      R2_ENDPOINT: S3_ENDPOINT,
      R2_ACCESS_KEY_ID: AWS_ACCESS_KEY_ID,
      R2_SECRET_ACCESS_KEY: AWS_SECRET_ACCESS_KEY,
    });
    expect(c.storage).toEqual({
      type: 'r2',
      endpoint: S3_ENDPOINT,
      accessKeyId: AWS_ACCESS_KEY_ID,
      secretAccessKey: AWS_SECRET_ACCESS_KEY,
      bucket: 'vision-platform',
    });
  });

  it('refuses both spellings set to different values', () => {
    const e = configError(() => configFromEnv('train', { ...base, R2_ENDPOINT: 'http://other:1' }));
    expect(e.message).toMatch(/S3_ENDPOINT \/ R2_ENDPOINT: both spellings are set to different values/);
  });

  it('reports every problem at once, naming variable, value and what is allowed', () => {
    const e = configError(() =>
      configFromEnv('train', { ...base, EPOCHS: '0', BATCH_SIZE: 'lots', TASK_TYPE: 'detect', SPLIT_STRATEGY: '{"method":', JOB_ID: undefined }),
    );
    const byVar = Object.fromEntries(e.problems.map((p) => [p.variable, p]));
    expect(Object.keys(byVar).sort()).toEqual(['BATCH_SIZE', 'EPOCHS', 'JOB_ID', 'SPLIT_STRATEGY', 'TASK_TYPE']);
    expect(byVar.EPOCHS!.message).toBe('must be at least 1');
    expect(byVar.EPOCHS!.value).toBe('0');
    expect(byVar.BATCH_SIZE!.message).toBe('must be a whole number');
    expect(byVar.TASK_TYPE!.message).toMatch(/must be one of: object_detection, instance_segmentation/);
    expect(byVar.SPLIT_STRATEGY!.message).toMatch(/is not valid JSON/);
    expect(byVar.JOB_ID!.message).toMatch(/^is required/);
    expect(e.exitCode).toBe(2);
    expect(e.message).not.toMatch(/\n\s+at /); // no stack trace in the message
  });

  it('never shows secret values, even when they are invalid', () => {
    const e = configError(() => configFromEnv('train', { ...base, EPOCHS: 'x', PRETRAINED_WEIGHT_URL: 'ftp://host/w.pt?X-Amz-Signature=abcdef123456' }));
    const text = e.describe();
    expect(text).toContain('PRETRAINED_WEIGHT_URL="[REDACTED]"');
    expect(text).not.toContain('abcdef123456');
    expect(text).not.toContain('super-secret-storage-key');
  });

  it('requires keys for R2 and MinIO, uses the AWS default credential chain for S3 without keys, and needs none for local storage', () => {
    const { AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...rest } = base;
    const e = configError(() => configFromEnv('train', { ...rest, STORAGE_TYPE: 'minio' }));
    expect(e.problems.map((p) => p.variable).sort()).toEqual(['AWS_ACCESS_KEY_ID or R2_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY or R2_SECRET_ACCESS_KEY']);
    const chain = configFromEnv('train', { ...rest, STORAGE_TYPE: 's3' });
    expect(chain.storage).toEqual({ type: 's3', endpoint: rest.S3_ENDPOINT, bucket: 'vision-platform' });
    const half = configError(() => configFromEnv('train', { ...rest, STORAGE_TYPE: 's3', AWS_ACCESS_KEY_ID }));
    expect(half.problems.map((p) => p.variable)).toEqual(['AWS_SECRET_ACCESS_KEY or R2_SECRET_ACCESS_KEY']);
    const temporary = configFromEnv('train', { ...base, STORAGE_TYPE: 's3', AWS_SESSION_TOKEN: 'session-token-1' });
    expect(temporary.storage).toMatchObject({ accessKeyId: AWS_ACCESS_KEY_ID, secretAccessKey: AWS_SECRET_ACCESS_KEY, sessionToken: 'session-token-1' });
    const local = configFromEnv('train', { ...rest, STORAGE_TYPE: 'local', DATASET_PATH: '/data/ds' });
    expect(local.storage).toEqual({ type: 'local', root: './storage', bucket: 'vision-platform', datasetPath: '/data/ds' });
  });

  it('rejects impossible task/model combinations with the model to use instead', () => {
    let e = configError(() => configFromEnv('train', { ...base, TASK_TYPE: 'instance_segmentation' }));
    expect(e.problems[0]).toMatchObject({
      variable: 'MODEL_NAME',
      message: expect.stringMatching(/yolo11n is a object_detection model; for instance_segmentation use yolo11n-seg/),
    });
    e = configError(() => configFromEnv('train', { ...base, MODEL_NAME: 'resnet18' }));
    expect(e.problems[0]!.message).toMatch(/timm does not train object_detection; use FRAMEWORK=ultralytics/);
    e = configError(() => configFromEnv('train', { ...base, MODEL_NAME: 'sam2_t' }));
    expect(e.problems[0]!.message).toMatch(/sam2_t \(Segment Anything\) is neither trained nor exported by this runtime: SAM 2 runs in inference only/);
    expect(configFromEnv('train', { ...base, TASK_TYPE: 'image_classification', MODEL_NAME: 'resnet18' }).framework).toBe('timm');
    expect(configFromEnv('train', { ...base, TASK_TYPE: 'zero_shot_classification', MODEL_NAME: 'clip-vit-base-patch32' }).framework).toBe('huggingface');
    // Semantic segmentation is transformers' (SegFormer); a YOLO name for it names the framework that can.
    expect(configFromEnv('train', { ...base, TASK_TYPE: 'semantic_segmentation', MODEL_NAME: 'nvidia/segformer-b0-finetuned-ade-512-512' }).framework).toBe(
      'huggingface',
    );
    expect(configFromEnv('train', { ...base, TASK_TYPE: 'semantic_segmentation', MODEL_NAME: 'segformer-b1' }).framework).toBe('huggingface');
    e = configError(() => configFromEnv('train', { ...base, TASK_TYPE: 'semantic_segmentation', MODEL_NAME: 'yolo11n-seg' }));
    expect(e.problems[0]!.message).toMatch(/ultralytics does not train semantic_segmentation; use FRAMEWORK=huggingface/);
    const infer = {
      ...base,
      TASK_TYPE: 'semantic_segmentation',
      INFERENCE_TYPE: 'inference_job',
      CHECKPOINT_PATH: 's3://b/c.pt',
      IMAGE_PATHS: '["s3://b/i.png"]',
    };
    expect(configFromEnv('infer', infer).taskType).toBe('semantic_segmentation');
    e = configError(() => configFromEnv('infer', { ...infer, ENABLE_XAI: 'true' }));
    expect(e.problems).toContainEqual(expect.objectContaining({ variable: 'ENABLE_XAI', message: expect.stringMatching(/explains semantic_segmentation/) }));
    // LIME and SHAP explain class scores: refused for detection, naming the methods that work.
    e = configError(() => configFromEnv('infer', { ...infer, TASK_TYPE: 'object_detection', ENABLE_XAI: 'true', XAI_METHOD: 'shap' }));
    expect(e.problems).toContainEqual(
      expect.objectContaining({
        variable: 'XAI_METHOD',
        message: "shap explains classifiers' class scores only; for object_detection use gradcam, gradcam++, eigencam, scorecam, layercam",
      }),
    );
    expect(configFromEnv('infer', { ...infer, TASK_TYPE: 'image_classification', ENABLE_XAI: 'true', XAI_METHOD: 'lime' }).xaiSamples).toBe(200);
  });

  it('treats blank variables as unset', () => {
    const c = configFromEnv('train', { ...base, LEARNING_RATE: '', SNAPSHOT_ID: '  ' });
    expect(c.learningRate).toBeUndefined();
    expect(c.snapshotId).toBeUndefined();
  });

  it('parses SPLIT_STRATEGY JSON', () => {
    const c = configFromEnv('train', { ...base, SPLIT_STRATEGY: '{"method":"auto","ratio":[0.7,0.3],"seed":7}' });
    expect(c.splitStrategy).toEqual({ method: 'auto', ratio: [0.7, 0.3], seed: 7 });
  });
});

describe('configFromEnv (infer, export)', () => {
  const infer = { ...base, INFERENCE_TYPE: 'test_run', CHECKPOINT_PATH: 's3://vision-platform/checkpoints/job-1/best.pt' };
  it("INFERENCE_MODEL_PATH: an export job's .onnx or .openvino only, not with INFERENCE_BACKEND=pytorch, IR not with onnx", () => {
    const path = 's3://b/export-jobs/exp-1/model.onnx';
    const ir = 's3://b/export-jobs/exp-1/model.openvino';
    expect(configFromEnv('infer', { ...infer, INFERENCE_MODEL_PATH: path }).inferenceModelPath).toBe(path);
    expect(configFromEnv('infer', { ...infer, INFERENCE_MODEL_PATH: ir }).inferenceModelPath).toBe(ir);
    expect(graphModelFormat(ir)).toBe('openvino');
    expect(graphModelFormat(path)).toBe('onnx');
    expect(graphModelProblems(configFromEnv('infer', { ...infer, INFERENCE_MODEL_PATH: ir, INFERENCE_BACKEND: 'onnx' }))).toEqual([
      expect.stringMatching(/^names an OpenVINO IR model, which ONNX Runtime does not read: set INFERENCE_BACKEND=openvino or auto/),
    ]);
    for (const backend of ['openvino', 'auto'])
      expect(graphModelProblems(configFromEnv('infer', { ...infer, INFERENCE_MODEL_PATH: ir, INFERENCE_BACKEND: backend }))).toEqual([]);
    for (const other of ['s3://b/export-jobs/exp-1/model.pt', 's3://b/export-jobs/exp-1/model.xml', 'https://x/model.onnx'])
      expect(configError(() => configFromEnv('infer', { ...infer, INFERENCE_MODEL_PATH: other })).problems[0]).toMatchObject({
        variable: 'INFERENCE_MODEL_PATH',
      });
    expect(graphModelProblems(configFromEnv('infer', { ...infer, INFERENCE_MODEL_PATH: path, INFERENCE_BACKEND: 'pytorch' }))).toEqual([
      expect.stringMatching(/INFERENCE_BACKEND=pytorch runs the checkpoint itself/),
    ]);
    expect(graphModelProblems(configFromEnv('infer', { ...infer, INFERENCE_MODEL_PATH: path }))).toEqual([]);
  });

  it('INFERENCE_PRECISION: fp32 unless set; bf16 only where OpenVINO may run, refused before any download otherwise', () => {
    expect(configFromEnv('infer', infer).inferencePrecision).toBe('fp32');
    for (const backend of ['auto', 'openvino'])
      expect(configFromEnv('infer', { ...infer, INFERENCE_BACKEND: backend, INFERENCE_PRECISION: 'bf16' }).inferencePrecision).toBe('bf16');
    for (const backend of ['onnx', 'pytorch'])
      expect(configError(() => configFromEnv('infer', { ...infer, INFERENCE_BACKEND: backend, INFERENCE_PRECISION: 'bf16' })).problems[0]).toMatchObject({
        variable: 'INFERENCE_PRECISION',
        message: expect.stringMatching(new RegExp(`bf16 runs on OpenVINO, not INFERENCE_BACKEND=${backend}.*set INFERENCE_BACKEND=openvino or auto`)),
      });
    expect(configError(() => configFromEnv('infer', { ...infer, INFERENCE_PRECISION: 'fp16' })).problems[0]).toMatchObject({ variable: 'INFERENCE_PRECISION' });
  });

  it('DECODE_THREADS, PREFETCH_NEXT_BATCH, RETAIN_FREED_MEMORY: the CPU budget, auto, on unless set', () => {
    const defaults = configFromEnv('infer', infer);
    expect(defaults.decodeThreads).toBeUndefined();
    expect(defaults).toMatchObject({ prefetchNextBatch: 'auto', retainFreedMemory: true });
    for (const [given, parsed] of [
      ['auto', 'auto'],
      [' AUTO ', 'auto'],
      ['true', true],
      ['on', true],
      ['0', false],
    ] as const) {
      expect(configFromEnv('infer', { ...infer, PREFETCH_NEXT_BATCH: given }).prefetchNextBatch).toBe(parsed);
    }
    expect(configError(() => configFromEnv('infer', { ...infer, PREFETCH_NEXT_BATCH: 'sometimes' })).problems[0]).toMatchObject({
      variable: 'PREFETCH_NEXT_BATCH',
      message: expect.stringMatching(/auto, true or false/),
    });
    expect(configFromEnv('infer', { ...infer, DECODE_THREADS: '1', PREFETCH_NEXT_BATCH: 'false', RETAIN_FREED_MEMORY: 'false' })).toMatchObject({
      decodeThreads: 1,
      prefetchNextBatch: false,
      retainFreedMemory: false,
    });
    expect(configError(() => configFromEnv('infer', { ...infer, DECODE_THREADS: '0' })).problems[0]).toMatchObject({ variable: 'DECODE_THREADS' });
  });

  it('requires DATASET_ID for a test run and IMAGE_PATHS or DATASET_ID for an inference job', () => {
    const { DATASET_ID, ...noDataset } = infer;
    expect(configError(() => configFromEnv('infer', noDataset)).problems[0]).toMatchObject({ variable: 'DATASET_ID' });
    expect(configError(() => configFromEnv('infer', { ...noDataset, INFERENCE_TYPE: 'inference_job' })).problems[0]).toMatchObject({ variable: 'IMAGE_PATHS' });
    const c = configFromEnv('infer', { ...noDataset, INFERENCE_TYPE: 'inference_job', IMAGE_PATHS: '["s3://b/x.jpg"]', XAI_TARGET_LAYERS: '["model.9"]' });
    expect(c.imagePaths).toEqual(['s3://b/x.jpg']);
    expect(c.xaiTargetLayers).toEqual(['model.9']);
    expect(c.confidenceThreshold).toBe(0.25);
  });

  it('SAM 2: training and export refused naming what works; PROMPT_CHECKPOINT_PATH for instance-segmentation inference jobs only', () => {
    for (const [mode, env] of [
      ['train', { ...base, TASK_TYPE: 'instance_segmentation', MODEL_NAME: 'sam2_s' }],
      ['export', { ...base, TASK_TYPE: 'instance_segmentation', MODEL_NAME: 'sam2_t', EXPORT_FORMAT: 'onnx', CHECKPOINT_PATH: infer.CHECKPOINT_PATH }],
      // SAM 2.1 and the bigger sizes: ultralytics' names, refused the same way (not sent to timm for the dot).
      ['train', { ...base, TASK_TYPE: 'instance_segmentation', MODEL_NAME: 'sam2.1_l' }],
      ['train', { ...base, TASK_TYPE: 'instance_segmentation', MODEL_NAME: 'sam2_b' }],
    ] as const) {
      const e = configError(() => configFromEnv(mode, env));
      expect(e.exitCode).toBe(2);
      expect(e.problems[0]).toMatchObject({
        variable: 'MODEL_NAME',
        message: expect.stringMatching(/inference only .*PROMPT_CHECKPOINT_PATH.*use a yolo11 model, e\.g\. yolo11n-seg$/),
      });
    }
    const job = {
      ...infer,
      TASK_TYPE: 'instance_segmentation',
      INFERENCE_TYPE: 'inference_job',
      PROMPT_CHECKPOINT_PATH: 's3://vision-platform/checkpoints/job-7/best.pt',
    };
    expect(configFromEnv('infer', job).promptCheckpointPath).toBe('s3://vision-platform/checkpoints/job-7/best.pt');
    const problems = (env: Record<string, string>) => configError(() => configFromEnv('infer', env)).problems;
    expect(problems({ ...job, INFERENCE_TYPE: 'test_run' })[0]).toMatchObject({
      variable: 'PROMPT_CHECKPOINT_PATH',
      message: expect.stringMatching(/ground-truth boxes/),
    });
    expect(problems({ ...job, TASK_TYPE: 'object_detection' })[0]).toMatchObject({
      variable: 'PROMPT_CHECKPOINT_PATH',
      message: expect.stringMatching(/TASK_TYPE=instance_segmentation/),
    });
    expect(problems({ ...job, PROMPT_CHECKPOINT_PATH: 'https://x/y.pt' })[0]).toMatchObject({ variable: 'PROMPT_CHECKPOINT_PATH' });
  });

  it('validates export settings', () => {
    const exp = { ...base, EXPORT_FORMAT: 'onnx', CHECKPOINT_PATH: 's3://vision-platform/checkpoints/job-1/best.pt' };
    expect(configFromEnv('export', { ...exp, INPUT_SIZE: '[320, 640]' }).inputSize).toEqual([320, 640]);
    expect(configFromEnv('export', { ...exp, INPUT_SIZE: '224' }).inputSize).toEqual([224, 224]);
    const e = configError(() => configFromEnv('export', { ...exp, EXPORT_FORMAT: 'pdf', QUANTIZATION_TYPE: 'static', OPTIMIZATION_LEVEL: '9' }));
    expect(e.problems.map((p) => p.variable).sort()).toEqual(['EXPORT_FORMAT', 'OPTIMIZATION_LEVEL', 'VALIDATION_DATASET_ID']);
  });
});

describe('parseConfig (TypeScript callers)', () => {
  it('accepts native values and names fields, not variables, in errors', () => {
    const c = parseConfig('train', {
      jobId: 'j',
      traceId: 't',
      taskType: 'object_detection',
      modelName: 'yolo11n',
      datasetId: 'd',
      epochs: 2,
      storage: { type: 'local', root: '/tmp/s' },
    });
    expect(c.epochs).toBe(2);
    expect(c.backend).toBeUndefined();
    const e = configError(() =>
      parseConfig('train', {
        jobId: 'j',
        traceId: 't',
        taskType: 'object_detection',
        modelName: 'yolo11n',
        datasetId: 'd',
        epochs: -1,
        storage: { type: 'local' },
      }),
    );
    expect(e.problems).toEqual([expect.objectContaining({ variable: 'epochs', message: 'must be at least 1' })]);
  });
});

describe('help', () => {
  it('lists every variable of each mode with its meaning and default', () => {
    for (const mode of ['train', 'infer', 'export'] as const) {
      const text = helpText(mode);
      for (const v of VARIABLES.filter((x) => x.modes.includes(mode))) expect(text).toContain(v.env[0]);
    }
    expect(helpText('train')).toMatch(/EPOCHS\n\s+Number of training epochs \(at least 1\)\. \(required\)/);
    expect(helpText('train')).toMatch(/CALLBACK_TOKEN\n.*secret/);
  });
});

describe('env fuzz', () => {
  it('never throws anything but ConfigError for 1000 generated environments in each mode', () => {
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const junk = [
      '',
      ' ',
      '0',
      '-1',
      '1e309',
      'NaN',
      'true',
      'null',
      '{}',
      '[]',
      '{"method":"auto","ratio":[2]}',
      '"x"',
      'ünïcödé',
      'a'.repeat(5000),
      '\u0000',
      'http://',
      's3://',
      '[1,2',
      '1.5',
    ];
    const names = [...new Set(VARIABLES.flatMap((v) => v.env))];
    for (let i = 0; i < 1000; i++) {
      const env: Record<string, string> = { ...base };
      for (const name of names) if (rand() < 0.25) env[name] = junk[Math.floor(rand() * junk.length)]!;
      for (const mode of ['train', 'infer', 'export'] as const) {
        try {
          configFromEnv(mode, env);
        } catch (e) {
          expect(e).toBeInstanceOf(ConfigError);
          expect((e as ConfigError).problems.length).toBeGreaterThan(0);
          expect((e as Error).message).not.toContain('super-secret-storage-key');
        }
      }
    }
  }, 60_000);
});

describe('--help says what the config enforces', () => {
  /** The least each mode needs, beyond the variables --help calls required (local storage needs no keys). */
  const extra: Record<'train' | 'infer' | 'export', Record<string, string>> = {
    train: { STORAGE_TYPE: 'local' },
    infer: { STORAGE_TYPE: 'local', INFERENCE_TYPE: 'inference_job', IMAGE_PATHS: '["s3://b/i.jpg"]' },
    export: { STORAGE_TYPE: 'local' },
  };
  const values: Record<string, string> = {
    ...base,
    INFERENCE_TYPE: 'inference_job',
    CHECKPOINT_PATH: 's3://vision-platform/checkpoints/job-1/best.pt',
    EXPORT_FORMAT: 'onnx',
  };

  for (const mode of ['train', 'infer', 'export'] as const) {
    it(`${mode}: each variable --help calls required is refused when missing, and nothing else is needed`, () => {
      const required = [...new Set(VARIABLES.filter((v) => v.modes.includes(mode) && v.required).map((v) => v.env[0]!))];
      const help = helpText(mode);
      for (const name of required) expect(help, name).toMatch(new RegExp(`  ${name}\\b[^\\n]*\\n[^\\n]*\\(required`));
      const env = { ...Object.fromEntries(required.map((name) => [name, values[name]!])), ...extra[mode] };
      expect(() => configFromEnv(mode, env)).not.toThrow();
      for (const name of required) {
        const { [name]: _, ...without } = env;
        const e = configError(() => configFromEnv(mode, without));
        expect(e.problems.map((p) => p.variable)).toContain(name);
      }
    });
  }

  it('export: MODEL_NAME is required, and its help does not say otherwise', () => {
    const row = VARIABLES.find((v) => v.env[0] === 'MODEL_NAME' && v.modes.includes('export'))!;
    expect(row.required).toBe(true);
    expect(row.help).not.toMatch(/optional/i);
  });
});
