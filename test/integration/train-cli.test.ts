/**
 * Real training through the CLI, as the platform runs it: SeaweedFS for storage, a real HTTP
 * receiver for callbacks, `vision-trainer train` as a child process, tiny ultralytics models
 * on generated Platform Format datasets (one per task).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, lstatSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { uploadDataset } from '../helpers/datasets.js';
import { jobEnv } from '../helpers/job-env.js';
import { runCli } from '../helpers/cli.js';
import { useCallbackReceiver } from '../helpers/receiver.js';
import { useS3Server } from '../helpers/s3.js';
import { ValidationImagesSchema } from '../../src/jobs/train/validation-results.js';
import { defaultPythonBin } from '../../src/paths.js';
import { callbackDesignProblems } from '../helpers/design-contract.js';
import { contractClassIds, defaultClassNames, writeSyntheticDataset, type SyntheticTask } from '../helpers/synthetic.js';

const s3 = useS3Server();
const backend = useCallbackReceiver();

async function putText(key: string, text: string): Promise<void> {
  const file = join(mkdtempSync(join(tmpdir(), 'vt-put-')), 'object');
  writeFileSync(file, text);
  await s3.storage().uploadFile(file, key);
}

const env = (jobId: string, extra: Record<string, string>) => jobEnv(s3, backend, jobId, { CHECKPOINT_FREQUENCY: '1', ...extra });

async function trainTask(
  task: SyntheticTask,
  model: string,
  options: {
    epochs: number;
    upload: 'zip' | 'prefix';
    imageSize?: string;
    env?: Record<string, string>;
    jobId?: string;
    /** Stores datasets/{id}/snapshots/snap-1.json made from the dataset's annotations, and trains with SNAPSHOT_ID=snap-1. */
    snapshot?: (annotations: Record<string, unknown>) => Record<string, unknown>;
  },
) {
  const jobId = options.jobId ?? `cli-${task.replace(/_/g, '-')}`;
  const datasetId = `ds-${jobId}`;
  const dir = mkdtempSync(join(tmpdir(), 'vt-ds-'));
  // The dataset's ids are not contiguous and not in name order (circle 7, square 3, triangle 11; person 5).
  const dataset = writeSyntheticDataset(dir, {
    taskType: task,
    count: 20,
    width: 64,
    height: 48,
    seed: 3,
    classIds: contractClassIds(defaultClassNames(task, undefined).length),
  });
  await uploadDataset(s3.storage(), datasetId, dir, options.upload);
  if (options.snapshot) await putText(`datasets/${datasetId}/snapshots/snap-1.json`, JSON.stringify(options.snapshot(structuredClone(dataset.annotations))));
  const workDir = mkdtempSync(join(tmpdir(), 'vt-work-'));
  const result = await runCli(
    ['train'],
    env(jobId, {
      TASK_TYPE: task,
      MODEL_NAME: model,
      DATASET_ID: datasetId,
      EPOCHS: String(options.epochs),
      WORK_DIR: workDir,
      KEEP_WORK_DIR: 'true',
      IMAGE_SIZE: options.imageSize ?? '32',
      ...(options.snapshot ? { SNAPSHOT_ID: 'snap-1' } : {}),
      ...options.env,
    }),
    { timeoutMs: 240_000 },
  );
  const callbacks = backend.receiver.received.filter((c) => c.jobId === jobId);
  const keys = (await s3.storage().list(`checkpoints/job-${jobId}/`)).map((o) => o.key);
  return { jobId, task, result, callbacks, keys, workDir, dataset };
}

