/**
 * Retries continue, never restart: a run preempted by SIGTERM and run again with the identical
 * environment continues from its last stored checkpoint, ends with the planned number of epochs,
 * one successful `done` naming the best epoch of both attempts, and a final checkpoint that
 * loads; a third attempt only re-delivers that outcome. RESUME_CHECKPOINT_PATH: a checkpoint of
 * another model is refused with a message that says so, a missing one is a configuration error.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PYTHON_DIR, defaultPythonBin } from '../../src/paths.js';
import { uploadDataset } from '../helpers/datasets.js';
import { runCli, startCli } from '../helpers/cli.js';
import { jobEnv } from '../helpers/job-env.js';
import { useCallbackReceiver } from '../helpers/receiver.js';
import { useS3Server } from '../helpers/s3.js';
import { writeSyntheticDataset } from '../helpers/synthetic.js';

const s3 = useS3Server();
const backend = useCallbackReceiver();
const DATASET = 'ds-resume';

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vt-ds-'));
  writeSyntheticDataset(dir, { taskType: 'image_classification', count: 24, width: 32, height: 32, seed: 11 });
  await uploadDataset(s3.storage(), DATASET, dir, 'zip');
});

const env = (jobId: string, extra: Record<string, string> = {}) =>
  jobEnv(s3, backend, jobId, {
    TASK_TYPE: 'image_classification',
    MODEL_NAME: 'resnet18',
    DATASET_ID: DATASET,
    EPOCHS: '6',
    CHECKPOINT_FREQUENCY: '1',
    ...extra,
  });

const epochBeats = (jobId: string, from = 0) =>
  backend.receiver.received
    .slice(from)
    .filter((c) => c.jobId === jobId && c.kind === 'heartbeat' && (c.body as { batch?: number }).batch === undefined)
    .map((c) => (c.body as { epoch: number }).epoch);

describe('resume (timm)', () => {
  it('a retried job continues: SIGTERM after epoch 2 of 6, the same environment again trains epochs 3-6 and keeps the best of both attempts', async () => {
    const jobId = 'resume-timm';
    const first = startCli(['train'], env(jobId));
    await backend.receiver.waitFor(
      (c) =>
        c.kind === 'heartbeat' &&
        c.jobId === jobId &&
        (c.body as { batch?: number; epoch: number }).batch === undefined &&
        (c.body as { epoch: number }).epoch >= 2,
      400_000,
    );
    first.child.kill('SIGTERM');
    const stopped = await first.done;
    expect(stopped.code).toBe(143);
    const failed = backend.receiver.received.find((c) => c.jobId === jobId && c.kind === 'trainingDone')!.body as {
      error_message: string;
      checkpoint_path: string;
      resumable?: boolean;
    };
    const epoch = Number(/last checkpoint in storage: epoch (\d+) at /.exec(failed.error_message)![1]);
    expect(epoch).toBeGreaterThanOrEqual(2);
    expect(failed.checkpoint_path).toBe(`s3://${s3.config.bucket}/checkpoints/job-${jobId}/epoch-${epoch}.pt`);
    expect(failed.resumable).toBe(true);
    const before = epochBeats(jobId);

    // The retried pod: the identical environment, no RESUME_CHECKPOINT_PATH.
    const mark = backend.receiver.received.length;
    const resumed = await runCli(['train'], env(jobId), { timeoutMs: 500_000 });
    expect(resumed.code, resumed.stdout.slice(-3000)).toBe(0);
    expect(resumed.stdout).toMatch(/Resuming job resume-timm from the checkpoint of epoch \d+ that an earlier attempt stored/);
    const later = backend.receiver.received.slice(mark).filter((c) => c.jobId === jobId);
    const event = later.find((c) => c.kind === 'event' && (c.body as { event_type: string }).event_type === 'training_resumed');
    expect((event?.body as { data: { from_epoch: number } } | undefined)?.data.from_epoch).toBe(epoch);
    const after = epochBeats(jobId, mark);
    expect(after.at(-1)).toBe(6);
    expect(after[0]).toBeLessThanOrEqual(epoch + 1); // an epoch cut short is trained again
    expect(Math.min(...after)).toBeGreaterThanOrEqual(epoch); // never the epochs already stored
    expect(new Set([...before, ...after])).toEqual(new Set([1, 2, 3, 4, 5, 6]));
    const dones = later.filter((c) => c.kind === 'trainingDone');
    expect(dones.map((d) => (d.body as { status: string }).status)).toEqual(['succeeded']);

    // The best epoch of the whole job, across both attempts (the later validation of an epoch trained twice counts).
    const accuracy = new Map<number, number>();
    for (const c of backend.receiver.received.filter((c) => c.jobId === jobId && c.kind === 'validation')) {
      const v = c.body as unknown as { epoch: number; metrics: { accuracy: number } };
      accuracy.set(v.epoch, v.metrics.accuracy);
    }
    const final = (dones[0]!.body as unknown as { final_metrics: { best_epoch: number; best_accuracy: number } }).final_metrics;
    expect(final.best_accuracy).toBe(Math.max(...accuracy.values()));
    expect(accuracy.get(final.best_epoch)).toBe(final.best_accuracy);

    // The final checkpoint rebuilds the model without the dataset. (Importing vision_trainer sends
    // print() to stderr, which keeps a job's stdout for its JSON log lines.)
    const best = join(mkdtempSync(join(tmpdir(), 'vt-best-')), 'best.pt');
    await s3.storage().downloadFile(`checkpoints/job-${jobId}/best.pt`, best);
    const meta = JSON.parse(
      execFileSync(
        defaultPythonBin(),
        [
          '-c',
          'import sys, json\nfrom vision_trainer.common.checkpoints import build_model_from_checkpoint\nm, meta = build_model_from_checkpoint(sys.argv[1])\nsys.__stdout__.write(json.dumps({k: meta[k] for k in ("model_name", "class_names", "epoch")}))',
          best,
        ],
        { cwd: PYTHON_DIR, encoding: 'utf8' },
      )
        .trim()
        .split('\n')
        .at(-1)!,
    );
    expect(meta).toEqual({ model_name: 'resnet18', class_names: ['circle', 'square', 'triangle'], epoch: final.best_epoch });

    // A third attempt finds the final outcome: it re-delivers it with the same key and trains nothing.
    const again = backend.receiver.received.length;
    const third = await runCli(['train'], env(jobId), { timeoutMs: 120_000 });
    expect(third.code).toBe(0);
    expect(third.stdout).toMatch(/already ended .* re-delivering that outcome/);
    const redelivered = backend.receiver.requests.slice(again).filter((r) => r.kind === 'trainingDone');
    expect(redelivered.map((r) => r.idempotencyKey)).toEqual([dones[0]!.idempotencyKey]);
    expect(backend.receiver.received.slice(again).filter((c) => c.jobId === jobId && c.kind === 'heartbeat')).toEqual([]);
  }, 1_200_000);

  it('refuses a checkpoint of another model with a message that says which', async () => {
    const jobId = 'resume-wrong-model';
    const source = 'resume-timm';
    const result = await runCli(
      ['train'],
      env(jobId, { MODEL_NAME: 'efficientnet_b0', EPOCHS: '2', RESUME_CHECKPOINT_PATH: `s3://${s3.config.bucket}/checkpoints/job-${source}/best.pt` }),
      { timeoutMs: 180_000 },
    );
    expect(result.code).not.toBe(0);
    const done = backend.receiver.received.find((c) => c.jobId === jobId && c.kind === 'trainingDone')!.body as { status: string; error_message: string };
    expect(done.status).toBe('failed');
    expect(done.error_message).toMatch(/resnet18/);
    expect(done.error_message).toMatch(/efficientnet_b0/);
  });

  it('a RESUME_CHECKPOINT_PATH that does not exist is a configuration error', async () => {
    const jobId = 'resume-missing';
    const result = await runCli(['train'], env(jobId, { RESUME_CHECKPOINT_PATH: `s3://${s3.config.bucket}/checkpoints/job-nope/epoch-1.pt` }), {
      timeoutMs: 120_000,
    });
    expect(result.code).toBe(2);
    const done = backend.receiver.received.find((c) => c.jobId === jobId && c.kind === 'trainingDone')!.body as { error_message: string };
    expect(done.error_message).toMatch(/RESUME_CHECKPOINT_PATH=.*does not exist/);
  });
});
