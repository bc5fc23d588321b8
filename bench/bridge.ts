/**
 * `npm run bench:bridge`: does training through vision-trainer cost time? For each framework
 * the same training runs twice, interleaved, BENCH_REPEATS times:
 *
 *   native          the framework run by hand in Python (bench/native_<framework>.py): the
 *                   same model, data, arguments, validation and checkpoint saving;
 *   vision-trainer  `vision-trainer train` (local storage, a real callback receiver, every
 *                   callback sent): dataset validation and conversion, the Python bridge, events
 *                   per batch and epoch, checkpoint uploads.
 *
 *   ultralytics   YOLO11n from scratch, the demo's digits-on-photos detection set, 128 px
 *   timm          resnet18 from scratch, the demo's scikit-learn digits, 64 px
 *   transformers  a small ViT (4 layers, width 192) from its configuration, the same digits, 64 px
 *
 * Both sides print what they resolved (run_settings.py: the framework's arguments after its
 * defaults, torch threads, determinism, AMP, data-loader workers, validation and saving); the
 * bench fails when they differ. Both get OMP_NUM_THREADS and MKL_NUM_THREADS = BENCH_THREADS (default: every CPU), so
 * neither side's thread count depends on who imports what first (BENCH_THREADS=0: each side
 * keeps its own defaults, and the comparison shows where they differ).
 *
 * Reported per framework: the median epoch time (first epoch excluded: warm-up) with its spread,
 * start-up to the first epoch, the whole run's wall time and CPU time (user+sys of the process
 * tree: Node, Python, data-loader workers), and the ratios vision-trainer / native (epoch time:
 * aim at most 1.01). Results: bench/results/bridge.{json,md}.
 *
 *   BENCH_FRAMEWORKS=ultralytics,timm,huggingface BENCH_REPEATS=3 BENCH_EPOCHS=4 BENCH_BATCH=16
 *   BENCH_DEVICE=cpu|cuda:0 BENCH_DETECT_IMGSZ=128 BENCH_CLASSIFY_IMGSZ=64 (bench/gpu.sh sets these)
 *   BENCH_LOGS=<folder>: each run's stdout and stderr kept there ({framework}-{side}-{run}.log),
 *   to see where an epoch's time went
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { convertToImageFolder, writeHuggingFaceManifest } from '../src/datasets/convert/classification.js';
import { convertToYolo } from '../src/datasets/convert/yolo.js';
import { loadDataset } from '../src/datasets/load.js';
import { resolveSplits } from '../src/datasets/splits.js';
import { startCallbackReceiver } from '../src/dev/receiver.js';
import { PROJECT_ROOT, PYTHON_DIR, defaultPythonBin } from '../src/paths.js';
import {
  BENCH_THREADS,
  BenchError,
  describeMachine,
  fmtSpread,
  machine,
  measure,
  type Measured,
  runBench,
  type Spread,
  spread,
  sameSettings,
  table,
  writeResults,
} from './harness.js';

const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const EPOCHS = Number(process.env.BENCH_EPOCHS ?? 4);
const FRAMEWORKS = (process.env.BENCH_FRAMEWORKS ?? 'ultralytics,timm,huggingface').split(',').map((f) => f.trim());
const BATCH = Number(process.env.BENCH_BATCH ?? 16);
/** cpu, or cuda:0 (bench/gpu.sh): both sides train there, with AMP on CUDA as vision-trainer does. */
const DEVICE = process.env.BENCH_DEVICE ?? 'cpu';
const DETECT_PX = Number(process.env.BENCH_DETECT_IMGSZ ?? 128);
const CLASSIFY_PX = Number(process.env.BENCH_CLASSIFY_IMGSZ ?? 64);
const WORKERS = 2;
/** The transformers bench's ViT: small enough for seconds per epoch on a CPU. */
const VIT = { hidden_size: 192, num_hidden_layers: 4, num_attention_heads: 3, intermediate_size: 768, patch_size: 8 };

interface Setup {
  title: string;
  /** Training images per epoch (for images/s: training images / epoch time, validation included). */
  trainImages: number;
  /** Environment both sides get (offline switches). */
  env: NodeJS.ProcessEnv;
  native(r: number): { args: string[]; env?: NodeJS.ProcessEnv };
  bridged(r: number): Record<string, string>;
}

interface Run {
  measured: Measured;
  startup: number;
  epochs: number[];
  settings: Json | undefined;
}
type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function sampleData(kind: 'detection' | 'classification', dir: string, extra: string[]): void {
  const made = spawnSync(defaultPythonBin(), ['-m', 'vision_trainer.sample_data', kind, dir, ...extra], { cwd: PYTHON_DIR, encoding: 'utf8' });
  if (made.status !== 0) throw new Error(made.stderr);
}

