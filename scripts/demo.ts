/**
 * `npm run demo`: the whole product on the embedded defaults. It starts the local stack
 * (SeaweedFS S3 server, callback receiver, live dashboard), prints the dashboard's address,
 * uploads a small dataset made from real images that ship inside installed packages, runs
 * `vision-trainer train` as a child process exactly as a container would, and ends with how the
 * metric rose and where the best checkpoint is (downloaded from the stack's S3 server into
 * .work/demo/, since the stack's storage goes away with it).
 *
 *   npm run demo                          classification: timm resnet10t from scratch on
 *                                         scikit-learn's handwritten digits (the default)
 *   npm run demo -- --task detection      detection: yolo11n from scratch on the digits pasted
 *                                         onto scikit-image's sample photographs (slow to learn)
 *
 * DEMO_EPOCHS, DEMO_MODEL, DEMO_BATCH, DEMO_IMAGE_SIZE, DEMO_PER_CLASS (classification) and
 * DEMO_IMAGES (detection) change the size. In a terminal the dashboard stays up after training
 * until Ctrl-C; DEMO_KEEP_OPEN=0 (or no terminal) ends the demo with the job.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ReceivedCallback } from '../src/dev/receiver.js';
import { startDevStack } from '../src/dev/stack.js';
import { PROJECT_ROOT, PYTHON_DIR, defaultPythonBin } from '../src/paths.js';
import { createStorage } from '../src/storage/index.js';
import { createZip } from '../src/storage/zip.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const started = Date.now();
const say = (line: string) => process.stdout.write(`[demo] ${line}\n`);
const seconds = () => `${((Date.now() - started) / 1000).toFixed(0)} s`;

interface Demo {
  datasetId: string;
  description: string;
  /** Arguments of `python -m vision_trainer.sample_data`, after the output folder. */
  sample: (imageSize: string) => string[];
  imageSize: string;
  /** The job's task and model variables. */
  job: Record<string, string>;
}

const DEMOS: Record<string, Demo> = {
  classification: {
    datasetId: 'demo-digits',
    description: "scikit-learn's handwritten digits, one class per digit",
    sample: (size) => ['--per-class', process.env.DEMO_PER_CLASS ?? '80', '--size', size],
    imageSize: '32',
    job: { TASK_TYPE: 'image_classification', MODEL_NAME: 'resnet10t', EPOCHS: '8', BATCH_SIZE: '32', NUM_WORKERS: '0' },
  },
  detection: {
    datasetId: 'demo-digits-on-photos',
    description: "scikit-learn's digits on scikit-image's photos",
    sample: (size) => ['--images', process.env.DEMO_IMAGES ?? '120', '--size', size],
    imageSize: '128',
    job: { TASK_TYPE: 'object_detection', MODEL_NAME: 'yolo11n', EPOCHS: '20', BATCH_SIZE: '16', NUM_WORKERS: '2' },
  },
};

function demoFromArgs(argv: string[]): [string, Demo] {
  const i = argv.indexOf('--task');
  const task = i >= 0 ? argv[i + 1] : 'classification';
  const demo = task ? DEMOS[task] : undefined;
  if (!task || !demo) throw new Error(`--task must be one of ${Object.keys(DEMOS).join(', ')} (got ${task ?? 'nothing'})`);
  return [task, demo];
}

const [TASK, DEMO] = demoFromArgs(process.argv.slice(2));
const IMAGE_SIZE = process.env.DEMO_IMAGE_SIZE ?? DEMO.imageSize;
const KEEP_OPEN = process.env.DEMO_KEEP_OPEN !== undefined ? process.env.DEMO_KEEP_OPEN !== '0' : process.stdout.isTTY === true;

