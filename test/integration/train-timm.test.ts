/**
 * timm training through the CLI, as the platform runs it (SeaweedFS, the callback receiver,
 * `vision-trainer train` as a child process): resnet18 at 32 px from scratch and from a
 * pretrained weights file, the uploaded checkpoint rebuilt from itself alone, the three ways a
 * PRETRAINED_WEIGHT_URL can be wrong, and the checkpoint format's save-and-rebuild round trip.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  BY_ID,
  CLASS_IDS,
  OUTPUT_ORDER,
  classifierJobs,
  inIdOrder,
  expectCompleteClassifierRun,
  fixture,
  serveWeights,
  valImages,
  scratchDir,
} from '../helpers/classifier-runs.js';
import { useCallbackReceiver } from '../helpers/receiver.js';
import { useS3Server } from '../helpers/s3.js';

const s3 = useS3Server();
/**
 * The backend decides the best epoch of the resnet18 run against the score: epoch 1 is answered
 * is_best after 3 s (epoch 2 trains and overwrites the trainer's checkpoint meanwhile); epoch 2
 * is answered is_best exactly when its score is NOT higher than epoch 1's.
 */
const BACKEND_DECIDES = 'timm-resnet18';
const firstScore = new Map<string, number | null>();
const backend = useCallbackReceiver({
  answerValidation: (jobId, body) => {
    if (jobId !== BACKEND_DECIDES) return undefined;
    if (body.epoch === 1) {
      firstScore.set(jobId, body.primary_metric_value);
      return { isBest: true, delayMs: 3_000 };
    }
    return { isBest: !((body.primary_metric_value ?? 0) > (firstScore.get(jobId) ?? 0)) };
  },
});
const jobs = classifierJobs(s3, backend);
const scratch = scratchDir('vt-timm-');

beforeAll(async () => {
  await jobs.dataset();
});

const doneOf = (jobId: string) =>
  backend.receiver.received.find((c) => c.kind === 'trainingDone' && c.jobId === jobId)?.body as Record<string, any> | undefined;

describe('vision-trainer train (timm)', () => {
  it('resnet18 at 32 px, 2 epochs: callbacks, per-class metrics, confusion matrix, checkpoints; best.pt rebuilds the model that was validated', async () => {
    const run = await jobs.run(BACKEND_DECIDES, { TASK_TYPE: 'image_classification', MODEL_NAME: 'resnet18', EPOCHS: '2' });
    const { validations, bestEpoch } = await expectCompleteClassifierRun(run, 2, s3, backend);
    // The backend's answers chose the best, against the score: best.pt below is that epoch's model.
    const [v1, v2] = validations.map((v) => v.primary_metric_value as number);
    expect(bestEpoch).toBe(v2! > v1! ? 1 : 2);
    expect(run.callbacks.find((c) => c.kind === 'event' && (c.body as any).event_type === 'training_started')!.body).toMatchObject({
      data: { epochs: 2, device: 'cpu' },
    });

    // best.pt, as uploaded, carries what inference needs: rebuilt from the file alone and fed
    // the val images preprocessed as its metadata says, it reproduces the best epoch's matrix.
    const best = join(scratch, 'resnet18-best.pt');
    await s3.storage().downloadFile(`checkpoints/job-${run.jobId}/best.pt`, best);
    const images = join(scratch, 'resnet18-val.json');
    writeFileSync(images, JSON.stringify(valImages(run.work, 'imagefolder')));
    const seen = fixture<{ confusion_matrix: number[][]; metadata: Record<string, any> }>('reevaluate', best, images);
    expect(inIdOrder(seen.confusion_matrix, seen.metadata.class_ids)).toEqual(validations[bestEpoch - 1]!.confusion_matrix);
    expect(seen.metadata).toMatchObject({
      format: 'vision-trainer-checkpoint',
      framework: 'timm',
      model_name: 'resnet18',
      architecture: 'resnet18',
      task_type: 'image_classification',
      // timm numbers the ImageFolder classes by folder name; the checkpoint says which id each is.
      class_names: OUTPUT_ORDER.imagefolder,
      class_ids: OUTPUT_ORDER.imagefolder.map((n) => BY_ID.find((c) => c.name === n)!.id),
      num_classes: 3,
      image_size: 32,
      input_channels: 3,
      resize_mode: 'shorter_side_center_crop',
      // best.pt is the checkpoint of the epoch the backend chose, stamped with that choice: the
      // trainer wrote best_epoch by its score before the answer came (when epoch 2 scores no
      // higher, it named epoch 1), and the file now says what `done` says.
      epoch: bestEpoch,
      epoch_complete: true,
      job_id: run.jobId,
      best_epoch: bestEpoch,
      best_metric: validations[bestEpoch - 1]!.primary_metric_value,
      best_decided_by: 'backend',
    });
    expect(seen.metadata.mean).toHaveLength(3);
    expect([...seen.metadata.class_ids].sort((a: number, b: number) => a - b)).toEqual([...CLASS_IDS].sort((a, b) => a - b));
    expect(seen.metadata.std).toHaveLength(3);
  });

  it('PRETRAINED_WEIGHT_URL with ImageNet-shaped resnet18 weights (.safetensors, 1000 classes): loaded with the classifier resized to 3 classes', async () => {
    const file = join(scratch, 'resnet18-imagenet.safetensors');
    fixture('timm-weights', file, 'resnet18', '1000');
    const server = await serveWeights({ file });
    try {
      const run = await jobs.run('timm-pretrained', {
        TASK_TYPE: 'image_classification',
        MODEL_NAME: 'resnet18',
        EPOCHS: '1',
        PRETRAINED_WEIGHT_URL: server.url('resnet18.safetensors'),
      });
      await expectCompleteClassifierRun(run, 1, s3, backend);
      expect(run.callbacks.some((c) => c.kind === 'event' && (c.body as any).event_type === 'weights_downloaded')).toBe(true);
    } finally {
      await server.close();
    }
  });
});

