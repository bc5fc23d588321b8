/**
 * How a training run ends when things go wrong, through the real path: SIGTERM mid-training,
 * the time limit, the backend down for the whole run, a diverging (NaN) loss, a Python
 * exception, and a TypeScript event handler that throws.
 */
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { train } from '../../src/jobs/train/index.js';
import { uploadDataset } from '../helpers/datasets.js';
import { jobEnv } from '../helpers/job-env.js';
import { childPids, isAlive, logLines, startCli } from '../helpers/cli.js';
import { useCallbackReceiver } from '../helpers/receiver.js';
import { useS3Server } from '../helpers/s3.js';
import { rewriteAnnotations, writeSyntheticDataset } from '../helpers/synthetic.js';

const s3 = useS3Server();
const backend = useCallbackReceiver();
const DATASET = 'ds-failures';
let datasetDir: string;

beforeAll(async () => {
  datasetDir = mkdtempSync(join(tmpdir(), 'vt-ds-'));
  writeSyntheticDataset(datasetDir, { taskType: 'object_detection', count: 20, width: 64, height: 48, seed: 5 });
  await uploadDataset(s3.storage(), DATASET, datasetDir, 'zip');
});

function env(jobId: string, extra: Record<string, string> = {}) {
  return jobEnv(s3, backend, jobId, {
    TASK_TYPE: 'object_detection',
    MODEL_NAME: 'yolo11n',
    DATASET_ID: DATASET,
    EPOCHS: '1',
    CALLBACK_MAX_ATTEMPTS: '2',
    ...extra,
  });
}

/** ultralytics' final_eval announces itself with this line. */
const FINAL_EVAL_LINE = /Validating \S*best\.pt/;

async function trainingLog(jobId: string): Promise<string> {
  const file = join(mkdtempSync(join(tmpdir(), 'vt-log-')), 'training.log');
  await s3.storage().downloadFile(`logs/job-${jobId}/training.log`, file);
  return readFileSync(file, 'utf8');
}

const doneOf = (jobId: string) =>
  backend.receiver.received.find((c) => c.kind === 'trainingDone' && c.jobId === jobId)?.body as Record<string, any> | undefined;

