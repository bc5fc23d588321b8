/**
 * A test run from a script: evaluate a checkpoint on a dataset's val split, watch the progress,
 * stop it with Ctrl-C (an AbortSignal), and print the metrics.
 *
 *   node dist/examples/infer-test-run.js CHECKPOINT_URI DATASET_FOLDER [STORAGE_FOLDER]
 *   e.g. after examples/train-and-compare.ts (it prints each run's checkpoint URI):
 *   node dist/examples/infer-test-run.js file://$PWD/storage/checkpoints/job-compare-64/best.pt /tmp/vt-example-XXXX/digits
 *
 * Storage is a local folder (results go there), so no S3 server or backend is needed. The same call with
 * `inferenceType: 'inference_job'` and `imagePaths` predicts on images without labels.
 */
import { resolve } from 'node:path';
import { type InferenceOutcome, infer } from '../src/index.js';

async function main(): Promise<InferenceOutcome> {
  const [checkpointUri, datasetPath, storageRoot = 'storage'] = process.argv.slice(2);
  if (!checkpointUri || !datasetPath) throw new Error('usage: infer-test-run.js CHECKPOINT_URI DATASET_FOLDER [STORAGE_FOLDER]');

  // Ctrl-C stops the run after the current batch; the outcome is then `failed`, exit code 143.
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort('Ctrl-C'));

  const run = infer(
    {
      jobId: 'example-test-run',
      taskType: 'object_detection',
      inferenceType: 'test_run',
      checkpointPath: checkpointUri,
      datasetId: 'local',
      testSplit: 'val',
      device: 'cpu',
      storage: { type: 'local', root: resolve(storageRoot), datasetPath: resolve(datasetPath) },
    },
    { signal: controller.signal, logger: false },
  );
  for await (const event of run) {
    if (event.type === 'progress') process.stdout.write(`  ${event.processed}/${event.total} images (${event.percent.toFixed(0)}%)\n`);
  }
  return run.result;
}

main().then(
  (outcome) => {
    if (outcome.error) process.stderr.write(`${outcome.error.describe()}\n`);
    process.stdout.write(
      `${outcome.status}: ${outcome.images} images, metrics ${JSON.stringify(outcome.metrics?.overall_metrics ?? null)}\nresults: ${outcome.resultsUri}\n`,
    );
    process.exitCode = outcome.exitCode;
  },
  (err: unknown) => {
    // A configuration the schema refuses is thrown at the call (ConfigError, every problem listed).
    process.stderr.write(`${(err as Error).message}\n`);
    process.exitCode = 2;
  },
);
