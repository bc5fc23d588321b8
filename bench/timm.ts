/**
 * `npm run bench:timm`: does driving timm through vision-trainer's Python bridge cost training
 * time? The twin of bench/bridge.ts for the loop we own: the same timm training (resnet18 from
 * scratch on the demo's scikit-learn digits, a few seconds per epoch on this CPU) runs natively
 * in Python (bench/native_timm.py calls vision_trainer.timm.train directly) and through the
 * `vision-trainer train` CLI (local storage, a real callback receiver), interleaved, several
 * times. Prints the median per-epoch time of each (first epoch excluded: warm-up), start-up to
 * the first epoch, and `epoch time ratio: X.XX` (bridged/native). Aim: at most 1.01.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { convertToImageFolder } from '../src/datasets/convert/classification.js';
import { loadDataset } from '../src/datasets/load.js';
import { resolveSplits } from '../src/datasets/splits.js';
import { PROJECT_ROOT, PYTHON_DIR, defaultPythonBin } from '../src/paths.js';
import { EPOCHS, compareEpochTimes, runBench } from './epoch-timing.js';

const PER_CLASS = Number(process.env.BENCH_PER_CLASS ?? 24);
const IMGSZ = 64;
const BATCH = 16;
const WORKERS = 2;

runBench(async () => {
  const scratch = mkdtempSync(join(tmpdir(), 'vt-bench-timm-'));
  const datasetDir = join(scratch, 'dataset');
  const made = spawnSync(
    defaultPythonBin(),
    ['-m', 'vision_trainer.sample_data', 'classification', datasetDir, '--per-class', String(PER_CLASS), '--size', String(IMGSZ)],
    { cwd: PYTHON_DIR, encoding: 'utf8' },
  );
  if (made.status !== 0) throw new Error(made.stderr);
  // The native run trains on exactly what vision-trainer converts (same split seed).
  const dataset = await loadDataset(datasetDir, { taskType: 'image_classification' });
  const folder = await convertToImageFolder(dataset, resolveSplits(dataset), join(scratch, 'imagefolder'));
  const settings = [String(EPOCHS), String(BATCH), String(IMGSZ), String(WORKERS)];
  await compareEpochTimes({
    title: `timm resnet18, ${dataset.images.length} images at ${IMGSZ} px, batch ${BATCH}, ${EPOCHS} epochs`,
    scratch,
    env: { HF_HUB_OFFLINE: '1' },
    native: (r) => ({
      args: [join(PROJECT_ROOT, 'bench/native_timm.py'), folder.root, JSON.stringify(folder.classNames), join(scratch, `native-${r}`), ...settings],
    }),
    bridged: (r) => ({
      JOB_ID: `bench-timm-${r}`,
      TRACE_ID: `bench-timm-${r}`,
      DATASET_PATH: datasetDir,
      TASK_TYPE: 'image_classification',
      MODEL_NAME: 'resnet18',
      DATASET_ID: 'bench',
      EPOCHS: String(EPOCHS),
      BATCH_SIZE: String(BATCH),
      IMAGE_SIZE: String(IMGSZ),
      NUM_WORKERS: String(WORKERS),
      // Checkpoints are written every epoch either way; uploading them is the bridged job's extra work.
      CHECKPOINT_FREQUENCY: String(EPOCHS),
    }),
  });
  rmSync(scratch, { recursive: true, force: true });
});