async function expectCompleteRun(run: Awaited<ReturnType<typeof trainTask>>, epochs: number, primary: string) {
  const { result, callbacks, keys, jobId, dataset } = run;
  expect(result.code, result.stdout.slice(-4000) + result.stderr).toBe(0);
  // Every callback passed the receiver's schema and token checks.
  const rejected = backend.receiver.requests.filter((r) => r.status !== 200);
  expect(rejected).toEqual([]);

  const sequence = callbacks.map((c) => (c.kind === 'event' ? `event:${(c.body as { event_type: string }).event_type}` : c.kind));
  expect(sequence.slice(0, 3)).toEqual(['event:dataset_downloaded', 'event:dataset_prepared', 'event:training_started']);
  expect(sequence.at(-1)).toBe('trainingDone');

  const epochBeats = callbacks.filter((c) => c.kind === 'heartbeat' && (c.body as { batch?: number }).batch === undefined);
  expect(epochBeats.map((c) => (c.body as { epoch: number }).epoch)).toEqual(Array.from({ length: epochs }, (_, i) => i + 1));
  const lastBeat = epochBeats.at(-1)!.body as { progress: number; metrics: Record<string, number | null> };
  expect(lastBeat.progress).toBe(100);
  expect(lastBeat.metrics).toHaveProperty('loss');
  expect(lastBeat.metrics).toHaveProperty('learning_rate');
  expect(lastBeat.metrics).toHaveProperty(primary);

  const validations = callbacks.filter((c) => c.kind === 'validation').map((c) => c.body as Record<string, any>);
  expect(validations.map((v) => v.epoch)).toEqual(Array.from({ length: epochs }, (_, i) => i + 1));
  for (const v of validations) {
    expect(v.primary_metric_name).toBe(primary);
    expect(typeof v.primary_metric_value).toBe('number');
    expect(v.per_class_metrics.length).toBeGreaterThan(0);
    expect(v.num_images_validated).toBeGreaterThan(0);
    // The dataset's ids, in ascending order, with the dataset's name of each.
    const rows = v.per_class_metrics.map((p: any) => [p.class_id, p.class_name]);
    expect(rows).toEqual([...rows].sort((a, b) => a[0] - b[0]));
    for (const [id, name] of rows) expect(dataset.classNames[dataset.classIds.indexOf(id)]).toBe(name);
    expect(v.metrics.inference_speed_fps).toBeGreaterThan(0);
    expect(v.metrics.model_size_mb).toBeGreaterThan(0);
    // The epoch's per-image results, one entry per validated image, in the dataset's ids.
    const key = `validation-results/job-${jobId}/epoch-${v.epoch}/images.json`;
    expect(v.image_results_path).toBe(`s3://${s3.config.bucket}/${key}`);
    const images = ValidationImagesSchema.parse(await s3.storage().getJson(key));
    expect(images).toMatchObject({ job_id: jobId, epoch: v.epoch, task_type: run.task });
    expect(images.results).toHaveLength(v.num_images_validated);
    const truth = images.results.flatMap((r) =>
      'objects' in r.ground_truth ? r.ground_truth.objects.map((o) => o.class_id) : 'classes' in r.ground_truth ? [] : [r.ground_truth.class_id],
    );
    expect(truth.length).toBeGreaterThan(0);
    for (const id of truth) expect(dataset.classIds).toContain(id);
  }
  expect(callbackDesignProblems(callbacks, run.task)).toEqual([]);

  const checkpointEvents = callbacks.filter((c) => c.kind === 'event' && (c.body as any).event_type === 'checkpoint_saved').map((c) => (c.body as any).data);
  expect(checkpointEvents.map((d) => d.checkpoint_path).sort()).toEqual(
    [
      ...Array.from({ length: epochs }, (_, i) => `s3://${s3.config.bucket}/checkpoints/job-${jobId}/epoch-${i + 1}.pt`),
      `s3://${s3.config.bucket}/checkpoints/job-${jobId}/best.pt`,
    ].sort(),
  );
  expect(keys.sort()).toEqual(
    [...Array.from({ length: epochs }, (_, i) => `checkpoints/job-${jobId}/epoch-${i + 1}.pt`), `checkpoints/job-${jobId}/best.pt`].sort(),
  );

  const done = callbacks.at(-1)!.body as Record<string, any>;
  expect(done.status).toBe('succeeded');
  expect(result.stdout + result.stderr).not.toContain('could not be stamped with its best epoch');
  expect(done.error_message).toBeNull();
  expect(done.checkpoint_path).toBe(`s3://${s3.config.bucket}/checkpoints/job-${jobId}/best.pt`);
  expect(done.final_metrics.best_epoch).toBeGreaterThanOrEqual(1);
  expect(done.final_metrics).toHaveProperty(`best_${primary}`);
  expect(done.final_metrics.total_time_seconds).toBeGreaterThan(0);
  return { validations, done };
}

