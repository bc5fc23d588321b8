/**
 * Tiny trained checkpoints for the export tests: a synthetic dataset, one short training run
 * through the TypeScript `train()` API on local storage (the same job the CLI runs), and the
 * resulting best.pt. Models are kept tiny (32-64 px, 1-2 epochs) so a file trains in a minute.
 */
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TaskType } from '../../src/config/tasks.js';
import { train } from '../../src/jobs/train/index.js';
import { writeSyntheticDataset, type SyntheticOptions, type SyntheticTask } from './synthetic.js';

export interface TinyCheckpoint {
  /** best.pt on local disk. */
  path: string;
  /** The dataset folder it was trained on (annotations.json + images/): also the validation set. */
  datasetDir: string;
  taskType: TaskType;
  modelName: string;
}

export interface TinyTrainingOptions {
  taskType: SyntheticTask | 'zero_shot_classification';
  modelName: string;
  imageSize?: number;
  epochs?: number;
  dataset?: Partial<SyntheticOptions>;
  /** More training settings, e.g. { hfConfigOverrides } for a tiny transformers model. */
  config?: Record<string, unknown>;
}

export async function trainTinyCheckpoint(options: TinyTrainingOptions): Promise<TinyCheckpoint> {
  const root = mkdtempSync(join(tmpdir(), 'vt-export-ckpt-'));
  const datasetDir = join(root, 'dataset');
  // A zero-shot classifier trains on a labelled classification dataset (its class names become prompts).
  const datasetTask = options.taskType === 'zero_shot_classification' ? 'image_classification' : options.taskType;
  writeSyntheticDataset(datasetDir, { taskType: datasetTask, count: 24, width: 64, height: 48, seed: 11, ...options.dataset });
  const jobId = `ckpt-${options.modelName.replace(/[^\w.-]/g, '-')}`;
  const run = train(
    {
      jobId,
      taskType: options.taskType,
      modelName: options.modelName,
      datasetId: 'tiny',
      epochs: options.epochs ?? 1,
      batchSize: 8,
      imageSize: options.imageSize ?? 32,
      device: 'cpu',
      numWorkers: 0,
      checkpointFrequency: 100,
      workDir: join(root, 'work'),
      storage: { type: 'local', root: join(root, 'storage'), bucket: 'vision-platform', datasetPath: datasetDir },
      ...options.config,
    },
    { logger: false },
  );
  const result = await run.result;
  if (result.status !== 'succeeded') throw new Error(`training the fixture checkpoint failed: ${result.error?.describe()}`);
  const dir = join(root, 'storage', 'checkpoints', `job-${jobId}`);
  const best = readdirSync(dir).find((f) => f === 'best.pt');
  if (!best) throw new Error(`no best.pt in ${dir}`);
  return { path: join(dir, best), datasetDir, taskType: options.taskType, modelName: options.modelName };
}
