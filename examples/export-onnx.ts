/**
 * An export from a script: a checkpoint to ONNX, validated against the original on a dataset,
 * packaged with its runtime code; each stage printed as it starts.
 *
 *   node dist/examples/export-onnx.js CHECKPOINT_URI [DATASET_FOLDER] [STORAGE_FOLDER]
 *   e.g. after examples/train-and-compare.ts (it prints each run's checkpoint URI):
 *   node dist/examples/export-onnx.js file://$PWD/storage/checkpoints/job-compare-64/best.pt /tmp/vt-example-XXXX/digits
 *
 * Storage is a local folder, so no S3 server or backend is needed.
 */
import { resolve } from 'node:path';
import { type ExportResult, exportModel } from '../src/index.js';

async function main(): Promise<ExportResult> {
  const [checkpointUri, datasetPath, storageRoot = 'storage'] = process.argv.slice(2);
  if (!checkpointUri) throw new Error('usage: export-onnx.js CHECKPOINT_URI [DATASET_FOLDER] [STORAGE_FOLDER]');

  const run = exportModel(
    {
      jobId: 'example-export',
      taskType: 'object_detection',
      exportFormat: 'onnx',
      modelName: 'yolo11n',
      checkpointPath: checkpointUri,
      // Validation compares the exported model with the original on the dataset's images.
      enableValidation: Boolean(datasetPath),
      ...(datasetPath ? { validationDatasetId: 'local' } : {}),
      device: 'cpu',
      storage: { type: 'local', root: resolve(storageRoot), ...(datasetPath ? { datasetPath: resolve(datasetPath) } : {}) },
    },
    // The signal stops an export at once (Python is killed): here, after ten minutes at most.
    { signal: AbortSignal.timeout(600_000), logger: false },
  );
  for await (const event of run) {
    if (event.type === 'progress') process.stdout.write(`  ${event.stage}: ${event.message}\n`);
  }
  return run.result;
}

main().then(
  (result) => {
    if (result.error) process.stderr.write(`${result.error.describe()}\n`);
    process.stdout.write(`${result.status}: ${result.exportPath} (package ${result.packagePath})\n`);
    if (result.validation) process.stdout.write(`validation: ${JSON.stringify(result.validation).slice(0, 400)}\n`);
    process.exitCode = result.exitCode;
  },
  (err: unknown) => {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exitCode = 2;
  },
);