/** Resolves on the first Ctrl-C or SIGTERM after it is called. */
function interrupted(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

async function main(): Promise<number> {
  const scratch = await mkdtemp(join(tmpdir(), 'vision-trainer-demo-'));
  const stack = await startDevStack({ print: true });
  try {
    say(`dashboard: ${stack.dashboardUrl}   <- open it to watch the curves live`);
    say(`local S3 server ${stack.s3.endpoint} (bucket ${stack.s3.bucket}), callback receiver ${stack.receiver.url}`);

    const datasetId = DEMO.datasetId;
    const datasetDir = join(scratch, datasetId);
    say(`making the sample ${TASK} dataset (${DEMO.description})...`);
    const made = spawnSync(defaultPythonBin(), ['-m', 'vision_trainer.sample_data', TASK, datasetDir, ...DEMO.sample(IMAGE_SIZE)], {
      cwd: PYTHON_DIR,
      encoding: 'utf8',
    });
    if (made.status !== 0) throw new Error(`sample dataset failed: ${made.stderr}`);
    say(`dataset: ${made.stdout.trim()}`);
    const zipPath = join(scratch, `${datasetId}.zip`);
    await createZip(datasetDir, zipPath);
    const storage = createStorage(stack.s3.storageConfig());
    say(`uploaded ${await storage.uploadFile(zipPath, `datasets/${datasetId}.zip`)}`);

    const jobId = `demo-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}`;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...stack.env,
      JOB_ID: jobId,
      TRACE_ID: `trace-${jobId}`,
      ...DEMO.job,
      MODEL_NAME: process.env.DEMO_MODEL ?? DEMO.job.MODEL_NAME,
      EPOCHS: process.env.DEMO_EPOCHS ?? DEMO.job.EPOCHS,
      BATCH_SIZE: process.env.DEMO_BATCH ?? DEMO.job.BATCH_SIZE,
      DATASET_ID: datasetId,
      IMAGE_SIZE,
      CHECKPOINT_FREQUENCY: '5',
      DEVICE: process.env.DEVICE ?? 'cpu',
      // One torch thread unless told otherwise: on a shared 2-core machine two threads spin
      // against each other and the other processes (measured at load 7: 58 s for the first
      // epoch with two threads, 14 s with one).
      OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '1',
      LOG_FORMAT: 'text',
    };
    say(`${seconds()}: running vision-trainer train (JOB_ID=${jobId}, ${env.MODEL_NAME} from scratch, ${env.EPOCHS} epochs at ${IMAGE_SIZE} px)`);
    const code = await new Promise<number>((resolve) => {
      const child = spawn(process.execPath, [join(PROJECT_ROOT, 'dist/src/cli.js'), 'train'], { env, stdio: 'inherit' });
      // Ctrl-C reaches the job too (same terminal): it stops at the end of its batch, saves and
      // uploads a checkpoint, and reports, so the stack stays up until it has. A SIGTERM sent to
      // the demo alone is passed on. A second Ctrl-C quits at once (no listener is left).
      const onInt = () => say('stopping: the job saves its checkpoint first (Ctrl-C again to quit now)');
      const onTerm = () => {
        onInt();
        child.kill('SIGTERM');
      };
      process.once('SIGINT', onInt);
      process.once('SIGTERM', onTerm);
      child.on('exit', (c, signal) => {
        process.off('SIGINT', onInt);
        process.off('SIGTERM', onTerm);
        resolve(c ?? (signal ? 128 : 1));
      });
    });

    const callbacks = stack.receiver.received.filter((c) => c.jobId === jobId);
    say(`${seconds()}: training ended; callbacks received: ${countByKind(callbacks)}`);
    const curve = metricCurve(callbacks);
    if (curve) say(curve);
    const done = callbacks.find((c): c is ReceivedCallback<'trainingDone'> => c.kind === 'trainingDone');
    if (code !== 0 || done?.body.status !== 'succeeded' || !done.body.checkpoint_path) {
      say(
        `training did not succeed (exit code ${code}, completion ${done?.body.status ?? 'missing'}${done?.body.error_message ? `: ${done.body.error_message}` : ''})`,
      );
      return code || 1;
    }
    const bestUri = done.body.checkpoint_path;
    const localDir = join(PROJECT_ROOT, '.work', 'demo', jobId);
    await mkdir(localDir, { recursive: true });
    const localBest = join(localDir, 'best.pt');
    const bytes = await storage.downloadFile(storage.parseUri(bestUri), localBest);
    say(`best checkpoint: ${bestUri} in the stack's S3 server, copied to ${localBest} (${(bytes / 1024 / 1024).toFixed(1)} MiB)`);
    say(`wall time ${seconds()}`);
    if (KEEP_OPEN) {
      say(`the dashboard stays up at ${stack.dashboardUrl}; Ctrl-C stops it and the local stack.`);
      await interrupted();
    }
    return 0;
  } finally {
    // A second Ctrl-C while stopping quits at once; SeaweedFS is stopped by its watchdog anyway.
    process.once('SIGINT', () => process.exit(130));
    await stack.stop();
    await rm(scratch, { recursive: true, force: true });
  }
}

function countByKind(callbacks: ReceivedCallback[]): string {
  const counts = new Map<string, number>();
  for (const c of callbacks) counts.set(c.kind, (counts.get(c.kind) ?? 0) + 1);
  return [...counts].map(([k, n]) => `${k} ${n}`).join(', ');
}

/** "accuracy by epoch: 0.12 0.35 … 0.93 (best 0.95 at epoch 7)", from the validation callbacks. */
function metricCurve(callbacks: ReceivedCallback[]): string | undefined {
  const validations = callbacks.filter((c): c is ReceivedCallback<'validation'> => c.kind === 'validation').map((c) => c.body);
  if (validations.length === 0) return undefined;
  const name = validations[0]!.primary_metric_name;
  const values = validations.map((v) => v.primary_metric_value);
  const best = validations.reduce((a, b) => ((b.primary_metric_value ?? -Infinity) > (a.primary_metric_value ?? -Infinity) ? b : a));
  return `${name} by epoch: ${values.map((v) => (v === null ? '-' : v.toFixed(3))).join(' ')} (best ${best.primary_metric_value?.toFixed(3)} at epoch ${best.epoch})`;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`[demo] failed: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
