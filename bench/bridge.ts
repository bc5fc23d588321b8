/**
 * `npm run bench:bridge`: does driving ultralytics through vision-trainer's Python bridge cost
 * training time? The same training (YOLO11n from scratch, the demo's digits-on-photos dataset,
 * 128 px, a few seconds per epoch on this CPU) runs natively in Python and through the
 * `vision-trainer train` CLI (local storage), interleaved, several times. Prints the median
 * per-epoch time of each (first epoch excluded: warm-up), start-up to the first epoch, and
 * `epoch time ratio: X.XX` (bridged/native). Aim: at most 1.01.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { convertToYolo } from '../src/datasets/convert/yolo.js';
import { loadDataset } from '../src/datasets/load.js';
import { resolveSplits } from '../src/datasets/splits.js';
import { PROJECT_ROOT, PYTHON_DIR, defaultPythonBin } from '../src/paths.js';
import { EPOCHS, compareEpochTimes, runBench } from './epoch-timing.js';

const IMAGES = Number(process.env.BENCH_IMAGES ?? 160);
const IMGSZ = 128;
const BATCH = 16;
const WORKERS = 2;

runBench(async () => {
  const scratch = mkdtempSync(join(tmpdir(), 'vt-bench-bridge-'));
  const datasetDir = join(scratch, 'dataset');
  const made = spawnSync(
    defaultPythonBin(),
    ['-m', 'vision_trainer.sample_data', 'detection', datasetDir, '--images', String(IMAGES), '--size', String(IMGSZ)],
    { cwd: PYTHON_DIR, encoding: 'utf8' },
  );
  if (made.status !== 0) throw new Error(made.stderr);
  // The native run trains on exactly what vision-trainer converts (same split seed).
  const dataset = await loadDataset(datasetDir, { taskType: 'object_detection' });
  const yolo = await convertToYolo(dataset, resolveSplits(dataset), join(scratch, 'yolo'));
  const settings = [String(EPOCHS), String(BATCH), String(IMGSZ), String(WORKERS)];
  await compareEpochTimes({
    title: `ultralytics yolo11n, ${IMAGES} images at ${IMGSZ} px, batch ${BATCH}, ${EPOCHS} epochs`,
    scratch,
    env: { YOLO_OFFLINE: 'true', YOLO_AUTOINSTALL: 'false' },
    native: (r) => ({
      args: [join(PROJECT_ROOT, 'bench/native_ultralytics.py'), yolo.dataYaml, join(scratch, `native-${r}`), ...settings],
      env: { YOLO_CONFIG_DIR: join(scratch, 'cfg-native') },
    }),
    bridged: (r) => ({
      JOB_ID: `bench-${r}`,
      TRACE_ID: `bench-${r}`,
      DATASET_PATH: datasetDir,
      TASK_TYPE: 'object_detection',
      MODEL_NAME: 'yolo11n',
      DATASET_ID: 'bench',
      EPOCHS: String(EPOCHS),
      BATCH_SIZE: String(BATCH),
      IMAGE_SIZE: String(IMGSZ),
      NUM_WORKERS: String(WORKERS),
    }),
  });
  rmSync(scratch, { recursive: true, force: true });
});
