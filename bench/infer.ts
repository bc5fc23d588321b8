/**
 * `npm run bench:infer`: does vision-trainer's inference cost throughput? For each framework,
 * the same checkpoint predicts the same images twice, interleaved:
 *
 *   native          the framework's own Python loop (bench/infer_native.py): ultralytics
 *                   `model.predict(batch)`; timm/transformers load, transform, forward, top-5;
 *   vision-trainer  `vision-trainer infer` as an inference job over a local dataset (local
 *                   storage, a local callback receiver, no visualisations, no XAI): batches cross
 *                   the bridge, every image's header is checked, results are validated and
 *                   written to results.json.
 *
 * Throughput is images / seconds of the prediction loop (after the model is loaded), as
 * results.json's `timing.images_per_second` reports it. Prints, per framework, the median of
 * BENCH_REPEATS runs of each and `throughput ratio: X.XX` (vision-trainer / native), plus the
 * CLI's whole wall time (Python start-up and model loading included).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCallbackReceiver } from '../src/dev/receiver.js';
import { PROJECT_ROOT, defaultPythonBin } from '../src/paths.js';
import { BENCH_THREADS, describeMachine, machine, table, writeResults } from './harness.js';

const IMAGES = Number(process.env.BENCH_INFER_IMAGES ?? process.env.BENCH_IMAGES ?? 160);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const BATCH = Number(process.env.BENCH_INFER_BATCH ?? process.env.BENCH_BATCH ?? 16);
const IMGSZ = Number(process.env.BENCH_IMGSZ ?? 320);
const FRAMEWORKS = (process.env.BENCH_FRAMEWORKS ?? 'ultralytics,timm,huggingface').split(',');
/** cpu, or cuda:0 (bench/gpu.sh). */
const DEVICE = process.env.BENCH_DEVICE ?? 'cpu';
/** Both sides get the same thread count, whoever imports what first. */
const THREADS = BENCH_THREADS > 0 ? { OMP_NUM_THREADS: String(BENCH_THREADS), MKL_NUM_THREADS: String(BENCH_THREADS) } : {};
const TASKS: Record<string, string> = { ultralytics: 'object_detection', timm: 'image_classification', huggingface: 'image_classification' };
const NATIVE = join(PROJECT_ROOT, 'bench', 'infer_native.py');
const CLI = join(PROJECT_ROOT, 'dist', 'src', 'cli.js');
const TOKEN = 'bench-token-123456';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const spreadText = (xs: number[]) => `${median(xs).toFixed(1)} [${Math.min(...xs).toFixed(1)}-${Math.max(...xs).toFixed(1)}]`;

