/**
 * What the timm and transformers training tests share: one classification job through the
 * CLI (SeaweedFS + the callback receiver), the assertions every complete run must pass, a
 * one-file HTTP server for PRETRAINED_WEIGHT_URL, and test/integration/classifier-fixtures.py.
 */
import { spawnSync } from 'node:child_process';
import { createReadStream, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect } from 'vitest';
import { ValidationImagesSchema } from '../../src/jobs/train/validation-results.js';
import { PROJECT_ROOT, defaultPythonBin } from '../../src/paths.js';
import { runCli } from './cli.js';
import { uploadDataset } from './datasets.js';
import { callbackDesignProblems } from './design-contract.js';
import { jobEnv } from './job-env.js';
import type { ReceiverFixture } from './receiver.js';
import type { S3Fixture } from './s3.js';
import { contractClassIds, writeSyntheticDataset } from './synthetic.js';

export const CLASS_NAMES = ['circle', 'square', 'triangle'];
/** The dataset's ids of CLASS_NAMES: circle 7, square 3, triangle 11 (not contiguous, not in name order). */
export const CLASS_IDS = contractClassIds(CLASS_NAMES.length);
/** The classes in ascending id order: the row order of every table the runtime reports. */
export const BY_ID = CLASS_NAMES.map((name, i) => ({ id: CLASS_IDS[i]!, name })).sort((a, b) => a.id - b.id);
/** A checkpoint's class (output) order: an ImageFolder tree's is by folder name, the manifest's by id. */
export const OUTPUT_ORDER = { imagefolder: [...CLASS_NAMES].sort(), manifest: BY_ID.map((c) => c.name) };

/** A confusion matrix in a checkpoint's output order, rearranged in ascending class id. */
export function inIdOrder(matrix: number[][], classIds: number[]): number[][] {
  const order = classIds
    .map((id, index) => ({ id, index }))
    .sort((a, b) => a.id - b.id)
    .map((c) => c.index);
  return order.map((r) => order.map((c) => matrix[r]![c]!));
}

/** HF_CONFIG_OVERRIDES for a ViT and a CLIP small enough to train in seconds on a CPU. */
export const TINY_VIT = { hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64, patch_size: 8 };
export const TINY_CLIP = {
  projection_dim: 16,
  text_config: { hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 64 },
  vision_config: { hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64, patch_size: 8 },
};

/** SegFormer (MiT) two stages wide 8 and 16: trains in seconds on a CPU. */
export const TINY_SEGFORMER = {
  num_encoder_blocks: 2,
  depths: [1, 1],
  sr_ratios: [2, 1],
  hidden_sizes: [8, 16],
  patch_sizes: [7, 3],
  strides: [4, 2],
  num_attention_heads: [1, 1],
  mlp_ratios: [2, 2],
  decoder_hidden_size: 16,
};

export interface ClassifierRun {
  jobId: string;
  result: Awaited<ReturnType<typeof runCli>>;
  callbacks: Array<{ kind: string; jobId: string; body: unknown }>;
  keys: string[];
  /** The job's kept work folder (KEEP_WORK_DIR). */
  work: string;
  /** The dataset's class id of each image file. */
  labels: Map<string, number | undefined>;
}

/** A temporary folder removed after the test file (kept work folders hold large checkpoints). */
export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function classifierJobs(s3: S3Fixture, backend: ReceiverFixture) {
  const scratch = scratchDir('vt-classifier-jobs-');
  const env = (jobId: string, extra: Record<string, string>) => jobEnv(s3, backend, jobId, { CHECKPOINT_FREQUENCY: '1', ...extra });

  let datasetId: string | undefined;
  /** The dataset's label of each image file, for the per-image validation results. */
  let labels = new Map<string, number | undefined>();
  /** One 20-image, 3-class dataset per test file, uploaded once. */
  const dataset = async (): Promise<string> => {
    if (!datasetId) {
      const dir = mkdtempSync(join(scratch, 'dataset-'));
      writeSyntheticDataset(dir, { taskType: 'image_classification', count: 20, width: 48, height: 40, seed: 11, classes: CLASS_NAMES, classIds: CLASS_IDS });
      labels = new Map(
        (
          JSON.parse(readFileSync(join(dir, 'annotations.json'), 'utf8')) as { images: Array<{ file_name: string; annotation?: { class_id: number } }> }
        ).images.map((i) => [i.file_name, i.annotation?.class_id]),
      );
      datasetId = `ds-classifier-${Date.now()}`;
      await uploadDataset(s3.storage(), datasetId, dir, 'zip');
    }
    return datasetId;
  };

  const run = async (jobId: string, vars: Record<string, string>): Promise<ClassifierRun> => {
    const workDir = mkdtempSync(join(scratch, `${jobId}-`));
    const result = await runCli(['train'], env(jobId, { DATASET_ID: await dataset(), WORK_DIR: workDir, KEEP_WORK_DIR: 'true', ...vars }), {
      timeoutMs: 230_000,
    });
    const callbacks = backend.receiver.received.filter((c) => c.jobId === jobId);
    const keys = (await s3.storage().list(`checkpoints/job-${jobId}/`)).map((o) => o.key).sort();
    const [work] = readdirSync(workDir).map((d) => join(workDir, d));
    return { jobId, result, callbacks, keys, work: work ?? workDir, labels };
  };

  /** The labels of the uploaded dataset's images (after `dataset()`), for runs started another way. */
  return { env, run, dataset, labels: () => labels };
}

