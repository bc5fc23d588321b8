/**
 * `npm run demo`: the whole product on the embedded defaults. It starts the local stack
 * (SeaweedFS S3 server + callback receiver), uploads a small dataset made from real images that
 * ship inside installed packages, runs `vision-trainer train` as a child process exactly as a
 * container would, prints one line per callback, and ends with where the best checkpoint is.
 *
 *   npm run demo                            detection: yolo11n on scikit-learn's handwritten
 *                                           digits pasted onto scikit-image's sample photographs
 *   npm run demo -- --task classification   classification: timm resnet18 at 32 px on the digits
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDevStack } from '../src/dev/stack.js';
import { PROJECT_ROOT, PYTHON_DIR, defaultPythonBin } from '../src/paths.js';
import { createStorage } from '../src/storage/index.js';
import { createZip } from '../src/storage/zip.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const started = Date.now();
const say = (line: string) => process.stdout.write(`[demo] ${line}\n`);

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
  detection: {
    datasetId: 'demo-digits',
    description: 'scikit-learn digits on scikit-image photos',
    sample: (size) => ['--images', process.env.DEMO_IMAGES ?? '120', '--size', size],
    imageSize: '128',
    job: { TASK_TYPE: 'object_detection', MODEL_NAME: 'yolo11n', EPOCHS: '20', BATCH_SIZE: '16' },
  },
  classification: {
    datasetId: 'demo-digits-classes',
    description: 'scikit-learn digits, one class per digit',
    sample: (size) => ['--per-class', process.env.DEMO_PER_CLASS ?? '30', '--size', size],
    imageSize: '32',
    job: { TASK_TYPE: 'image_classification', MODEL_NAME: 'resnet18', EPOCHS: '10', BATCH_SIZE: '32' },
  },
};

function demoFromArgs(argv: string[]): [string, Demo] {
  const i = argv.indexOf('--task');
  const task = i >= 0 ? argv[i + 1] : 'detection';
  const demo = task ? DEMOS[task] : undefined;
  if (!task || !demo) throw new Error(`--task must be one of ${Object.keys(DEMOS).join(', ')} (got ${task ?? 'nothing'})`);
  return [task, demo];
}

const [TASK, DEMO] = demoFromArgs(process.argv.slice(2));
const IMAGE_SIZE = process.env.DEMO_IMAGE_SIZE ?? DEMO.imageSize;

async function main(): Promise<number> {
  const scratch = await mkdtemp(join(tmpdir(), 'vision-trainer-demo-'));
  const stack = await startDevStack({ print: true });
  try {
    say(`local S3 server ${stack.s3.endpoint}, callback receiver ${stack.receiver.url}`);

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
    const storage = createStorage({ type: 'minio', endpoint: stack.s3.endpoint, accessKeyId: stack.s3.accessKeyId, secretAccessKey: stack.s3.secretAccessKey, bucket: stack.s3.bucket });
    const uri = await storage.uploadFile(zipPath, `datasets/${datasetId}.zip`);
    say(`uploaded ${uri}`);

    const jobId = `demo-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}`;
    const env = {
      ...process.env,
      ...stack.env,
      JOB_ID: jobId,
      TRACE_ID: `trace-${jobId}`,
      ...DEMO.job,
      EPOCHS: process.env.DEMO_EPOCHS ?? DEMO.job.EPOCHS,
      DATASET_ID: datasetId,
      IMAGE_SIZE,
      CHECKPOINT_FREQUENCY: '5',
      DEVICE: process.env.DEVICE ?? 'cpu',
      NUM_WORKERS: '2',
      LOG_FORMAT: 'text',
    };
    say(`running: vision-trainer train (JOB_ID=${jobId}, ${DEMO.job.MODEL_NAME}, ${env.EPOCHS} epochs at ${IMAGE_SIZE} px)`);
    const code = await new Promise<number>((resolve) => {
      const child = spawn(process.execPath, [join(PROJECT_ROOT, 'dist/src/cli.js'), 'train'], { env, stdio: 'inherit' });
      child.on('exit', (c, signal) => resolve(c ?? (signal ? 128 : 1)));
    });

    const done = stack.receiver.received.find((c) => c.kind === 'trainingDone' && c.jobId === jobId);
    const counts = new Map<string, number>();
    for (const c of stack.receiver.received) counts.set(c.kind, (counts.get(c.kind) ?? 0) + 1);
    say(`callbacks received: ${[...counts].map(([k, n]) => `${k} ${n}`).join(', ')}`);
    const objects = await storage.list(`checkpoints/job-${jobId}/`);
    say(`checkpoints in S3: ${objects.map((o) => o.key).join(', ')}`);
    const body = done?.body as { status?: string; checkpoint_path?: string; final_metrics?: Record<string, unknown> } | undefined;
    if (code === 0 && body?.status === 'succeeded') {
      say(`best checkpoint: ${body.checkpoint_path} (${JSON.stringify(body.final_metrics)})`);
    } else {
      say(`training did not succeed (exit code ${code}, completion ${body?.status ?? 'missing'})`);
    }
    say(`wall time ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return code === 0 && body?.status === 'succeeded' ? 0 : code || 1;
  } finally {
    await stack.stop();
    await rm(scratch, { recursive: true, force: true });
  }
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