function python(args: string[], env: NodeJS.ProcessEnv): Record<string, number> {
  const r = spawnSync(defaultPythonBin(), [NATIVE, ...args], { env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`infer_native.py ${args[0]} failed (${r.status}): ${r.stderr.slice(-3000)}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, number>;
}

function visionTrainer(
  framework: string,
  checkpoint: string,
  dir: string,
  receiverUrl: string,
  jobId: string,
): Promise<{ imagesPerSecond: number; avgMs: number; wallSeconds: number }> {
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    LOG_FORMAT: 'json',
    LOG_LEVEL: 'warn',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    JOB_ID: jobId,
    TRACE_ID: jobId,
    BACKEND_BASE_URL: receiverUrl,
    CALLBACK_TOKEN: TOKEN,
    INFERENCE_TYPE: 'inference_job',
    TASK_TYPE: TASKS[framework]!,
    FRAMEWORK: framework,
    CHECKPOINT_PATH: `file://${checkpoint}`,
    STORAGE_TYPE: 'local',
    LOCAL_STORAGE_PATH: dir,
    DATASET_ID: 'bench',
    DATASET_PATH: dir,
    BATCH_SIZE: String(BATCH),
    IMAGE_SIZE: String(IMGSZ),
    DEVICE,
    SAVE_VISUALIZATIONS: 'false',
    ...THREADS,
  };
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'infer'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`vision-trainer infer (${framework}) exited ${code}: ${err}`));
      const doc = JSON.parse(readFileSync(join(dir, 'inference_jobs', jobId, 'results.json'), 'utf8')) as {
        num_images: number;
        timing: { images_per_second: number; avg_inference_time_ms: number };
      };
      if (doc.num_images !== IMAGES) return reject(new Error(`expected ${IMAGES} images, results.json has ${doc.num_images}`));
      resolve({ imagesPerSecond: doc.timing.images_per_second, avgMs: doc.timing.avg_inference_time_ms, wallSeconds: (Date.now() - started) / 1000 });
    });
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vision-trainer-bench-infer-'));
  const env = { ...process.env, ...THREADS, YOLO_OFFLINE: 'true', YOLO_CONFIG_DIR: join(dir, 'yolo-config'), HF_HUB_OFFLINE: '1', PYTHONUNBUFFERED: '1' };
  const receiver = await startCallbackReceiver({ token: TOKEN, print: false });
  try {
    console.log(`Preparing ${IMAGES} images (${IMGSZ} x ${(IMGSZ * 3) / 4}) and checkpoints in ${dir}`);
    python(['prepare', dir, String(IMAGES), String(IMGSZ)], env);
    const m = machine();
    console.log(describeMachine(m));
    console.log(
      `batch ${BATCH}, image size ${IMGSZ}, ${REPEATS} runs each, device ${DEVICE}, ${BENCH_THREADS} threads; throughput = images / prediction-loop seconds\n`,
    );
    const rows: Array<{ framework: string; native: number[]; visionTrainer: number[]; ratio: number; cliWallSeconds: number; loads: number[] }> = [];
    for (const framework of FRAMEWORKS) {
      const checkpoint = join(dir, `${framework}.pt`);
      const native: number[] = [];
      const bridged: number[] = [];
      const walls: number[] = [];
      const avgMs: number[] = [];
      const loads: number[] = [];
      for (let i = 0; i < REPEATS; i++) {
        loads.push(Number(loadavg()[0]!.toFixed(2)));
        native.push(python(['native', framework, checkpoint, join(dir, 'images'), String(BATCH), String(IMGSZ), DEVICE], env).images_per_second!);
        const vt = await visionTrainer(framework, checkpoint, dir, receiver.url, `bench-${framework}-${i}`);
        bridged.push(vt.imagesPerSecond);
        walls.push(vt.wallSeconds);
        avgMs.push(vt.avgMs);
      }
      const n = median(native);
      const v = median(bridged);
      console.log(`${framework} (${TASKS[framework]})`);
      console.log(`  native Python loop      ${n.toFixed(1)} images/s   runs: ${native.map((x) => x.toFixed(1)).join(', ')}`);
      console.log(
        `  vision-trainer infer    ${v.toFixed(1)} images/s   runs: ${bridged.map((x) => x.toFixed(1)).join(', ')}   (${median(avgMs).toFixed(1)} ms/image in predict)`,
      );
      console.log(`  vision-trainer whole CLI run ${median(walls).toFixed(1)} s (start-up, model load, ${IMAGES} images, results.json)`);
      console.log(`  throughput ratio: ${(v / n).toFixed(2)}\n`);
      rows.push({ framework, native, visionTrainer: bridged, ratio: v / n, cliWallSeconds: median(walls), loads });
    }
    writeResults('infer', { machine: m, device: DEVICE, threads: BENCH_THREADS, images: IMAGES, batch: BATCH, imgsz: IMGSZ, repeats: REPEATS, rows }, [
      '## bench:infer: inference throughput, vision-trainer / a native Python loop',
      '',
      `${describeMachine(m)}. Device ${DEVICE}, ${BENCH_THREADS} threads on both sides, ${IMAGES} images at ${IMGSZ} px, batch ${BATCH}, ${REPEATS} interleaved runs; images/s of the prediction loop, median [min-max].`,
      '',
      ...table(
        ['framework', 'native images/s', 'vision-trainer images/s', 'ratio', 'whole CLI run', 'load at each run'],
        rows.map((r) => [
          r.framework,
          spreadText(r.native),
          spreadText(r.visionTrainer),
          r.ratio.toFixed(2),
          `${r.cliWallSeconds.toFixed(1)} s`,
          r.loads.join(', '),
        ]),
      ),
    ]);
  } finally {
    await receiver.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