describe('vision-trainer train (ultralytics, real training)', () => {
  it('object_detection from a dataset zip: full callback sequence, checkpoints, log, converted YOLO files', async () => {
    const run = await trainTask('object_detection', 'yolo11n', { epochs: 2, upload: 'zip' });
    const { validations, done } = await expectCompleteRun(run, 2, 'mAP50-95');
    expect(Object.keys(validations[0]!.pr_curves).length).toBeGreaterThan(0);
    for (const curve of Object.values(validations[0]!.pr_curves) as Array<{ precision: unknown[]; recall: unknown[] }>) {
      expect(curve.precision.length).toBeLessThanOrEqual(101);
      expect(curve.recall.length).toBe(curve.precision.length);
    }
    expect(await s3.storage().exists(`logs/job-${run.jobId}/training.log`)).toBe(true);

    // best.pt is stamped with the epoch the job chose (the receiver answers is_best): ultralytics'
    // best_fitness becomes that epoch's own fitness, and vision_trainer_best names it.
    const best = join(mkdtempSync(join(tmpdir(), 'vt-best-')), 'best.pt');
    await s3.storage().downloadFile(`checkpoints/job-${run.jobId}/best.pt`, best);
    const read = spawnSync(
      defaultPythonBin(),
      [
        '-c',
        'import json, sys\nfrom ultralytics.nn.tasks import torch_safe_load\nprint(json.dumps(torch_safe_load(sys.argv[1])[0]["vision_trainer_best"]))',
        best,
      ],
      { encoding: 'utf8', timeout: 120_000 },
    );
    expect(read.status, read.stderr).toBe(0);
    expect(JSON.parse(read.stdout.trim().split('\n').at(-1)!)).toEqual({
      epoch: done.final_metrics.best_epoch,
      value: done.final_metrics['best_mAP50-95'],
      decided_by: 'backend',
    });

    // KEEP_WORK_DIR: the converted dataset is left for inspection, file by file.
    const [work] = readdirSync(run.workDir).map((d) => join(run.workDir, d));
    const data = parseYaml(readFileSync(join(work!, 'data', 'data.yaml'), 'utf8'));
    expect(data.path).toBe(join(work!, 'data'));
    // YOLO numbers the classes in ascending dataset id: square 3, circle 7, triangle 11.
    expect(data.names).toEqual({ 0: 'square', 1: 'circle', 2: 'triangle' });
    const trainList = readFileSync(join(work!, 'data', 'train.txt'), 'utf8')
      .trim()
      .split('\n');
    const valList = readFileSync(join(work!, 'data', 'val.txt'), 'utf8')
      .trim()
      .split('\n');
    expect(trainList.length + valList.length).toBe(20);
    expect(valList.length).toBe(4); // default 0.8/0.2
    for (const img of [...trainList, ...valList]) {
      expect(lstatSync(img).isSymbolicLink()).toBe(true);
      expect(existsSync(readlinkSync(img))).toBe(true);
      const label = img.replace('/images/', '/labels/').replace(/\.png$/, '.txt');
      for (const line of readFileSync(label, 'utf8').trim().split('\n').filter(Boolean)) {
        const [cls, ...coords] = line.split(' ').map(Number);
        expect([0, 1, 2]).toContain(cls);
        expect(coords).toHaveLength(4);
        for (const v of coords) {
          expect(v).toBeGreaterThanOrEqual(0);
          expect(v).toBeLessThanOrEqual(1);
        }
      }
    }
  });

  it('instance_segmentation from a dataset prefix with SNAPSHOT_ID: the layout is written from the snapshot while the images download', async () => {
    // The snapshot leaves two images out: the run must train on the snapshot's 18, not the dataset's 20.
    const snapshot = (a: Record<string, unknown>) => ({ ...a, images: (a.images as unknown[]).slice(2) });
    const run = await trainTask('instance_segmentation', 'yolo11n-seg', { epochs: 1, upload: 'prefix', snapshot });
    await expectCompleteRun(run, 1, 'mAP50-95');
    expect(run.result.stdout).toMatch(/Dataset layout written from the annotations while the images download \([\d.]+ s, in a worker thread\)/);
    // ultralytics' image checks ran on that layout as the images arrived; its label caches were
    // written from them when training started, and ultralytics read them instead of scanning.
    expect(run.result.stdout).toContain('ultralytics checks the 18 images for its label cache as they arrive');
    const [work] = readdirSync(run.workDir).map((d) => join(run.workDir, d));
    const trainingLog = readFileSync(join(work!, 'training.log'), 'utf8');
    expect(trainingLog).toMatch(
      /label caches written from the image checks made while the images downloaded: 18 images checked then, train 0, val 0 checked again now/,
    );
    // ultralytics' own line for a cache it loaded (a scan of its own says "New cache created").
    expect(run.result.stderr).toMatch(/train: .*Scanning .*labels\/train\.cache\.\.\. 14 images/);
    expect(run.result.stderr).toMatch(/val: .*Scanning .*labels\/val\.cache\.\.\. 4 images/);
    const prepared = run.callbacks.find((c) => c.kind === 'event' && (c.body as any).event_type === 'dataset_prepared')!.body as Record<string, any>;
    expect(prepared.data.images).toBe(18);
    const listed = ['train', 'val'].flatMap((split) =>
      readFileSync(join(work!, 'data', `${split}.txt`), 'utf8')
        .trim()
        .split('\n'),
    );
    expect(listed).toHaveLength(18);
    // Every link in the layout resolves to a downloaded image (they were made before the images arrived).
    for (const link of listed) expect(existsSync(link), link).toBe(true);
    const seg = run.callbacks.find((c) => c.kind === 'validation')!.body as Record<string, any>;
    expect(seg.metrics).toHaveProperty('box_mAP50-95'); // mask metrics are primary, box metrics kept beside
  });

  it('pose_estimation', async () => {
    const run = await trainTask('pose_estimation', 'yolo11n-pose', { epochs: 1, upload: 'zip' });
    await expectCompleteRun(run, 1, 'mAP50-95');
    // The label cache checked during the download carries the keypoints' shape in its hash too.
    expect(run.result.stderr).toMatch(/train: .*Scanning .*labels\/train\.cache\.\.\. \d+ images/);
  });

  it('image_classification: accuracy and a confusion matrix; ImageFolder layout', async () => {
    const run = await trainTask('image_classification', 'yolo11n-cls', { epochs: 2, upload: 'zip' });
    const { validations } = await expectCompleteRun(run, 2, 'accuracy');
    const v = validations[0]!;
    expect(v.confusion_matrix).toHaveLength(3);
    for (const row of v.confusion_matrix) expect(row).toHaveLength(3);
    const total = v.confusion_matrix.flat().reduce((a: number, b: number) => a + b, 0);
    expect(total).toBe(v.num_images_validated);
    // Rows in ascending dataset id (the ImageFolder numbered them by folder name).
    expect(v.per_class_metrics.map((p: any) => [p.class_id, p.class_name])).toEqual([
      [3, 'square'],
      [7, 'circle'],
      [11, 'triangle'],
    ]);
    expect(v.confusion_matrix_class_ids).toEqual([3, 7, 11]);
    const [work] = readdirSync(run.workDir).map((d) => join(run.workDir, d));
    expect(readdirSync(join(work!, 'data', 'train')).sort()).toEqual(['circle', 'square', 'triangle']);
  });
});
