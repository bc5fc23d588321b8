/**
 * Resume with the trainers whose loops we own (timm, transformers), through the CLI: a run given
 * RESUME_CHECKPOINT_PATH reports only the epochs it has left and ends with one `done`; a
 * checkpoint of another model or framework is refused with the reason. transformers' automatic
 * resume too: a job SIGKILLed mid-run, run again with the identical environment, continues from
 * its last stored epoch. (timm's SIGTERM-and-retry is train-resume.test.ts.)
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { startCli } from '../helpers/cli.js';
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

const epochEvents = (run: ClassifierRun, type: string) =>
  run.callbacks
    .filter((c) => c.kind === 'event' && (c.body as { event_type: string }).event_type === type)
    .map((c) => (c.body as { data: Record<string, any> }).data);

async function expectResumed(resumed: ClassifierRun, layout: 'imagefolder' | 'manifest') {
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
  await expectFinalCheckpoint(resumed, 2, layout);
}

/** The run's last checkpoint loads and says it is that complete epoch of the same model and classes, scoring as its last validation did. */
async function expectFinalCheckpoint(run: ClassifierRun, epoch: number, layout: 'imagefolder' | 'manifest') {
  const last = join(scratch, `${run.jobId}-epoch-${epoch}.pt`);
  await s3.storage().downloadFile(`checkpoints/job-${run.jobId}/epoch-${epoch}.pt`, last);
  const images = join(scratch, `${run.jobId}-val.json`);
  writeFileSync(images, JSON.stringify(valImages(run.work, layout)));
  const seen = fixture<{ confusion_matrix: number[][]; metadata: Record<string, any> }>('reevaluate', last, images);
  expect(seen.metadata).toMatchObject({ epoch, epoch_complete: true, class_names: OUTPUT_ORDER[layout] });
  const validation = run.callbacks.filter((c) => c.kind === 'validation').at(-1)!.body as { epoch: number; confusion_matrix: number[][] };
  expect(validation.epoch).toBe(epoch);
  expect(inIdOrder(seen.confusion_matrix, seen.metadata.class_ids)).toEqual(validation.confusion_matrix);
}