async function setup(framework: string, scratch: string): Promise<Setup> {
  const datasetDir = join(scratch, 'dataset');
  const common = {
    DATASET_PATH: datasetDir,
    DATASET_ID: 'bench',
    EPOCHS: String(EPOCHS),
    BATCH_SIZE: String(BATCH),
    NUM_WORKERS: String(WORKERS),
    CHECKPOINT_FREQUENCY: String(EPOCHS),
  };
  const settings = (imgsz: number) => [String(EPOCHS), String(BATCH), String(imgsz), String(WORKERS)];
  const device = [DEVICE];
  if (framework === 'ultralytics') {
    const images = Number(process.env.BENCH_IMAGES ?? 160);
    sampleData('detection', datasetDir, ['--images', String(images), '--size', String(DETECT_PX)]);
    // The native run trains on exactly what vision-trainer converts (same split seed).
    const dataset = await loadDataset(datasetDir, { taskType: 'object_detection' });
    const detectSplits = resolveSplits(dataset);
    const yolo = await convertToYolo(dataset, detectSplits, join(scratch, 'yolo'));
    return {
      trainImages: detectSplits.counts.train,
      title: `ultralytics yolo11n, ${images} images at ${DETECT_PX} px, batch ${BATCH}, ${EPOCHS} epochs`,
      env: { YOLO_OFFLINE: 'true', YOLO_AUTOINSTALL: 'false' },
      native: (r) => ({
        args: ['native_ultralytics.py', yolo.dataYaml, join(scratch, `native-${r}`), ...settings(DETECT_PX), ...device],
        env: { YOLO_CONFIG_DIR: join(scratch, 'cfg-native') },
      }),
      // The native script draws no plots; the job draws them by default (logs/job-{JOB_ID}/plots/).
      bridged: () => ({ ...common, TASK_TYPE: 'object_detection', MODEL_NAME: 'yolo11n', IMAGE_SIZE: String(DETECT_PX), TRAINER_ARGS: '{"plots":false}' }),
    };
  }
  sampleData('classification', datasetDir, ['--per-class', String(process.env.BENCH_PER_CLASS ?? 24), '--size', String(CLASSIFY_PX)]);
  const dataset = await loadDataset(datasetDir, { taskType: 'image_classification' });
  const splits = resolveSplits(dataset);
  if (framework === 'timm') {
    const folder = await convertToImageFolder(dataset, splits, join(scratch, 'imagefolder'));
    return {
      trainImages: splits.counts.train,
      title: `timm resnet18, ${dataset.images.length} images at ${CLASSIFY_PX} px, batch ${BATCH}, ${EPOCHS} epochs`,
      env: { HF_HUB_OFFLINE: '1' },
      native: (r) => ({ args: ['native_timm.py', folder.root, join(scratch, `native-${r}`), ...settings(CLASSIFY_PX), ...device] }),
      bridged: () => ({ ...common, TASK_TYPE: 'image_classification', FRAMEWORK: 'timm', MODEL_NAME: 'resnet18', IMAGE_SIZE: String(CLASSIFY_PX) }),
    };
  }
  if (framework === 'huggingface') {
    const manifest = await writeHuggingFaceManifest(dataset, splits, join(scratch, 'manifest'));
    return {
      trainImages: splits.counts.train,
      title: `transformers ViT (${VIT.num_hidden_layers} layers, width ${VIT.hidden_size}), ${dataset.images.length} images at ${CLASSIFY_PX} px, batch ${BATCH}, ${EPOCHS} epochs`,
      env: { HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' },
      native: (r) => ({ args: ['native_hf.py', manifest.root, join(scratch, `native-${r}`), ...settings(CLASSIFY_PX), JSON.stringify(VIT), ...device] }),
      bridged: () => ({
        ...common,
        TASK_TYPE: 'image_classification',
        FRAMEWORK: 'huggingface',
        MODEL_NAME: 'vit-base-patch16-224',
        IMAGE_SIZE: String(CLASSIFY_PX),
        HF_CONFIG_OVERRIDES: JSON.stringify(VIT),
      }),
    };
  }
  throw new BenchError(`BENCH_FRAMEWORKS: unknown framework ${framework} (ultralytics, timm, huggingface)`);
}

const LOGS = process.env.BENCH_LOGS;

function keepLog(name: string, measured: Measured): Measured {
  if (LOGS) {
    mkdirSync(LOGS, { recursive: true });
    writeFileSync(join(LOGS, `${name}.log`), `${measured.stdout}\n--- stderr\n${measured.stderr}`);
  }
  return measured;
}

const lines = (text: string) => text.split('\n').filter((l) => l.startsWith('{'));

/** The native script's lines: {"bench": "settings" | "epoch_start" | "epoch_end", "t": ...}. */
function nativeRun(measured: Measured): Run {
  let start: number | undefined;
  let settings: Json | undefined;
  const ends: number[] = [];
  for (const line of lines(measured.stdout)) {
    const e = JSON.parse(line) as { bench?: string; t: number; settings?: Json };
    if (e.bench === 'settings') settings = e.settings;
    if (e.bench === 'epoch_start') start ??= e.t;
    if (e.bench === 'epoch_end') ends.push(e.t);
  }
  return timed(measured, start, ends, settings);
}

/** The CLI's JSON log: training_settings, training_started, then one `epoch` line per epoch. */
function bridgedRun(measured: Measured): Run {
  let start: number | undefined;
  let settings: Json | undefined;
  const ends: number[] = [];
  for (const line of lines(measured.stdout)) {
    const e = JSON.parse(line) as { ts: string; event?: string; settings?: Json };
    if (e.event === 'training_settings') settings = e.settings;
    if (e.event === 'training_started') start ??= Date.parse(e.ts) / 1000;
    if (e.event === 'epoch') ends.push(Date.parse(e.ts) / 1000);
  }
  return timed(measured, start, ends, settings);
}

function timed(measured: Measured, start: number | undefined, ends: number[], settings: Json | undefined): Run {
  // Exactly BENCH_EPOCHS ends on each side: an extra one (ultralytics' final validation fires
  // its epoch-end callback again) would enter the epoch times as a short "epoch".
  if (start === undefined || ends.length !== EPOCHS || ends.length < 2)
    throw new BenchError(`a run reported ${ends.length} epoch ends for ${EPOCHS} epochs:\n${measured.stdout.slice(-2000)}\n${measured.stderr.slice(-2000)}`);
  return { measured, startup: start - measured.startedAt, epochs: ends.slice(1).map((t, k) => t - ends[k]!), settings };
}

/** What decides the work: the framework's arguments and the runtime settings (not where the budget came from). */
const work = (s: Json | undefined): Json | undefined =>
  s && typeof s === 'object' && !Array.isArray(s) ? { args: s.args ?? null, runtime: s.runtime ?? null } : s;

interface Side {
  epoch: Spread;
  startup: Spread;
  wall: Spread;
  cpu: Spread;
  loads: number[];
}

const side = (runs: Run[]): Side => ({
  epoch: spread(runs.flatMap((r) => r.epochs)),
  startup: spread(runs.map((r) => r.startup)),
  wall: spread(runs.map((r) => r.measured.wall)),
  cpu: spread(runs.map((r) => r.measured.cpu)),
  loads: runs.map((r) => Number(r.measured.load.toFixed(2))),
});

async function compare(framework: string, receiverUrl: string) {
  const scratch = mkdtempSync(join(tmpdir(), `vt-bench-bridge-${framework}-`));
  try {
    const s = await setup(framework, scratch);
    const threads = BENCH_THREADS > 0 ? { OMP_NUM_THREADS: String(BENCH_THREADS), MKL_NUM_THREADS: String(BENCH_THREADS) } : {};
    const env = { ...process.env, PYTHONUNBUFFERED: '1', ...threads, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...s.env };
    const native: Run[] = [];
    const bridged: Run[] = [];
    process.stdout.write(`\n== ${s.title}, ${REPEATS} interleaved runs each, ${BENCH_THREADS} threads\n`);
    for (let r = 0; r < REPEATS; r++) {
      const n = s.native(r);
      native.push(
        nativeRun(keepLog(`${framework}-native-${r}`, await measure(defaultPythonBin(), n.args, { ...env, ...n.env }, { cwd: join(PROJECT_ROOT, 'bench') }))),
      );
      const job = {
        ...env,
        LOG_FORMAT: 'json',
        // A real receiver: the bridged run pays for its HTTP callbacks as in production.
        BACKEND_BASE_URL: receiverUrl,
        CALLBACK_TOKEN: 'bench-token',
        JOB_ID: `bench-${framework}-${r}`,
        TRACE_ID: `bench-${framework}-${r}`,
        STORAGE_TYPE: 'local',
        LOCAL_STORAGE_PATH: join(scratch, 'storage'),
        DEVICE,
        WORK_DIR: join(scratch, 'work'),
        ...s.bridged(r),
      };
      bridged.push(
        bridgedRun(keepLog(`${framework}-vision-trainer-${r}`, await measure(process.execPath, [join(PROJECT_ROOT, 'dist/src/cli.js'), 'train'], job))),
      );
      const show = (run: Run) =>
        `${spread(run.epochs).median.toFixed(2)} s/epoch, ${run.measured.wall.toFixed(1)} s wall, ${run.measured.cpu.toFixed(1)} s CPU (load ${run.measured.load.toFixed(2)})`;
      process.stdout.write(`run ${r + 1}/${REPEATS}: native ${show(native[r]!)}; vision-trainer ${show(bridged[r]!)}\n`);
    }
    sameSettings(s.title, { native: native[0]!.settings, 'vision-trainer': bridged[0]!.settings }, work);
    for (const [name, runs] of [
      ['native', native],
      ['vision-trainer', bridged],
    ] as const) {
      for (const run of runs.slice(1)) sameSettings(`${s.title} (${name}, repeats)`, { first: runs[0]!.settings, later: run.settings }, work);
    }
    const n = side(native);
    const b = side(bridged);
    const row = {
      framework,
      title: s.title,
      native: n,
      visionTrainer: b,
      epochRatio: b.epoch.median / n.epoch.median,
      wallRatio: b.wall.median / n.wall.median,
      cpuRatio: b.cpu.median / n.cpu.median,
      imagesPerSecond: { native: s.trainImages / n.epoch.median, visionTrainer: s.trainImages / b.epoch.median },
      settings: work(native[0]!.settings),
    };
    process.stdout.write(
      [
        `native          epoch ${fmtSpread(n.epoch, 3, ' s')}, start-up ${fmtSpread(n.startup)} s, run ${fmtSpread(n.wall, 1)} s wall, ${fmtSpread(n.cpu, 1)} s CPU`,
        `vision-trainer  epoch ${fmtSpread(b.epoch, 3, ' s')}, start-up ${fmtSpread(b.startup)} s (dataset validation and conversion included), run ${fmtSpread(b.wall, 1)} s wall, ${fmtSpread(b.cpu, 1)} s CPU`,
        `training images/s (epoch time, validation included): native ${row.imagesPerSecond.native.toFixed(1)}, vision-trainer ${row.imagesPerSecond.visionTrainer.toFixed(1)}`,
        `epoch time ratio: ${row.epochRatio.toFixed(2)}   wall ratio: ${row.wallRatio.toFixed(2)}   CPU ratio: ${row.cpuRatio.toFixed(2)}`,
        '',
      ].join('\n'),
    );
    return row;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

runBench(async () => {
  const m = machine();
  process.stdout.write(`${describeMachine(m)}\n`);
  const receiver = await startCallbackReceiver({ token: 'bench-token', print: false });
  const rows = [];
  try {
    for (const framework of FRAMEWORKS) rows.push(await compare(framework, receiver.url));
  } finally {
    await receiver.close();
  }
  const md = [
    '## bench:bridge: training, vision-trainer / the framework by hand',
    '',
    `${describeMachine(m)}. Device ${DEVICE}. ${REPEATS} interleaved runs per side, ${EPOCHS} epochs each (the first excluded from epoch times), ${BENCH_THREADS} threads on both sides; median [min-max].`,
    '',
    ...table(
      [
        'training',
        'epoch native',
        'epoch vision-trainer',
        'epoch ratio',
        'start-up native / vision-trainer',
        'CPU native / vision-trainer',
        'CPU ratio',
        'load at each run',
      ],
      rows.map((r) => [
        r.title,
        fmtSpread(r.native.epoch, 3, ' s'),
        fmtSpread(r.visionTrainer.epoch, 3, ' s'),
        r.epochRatio.toFixed(2),
        `${r.native.startup.median.toFixed(2)} s / ${r.visionTrainer.startup.median.toFixed(2)} s`,
        `${r.native.cpu.median.toFixed(1)} s / ${r.visionTrainer.cpu.median.toFixed(1)} s`,
        r.cpuRatio.toFixed(2),
        `${r.native.loads.join(', ')} / ${r.visionTrainer.loads.join(', ')}`,
      ]),
    ),
    '',
    "Both sides printed the same resolved settings (framework arguments, threads, determinism, AMP, workers, validation, saving); see bridge.json. CPU time is the whole run: vision-trainer's includes Node, dataset validation and conversion, and the callbacks.",
  ];
  writeResults('bridge', { machine: m, device: DEVICE, repeats: REPEATS, epochs: EPOCHS, threads: BENCH_THREADS, rows }, md);
});
