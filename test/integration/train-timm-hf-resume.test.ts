/**
 * RESUME_CHECKPOINT_PATH with the trainers whose loops we own (timm, transformers), through the
 * CLI: a resumed run reports only the epochs it has left and ends with one `done`; a checkpoint
 * of another model or framework is refused with the reason. (Stopping by SIGTERM and resuming
 * is the training job's own test.)
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { OUTPUT_ORDER, TINY_VIT, classifierJobs, fixture, inIdOrder, valImages, type ClassifierRun, scratchDir } from '../helpers/classifier-runs.js';
import { useCallbackReceiver } from '../helpers/receiver.js';
import { useS3Server } from '../helpers/s3.js';

const s3 = useS3Server();
const backend = useCallbackReceiver();
const jobs = classifierJobs(s3, backend);
const scratch = scratchDir('vt-resume-');

beforeAll(async () => {
  await jobs.dataset();
});

const uri = (jobId: string, name: string) => `s3://${s3.config.bucket}/checkpoints/job-${jobId}/${name}`;
const epochBeats = (run: ClassifierRun) =>
  run.callbacks.filter((c) => c.kind === 'heartbeat' && (c.body as { batch?: number }).batch === undefined).map((c) => (c.body as { epoch: number }).epoch);
const batchEpochs = (run: ClassifierRun) => [
  ...new Set(
    run.callbacks
      .filter((c) => c.kind === 'heartbeat' && typeof (c.body as { batch?: number }).batch === 'number')
      .map((c) => (c.body as { epoch: number }).epoch),
  ),
];
const validationEpochs = (run: ClassifierRun) => run.callbacks.filter((c) => c.kind === 'validation').map((c) => (c.body as { epoch: number }).epoch);
const done = (run: ClassifierRun) => run.callbacks.filter((c) => c.kind === 'trainingDone').map((c) => c.body as Record<string, any>);

async function expectResumed(first: ClassifierRun, resumed: ClassifierRun, layout: 'imagefolder' | 'manifest') {
  expect(first.result.code, first.result.stderr.slice(-3000)).toBe(0);
  expect(resumed.result.code, resumed.result.stdout.slice(-3000) + resumed.result.stderr.slice(-3000)).toBe(0);
  // Epoch 1 was done by the first job: the resumed one trains, validates and reports epoch 2 only.
  expect(epochBeats(resumed)).toEqual([2]);
  expect(batchEpochs(resumed)).toEqual([2]);
  expect(validationEpochs(resumed)).toEqual([2]);
  expect(done(resumed)).toHaveLength(1);
  expect(done(resumed)[0]!.status).toBe('succeeded');
  // Epoch 2's checkpoint and best.pt; epoch 1's weights too when they were the best so far at the
  // moment epoch 2's checkpoint was stored (the resumed run carries the first job's best, and
  // keeps it in its own folder until a better epoch is confirmed, so a retry can rebuild best.pt).
  const own = (name: string) => `checkpoints/job-${resumed.jobId}/${name}`;
  expect(resumed.keys).toEqual(expect.arrayContaining([own('best.pt'), own('epoch-2.pt')]));
  expect(resumed.keys.filter((k) => k !== own('best.pt') && k !== own('epoch-2.pt'))).toEqual(
    resumed.keys.includes(own('epoch-1.pt')) ? [own('epoch-1.pt')] : [],
  );

  // Its final checkpoint loads and says it is epoch 2 of the same model and classes.
  const last = join(scratch, `${resumed.jobId}-epoch-2.pt`);
  await s3.storage().downloadFile(`checkpoints/job-${resumed.jobId}/epoch-2.pt`, last);
  const images = join(scratch, `${resumed.jobId}-val.json`);
  writeFileSync(images, JSON.stringify(valImages(resumed.work, layout)));
  const seen = fixture<{ confusion_matrix: number[][]; metadata: Record<string, any> }>('reevaluate', last, images);
  expect(seen.metadata).toMatchObject({ epoch: 2, epoch_complete: true, class_names: OUTPUT_ORDER[layout] });
  const validation = resumed.callbacks.find((c) => c.kind === 'validation')!.body as { confusion_matrix: number[][] };
  expect(inIdOrder(seen.confusion_matrix, seen.metadata.class_ids)).toEqual(validation.confusion_matrix);
}

describe('RESUME_CHECKPOINT_PATH (timm, transformers)', () => {
  it('timm resnet18: epoch 1 of one job, resumed to EPOCHS=2 by another; another model is refused', async () => {
    const vars = { TASK_TYPE: 'image_classification', MODEL_NAME: 'resnet18' };
    const first = await jobs.run('resume-timm-a', { ...vars, EPOCHS: '1' });
    const resumed = await jobs.run('resume-timm-b', { ...vars, EPOCHS: '2', RESUME_CHECKPOINT_PATH: uri(first.jobId, 'epoch-1.pt') });
    await expectResumed(first, resumed, 'imagefolder');

    const other = await jobs.run('resume-timm-other-model', {
      ...vars,
      MODEL_NAME: 'resnet34',
      EPOCHS: '2',
      RESUME_CHECKPOINT_PATH: uri(first.jobId, 'epoch-1.pt'),
    });
    expect(other.result.code).toBe(5);
    expect(done(other)[0]!.error_message).toMatch(
      /^ValueError: RESUME_CHECKPOINT_PATH belongs to another training setup: it has model 'resnet18' \(this job: 'resnet34'\)/,
    );
    expect(other.keys).toEqual([]);
  });

  it('transformers tiny ViT: resumed from epoch 1; a timm checkpoint is refused', async () => {
    const vars = { TASK_TYPE: 'image_classification', MODEL_NAME: 'vit-base-patch16-224', HF_CONFIG_OVERRIDES: JSON.stringify(TINY_VIT) };
    const first = await jobs.run('resume-hf-a', { ...vars, EPOCHS: '1' });
    const resumed = await jobs.run('resume-hf-b', { ...vars, EPOCHS: '2', RESUME_CHECKPOINT_PATH: uri(first.jobId, 'epoch-1.pt') });
    await expectResumed(first, resumed, 'manifest');

    // A timm checkpoint in the same format (the round-trip fixture writes one), uploaded where a timm job would have put it.
    const made = mkdtempSync(join(scratch, 'timm-checkpoint-'));
    fixture('roundtrip', made);
    await s3.storage().uploadFile(join(made, 'timm.pt'), 'checkpoints/job-some-timm-job/epoch-1.pt');
    const other = await jobs.run('resume-hf-timm-checkpoint', { ...vars, EPOCHS: '2', RESUME_CHECKPOINT_PATH: uri('some-timm-job', 'epoch-1.pt') });
    expect(other.result.code).toBe(5);
    expect(done(other)[0]!.error_message).toMatch(
      /RESUME_CHECKPOINT_PATH belongs to another training setup: it has framework 'timm' \(this job: 'huggingface'\); model 'resnet18'/,
    );
  });
});