/** The assertions every successful classification run passes; returns its validations. */
export async function expectCompleteClassifierRun(run: ClassifierRun, epochs: number, s3: S3Fixture, backend: ReceiverFixture) {
  const bucket = s3.config.bucket;
  const { result, callbacks, keys, jobId } = run;
  expect(result.code, result.stdout.slice(-4000) + result.stderr.slice(-4000)).toBe(0);
  expect(backend.receiver.requests.filter((r) => r.status !== 200)).toEqual([]);

  const sequence = callbacks.map((c) => (c.kind === 'event' ? `event:${(c.body as { event_type: string }).event_type}` : c.kind));
  const withWeights = sequence.includes('event:weights_downloaded') ? ['event:weights_downloaded'] : [];
  expect(sequence.slice(0, 3 + withWeights.length)).toEqual(['event:dataset_downloaded', 'event:dataset_prepared', ...withWeights, 'event:training_started']);
  expect(sequence.at(-1)).toBe('trainingDone');
  expect(sequence.filter((s) => s === 'trainingDone')).toHaveLength(1);

  const epochBeats = callbacks
    .filter((c) => c.kind === 'heartbeat' && (c.body as { batch?: number }).batch === undefined)
    .map((c) => c.body as { epoch: number; progress: number; metrics: Record<string, number | null> });
  expect(epochBeats.map((b) => b.epoch)).toEqual(Array.from({ length: epochs }, (_, i) => i + 1));
  expect(epochBeats.at(-1)!.progress).toBe(100);
  for (const beat of epochBeats) {
    expect(typeof beat.metrics.loss).toBe('number');
    expect(typeof beat.metrics.accuracy).toBe('number');
    expect(typeof beat.metrics.learning_rate).toBe('number');
  }
  // Batch heartbeats come first within each epoch and carry the running training loss.
  expect(callbacks.some((c) => c.kind === 'heartbeat' && typeof (c.body as { batch?: number }).batch === 'number')).toBe(true);

  const validations = callbacks.filter((c) => c.kind === 'validation').map((c) => c.body as Record<string, any>);
  expect(validations.map((v) => v.epoch)).toEqual(Array.from({ length: epochs }, (_, i) => i + 1));
  for (const v of validations) {
    expect(v.primary_metric_name).toBe('accuracy');
    expect(v.primary_metric_value).toBe(v.metrics.accuracy);
    for (const key of ['precision', 'recall', 'f1', 'loss']) expect(v.metrics).toHaveProperty(key);
    expect(v.metrics).not.toHaveProperty('top5_accuracy'); // 3 classes: top-5 is meaningless
    // The dataset's class ids, in ascending id order, whatever order the framework numbered them in.
    expect(v.per_class_metrics.map((p: any) => [p.class_id, p.class_name])).toEqual(BY_ID.map((c) => [c.id, c.name]));
    expect(v.confusion_matrix_class_ids).toEqual(BY_ID.map((c) => c.id));
    for (const p of v.per_class_metrics) for (const key of ['precision', 'recall', 'f1', 'ap', 'support']) expect(p).toHaveProperty(key);
    // One-vs-rest AP from the scores: defined for every class the split holds.
    for (const p of v.per_class_metrics) if (p.support > 0) expect(p.ap).toBeGreaterThan(0);
    expect(v.metrics.inference_speed_fps).toBeGreaterThan(0);
    expect(v.metrics.model_size_mb).toBeGreaterThan(0);
    expect(v.confusion_matrix).toHaveLength(CLASS_NAMES.length);
    for (const row of v.confusion_matrix) expect(row).toHaveLength(CLASS_NAMES.length);
    const total = v.confusion_matrix.flat().reduce((a: number, b: number) => a + b, 0);
    expect(total).toBe(v.num_images_validated);
    // Rows are the true classes: each row sums to that class's support.
    expect(v.confusion_matrix.map((row: number[]) => row.reduce((a, b) => a + b, 0))).toEqual(v.per_class_metrics.map((p: any) => p.support));
  }

  for (const v of validations) await expectValidationImages(run, v, s3);
  // Every body, as a backend written against the design's examples reads it.
  expect(callbackDesignProblems(callbacks, validations[0]!.task_type)).toEqual([]);

  const checkpointPaths = callbacks
    .filter((c) => c.kind === 'event' && (c.body as any).event_type === 'checkpoint_saved')
    .map((c) => (c.body as any).data.checkpoint_path)
    .sort();
  const expectedKeys = [...Array.from({ length: epochs }, (_, i) => `checkpoints/job-${jobId}/epoch-${i + 1}.pt`), `checkpoints/job-${jobId}/best.pt`].sort();
  expect(checkpointPaths).toEqual(expectedKeys.map((k) => `s3://${bucket}/${k}`));
  expect(keys).toEqual(expectedKeys);

  const done = callbacks.at(-1)!.body as Record<string, any>;
  expect(done.status).toBe('succeeded');
  expect(done.error_message).toBeNull();
  expect(done.checkpoint_path).toBe(`s3://${bucket}/checkpoints/job-${jobId}/best.pt`);
  const bestEpoch = done.final_metrics.best_epoch as number;
  expect(bestEpoch).toBeGreaterThanOrEqual(1);
  expect(done.final_metrics.best_accuracy).toBe(validations[bestEpoch - 1]!.metrics.accuracy);
  return { validations, done, bestEpoch };
}

