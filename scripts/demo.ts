/**
 * `npm run demo`: the whole product on the embedded defaults. It starts the local stack
 * (SeaweedFS S3 server + callback receiver), uploads a small detection dataset made from real
 * images that ship inside installed packages (scikit-learn's handwritten digits pasted onto
 * scikit-image's sample photographs), runs `vision-trainer train` as a child process exactly as
 * a container would, prints one line per callback, and ends with where the best checkpoint is.
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
const IMAGE_SIZE = process.env.DEMO_IMAGE_SIZE ?? '128';
const say = (line: string) => process.stdout.write(`[demo] ${line}\n`);

async function main(): Promise<number> {
  const scratch = await mkdtemp(join(tmpdir(), 'vision-trainer-demo-'));
  const stack = await startDevStack({ print: true });
  try {
    say(`local S3 server ${stack.s3.endpoint}, callback receiver ${stack.receiver.url}`);

    const datasetId = 'demo-digits';
    const datasetDir = join(scratch, datasetId);
    say('making the sample dataset (scikit-learn digits on scikit-image photos)...');
    const made = spawnSync(defaultPythonBin(), ['-m', 'vision_trainer.sample_data', 'detection', datasetDir, '--images', process.env.DEMO_IMAGES ?? '120', '--size', IMAGE_SIZE], {
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
      TASK_TYPE: 'object_detection',
      MODEL_NAME: 'yolo11n',
      DATASET_ID: datasetId,
      EPOCHS: process.env.DEMO_EPOCHS ?? '20',
      BATCH_SIZE: '16',
      IMAGE_SIZE,
      CHECKPOINT_FREQUENCY: '5',
      DEVICE: process.env.DEVICE ?? 'cpu',
      NUM_WORKERS: '2',
      LOG_FORMAT: 'text',
    };
    say(`running: vision-trainer train (JOB_ID=${jobId}, yolo11n, ${env.EPOCHS} epochs at ${IMAGE_SIZE} px)`);
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