describe('a wrong PRETRAINED_WEIGHT_URL fails the run and says which way it is wrong', () => {
  const failedRun = async (jobId: string, url: string) => {
    const run = await jobs.run(jobId, { TASK_TYPE: 'image_classification', MODEL_NAME: 'resnet18', EPOCHS: '1', PRETRAINED_WEIGHT_URL: url });
    const done = doneOf(jobId)!;
    expect(done.status).toBe('failed');
    expect(run.keys).toEqual([]); // nothing was trained
    expect(done.error_message).not.toContain('0123456789abcdef'); // the URL's signature stays secret
    expect(run.result.stdout).not.toContain('0123456789abcdef');
    return { run, message: done.error_message as string };
  };

  it('404: the download fails (storage error, exit 4)', async () => {
    const server = await serveWeights({ status: 404, body: 'NoSuchKey' });
    try {
      const { run, message } = await failedRun('timm-weights-404', server.url('resnet18.pth'));
      expect(run.result.code).toBe(4);
      expect(message).toMatch(/404/);
    } finally {
      await server.close();
    }
  });

  it('weights of another architecture (resnet10t for resnet18): the mismatch is named (exit 5)', async () => {
    const file = join(scratch, 'resnet10t.pth');
    fixture('timm-weights', file, 'resnet10t', '1000');
    const server = await serveWeights({ file });
    try {
      const { run, message } = await failedRun('timm-weights-wrong-arch', server.url('resnet18.pth'));
      expect(run.result.code).toBe(5);
      expect(message).toMatch(
        /^ValueError: PRETRAINED_WEIGHT_URL holds weights of another architecture than resnet18: \d+ of the model's \d+ tensors are missing/,
      );
    } finally {
      await server.close();
    }
  });

  it('not a weights file at all (exit 5)', async () => {
    const server = await serveWeights({ status: 200, body: '<html>Sign in to continue</html>' });
    try {
      const { run, message } = await failedRun('timm-weights-not-weights', server.url('resnet18.pth'));
      expect(run.result.code).toBe(5);
      expect(message).toMatch(/^ValueError: PRETRAINED_WEIGHT_URL is not a weights file: resnet18\.pth is neither safetensors nor a PyTorch checkpoint/);
    } finally {
      await server.close();
    }
  });
});

describe('the checkpoint format (python/vision_trainer/common/checkpoints.py)', () => {
  it('build_model_from_checkpoint gives exactly the logits the model gave before saving: timm resnet18, transformers ViT, CLIP zero-shot', () => {
    const seen = fixture<{ max_abs_diff: Record<string, number>; logit_scale: number }>('roundtrip', mkdtempSync(join(scratch, 'roundtrip-')));
    expect(Object.keys(seen.max_abs_diff).sort()).toEqual(['timm resnet18', 'transformers CLIP zero-shot', 'transformers ViT']);
    for (const diff of Object.values(seen.max_abs_diff)) expect(diff).toBe(0);
    expect(seen.logit_scale).toBeGreaterThan(0); // the CLIP logits compared were not all zero
  });
});
