/**
 * Shared steps of the inference tests: train a tiny model through the CLI (as the platform
 * would) to get one of our checkpoints into storage, build a job's environment, and read back
 * what an inference job left (callbacks, results.json, objects).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { InferenceResultsSchema, type InferenceResults } from '../../src/jobs/infer/results.js';
import type { Storage } from '../../src/storage/types.js';
import { runCli } from './cli.js';
import { resultsDesignProblems } from './design-contract.js';
import { uploadDataset } from './datasets.js';
import { jobEnv } from './job-env.js';
import type { ReceiverFixture } from './receiver.js';
import type { S3Fixture } from './s3.js';
import { writeSyntheticDataset, type SyntheticDataset, type SyntheticOptions, type SyntheticTask } from './synthetic.js';

export interface TrainedModel {
  datasetId: string;
  dataset: SyntheticDataset;
  checkpointUri: string;
}

/** A synthetic dataset in storage and a 1-epoch model trained on it through `vision-trainer train` (`extra`: more job variables). */
export async function trainTinyModel(
  s3: S3Fixture,
  backend: ReceiverFixture,
  task: SyntheticTask,
  modelName: string,
  name: string,
  extra: Record<string, string> = {},
  datasetOptions: Partial<SyntheticOptions> = {},
): Promise<TrainedModel> {
  const datasetId = `ds-${name}`;
  const dir = mkdtempSync(join(tmpdir(), 'vt-infer-ds-'));
  const dataset = writeSyntheticDataset(dir, { taskType: task, count: 20, width: 64, height: 48, seed: 11, ...datasetOptions });
  await uploadDataset(s3.storage(), datasetId, dir, 'zip');
  const jobId = `train-${name}`;
  const env = jobEnv(s3, backend, jobId, { TASK_TYPE: task, MODEL_NAME: modelName, DATASET_ID: datasetId, EPOCHS: '1', ...extra });
  const result = await runCli(['train'], env, { timeoutMs: 240_000 });
  expect(result.code, `training ${name} failed:\n${result.stdout.slice(-3000)}\n${result.stderr.slice(-2000)}`).toBe(0);
  return { datasetId, dataset, checkpointUri: `s3://${s3.config.bucket}/checkpoints/job-${jobId}/best.pt` };
}

export function inferEnv(s3: S3Fixture, backend: ReceiverFixture, jobId: string, extra: Record<string, string>): Record<string, string | undefined> {
  return jobEnv(s3, backend, jobId, { BATCH_SIZE: '4', ...extra });
}

export async function readResults(storage: Storage, key: string): Promise<InferenceResults> {
  const doc = await storage.getJson(key);
  // As a backend written against the design's results.json reads it.
  expect(resultsDesignProblems(doc)).toEqual([]);
  return InferenceResultsSchema.parse(doc);
}

/**
 * For datasets whose ids are not contiguous and not in name order (circle 7, square 3, triangle 11;
 * person 5: synthetic.ts's contractClassIds): every id a test run reports is one of them, with
 * that class's name, and its tables are in ascending id.
 */
export function expectDatasetIds(model: TrainedModel, done: Record<string, any>, doc: InferenceResults): void {
  const { classIds, classNames } = model.dataset;
  const nameOf = (id: number) => classNames[classIds.indexOf(id)];
  expect(doc.model.class_ids_stored).toBe(true);
  expect([...doc.model.class_ids].sort((a, b) => a - b)).toEqual([...classIds].sort((a, b) => a - b));
  doc.model.class_ids.forEach((id, i) => expect(doc.model.class_names[i]).toBe(nameOf(id)));
  const rows = done.per_class_metrics.map((p: { class_id: number; class_name: string }) => [p.class_id, p.class_name]);
  expect(rows).toEqual([...rows].sort((a: number[], b: number[]) => a[0]! - b[0]!));
  for (const [id, name] of rows) expect(nameOf(id)).toBe(name);
  const ordered = (done.confusion_matrix_class_ids as Array<number | null>).filter((id) => id !== null);
  expect(ordered).toEqual([...classIds].sort((a, b) => a - b));
  const seen = doc.results.flatMap((r) => {
    const gt = r.ground_truth as { class_id?: number; class_name?: string; objects?: Array<{ class_id: number; class_name: string }> };
    const pred = r.predictions as { class_id?: number; class_name?: string; boxes?: Array<{ class_id: number; class_name: string }> };
    return [...(gt.objects ?? [gt]), ...(pred.boxes ?? [pred])];
  });
  expect(seen.length).toBeGreaterThan(0);
  for (const c of seen) expect(nameOf(c.class_id!)).toBe(c.class_name);
}

const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47]);

/** Every object under prefix is a PNG; returns their keys. */
export async function pngsUnder(storage: Storage, prefix: string): Promise<string[]> {
  const objects = await storage.list(prefix);
  const dir = mkdtempSync(join(tmpdir(), 'vt-png-'));
  const { readFileSync } = await import('node:fs');
  for (const [i, o] of objects.entries()) {
    const local = join(dir, `${i}.png`);
    await storage.downloadFile(o.key, local);
    expect(readFileSync(local).subarray(0, 4).equals(PNG_MAGIC), `${o.key} is not a PNG`).toBe(true);
  }
  return objects.map((o) => o.key);
}

/**
 * results.json's account of the prediction loop: Python's preprocessing and forward passes
 * inside the loop's wall time (null for a backend that does not time its stages: SAM 2), and
 * the CPU time of both processes.
 */
export function expectLoopTiming(timing: InferenceResults['timing'], stages: boolean): void {
  const loop = timing.loop_seconds!;
  expect(loop).toBeGreaterThan(0);
  if (stages) {
    expect(timing.forward_seconds).toBeGreaterThan(0);
    expect(timing.preprocess_seconds).toBeGreaterThan(0);
    expect(timing.forward_seconds! + timing.preprocess_seconds!).toBeLessThanOrEqual(loop);
  } else {
    expect(timing).toMatchObject({ forward_seconds: null, preprocess_seconds: null });
  }
  expect(timing.python_cpu_seconds).toBeGreaterThan(0);
  expect(timing.node_cpu_seconds).toBeGreaterThan(0);
}
