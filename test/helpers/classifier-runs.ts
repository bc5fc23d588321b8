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
import { PROJECT_ROOT, defaultPythonBin } from '../../src/paths.js';
import { runCli } from './cli.js';
import { uploadDataset } from './datasets.js';
import { jobEnv } from './job-env.js';
import type { ReceiverFixture } from './receiver.js';
import type { S3Fixture } from './s3.js';
import { writeSyntheticDataset } from './synthetic.js';

export const CLASS_NAMES = ['circle', 'square', 'triangle'];

/** HF_CONFIG_OVERRIDES for a ViT and a CLIP small enough to train in seconds on a CPU. */
export const TINY_VIT = { hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64, patch_size: 8 };
export const TINY_CLIP = {
  projection_dim: 16,
  text_config: { hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 64 },
  vision_config: { hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64, patch_size: 8 },
};

export interface ClassifierRun {
  jobId: string;
  result: Awaited<ReturnType<typeof runCli>>;
  callbacks: Array<{ kind: string; jobId: string; body: unknown }>;
  keys: string[];
  /** The job's kept work folder (KEEP_WORK_DIR). */
  work: string;
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
  /** One 20-image, 3-class dataset per test file, uploaded once. */
  const dataset = async (): Promise<string> => {
    if (!datasetId) {
      const dir = mkdtempSync(join(scratch, 'dataset-'));
      writeSyntheticDataset(dir, { taskType: 'image_classification', count: 20, width: 48, height: 40, seed: 11, classes: CLASS_NAMES });
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
    return { jobId, result, callbacks, keys, work: work ?? workDir };
  };

  return { env, run, dataset };
}

/** The assertions every successful classification run passes; returns its validations. */
export function expectCompleteClassifierRun(run: ClassifierRun, epochs: number, bucket: string, backend: ReceiverFixture) {
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
    expect(v.per_class_metrics.map((p: any) => [p.class_id, p.class_name])).toEqual(CLASS_NAMES.map((n, i) => [i, n]));
    for (const p of v.per_class_metrics) for (const key of ['precision', 'recall', 'f1', 'support']) expect(p).toHaveProperty(key);
    expect(v.confusion_matrix).toHaveLength(CLASS_NAMES.length);
    for (const row of v.confusion_matrix) expect(row).toHaveLength(CLASS_NAMES.length);
    const total = v.confusion_matrix.flat().reduce((a: number, b: number) => a + b, 0);
    expect(total).toBe(v.num_images_validated);
    // Rows are the true classes: each row sums to that class's support.
    expect(v.confusion_matrix.map((row: number[]) => row.reduce((a, b) => a + b, 0))).toEqual(v.per_class_metrics.map((p: any) => p.support));
  }

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

/** Runs a classifier-fixtures.py subcommand; returns its JSON line. */
export function fixture<T = Record<string, unknown>>(command: string, ...args: string[]): T {
  const script = join(PROJECT_ROOT, 'test/integration/classifier-fixtures.py');
  const r = spawnSync(defaultPythonBin(), [script, command, ...args], {
    encoding: 'utf8',
    env: { ...process.env, HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' },
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`classifier-fixtures.py ${command} failed (${r.status}): ${r.stderr.slice(-3000)}`);
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
