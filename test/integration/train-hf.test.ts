/**
 * transformers training through the CLI, as the platform runs it (SeaweedFS, the callback
 * receiver, `vision-trainer train` as a child process): a ViT image classifier and a CLIP
 * zero-shot classifier built from tiny configurations (HF_CONFIG_OVERRIDES), a ViT fine-tuned
 * from a zipped save_pretrained folder, and PRETRAINED_WEIGHT_URLs that are not such a zip.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createZip } from '../../src/storage/zip.js';
import {
  BY_ID,
  OUTPUT_ORDER,
  TINY_CLIP,
  TINY_VIT,
  classifierJobs,
  expectCompleteClassifierRun,
  fixture,
  inIdOrder,
  serveWeights,
  valImages,
  type ClassifierRun,
  scratchDir,
} from '../helpers/classifier-runs.js';
import { useCallbackReceiver } from '../helpers/receiver.js';
import { useS3Server } from '../helpers/s3.js';

const s3 = useS3Server();
const backend = useCallbackReceiver();
const jobs = classifierJobs(s3, backend);
const scratch = scratchDir('vt-hf-');

beforeAll(async () => {
  await jobs.dataset();
});

const doneOf = (jobId: string) =>
  backend.receiver.received.find((c) => c.kind === 'trainingDone' && c.jobId === jobId)?.body as Record<string, any> | undefined;

/** best.pt as uploaded, rebuilt from the file alone and scored on the run's val images. */
async function reevaluateBest(run: ClassifierRun) {
  const best = join(scratch, `${run.jobId}-best.pt`);
  await s3.storage().downloadFile(`checkpoints/job-${run.jobId}/best.pt`, best);
  const images = join(scratch, `${run.jobId}-val.json`);
  writeFileSync(images, JSON.stringify(valImages(run.work, 'manifest')));
  const seen = fixture<{ confusion_matrix: number[][]; metadata: Record<string, any> }>('reevaluate', best, images);
  // The manifest numbers classes by id: the checkpoint's outputs are the classes in id order.
  expect(seen.metadata).toMatchObject({ class_names: OUTPUT_ORDER.manifest, class_ids: BY_ID.map((c) => c.id) });
  return { ...seen, confusion_matrix: inIdOrder(seen.confusion_matrix, seen.metadata.class_ids) };
}

describe('vision-trainer train (transformers)', () => {
  it('image_classification: vit-base-patch16-224 built from a tiny config, 2 epochs; best.pt rebuilds the validated model', async () => {
    const run = await jobs.run('hf-vit', {
      TASK_TYPE: 'image_classification',
      MODEL_NAME: 'vit-base-patch16-224',
      EPOCHS: '2',
      HF_CONFIG_OVERRIDES: JSON.stringify(TINY_VIT),
    });
    const { validations, bestEpoch } = await expectCompleteClassifierRun(run, 2, s3, backend);
    const seen = await reevaluateBest(run);
    expect(seen.confusion_matrix).toEqual(validations[bestEpoch - 1]!.confusion_matrix);
    expect(seen.metadata).toMatchObject({
      framework: 'huggingface',
      model_name: 'vit-base-patch16-224',
      architecture: 'ViTForImageClassification',
      task_type: 'image_classification',
      image_size: 32,
      mean: [0.5, 0.5, 0.5],
      resize_mode: 'squash',
      interpolate_pos_encoding: false,
      epoch: bestEpoch,
    });
  });

  it('zero_shot_classification: clip-vit-base-patch32 from a tiny config with a tokenizer made in code; validation is zero-shot accuracy over the class prompts', async () => {
    const run = await jobs.run('hf-clip', {
      TASK_TYPE: 'zero_shot_classification',
      MODEL_NAME: 'clip-vit-base-patch32',
      EPOCHS: '2',
      HF_CONFIG_OVERRIDES: JSON.stringify(TINY_CLIP),
    });
    const { validations, bestEpoch } = await expectCompleteClassifierRun(run, 2, s3, backend);
    const seen = await reevaluateBest(run);
    expect(seen.confusion_matrix).toEqual(validations[bestEpoch - 1]!.confusion_matrix);
    expect(seen.metadata).toMatchObject({
      architecture: 'CLIPModel',
      task_type: 'zero_shot_classification',
      prompt_template: 'a photo of a {}',
      interpolation: 'bicubic',
    });
  });

  it('PRETRAINED_WEIGHT_URL: a zipped save_pretrained ViT (5 labels, 64 px) is fine-tuned for the 3 classes at 32 px', async () => {
    const folder = join(scratch, 'pretrained-vit');
    fixture('hf-pretrained', folder, 'image_classification', '5', '64');
    const zip = join(scratch, 'pretrained-vit.zip');
    await createZip(folder, zip);
    const server = await serveWeights({ file: zip });
    try {
      const run = await jobs.run('hf-vit-pretrained', {
        TASK_TYPE: 'image_classification',
        MODEL_NAME: 'google/vit-base-patch16-224',
        FRAMEWORK: 'huggingface',
        EPOCHS: '1',
        PRETRAINED_WEIGHT_URL: server.url('vit.zip'),
      });
      const { validations } = await expectCompleteClassifierRun(run, 1, s3, backend);
      const seen = await reevaluateBest(run);
      expect(seen.confusion_matrix).toEqual(validations[0]!.confusion_matrix);
      // The head was resized to the dataset's classes; the position embeddings stay at 64 px and are interpolated.
      expect(seen.metadata).toMatchObject({ num_classes: 3, image_size: 32, interpolate_pos_encoding: true });
    } finally {
      await server.close();
    }
  });

  it('a PRETRAINED_WEIGHT_URL that is not a zip, or a zip without config.json, fails the run saying so', async () => {
    const notZip = await serveWeights({ status: 200, body: 'model weights moved' });
    const emptyDir = mkdtempSync(join(scratch, 'no-config-'));
    writeFileSync(join(emptyDir, 'weights.bin'), 'not a model folder');
    const zip = join(scratch, 'no-config.zip');
    await createZip(emptyDir, zip);
    const noConfig = await serveWeights({ file: zip });
    try {
      const a = await jobs.run('hf-weights-not-zip', {
        TASK_TYPE: 'image_classification',
        MODEL_NAME: 'vit-base-patch16-224',
        EPOCHS: '1',
        PRETRAINED_WEIGHT_URL: notZip.url('vit.zip'),
      });
      expect(a.result.code).toBe(5);
      expect(doneOf(a.jobId)!.status).toBe('failed');
      expect(doneOf(a.jobId)!.error_message).toMatch(/^PRETRAINED_WEIGHT_URL is not a zip of a save_pretrained folder: .*not a readable zip archive/);

      const b = await jobs.run('hf-weights-no-config', {
        TASK_TYPE: 'image_classification',
        MODEL_NAME: 'vit-base-patch16-224',
        EPOCHS: '1',
        PRETRAINED_WEIGHT_URL: noConfig.url('vit.zip'),
      });
      expect(b.result.code).toBe(5);
      expect(doneOf(b.jobId)!.error_message).toMatch(
        /^ValueError: PRETRAINED_WEIGHT_URL is not a zip of a save_pretrained folder: it has no config\.json \(found: weights\.bin\)/,
      );
      for (const run of [a, b]) expect(run.keys).toEqual([]);
    } finally {
      await notZip.close();
      await noConfig.close();
    }
  });
});
