/**
 * Semantic segmentation through the real path (SeaweedFS, the callback receiver, the CLI as a
 * child process, transformers): a SegFormer built from a tiny configuration trains on indexed
 * PNG masks whose values are non-contiguous dataset class ids. One training run (2 epochs) is
 * shared by every test of the file: its callbacks, its checkpoints, and the jobs that read them.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ValidationImagesSchema } from '../../src/jobs/train/validation-results.js';
import { defaultPythonBin } from '../../src/paths.js';
import { scratchDir, TINY_SEGFORMER } from '../helpers/classifier-runs.js';
import { runCli, runCliOk } from '../helpers/cli.js';
import { uploadDataset } from '../helpers/datasets.js';
import { callbackDesignProblems } from '../helpers/design-contract.js';
import { jobEnv } from '../helpers/job-env.js';
import { useCallbackReceiver } from '../helpers/receiver.js';
import { useS3Server } from '../helpers/s3.js';
import { downloadPackage, expectDatasetClassIds, expectSamePredictions, runNodeWrapper, runPythonWrapper, SAME_RUNTIME } from '../helpers/export-packages.js';
import { inferEnv, readResults } from '../helpers/inference.js';
import { type SyntheticDataset, writeSyntheticDataset } from '../helpers/synthetic.js';

const s3 = useS3Server();
// A backend that lost its memory of the resumed job's earlier epochs: no is_best answer, the job's score decides.
const backend = useCallbackReceiver({ answerValidation: (jobId) => (jobId === 'semseg-auto-resume' ? {} : undefined) });
const scratch = scratchDir('vt-semseg-');

/** background 0 (the synthetic masks' empty pixels), square 11, ellipse 5: not contiguous, not in name order. */
/** UperNet's heads on a ConvNeXt backbone, both tiny, built from their configurations (no download). */
const TINY_UPERNET = {
  model_type: 'upernet',
  backbone_config: { model_type: 'convnext', hidden_sizes: [8, 16, 32, 64], depths: [1, 1, 1, 1], out_features: ['stage1', 'stage2', 'stage3', 'stage4'] },
  hidden_size: 16,
  auxiliary_in_channels: 32,
  auxiliary_channels: 8,
  pool_scales: [1, 2],
};

const CLASSES = [
  { id: 0, name: 'background' },
  { id: 11, name: 'square' },
  { id: 5, name: 'ellipse' },
];
const BY_ID = [...CLASSES].sort((a, b) => a.id - b.id);
const DATASET_ID = `ds-semseg-${Date.now()}`;
const TRAIN_JOB = 'semseg-train';

type Callback = { kind: string; jobId: string; body: any };
let train: { code: number | null; stdout: string; stderr: string; callbacks: Callback[] };
let dataset: SyntheticDataset;
const BEST = () => `s3://${s3.config.bucket}/checkpoints/job-${TRAIN_JOB}/best.pt`;
const doneOf = (jobId: string) =>
  backend.receiver.received.find((c) => c.jobId === jobId && (c.kind === 'testRunDone' || c.kind === 'inferenceJobDone'))?.body as Record<string, any>;