describe('RESUME_CHECKPOINT_PATH (timm, transformers)', () => {
  it('timm resnet18: epoch 1 of one job, resumed to EPOCHS=2 by another; another model is refused', async () => {
    const vars = { TASK_TYPE: 'image_classification', MODEL_NAME: 'resnet18' };
    const first = await jobs.run('resume-timm-a', { ...vars, EPOCHS: '1' });
    expect(first.result.code, first.result.stderr.slice(-3000)).toBe(0);
    const resumed = await jobs.run('resume-timm-b', { ...vars, EPOCHS: '2', RESUME_CHECKPOINT_PATH: uri(first.jobId, 'epoch-1.pt') });
    await expectResumed(resumed, 'imagefolder');

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

  it('transformers tiny ViT: SIGKILLed after epoch 1, the same job again resumes automatically; RESUME_CHECKPOINT_PATH from its epoch 1; a timm checkpoint is refused', async () => {
    const vars = { TASK_TYPE: 'image_classification', MODEL_NAME: 'vit-base-patch16-224', HF_CONFIG_OVERRIDES: JSON.stringify(TINY_VIT) };
    const EPOCHS = 3;
    const jobId = 'resume-hf-auto';
    // The first attempt is killed outright (no stop handling at all) once epoch 1's checkpoint is in storage.
    const killed = startCli(
      ['train'],
      jobs.env(jobId, { ...vars, EPOCHS: String(EPOCHS), DATASET_ID: await jobs.dataset(), WORK_DIR: mkdtempSync(join(scratch, 'killed-')) }),
      { timeoutMs: 230_000 },
    );
    await backend.receiver.waitFor(
      (c) => c.jobId === jobId && c.kind === 'event' && (c.body as { event_type: string }).event_type === 'checkpoint_saved',
      230_000,
    );
    killed.child.kill('SIGKILL');
    expect((await killed.done).signal).toBe('SIGKILL');
    const mark = backend.receiver.received.length;
    const stored = Math.max(
      ...backend.receiver.received.flatMap((c) =>
        c.jobId === jobId && c.kind === 'event' && (c.body as any).event_type === 'checkpoint_saved' ? [(c.body as any).data.epoch as number] : [],
      ),
    );

    // The retried pod: the identical environment.
    const retried = await jobs.run(jobId, { ...vars, EPOCHS: String(EPOCHS) });
    const retry: ClassifierRun = { ...retried, callbacks: backend.receiver.received.slice(mark).filter((c) => c.jobId === jobId) };
    expect(retry.result.code, retry.result.stdout.slice(-3000)).toBe(0);
    expect(retry.result.stdout).toMatch(new RegExp(`Resuming job ${jobId} from the checkpoint of epoch \\d+ that an earlier attempt stored`));
    const [resumed] = epochEvents(retry, 'training_resumed');
    // The latest checkpoint in storage: the one the first attempt reported, or a later one whose upload finished before the kill.
    const from = resumed!.from_epoch as number;
    expect(from).toBeGreaterThanOrEqual(stored);
    expect(from).toBeLessThan(EPOCHS);
    // Only the epochs left are trained, validated and reported; none that storage already had.
    const left = Array.from({ length: EPOCHS - from }, (_, i) => from + 1 + i);
    expect(epochBeats(retry)).toEqual(left);
    expect(validationEpochs(retry)).toEqual(left);
    // Batch heartbeats coalesce when the next is ready before the last went out: some, and none of an earlier epoch.
    expect(batchEpochs(retry).length).toBeGreaterThan(0);
    expect(batchEpochs(retry).filter((e) => !left.includes(e))).toEqual([]);
    expect(epochEvents(retry, 'training_started')).toMatchObject([{ epochs: EPOCHS, start_epoch: from }]);
    // Every epoch's checkpoint is kept, and best.pt.
    const own = (name: string) => `checkpoints/job-${jobId}/${name}`;
    expect(retry.keys).toEqual([own('best.pt'), ...Array.from({ length: EPOCHS }, (_, i) => own(`epoch-${i + 1}.pt`))].sort());
    // One `done`, naming the best epoch of both attempts with the accuracy its validation reported.
    expect(done(retry)).toHaveLength(1);
    const final = done(retry)[0]!;
    expect(final.status).toBe('succeeded');
    const accuracy = new Map<number, number>();
    for (const c of backend.receiver.received.filter((c) => c.jobId === jobId && c.kind === 'validation')) {
      const v = c.body as unknown as { epoch: number; metrics: { accuracy: number } };
      accuracy.set(v.epoch, v.metrics.accuracy);
    }
    expect(final.final_metrics.best_epoch).toEqual(expect.any(Number));
    expect(final.final_metrics.best_accuracy).toBe(accuracy.get(final.final_metrics.best_epoch));
    expect(final.checkpoint_path).toBe(uri(jobId, 'best.pt'));
    await expectFinalCheckpoint(retry, EPOCHS, 'manifest');

    // RESUME_CHECKPOINT_PATH: another job continues this one's epoch 1 to its own EPOCHS.
    const resumedB = await jobs.run('resume-hf-b', { ...vars, EPOCHS: '2', RESUME_CHECKPOINT_PATH: uri(jobId, 'epoch-1.pt') });
    await expectResumed(resumedB, 'manifest');

    // A timm checkpoint in the same format (the round-trip fixture writes one), uploaded where a timm job would have put it.
    const made = mkdtempSync(join(scratch, 'timm-checkpoint-'));
    fixture('roundtrip', made);
    await s3.storage().uploadFile(join(made, 'timm.pt'), 'checkpoints/job-some-timm-job/epoch-1.pt');
    const other = await jobs.run('resume-hf-timm-checkpoint', { ...vars, EPOCHS: '2', RESUME_CHECKPOINT_PATH: uri('some-timm-job', 'epoch-1.pt') });
    expect(other.result.code).toBe(5);
    expect(done(other)[0]!.error_message).toMatch(
      /RESUME_CHECKPOINT_PATH belongs to another training setup: it has framework 'timm' \(this job: 'huggingface'\); model 'resnet18'/,
    );
  }, 600_000); // four jobs
});