/**
 * The epoch's images.json, as a backend reads it: one entry per validated image, named by its
 * dataset file name, with the dataset's class id as ground truth and a correctness that
 * agrees with the confusion matrix.
 */
async function expectValidationImages(run: ClassifierRun, v: Record<string, any>, s3: S3Fixture) {
  const key = `validation-results/job-${run.jobId}/epoch-${v.epoch}/images.json`;
  expect(v.image_results_path).toBe(`s3://${s3.config.bucket}/${key}`);
  const doc = ValidationImagesSchema.parse(await s3.storage().getJson(key));
  expect(doc).toMatchObject({ job_id: run.jobId, epoch: v.epoch, num_images: v.num_images_validated });
  expect(doc.results).toHaveLength(v.num_images_validated);
  for (const r of doc.results) {
    expect(run.labels.has(r.image_path), `${r.image_path} is a dataset file name`).toBe(true);
    expect(r.ground_truth).toEqual({ class_id: run.labels.get(r.image_path), class_name: BY_ID.find((c) => c.id === run.labels.get(r.image_path))!.name });
    expect(CLASS_IDS).toContain((r.predictions as { class_id: number }).class_id);
  }
  const correct = doc.results.filter((r) => (r.metrics as { correct: boolean }).correct).length;
  const diagonal = (v.confusion_matrix as number[][]).reduce((sum, row, i) => sum + row[i]!, 0);
  expect(correct).toBe(diagonal);
}

/** Runs a classifier-fixtures.py subcommand; returns its JSON line. */
export function fixture<T = Record<string, unknown>>(command: string, ...args: string[]): T {
  return pythonFixture<T>('classifier-fixtures.py', command, ...args);
}

/** Runs a subcommand of a fixture script in test/integration/ that prints one JSON line; returns it. */
export function pythonFixture<T = Record<string, unknown>>(file: string, command: string, ...args: string[]): T {
  const script = join(PROJECT_ROOT, 'test/integration', file);
  const r = spawnSync(defaultPythonBin(), [script, command, ...args], {
    encoding: 'utf8',
    env: { ...process.env, HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' },
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`${file} ${command} failed (${r.status}): ${r.stderr.slice(-3000)}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as T;
}

/** The val images of a kept work folder, as [path, label] in the trainer's class order. */
export function valImages(work: string, layout: 'imagefolder' | 'manifest'): Array<[string, number]> {
  if (layout === 'manifest') {
    return readFileSync(join(work, 'data', 'val.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => {
        const row = JSON.parse(line) as { image: string; label: number };
        return [row.image, row.label];
      });
  }
  const folders = readFileSync(join(work, 'data', 'classes.txt'), 'utf8')
    .trim()
    .split('\n');
  return folders.flatMap((folder, label) =>
    readdirSync(join(work, 'data', 'val', folder)).map((f) => [join(work, 'data', 'val', folder, f), label] as [string, number]),
  );
}

/** Serves one file (or a fixed status) at any path, as a presigned weights URL would. */
export async function serveWeights(
  answer: { file: string } | { status: number; body?: string },
): Promise<{ url: (name: string) => string; close: () => Promise<void> }> {
  const server: Server = createServer((_req, res) => {
    if ('file' in answer) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      createReadStream(answer.file).pipe(res);
    } else {
      res.writeHead(answer.status).end(answer.body ?? '');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: (name) => `http://127.0.0.1:${port}/weights/${name}?X-Amz-Signature=0123456789abcdef0123`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