/** The pixel values of a PNG written by the runtime, decoded by Python's PIL (as a backend would read it). */
function pngValues(file: string): { mode: string; size: [number, number]; values: number[] } {
  const script =
    'import sys,json; from PIL import Image; im=Image.open(sys.argv[1]); print(json.dumps({"mode": im.mode, "size": im.size, "values": sorted(set(im.getdata()))}))';
  const r = spawnSync(defaultPythonBin(), ['-c', script, file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}

// vision_trainer sends print() to stderr (stdout is the bridge's): answers go to sys.__stdout__.
const CHECKPOINTS = "import sys,json; sys.path.insert(0, 'python'); from vision_trainer.common import checkpoints as c\n";

/** Stamps a checkpoint's own record of the best epoch (as the trainer writes it). */
function stampBest(file: string, epoch: number, value: number): void {
  const script = `${CHECKPOINTS}ck=c.load_checkpoint(sys.argv[1]); ck['best_epoch']=${epoch}; ck['best_metric']=${value}; c.save_atomically(ck, sys.argv[1])`;
  const r = spawnSync(defaultPythonBin(), ['-c', script, file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
}

/** A few metadata fields of a checkpoint of ours. */
function checkpointMetadata(file: string): Record<string, unknown> {
  const script = `${CHECKPOINTS}m=c.read_metadata(sys.argv[1]); sys.__stdout__.write(json.dumps({k: m.get(k) for k in ('architecture', 'class_ids', 'epoch')}))`;
  const r = spawnSync(defaultPythonBin(), ['-c', script, file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}

/** A checkpoint's epoch and best epoch, and whether its weights are those of `reference`. */
function checkpointFacts(file: string, reference: string): { epoch: number; best_epoch: number; same_weights: boolean } {
  const script = `${CHECKPOINTS}import torch; a=c.load_checkpoint(sys.argv[1]); b=c.load_checkpoint(sys.argv[2]); same=all(torch.equal(a['state_dict'][k], b['state_dict'][k]) for k in b['state_dict']); sys.__stdout__.write(json.dumps({'epoch': a['epoch'], 'best_epoch': a['best_epoch'], 'same_weights': same}))`;
  const r = spawnSync(defaultPythonBin(), ['-c', script, file, reference], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}

const DATASET_OPTIONS = {
  taskType: 'semantic_segmentation',
  count: 12,
  width: 40,
  height: 32,
  seed: 5,
  classes: CLASSES.map((c) => c.name),
  classIds: CLASSES.map((c) => c.id),
} as const;

beforeAll(async () => {
  const dir = mkdtempSync(join(scratch, 'dataset-'));
  dataset = writeSyntheticDataset(dir, { ...DATASET_OPTIONS, classes: [...DATASET_OPTIONS.classes], classIds: [...DATASET_OPTIONS.classIds] });
  await uploadDataset(s3.storage(), DATASET_ID, dir, 'zip');
  const env = jobEnv(s3, backend, TRAIN_JOB, {
    TASK_TYPE: 'semantic_segmentation',
    MODEL_NAME: 'segformer-b0',
    DATASET_ID,
    EPOCHS: '2',
    BATCH_SIZE: '4',
    CHECKPOINT_FREQUENCY: '1',
    HF_CONFIG_OVERRIDES: JSON.stringify(TINY_SEGFORMER),
  });
  const result = await runCli(['train'], env, { timeoutMs: 240_000 });
  train = { ...result, callbacks: backend.receiver.received.filter((c) => c.jobId === TRAIN_JOB) as Callback[] };
}, 300_000);

describe('semantic segmentation (transformers SegFormer)', () => {
  it('trains 2 epochs: mIoU is the primary metric, per-class IoU rows in dataset id order, pixel accuracy, images.json per epoch', async () => {
    expect(train.code, train.stdout.slice(-4000) + train.stderr.slice(-3000)).toBe(0);
    const validations = train.callbacks.filter((c) => c.kind === 'validation').map((c) => c.body);
    expect(validations.map((v) => v.epoch)).toEqual([1, 2]);
    for (const v of validations) {
      expect(v.primary_metric_name).toBe('mIoU');
      expect(v.primary_metric_value).toBe(v.metrics.mIoU);
      expect(v.metrics.mIoU).toBeGreaterThanOrEqual(0);
      expect(v.metrics.mIoU).toBeLessThanOrEqual(1);
      for (const key of ['pixel_accuracy', 'mean_accuracy', 'loss', 'inference_speed_fps', 'model_size_mb']) expect(typeof v.metrics[key], key).toBe('number');
      expect(v.per_class_metrics.map((p: any) => [p.class_id, p.class_name])).toEqual(BY_ID.map((c) => [c.id, c.name]));
      for (const p of v.per_class_metrics) for (const key of ['iou', 'accuracy', 'precision', 'support']) expect(p).toHaveProperty(key);
      // Every labelled pixel of the val split (at IMAGE_SIZE 32 x 32) is counted once.
      const pixels = v.per_class_metrics.reduce((sum: number, p: any) => sum + p.support, 0);
      expect(pixels).toBe(v.num_images_validated * 32 * 32);
      // mIoU is the mean of the defined per-class IoUs.
      const ious = v.per_class_metrics.map((p: any) => p.iou).filter((x: number | null) => x !== null);
      expect(v.metrics.mIoU).toBeCloseTo(ious.reduce((a: number, b: number) => a + b, 0) / ious.length, 10);

      const key = `validation-results/job-${TRAIN_JOB}/epoch-${v.epoch}/images.json`;
      expect(v.image_results_path).toBe(`s3://${s3.config.bucket}/${key}`);
      const doc = ValidationImagesSchema.parse(await s3.storage().getJson(key));
      expect(doc.task_type).toBe('semantic_segmentation');
      expect(doc.results).toHaveLength(v.num_images_validated);
      for (const r of doc.results) {
        const gt = r.ground_truth as { classes: Array<{ class_id: number; pixel_fraction: number }> };
        expect(gt.classes.map((c) => c.class_id).every((id) => CLASSES.some((c) => c.id === id))).toBe(true);
        expect(gt.classes.reduce((a, c) => a + c.pixel_fraction, 0)).toBeCloseTo(1, 6);
        expect(typeof (r.metrics as { pixel_accuracy: number }).pixel_accuracy).toBe('number');
      }
    }
    expect(callbackDesignProblems(train.callbacks, 'semantic_segmentation')).toEqual([]);
    const done = train.callbacks.at(-1)!;
    expect(done.kind).toBe('trainingDone');
    expect(done.body.status).toBe('succeeded');
    const best = done.body.final_metrics.best_epoch as number;
    expect(done.body.final_metrics.best_mIoU).toBe(validations[best - 1].metrics.mIoU);
    const keys = (await s3.storage().list(`checkpoints/job-${TRAIN_JOB}/`)).map((o) => o.key).sort();
    expect(keys).toEqual([`checkpoints/job-${TRAIN_JOB}/best.pt`, `checkpoints/job-${TRAIN_JOB}/epoch-1.pt`, `checkpoints/job-${TRAIN_JOB}/epoch-2.pt`]);
  });

  it("test run: mIoU, pixel accuracy and per-class IoU over every labelled pixel; each image's class map as an indexed PNG of dataset ids; colour overlays", async () => {
    expect(train.code).toBe(0);
    const jobId = 'semseg-test-run';
    await runCliOk(
      ['infer'],
      inferEnv(s3, backend, jobId, {
        INFERENCE_TYPE: 'test_run',
        TASK_TYPE: 'semantic_segmentation',
        CHECKPOINT_PATH: BEST(),
        DATASET_ID,
        MAX_VISUALIZATIONS: '2',
      }),
    );
    const done = doneOf(jobId);
    expect(done.status).toBe('succeeded');
    for (const key of ['mIoU', 'pixel_accuracy', 'mean_accuracy']) expect(typeof done.overall_metrics[key], key).toBe('number');
    expect(done.per_class_metrics.map((p: any) => [p.class_id, p.class_name])).toEqual(BY_ID.map((c) => [c.id, c.name]));
    expect(done.confusion_matrix_class_ids).toEqual(BY_ID.map((c) => c.id));
    const doc = await readResults(s3.storage(), `test_runs/${jobId}/results.json`);
    expect(doc.task_type).toBe('semantic_segmentation');
    expect(doc.model).toMatchObject({
      framework: 'huggingface',
      task: 'semantic',
      architecture: 'SegformerForSemanticSegmentation',
      class_ids: BY_ID.map((c) => c.id),
    });
    // At full size: the test run counts every pixel of every image (40 x 32), all of them labelled.
    const pixels = done.confusion_matrix.flat().reduce((a: number, b: number) => a + b, 0);
    expect(pixels).toBe(doc.num_images * 40 * 32);
    const annotations = dataset.annotations as { images: Array<{ file_name: string; annotation: { mask_file: string } }> };
    const scratchPng = mkdtempSync(join(scratch, 'png-'));
    for (const r of doc.results) {
      const predictions = r.predictions as { classes: Array<{ class_id: number }>; mask_path: string };
      expect(predictions.mask_path).toMatch(new RegExp(`^s3://${s3.config.bucket}/test_runs/${jobId}/visualizations/masks/\\d{6}-.*\\.png$`));
      const local = join(scratchPng, `${r.index}.png`);
      await s3.storage().downloadFile(predictions.mask_path.replace(`s3://${s3.config.bucket}/`, ''), local);
      const png = pngValues(local);
      expect(png.mode).toBe('P');
      expect(png.size).toEqual([40, 32]);
      // Its values are the dataset's class ids, exactly the classes the predictions list.
      expect(png.values).toEqual(predictions.classes.map((c) => c.class_id).sort((a, b) => a - b));
      // The ground truth read from the image's mask: its classes are those the mask holds.
      const entry = annotations.images.find((i) => i.file_name === r.file_name)!;
      const truth = pngValues(join(dataset.root, entry.annotation.mask_file)).values;
      expect((r.ground_truth as { classes: Array<{ class_id: number }> }).classes.map((c) => c.class_id).sort((a, b) => a - b)).toEqual(truth);
      expect(typeof (r.metrics as { pixel_accuracy: number }).pixel_accuracy).toBe('number');
    }
    const overlays = doc.results.filter((r) => r.visualization_path !== null);
    expect(overlays).toHaveLength(2);
    const overlay = join(scratchPng, 'overlay.png');
    await s3.storage().downloadFile(overlays[0]!.visualization_path!.replace(`s3://${s3.config.bucket}/`, ''), overlay);
    // Prediction and ground truth side by side.
    expect(pngValues(overlay)).toMatchObject({ mode: 'RGB', size: [80, 32] });
  });

  it("UperNet (a ConvNeXt backbone from HF_CONFIG_OVERRIDES) trains 1 epoch on the same data given as COCO with COCO-Stuff's pixel maps (masks/<stem>.png, pixel = category id)", async () => {
    const dir = mkdtempSync(join(scratch, 'coco-'));
    const coco = writeSyntheticDataset(dir, {
      ...DATASET_OPTIONS,
      classes: [...DATASET_OPTIONS.classes],
      classIds: [...DATASET_OPTIONS.classIds],
      format: 'coco',
    });
    expect(coco.annotations).toMatchObject({ annotations: [], categories: CLASSES.map((c) => ({ id: c.id, name: c.name })) });
    const datasetId = `${DATASET_ID}-coco`;
    await uploadDataset(s3.storage(), datasetId, dir, 'zip');
    const jobId = 'semseg-upernet-coco';
    const env = jobEnv(s3, backend, jobId, {
      TASK_TYPE: 'semantic_segmentation',
      MODEL_NAME: 'upernet-convnext-tiny',
      DATASET_ID: datasetId,
      EPOCHS: '1',
      BATCH_SIZE: '4',
      HF_CONFIG_OVERRIDES: JSON.stringify(TINY_UPERNET),
    });
    await runCliOk(['train'], env);
    const callbacks = backend.receiver.received.filter((c) => c.jobId === jobId) as Callback[];
    const [validation] = callbacks.filter((c) => c.kind === 'validation').map((c) => c.body);
    expect(validation).toMatchObject({ epoch: 1, primary_metric_name: 'mIoU' });
    // The COCO categories' ids, in id order, and every labelled pixel of the val split counted.
    expect(validation.per_class_metrics.map((p: any) => [p.class_id, p.class_name])).toEqual(BY_ID.map((c) => [c.id, c.name]));
    expect(validation.per_class_metrics.reduce((sum: number, p: any) => sum + p.support, 0)).toBe(validation.num_images_validated * 32 * 32);
    expect(callbacks.at(-1)!.body).toMatchObject({ status: 'succeeded', final_metrics: { best_epoch: 1 } });
    const best = join(dir, 'best.pt');
    await s3.storage().downloadFile(`checkpoints/job-${jobId}/best.pt`, best);
    expect(checkpointMetadata(best)).toMatchObject({ architecture: 'UperNetForSemanticSegmentation', class_ids: BY_ID.map((c) => c.id) });
  });

  it('inference job on images from storage: a class map per image', async () => {
    expect(train.code).toBe(0);
    const storage = s3.storage();
    const images = (dataset.annotations as { images: Array<{ file_name: string }> }).images.slice(0, 2);
    const uris: string[] = [];
    for (const [i, image] of images.entries()) {
      await storage.uploadFile(join(dataset.root, 'images', image.file_name), `inference-inputs/semseg/${i}.png`);
      uris.push(`s3://${s3.config.bucket}/inference-inputs/semseg/${i}.png`);
    }
    const env = { INFERENCE_TYPE: 'inference_job', TASK_TYPE: 'semantic_segmentation', CHECKPOINT_PATH: BEST(), IMAGE_PATHS: JSON.stringify(uris) };
    const job = await runCli(['infer'], inferEnv(s3, backend, 'semseg-ij', env), { timeoutMs: 240_000 });
    expect(job.code, job.stdout.slice(-3000) + job.stderr.slice(-2000)).toBe(0);
    const doc = await readResults(storage, 'inference_jobs/semseg-ij/results.json');
    expect(doc.results).toHaveLength(2);
    for (const r of doc.results) {
      expect(r.ground_truth).toBeNull();
      expect(r.metrics).toBeNull();
      expect((r.predictions as { mask_path: string }).mask_path).toMatch(/\/inference_jobs\/semseg-ij\/visualizations\/masks\//);
    }
  });

  it('ONNX export validated by mIoU on the dataset; the Python and Node wrappers give the recorded class maps (one mask per class)', async () => {
    expect(train.code).toBe(0);
    const jobId = 'semseg-export';
    const env = jobEnv(s3, backend, jobId, {
      TASK_TYPE: 'semantic_segmentation',
      MODEL_NAME: 'segformer-b0',
      CHECKPOINT_PATH: BEST(),
      EXPORT_FORMAT: 'onnx',
      ENABLE_VALIDATION: 'true',
      VALIDATION_DATASET_ID: DATASET_ID,
      BATCH_SIZE: '1',
    });
    await runCliOk(['export'], env);
    const done = backend.receiver.received.find((c) => c.kind === 'exportDone' && c.jobId === jobId)!.body as Record<string, any>;
    expect(done).toMatchObject({ status: 'succeeded', validation_metrics: { metric: 'mIoU', passed: true } });
    expect(done.validation_metrics.original_accuracy).toBe(done.validation_metrics.original_metrics.mIoU);
    expect(done.validation_metrics.accuracy_drop).toBeLessThanOrEqual(0.001);
    expect(typeof done.validation_metrics.exported_metrics.pixel_accuracy).toBe('number');
    expect(done.model_info.output_shape).toEqual([1, 3, 32, 32]);
    const pkg = await downloadPackage(s3.storage(), jobId);
    expect(pkg.metadata).toMatchObject({
      task_type: 'semantic_segmentation',
      model: { architecture: 'SegformerForSemanticSegmentation', class_ids: BY_ID.map((c) => c.id) },
      preprocessing: { resize: { method: 'resize', size: [32, 32] } },
    });
    const recorded = pkg.expected!.images.map((i) => ({ predictions: i.predictions }));
    // A class map covers every pixel: the masks' shares add up to the whole image.
    for (const image of recorded) expect(image.predictions.reduce((a, p) => a + p.confidence, 0)).toBeCloseTo(1, 6);
    // OpenCV 4.6's DNN module (the C++ wrapper's engine) cannot create SegFormer's LayerNormalization:
    // the package leaves the C++ wrapper out and says why.
    expect(pkg.metadata.runtime).toMatchObject({
      wrappers: ['python', 'node'],
      absent_wrappers: [{ wrapper: 'cpp', reason: expect.stringContaining('uses LayerNormalization (opset 17') }],
    });
    expect(existsSync(join(pkg.dir, 'runtimes', 'cpp'))).toBe(false);
    const [python, node] = [runPythonWrapper(pkg), runNodeWrapper(pkg)];
    for (const lines of [python, node]) expectDatasetClassIds(lines, pkg.metadata);
    expectSamePredictions(python, recorded, SAME_RUNTIME, 'python');
    expectSamePredictions(node, recorded, SAME_RUNTIME, 'node');
  });

  it("automatic resume of a retried job whose killed attempt stored epochs 1-2 but never a best in state.json: epoch 3 only, the best recovered from epoch 2's checkpoint", async () => {
    expect(train.code).toBe(0);
    const jobId = 'semseg-auto-resume';
    const storage = s3.storage();
    const dir = mkdtempSync(join(scratch, 'attempt-'));
    // What an attempt killed after storing epoch 2 and before any state.json write leaves: the
    // checkpoints alone. Epoch 2's records epoch 1 as the best, stamped with a value no epoch can beat.
    for (const epoch of [1, 2]) {
      const local = join(dir, `epoch-${epoch}.pt`);
      await storage.downloadFile(`checkpoints/job-${TRAIN_JOB}/epoch-${epoch}.pt`, local);
      if (epoch === 2) stampBest(local, 1, 1.0);
      await storage.uploadFile(local, `checkpoints/job-${jobId}/epoch-${epoch}.pt`);
    }
    expect(await storage.exists(`logs/job-${jobId}/state.json`)).toBe(false);
    const env = jobEnv(s3, backend, jobId, {
      TASK_TYPE: 'semantic_segmentation',
      MODEL_NAME: 'segformer-b0',
      DATASET_ID,
      EPOCHS: '3',
      BATCH_SIZE: '4',
      CHECKPOINT_FREQUENCY: '1',
      HF_CONFIG_OVERRIDES: JSON.stringify(TINY_SEGFORMER),
    });
    const result = await runCliOk(['train'], env);
    expect(result.stdout + result.stderr).toContain('the checkpoint of epoch 2 records epoch 1 as the best so far');
    const callbacks = backend.receiver.received.filter((c) => c.jobId === jobId) as Callback[];
    const resumed = callbacks.find((c) => c.kind === 'event' && c.body.event_type === 'training_resumed');
    expect(resumed?.body.data).toMatchObject({ from_epoch: 2, best_epoch: 1, epochs: 3 });
    expect(callbacks.filter((c) => c.kind === 'validation').map((c) => c.body.epoch)).toEqual([3]);
    const done = callbacks.at(-1)!.body;
    expect(done).toMatchObject({ status: 'succeeded', final_metrics: { best_epoch: 1, best_mIoU: 1 } });
    // best.pt holds epoch 1's weights, stamped with the epoch the job chose.
    const best = join(dir, 'best.pt');
    await storage.downloadFile(`checkpoints/job-${jobId}/best.pt`, best);
    expect(checkpointFacts(best, join(dir, 'epoch-1.pt'))).toMatchObject({ best_epoch: 1, epoch: 1, same_weights: true });
    // epoch-3.pt's upload wrote the state: it carries the recovered best.
    const state = (await storage.getJson(`logs/job-${jobId}/state.json`)) as { best: { epoch: number; key: string } };
    expect(state.best).toMatchObject({ epoch: 1, key: `checkpoints/job-${jobId}/epoch-1.pt` });
  });
});
