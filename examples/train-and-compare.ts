/**
 * A scripted experiment: train YOLO11n at two image sizes, one after the other in one process,
 * watch validation as it happens, and compare the best results.
 *
 *   npm run setup && node dist/examples/train-and-compare.js [dataset-folder]
 *
 * Without a folder it makes the demo's sample dataset (scikit-learn digits on scikit-image
 * photos). Storage is a local folder (./storage), so no S3 server or backend is needed.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { train, type TrainResult } from '../src/index.js';
import { PYTHON_DIR, defaultPythonBin } from '../src/paths.js';

function sampleDataset(): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'vt-example-')), 'digits');
  const made = spawnSync(defaultPythonBin(), ['-m', 'vision_trainer.sample_data', 'detection', dir, '--images', '60', '--size', '128'], {
    cwd: PYTHON_DIR,
    encoding: 'utf8',
  });
  if (made.status !== 0) throw new Error(made.stderr);
  return dir;
}

async function main(): Promise<void> {
  const datasetPath = process.argv[2] ? resolve(process.argv[2]) : sampleDataset();
  const results: Array<{ imageSize: number; result: TrainResult }> = [];

  for (const imageSize of [64, 128]) {
    const run = train(
      {
        jobId: `compare-${imageSize}`,
        taskType: 'object_detection',
        modelName: 'yolo11n',
        datasetId: 'local',
        epochs: 3,
        imageSize,
        batchSize: 16,
        device: 'cpu',
        storage: { type: 'local', root: resolve('storage'), datasetPath },
      },
      { logger: false },
    );
    for await (const event of run) {
      if (event.type === 'batch' && event.batch === event.batches)
        process.stdout.write(
          `  [${imageSize}px] epoch ${event.epoch}: loss ${Object.values(event.losses)
            .map((v) => v?.toFixed(3))
            .join('/')}\n`,
        );
      if (event.type === 'validation')
        process.stdout.write(`  [${imageSize}px] validation epoch ${event.epoch}: ${event.primaryMetricName}=${event.primaryMetricValue}\n`);
    }
    results.push({ imageSize, result: await run.result });
  }

  for (const { imageSize, result } of results) {
    if (result.error) process.stdout.write(`${imageSize}px failed: ${result.error.describe()}\n`);
    process.stdout.write(
      `${imageSize}px: ${result.status}, best epoch ${result.bestEpoch}, mAP50-95 ${result.bestMetricValue}, ${result.totalTimeSeconds.toFixed(1)} s, ${result.checkpointUri}\n`,
    );
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