describe('stopping a run', () => {
  it('SIGTERM mid-training: the current batch ends, the last checkpoint is uploaded, `failed` is reported, Python is gone', async () => {
    const jobId = 'stop-sigterm';
    const run = startCli(['train'], env(jobId, { EPOCHS: '200', CHECKPOINT_FREQUENCY: '1000' }));
    await backend.receiver.waitFor((c) => c.kind === 'heartbeat' && c.jobId === jobId, 120_000);
    const pythons = childPids(run.child.pid!);
    expect(pythons.length).toBeGreaterThan(0);
    run.child.kill('SIGTERM');
    const result = await run.done;

    expect(result.code).toBe(143);
    const done = doneOf(jobId)!;
    expect(done.status).toBe('failed');
    expect(done.error_message).toMatch(/stopped by SIGTERM; last checkpoint in storage: epoch (\d+) at s3:\/\//);
    const epoch = Number(/epoch (\d+) at s3/.exec(done.error_message)![1]);
    expect(await s3.storage().exists(`checkpoints/job-${jobId}/epoch-${epoch}.pt`)).toBe(true);
    // The stop's done names that checkpoint and says a retry continues the job.
    expect(done.checkpoint_path).toBe(`s3://${s3.config.bucket}/checkpoints/job-${jobId}/epoch-${epoch}.pt`);
    expect(done.resumable).toBe(true);
    // No epoch is reported past the one the stop ended (ultralytics' final evaluation is not an epoch).
    const reported = backend.receiver.received
      .filter((c) => c.jobId === jobId && c.kind === 'heartbeat' && (c.body as any).batch === undefined)
      .map((c) => (c.body as any).epoch as number);
    expect(Math.max(...reported)).toBeLessThanOrEqual(epoch);
    const saved = backend.receiver.received.filter((c) => c.jobId === jobId && c.kind === 'event' && (c.body as any).event_type === 'checkpoint_saved');
    expect(saved.map((c) => (c.body as any).data.reason)).toEqual(['stop']);
    for (const pid of pythons) expect(isAlive(pid)).toBe(false);
    // ultralytics' re-validation of best.pt after the last epoch is skipped after our stop: it would
    // spend the grace period on figures nobody reads (a finished run has it: the NaN-loss run below).
    const log = await trainingLog(jobId);
    expect(log).toMatch(/stopping after the current batch|SIGTERM/);
    expect(log).not.toMatch(FINAL_EVAL_LINE);
  });

  it('MAX_TRAINING_TIME_SECONDS: stops, uploads the last checkpoint and fails with the time-limit message (exit 7)', async () => {
    const jobId = 'stop-time-limit';
    const result = await startCli(['train'], env(jobId, { EPOCHS: '200', CHECKPOINT_FREQUENCY: '1000', MAX_TRAINING_TIME_SECONDS: '3' })).done;
    expect(result.code).toBe(7);
    const done = doneOf(jobId)!;
    expect(done.error_message).toMatch(/exceeded the maximum time limit of 3 s \(MAX_TRAINING_TIME_SECONDS\)/);
    // The stop's checkpoint, and the best epoch's weights when that is another epoch (a retry continues with them).
    const last = Number(/last checkpoint in storage: epoch (\d+)/.exec(done.error_message)![1]);
    const epochs = [...new Set([last, done.final_metrics.best_epoch as number])];
    const keys = (await s3.storage().list(`checkpoints/job-${jobId}/`)).map((o) => o.key).sort();
    expect(keys).toEqual(epochs.map((e) => `checkpoints/job-${jobId}/epoch-${e}.pt`).sort());
  });
});

describe('failures that must not lose the work', () => {
  it('backend down for the whole run: training completes and uploads best.pt; exit 6 only because `done` was undeliverable', async () => {
    const jobId = 'backend-down';
    const closedPort = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const port = (srv.address() as { port: number }).port;
        srv.close(() => resolve(port));
      });
    });
    const result = await startCli(['train'], env(jobId, { BACKEND_BASE_URL: `http://127.0.0.1:${closedPort}` })).done;
    expect(result.code).toBe(6);
    expect(await s3.storage().exists(`checkpoints/job-${jobId}/best.pt`)).toBe(true);
    const errors = logLines(result.stdout)
      .filter((l) => l.level === 'error')
      .map((l) => String(l.msg));
    expect(errors.join('\n')).toMatch(/completion could not be delivered/);
  });

  it('a NaN loss does not crash Node: the loss goes out as null and the run completes', async () => {
    const jobId = 'nan-loss';
    const result = await startCli(['train'], { ...env(jobId), VISION_TRAINER_FAILPOINTS: 'nan_loss' }).done;
    expect(result.code).toBe(0);
    const beat = backend.receiver.received.find((c) => c.jobId === jobId && c.kind === 'heartbeat' && (c.body as any).batch === undefined)!.body as Record<
      string,
      any
    >;
    expect(beat.metrics.box_loss).toBeNull();
    expect(beat.metrics.loss).toBeNull();
    expect(doneOf(jobId)!.status).toBe('succeeded');
    expect(await trainingLog(jobId)).toMatch(FINAL_EVAL_LINE);
  });

  it('a Python exception fails the run with the Python error named (wrong pretrained weights file)', async () => {
    const jobId = 'python-error';
    const server = createServer((_req, res) => res.end('this is not a checkpoint')).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/weights/yolo11n.pt?X-Amz-Signature=deadbeefdeadbeef`;
    try {
      const result = await startCli(['train'], env(jobId, { PRETRAINED_WEIGHT_URL: url })).done;
      expect(result.code).toBe(5);
      const done = doneOf(jobId)!;
      expect(done.status).toBe('failed');
      expect(done.error_message).toMatch(/^[A-Z]\w+(Error|Exception): /); // the Python type leads the message
      expect(done.error_message).not.toContain('deadbeef');
      expect(result.stdout).not.toContain('deadbeef');
    } finally {
      server.close();
    }
  });
});

describe('TypeScript API', () => {
  it('a run-event handler that throws stops training, fails the run with its message, and closes Python', async () => {
    const storageRoot = mkdtempSync(join(tmpdir(), 'vt-local-'));
    const run = train(
      {
        jobId: 'ts-throw',
        taskType: 'object_detection',
        modelName: 'yolo11n',
        datasetId: 'local',
        epochs: 50,
        imageSize: 32,
        batchSize: 8,
        device: 'cpu',
        numWorkers: 0,
        storage: { type: 'local', root: storageRoot, datasetPath: datasetDir },
      },
      {
        logger: false,
        onEvent: (e) => {
          if (e.type === 'epoch' && e.epoch === 1) throw new Error('dashboard update exploded');
        },
      },
    );
    const seen: string[] = [];
    for await (const e of run) seen.push(e.type);
    const result = await run.result;
    expect(result.status).toBe('failed');
    expect(result.error?.message).toMatch(/A run-event handler failed, so training was stopped: Error: dashboard update exploded/);
    expect(seen).toContain('epoch');
    expect(seen.at(-1)).toBe('done');
    expect(seen.filter((t) => t === 'epoch').length).toBeLessThanOrEqual(2);
  });

  it('a dataset error while the framework is still importing fails at once and leaves no Python behind', async () => {
    const storageRoot = mkdtempSync(join(tmpdir(), 'vt-local-'));
    const broken = writeSyntheticDataset(mkdtempSync(join(tmpdir(), 'vt-ds-')), { taskType: 'object_detection', count: 10, seed: 9 });
    const images = broken.annotations.images as Array<{ annotations: Array<{ class_id: number }> }>;
    images.find((im) => im.annotations.length > 0)!.annotations[0]!.class_id = 42;
    rewriteAnnotations(broken);
    const before = new Set(childPids(process.pid));
    const spawned: number[] = [];
    const run = train(
      {
        jobId: 'ts-early-python',
        taskType: 'object_detection',
        modelName: 'yolo11n',
        datasetId: 'local',
        epochs: 1,
        imageSize: 32,
        batchSize: 8,
        device: 'cpu',
        numWorkers: 0,
        storage: { type: 'local', root: storageRoot, datasetPath: broken.root },
      },
      {
        logger: false,
        onEvent: (e) => {
          if (e.type === 'stage' && e.stage === 'downloading_dataset') spawned.push(...childPids(process.pid).filter((pid) => !before.has(pid)));
        },
      },
    );
    const stages: string[] = [];
    for await (const e of run) if (e.type === 'stage') stages.push(e.stage);
    const result = await run.result;
    expect(result.status).toBe('failed');
    expect(result.exitCode).toBe(3);
    expect(result.error?.message).toMatch(/class_id.*42/);
    // Python was up (the preflight) during the download; the dataset failed before training was reached, and Python is gone.
    expect(spawned.length).toBeGreaterThan(0);
    expect(stages).not.toContain('training');
    expect(childPids(process.pid).filter((pid) => !before.has(pid) && isAlive(pid))).toEqual([]);
  });

  it('runs several trainings one after another in one process; each interpreter gets its own CPU_THREADS', async () => {
    const storageRoot = mkdtempSync(join(tmpdir(), 'vt-local-'));
    for (const [jobId, cpuThreads] of [
      ['seq-1', 2],
      ['seq-2', 1],
    ] as const) {
      let settings: Record<string, any> | undefined;
      const run = train(
        {
          jobId,
          taskType: 'object_detection',
          modelName: 'yolo11n',
          datasetId: 'local',
          epochs: 1,
          imageSize: 32,
          batchSize: 8,
          device: 'cpu',
          numWorkers: 0,
          cpuThreads,
          storage: { type: 'local', root: storageRoot, datasetPath: datasetDir },
        },
        {
          logger: false,
          onEvent: (e) => {
            if (e.type === 'start') settings = e.settings;
          },
        },
      );
      const result = await run.result;
      expect(result.status, result.error?.describe()).toBe('succeeded');
      expect(result.checkpointUri).toBe(`file://${join(storageRoot, `checkpoints/job-${jobId}/best.pt`)}`);
      // CPU_THREADS sized the new interpreter's pools (ultralytics keeps one CPU for its data loading).
      expect(settings?.cpu_budget).toMatchObject({ threads: cpuThreads, source: 'CPU_THREADS' });
      expect(settings?.runtime).toMatchObject({
        torch_interop_threads: cpuThreads,
        omp_num_threads: String(cpuThreads),
        torch_threads: Math.max(1, cpuThreads - 1),
      });
    }
  });
});
