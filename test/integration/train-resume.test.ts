/**
 * RESUME_CHECKPOINT_PATH: a run preempted by SIGTERM continues from its uploaded checkpoint,
 * ends with the planned number of epochs and one successful `done`, and its final checkpoint
 * loads. A checkpoint of another model is refused with a message that says so.
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
    EPOCHS: '3',
    CHECKPOINT_FREQUENCY: '1',
    ...extra,
  });

const epochBeats = (jobId: string, from = 0) =>
  backend.receiver.received
    .slice(from)
    .filter((c) => c.jobId === jobId && c.kind === 'heartbeat' && (c.body as { batch?: number }).batch === undefined)
    .map((c) => (c.body as { epoch: number }).epoch);

describe('resume (timm)', () => {
  it('a run stopped by SIGTERM after epoch 1 of 3 resumes from its checkpoint and completes epochs 2-3', async () => {
    const jobId = 'resume-timm';
    const first = startCli(['train'], env(jobId));
    await backend.receiver.waitFor((c) => c.kind === 'heartbeat' && c.jobId === jobId && (c.body as { batch?: number }).batch === undefined, 180_000);
    first.child.kill('SIGTERM');
    const stopped = await first.done;
    expect(stopped.code).toBe(143);
    const failed = backend.receiver.received.find((c) => c.jobId === jobId && c.kind === 'trainingDone')!.body as { error_message: string };
    const epoch = Number(/last checkpoint: epoch (\d+) uploaded/.exec(failed.error_message)![1]);
    expect(epoch).toBeGreaterThanOrEqual(1);
    const before = epochBeats(jobId);

    const mark = backend.receiver.received.length;
    const resumed = await runCli(['train'], env(jobId, { RESUME_CHECKPOINT_PATH: `s3://${s3.config.bucket}/checkpoints/job-${jobId}/epoch-${epoch}.pt` }), {
      timeoutMs: 240_000,
    });
    expect(resumed.code, resumed.stdout.slice(-3000)).toBe(0);
    const after = epochBeats(jobId, mark);
    expect(after.at(-1)).toBe(3);
    expect(after[0]).toBeLessThanOrEqual(epoch + 1); // an epoch cut short is trained again
    expect(new Set([...before, ...after])).toEqual(new Set([1, 2, 3]));
    const dones = backend.receiver.received.slice(mark).filter((c) => c.jobId === jobId && c.kind === 'trainingDone');
    expect(dones.map((d) => (d.body as { status: string }).status)).toEqual(['succeeded']);

    // The final checkpoint rebuilds the model without the dataset. (Importing vision_trainer sends
    // print() to stderr, which keeps a job's stdout for its JSON log lines.)
    const best = join(mkdtempSync(join(tmpdir(), 'vt-best-')), 'best.pt');
    await s3.storage().downloadFile(`checkpoints/job-${jobId}/best.pt`, best);
    const meta = JSON.parse(
      execFileSync(
        defaultPythonBin(),
        [
          '-c',
          'import sys, json\nfrom vision_trainer.common.checkpoints import build_model_from_checkpoint\nm, meta = build_model_from_checkpoint(sys.argv[1])\nsys.__stdout__.write(json.dumps({k: meta[k] for k in ("model_name", "class_names")}))',
          best,
        ],
        { cwd: PYTHON_DIR, encoding: 'utf8' },
      )
        .trim()
        .split('\n')
        .at(-1)!,
    );
    expect(meta).toEqual({ model_name: 'resnet18', class_names: ['circle', 'square', 'triangle'] });
  });

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
