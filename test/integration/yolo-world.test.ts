/**
 * YOLO-World through the real path (SeaweedFS, the callback receiver, the CLI as a child process,
 * ultralytics' WorldTrainer): yolo_world_v2_n fine-tuned from a release-format weights file (a
 * pickled WorldModel with 80 COCO prompts, as yolov8s-worldv2.pt is, randomly initialised here)
 * served at PRETRAINED_WEIGHT_URL, prompted by the dataset's class names, embedded by a tiny
 * randomly initialised transformers CLIP that the job downloads from TEXT_ENCODER_WEIGHT_URL. One
 * training run (2 epochs) is shared by every test of the file: its callbacks and checkpoints, the
 * test run, the export and the resume that read them.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createZip } from '../../src/storage/zip.js';
import { pythonFixture, scratchDir, serveWeights } from '../helpers/classifier-runs.js';
import { runCli, runCliOk } from '../helpers/cli.js';
import { uploadDataset } from '../helpers/datasets.js';
import { callbackDesignProblems } from '../helpers/design-contract.js';
import { downloadPackage, expectDatasetClassIds, expectSamePredictions, runNodeWrapper, runPythonWrapper, SAME_RUNTIME } from '../helpers/export-packages.js';
import { expectDatasetIds, inferEnv, readResults } from '../helpers/inference.js';
import { jobEnv } from '../helpers/job-env.js';
import { useCallbackReceiver } from '../helpers/receiver.js';
import { useS3Server } from '../helpers/s3.js';
import { contractClassIds, type SyntheticDataset, writeSyntheticDataset } from '../helpers/synthetic.js';

const s3 = useS3Server();
const backend = useCallbackReceiver();
const scratch = scratchDir('vt-world-');
const fixture = <T = Record<string, unknown>>(command: string, ...args: string[]) => pythonFixture<T>('world-fixtures.py', command, ...args);

const DATASET_ID = `ds-world-${Date.now()}`;
const TRAIN_JOB = 'world-train';
// The smallest scale ultralytics ships (yolo_world_v2_s and _m differ only in width and depth).
const MODEL = 'yolo_world_v2_n';
const CLASS_IDS = contractClassIds(3);

type Callback = { kind: string; jobId: string; body: any };
let train: { code: number | null; stdout: string; stderr: string; callbacks: Callback[] };
let dataset: SyntheticDataset;
let encoderFolder: string;
let weights: Awaited<ReturnType<typeof serveWeights>>;
let release: Awaited<ReturnType<typeof serveWeights>>;
let releaseGlobals: string[];
const BEST = () => `s3://${s3.config.bucket}/checkpoints/job-${TRAIN_JOB}/best.pt`;
const doneOf = (jobId: string) =>
  backend.receiver.received.find((c) => c.jobId === jobId && (c.kind === 'testRunDone' || c.kind === 'inferenceJobDone'))?.body as Record<string, any>;
const trainEnv = (jobId: string, extra: Record<string, string> = {}) =>
  jobEnv(s3, backend, jobId, {
    TASK_TYPE: 'object_detection',
    MODEL_NAME: MODEL,
    DATASET_ID,
    EPOCHS: '2',
    // 9 training images in batches of 3: no batch of one (BatchNorm needs two values at 32 px).
    BATCH_SIZE: '3',
    CHECKPOINT_FREQUENCY: '1',
    TEXT_ENCODER_WEIGHT_URL: weights.url('clip-text.zip'),
    ...extra,
  });

beforeAll(async () => {
  const dir = mkdtempSync(join(scratch, 'dataset-'));
  dataset = writeSyntheticDataset(dir, { taskType: 'object_detection', count: 12, width: 48, height: 40, seed: 7, classIds: CLASS_IDS });
  await uploadDataset(s3.storage(), DATASET_ID, dir, 'zip');
  encoderFolder = join(scratch, 'clip-text');
  fixture('text-encoder', encoderFolder);
  const zip = join(scratch, 'clip-text.zip');
  await createZip(encoderFolder, zip);
  weights = await serveWeights({ file: zip });
  const made = fixture<{ path: string; globals: string[] }>('release', join(scratch, 'yolov8n-worldv2.pt'));
  releaseGlobals = made.globals;
  release = await serveWeights({ file: made.path });
  const result = await runCli(['train'], trainEnv(TRAIN_JOB, { PRETRAINED_WEIGHT_URL: release.url('yolov8n-worldv2.pt') }), { timeoutMs: 240_000 });
  train = { ...result, callbacks: backend.receiver.received.filter((c) => c.jobId === TRAIN_JOB) as Callback[] };
}, 300_000);

afterAll(async () => Promise.all([weights?.close(), release?.close()]));

describe('YOLO-World (yolo_world_v2_n, prompted by the class names)', () => {
  it('fine-tunes the release-format file from PRETRAINED_WEIGHT_URL 2 epochs with the text encoder from TEXT_ENCODER_WEIGHT_URL: callbacks, per-class rows by dataset id, checkpoints holding the class embeddings', async () => {
    expect(train.code, train.stdout.slice(-4000) + train.stderr.slice(-3000)).toBe(0);
    const events = train.callbacks.filter((c) => c.kind === 'event').map((c) => c.body.event_type);
    expect(events).toEqual(expect.arrayContaining(['weights_downloaded', 'text_encoder_downloaded']));
    // The file is a pickle of ultralytics' classes (WorldModel and its modules), read through the weights_only
    // allow-list loader, and its weights were transferred into the model trained for the 3 classes.
    expect(releaseGlobals).toEqual(expect.arrayContaining(['ultralytics.nn.tasks.WorldModel', 'ultralytics.nn.modules.head.WorldDetect']));
    expect(train.stdout + train.stderr).toMatch(/Transferred \d+\/\d+ items from pretrained weights/);
    const validations = train.callbacks.filter((c) => c.kind === 'validation').map((c) => c.body);
    expect(validations.map((v) => v.epoch)).toEqual([1, 2]);
    const byId = dataset.classIds.map((id, i) => [id, dataset.classNames[i]]).sort((a, b) => (a[0] as number) - (b[0] as number));
    for (const v of validations) {
      expect(v.primary_metric_name).toBe('mAP50-95');
      expect(v.per_class_metrics.map((p: any) => [p.class_id, p.class_name])).toEqual(byId);
    }
    expect(callbackDesignProblems(train.callbacks, 'object_detection')).toEqual([]);
    const done = train.callbacks.at(-1)!;
    expect(done.kind).toBe('trainingDone');
    expect(done.body.status).toBe('succeeded');
    const keys = (await s3.storage().list(`checkpoints/job-${TRAIN_JOB}/`)).map((o) => o.key).sort();
    expect(keys).toEqual(['best.pt', 'epoch-1.pt', 'epoch-2.pt'].map((f) => `checkpoints/job-${TRAIN_JOB}/${f}`));
    // The presigned URL's signature never reaches the log or the callbacks.
    expect(train.stdout + train.stderr + JSON.stringify(train.callbacks)).not.toContain('0123456789abcdef0123');

    // best.pt carries the prompts' embeddings: exactly what the downloaded encoder makes of the class names.
    const local = join(scratch, 'best.pt');
    await s3.storage().downloadFile(`checkpoints/job-${TRAIN_JOB}/best.pt`, local);
    const embedded = fixture<{ names: string[]; shape: number[]; max_abs_diff: number }>('embed', local, encoderFolder);
    expect(embedded.shape).toEqual([1, 3, 512]);
    expect([...embedded.names].sort()).toEqual([...dataset.classNames].sort());
    expect(embedded.max_abs_diff).toBeLessThan(1e-5);
  });

  it('test run: mAP with the dataset class ids', async () => {
    expect(train.code).toBe(0);
    const jobId = 'world-test-run';
    await runCliOk(
      ['infer'],
      inferEnv(s3, backend, jobId, {
        INFERENCE_TYPE: 'test_run',
        TASK_TYPE: 'object_detection',
        CHECKPOINT_PATH: BEST(),
        DATASET_ID,
        CONFIDENCE_THRESHOLD: '0.001',
      }),
    );
    const done = doneOf(jobId);
    expect(done.status).toBe('succeeded');
    for (const key of ['mAP50', 'mAP50-95']) expect(typeof done.overall_metrics[key], key).toBe('number');
    const doc = await readResults(s3.storage(), `test_runs/${jobId}/results.json`);
    expect(doc.model).toMatchObject({ framework: 'ultralytics' });
    expectDatasetIds({ datasetId: DATASET_ID, dataset, checkpointUri: BEST() }, done, doc);
  });

  it('ONNX export of the fixed-vocabulary model: validated by mAP drop and raw outputs; the Python and Node wrappers agree and name dataset ids', async () => {
    expect(train.code).toBe(0);
    const jobId = 'world-export';
    const env = jobEnv(s3, backend, jobId, {
      TASK_TYPE: 'object_detection',
      MODEL_NAME: MODEL,
      CHECKPOINT_PATH: BEST(),
      EXPORT_FORMAT: 'onnx',
      ENABLE_VALIDATION: 'true',
      VALIDATION_DATASET_ID: DATASET_ID,
      BATCH_SIZE: '1',
    });
    await runCliOk(['export'], env);
    const done = backend.receiver.received.find((c) => c.kind === 'exportDone' && c.jobId === jobId)!.body as Record<string, any>;
    expect(done).toMatchObject({ status: 'succeeded', validation_metrics: { metric: 'mAP50-95', passed: true } });
    expect(done.validation_metrics.accuracy_drop).toBeLessThan(0.005);
    // INCLUDE_POSTPROCESSING (default true) builds the NMS into the graph: up to 300 rows of box, score and dataset class id
    // (the vocabulary is the dataset's three names, fixed in the graph); the pixels go in as uint8 NHWC.
    expect(done.model_info.output_shape).toEqual([1, 300, 6]);
    expect(done.model_info.input_shape).toEqual([1, 32, 32, 3]);
    const pkg = await downloadPackage(s3.storage(), jobId);
    expect(pkg.metadata).toMatchObject({
      task_type: 'object_detection',
      model_name: MODEL,
      model: { framework: 'ultralytics', class_ids: [...CLASS_IDS].sort((a, b) => a - b) },
    });
    // The graph is the checkpoint's model and the same NMS, but the rows are not compared value by value here: a model
    // trained 2 epochs from scratch scores its boxes in near ties, which ONNX Runtime's and torch's kernels may order
    // differently (a swapped pair of rows differs by whole pixels). The mAP drop above is the check.
    expect(done.validation_metrics.max_abs_output_diff).not.toBeNull();
    // Trained 2 epochs from scratch, the model scores every box below the validation step's 0.001:
    // near 0, each image's top boxes survive, enough to compare the wrappers and read their class ids.
    const open = ['--confidence', '1e-9', '--max-detections', '5'];
    const python = runPythonWrapper(pkg, open);
    const node = runNodeWrapper(pkg, open);
    for (const lines of [python, node]) expectDatasetClassIds(lines, pkg.metadata);
    expectSamePredictions(
      node,
      python.map((l) => ({ predictions: l.predictions })),
      SAME_RUNTIME,
      'node and python',
    );
    expect(readFileSync(join(pkg.dir, 'README.md'), 'utf8')).toContain('3 classes');
  });

  it("RESUME_CHECKPOINT_PATH: the first run's epoch-1.pt continues to epoch 2 (the encoder fetched again for the prompts)", async () => {
    expect(train.code).toBe(0);
    const jobId = 'world-resume';
    await runCliOk(['train'], trainEnv(jobId, { RESUME_CHECKPOINT_PATH: `s3://${s3.config.bucket}/checkpoints/job-${TRAIN_JOB}/epoch-1.pt` }));
    const callbacks = backend.receiver.received.filter((c) => c.jobId === jobId) as Callback[];
    const started = callbacks.find((c) => c.kind === 'event' && c.body.event_type === 'training_started');
    expect(started?.body.data).toMatchObject({ start_epoch: 1, epochs: 2 });
    expect(callbacks.filter((c) => c.kind === 'validation').map((c) => c.body.epoch)).toEqual([2]);
    expect(callbacks.some((c) => c.kind === 'event' && c.body.event_type === 'text_encoder_downloaded')).toBe(true);
    expect(callbacks.at(-1)!.body).toMatchObject({ status: 'succeeded' });
  });
});
