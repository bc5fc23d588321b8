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
 * and, interleaved with them in every repeat, the same job with
 *
 *   the native loop's way  DECODE_THREADS=1, RETAIN_FREED_MEMORY=false, GOMP_SPINCOUNT=300000,
 *                       PREFETCH_NEXT_BATCH=false:
 *                       images decoded one after another, glibc's allocator and libgomp's spin
 *                       defaults, as in the native loop; its ratio is the cost of the job itself
 *                       (bridge, checks, results, callbacks), the default job's ratio adds what
 *                       those settings buy;
 *   prefetch flipped    PREFETCH_NEXT_BATCH set to the other choice than the default job's auto
 *                       made (results.json says which and why): what decoding the next
 *                       batch during this one's forward pass buys or costs;
 *   INFERENCE_BACKEND   onnx and openvino (BENCH_INFER_BACKENDS; CPU only), and openvino-bf16
 *                       (INFERENCE_PRECISION=bf16; by default where the CPU has native bfloat16):
 *                       the exported graph,
 *                       each beside the native loop on the same runtime (the model exported as
 *                       the job exports it, the same session settings, the loop otherwise
 *                       unchanged): the graph's gain over PyTorch in a loop with nothing else in
 *                       it, which bounds the job's.
 *
 * Each variant's results.json must say it ran as asked (decode threads, allocator settings,
 * prefetch): a setting that did not reach Python fails the bench instead of measuring nothing.
 *
 * Throughput is images / seconds of the prediction loop (after the model is loaded), as
 * results.json's `timing.images_per_second` reports it. Prints, per framework, the median of
 * BENCH_REPEATS runs of each and `throughput ratio: X.XX` (vision-trainer / native), what the
 * prefetch buys, each backend's speed-up over PyTorch, plus the CLI's whole wall time (Python
 * start-up, export and model loading included).
 *
 * Then a settings table (BENCH_INFER_SETTINGS, default `batch=1,16;threads=1,2`, for
 * BENCH_INFER_SETTINGS_FRAMEWORKS, default timm): native and vision-trainer (pytorch, onnx) at
 * each batch size and thread count, BENCH_INFER_SETTINGS_REPEATS runs each (default 1).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuHasNativeBf16 } from '../src/dev/cpu.js';
import { startCallbackReceiver } from '../src/dev/receiver.js';
import { PROJECT_ROOT, defaultPythonBin } from '../src/paths.js';
import { BENCH_THREADS, describeMachine, machine, table, writeResults } from './harness.js';

/** 640 by default: at 160 a classifier's loop lasts under a second, and its first batch's warm-up and the job's start and end weigh 3-10%. */
const IMAGES = Number(process.env.BENCH_INFER_IMAGES ?? process.env.BENCH_IMAGES ?? 640);
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
/** Graph backends to compare with PyTorch (they run on the CPU only); `-bf16` adds INFERENCE_PRECISION=bf16. */
const BACKENDS = (process.env.BENCH_INFER_BACKENDS ?? (DEVICE === 'cpu' ? `onnx,openvino${cpuHasNativeBf16() ? ',openvino-bf16' : ''}` : ''))
  .split(',')
  .filter(Boolean);
/** `openvino-bf16` -> INFERENCE_BACKEND=openvino, INFERENCE_PRECISION=bf16 (bench/infer_native.py splits it the same way). */
const splitBackend = (label: string) => {
  const [name, precision = 'fp32'] = label.split('-');
  return { name: name!, precision };
};
const SETTINGS = parseSettings(process.env.BENCH_INFER_SETTINGS ?? 'batch=1,16;threads=1,2');
const SETTINGS_FRAMEWORKS = (process.env.BENCH_INFER_SETTINGS_FRAMEWORKS ?? 'timm').split(',').filter(Boolean);
const SETTINGS_REPEATS = Number(process.env.BENCH_INFER_SETTINGS_REPEATS ?? 1);

function parseSettings(text: string): { batch: number[]; threads: number[] } {
  const parts = Object.fromEntries(text.split(';').map((p) => p.split('=') as [string, string]));
  const list = (v: string | undefined, fallback: number) => (v ? v.split(',').map(Number) : [fallback]);
  return { batch: list(parts.batch, BATCH), threads: list(parts.threads, BENCH_THREADS) };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const spreadText = (xs: number[]) => `${median(xs).toFixed(1)} [${Math.min(...xs).toFixed(1)}-${Math.max(...xs).toFixed(1)}]`;

/** What both sides must share for their ratio to mean anything: torch's CPU threads, the batch, the model's input size, the device. */
interface Settings {
  cpu_threads: number | null;
  batch: number;
  input_size: number;
  device: string;
  /** What the forward pass computed in (fp32, bf16). */
  precision: string;
}

/**
 * Where a side's loop time went, load-robust figures when wall times are not: its forward
 * passes and preprocessing (wall seconds, as Python times them) and its CPU seconds over the
 * loop (the job's: Python during its prediction calls plus Node over the loop).
 */
interface Stages {
  forward: number | null;
  preprocess: number | null;
  cpu: number;
}

function python(
  args: string[],
  env: NodeJS.ProcessEnv,
): {
  images_per_second: number;
  preprocess_seconds: number;
  forward_seconds: number;
  cpu_seconds: number;
  settings: Settings;
} {
  const r = spawnSync(defaultPythonBin(), [NATIVE, ...args], { env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`infer_native.py ${args[0]} failed (${r.status}): ${r.stderr.slice(-3000)}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as ReturnType<typeof python>;
}

const describeSettings = (s: Settings) =>
  `${s.cpu_threads ?? 'GPU'} CPU thread(s), batch ${s.batch}, input ${s.input_size} px, device ${s.device}, ${s.precision}`;

/**
 * Fails the bench when the two sides did different work (the figures would compare nothing).
 * A graph backend's runtime sizes its own pool from the CPU budget and may compute in bfloat16:
 * against the PyTorch loop its threads and precision are printed, not required to match
 * (ultralytics gives PyTorch one thread less than the budget); against the native loop on the
 * same runtime (`sameRuntime`) they must.
 */
function sameSettings(framework: string, native: Settings, job: Settings, sameRuntime: boolean): void {
  const differing = (Object.keys(native) as Array<keyof Settings>).filter(
    (k) => (sameRuntime || (k !== 'cpu_threads' && k !== 'precision')) && native[k] !== job[k],
  );
  if (differing.length > 0)
    throw new Error(
      `${framework}: the two sides differ in ${differing.join(', ')}: native ${describeSettings(native)}; vision-trainer ${describeSettings(job)}`,
    );
}

interface Variant {
  batch?: number;
  threads?: number;
  backend?: string;
  /** PREFETCH_NEXT_BATCH set to this (unset: the job's auto, which prefetches where the model leaves a CPU free). */
  prefetch?: boolean;
  /** The native loop's way: one decoding thread, glibc's allocator defaults. */
  plain?: boolean;
}

const threadEnv = (threads: number | undefined) => (threads === undefined ? THREADS : { OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) });

function visionTrainer(
  framework: string,
  checkpoint: string,
  dir: string,
  receiverUrl: string,
  jobId: string,
  variant: Variant = {},
): Promise<{
  imagesPerSecond: number;
  avgMs: number;
  wallSeconds: number;
  settings: Settings;
  backend: string;
  decodeThreads: number | null;
  mallocTunables: string | null;
  prefetch: boolean;
  prefetchReason: string | null;
  stages: Stages;
}> {
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    // The interpreter and packages the native side runs with (bench/gpu-offline.sh sets both).
    ...(process.env.PYTHON_BIN ? { PYTHON_BIN: process.env.PYTHON_BIN } : {}),
    ...(process.env.PYTHONPATH ? { PYTHONPATH: process.env.PYTHONPATH } : {}),
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
    BATCH_SIZE: String(variant.batch ?? BATCH),
    IMAGE_SIZE: String(IMGSZ),
    DEVICE,
    SAVE_VISUALIZATIONS: 'false',
    INFERENCE_BACKEND: splitBackend(variant.backend ?? 'pytorch').name,
    INFERENCE_PRECISION: splitBackend(variant.backend ?? 'pytorch').precision,
    ...(variant.plain ? { PREFETCH_NEXT_BATCH: 'false' } : variant.prefetch !== undefined ? { PREFETCH_NEXT_BATCH: String(variant.prefetch) } : {}),
    // libgomp's own default spin (the job sets 10000 unless told otherwise).
    ...(variant.plain ? { DECODE_THREADS: '1', RETAIN_FREED_MEMORY: 'false', GOMP_SPINCOUNT: '300000' } : {}),
    ...threadEnv(variant.threads),
  };
  const started = Date.now();
  return new Promise((resolve, reject) => {
    // The job's log lines (stdout) say why it failed; its stderr is Python's output.
    const child = spawn(process.execPath, [CLI, 'infer'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    let out = '';
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    child.stdout.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`vision-trainer infer (${framework}) exited ${code}: ${out}\n${err}`));
      const doc = JSON.parse(readFileSync(join(dir, 'inference_jobs', jobId, 'results.json'), 'utf8')) as {
        num_images: number;
        timing: {
          images_per_second: number;
          avg_inference_time_ms: number;
          preprocess_seconds: number | null;
          forward_seconds: number | null;
          python_cpu_seconds: number;
          node_cpu_seconds: number;
        };
        settings: { batch_size: number; image_size: number; device: string };
        model: {
          training_image_size: number | null;
          inference_backend: {
            name: string;
            device: string;
            cpu_threads: number | null;
            decode_threads?: number;
            prefetch?: boolean;
            prefetch_reason?: string;
            malloc_tunables?: string | null;
            omp_spin_count?: string | null;
            precision?: string;
            precision_reason?: string;
          };
        };
      };
      if (doc.num_images !== IMAGES) return reject(new Error(`expected ${IMAGES} images, results.json has ${doc.num_images}`));
      const ran = doc.model.inference_backend;
      const precision = splitBackend(variant.backend ?? 'pytorch').precision;
      if ((ran.precision ?? 'fp32') !== precision)
        return reject(
          new Error(
            `${framework}: asked for INFERENCE_PRECISION=${precision}, ${ran.precision} ran (${ran.precision_reason}): drop ${variant.backend} from BENCH_INFER_BACKENDS`,
          ),
        );
      const plain = variant.plain === true;
      // The default job's prefetch is auto's choice (read from results.json, not asked).
      const askedPrefetch = plain ? false : variant.prefetch;
      const asked = { prefetch: askedPrefetch ?? ran.prefetch === true, plainDecode: plain, plainMalloc: plain, plainSpin: plain };
      const got = {
        prefetch: ran.prefetch === true,
        plainDecode: ran.decode_threads === 1,
        plainMalloc: !ran.malloc_tunables,
        plainSpin: ran.omp_spin_count === '300000',
      };
      const unlike = (Object.keys(asked) as Array<keyof typeof asked>).filter((k) => asked[k] !== got[k] && (k !== 'plainDecode' || asked[k]));
      if (unlike.length > 0)
        return reject(
          new Error(
            `${framework}: the job did not run as asked (${unlike.join(', ')}): decode_threads ${ran.decode_threads}, prefetch ${ran.prefetch}, malloc_tunables ${ran.malloc_tunables}, omp_spin_count ${ran.omp_spin_count}`,
          ),
        );
      // YOLO predicts at IMAGE_SIZE; a classifier at the size it was trained at.
      const inputSize = framework === 'ultralytics' ? doc.settings.image_size : doc.model.training_image_size!;
      resolve({
        imagesPerSecond: doc.timing.images_per_second,
        avgMs: doc.timing.avg_inference_time_ms,
        wallSeconds: (Date.now() - started) / 1000,
        settings: {
          cpu_threads: ran.cpu_threads,
          batch: doc.settings.batch_size,
          input_size: inputSize,
          device: ran.device,
          precision: ran.precision ?? 'fp32',
        },
        backend: ran.name,
        decodeThreads: ran.decode_threads ?? null,
        mallocTunables: ran.malloc_tunables ?? null,
        prefetch: ran.prefetch === true,
        prefetchReason: ran.prefetch_reason ?? null,
        stages: {
          forward: doc.timing.forward_seconds,
          preprocess: doc.timing.preprocess_seconds,
          cpu: doc.timing.python_cpu_seconds + doc.timing.node_cpu_seconds,
        },
      });
    });
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vision-trainer-bench-infer-'));
  const env = { ...process.env, ...THREADS, YOLO_OFFLINE: 'true', YOLO_CONFIG_DIR: join(dir, 'yolo-config'), HF_HUB_OFFLINE: '1', PYTHONUNBUFFERED: '1' };
  const receiver = await startCallbackReceiver({ token: TOKEN, print: false });
  let jobs = 0;
  // Every run's settings are checked against the native loop's at the same variant.
  const nativeSettings = new Map<string, Settings>();
  const printedBackend = new Set<string>();
  const variantKey = (framework: string, v: Variant) => `${framework}/${v.batch ?? BATCH}/${v.threads ?? BENCH_THREADS}/${v.backend ?? 'pytorch'}`;
  const native = (framework: string, v: Variant = {}) => {
    const backend = v.backend ?? 'pytorch';
    const args = ['native', framework, join(dir, `${framework}.pt`), join(dir, 'images'), String(v.batch ?? BATCH), String(IMGSZ), DEVICE, backend];
    const run = python(args, { ...env, ...threadEnv(v.threads) });
    if (!nativeSettings.has(variantKey(framework, v)))
      console.log(`  ${framework} native loop${backend === 'pytorch' ? '' : ` on ${backend}`}: ${describeSettings(run.settings)}`);
    nativeSettings.set(variantKey(framework, v), run.settings);
    return run;
  };
  const bridged = async (framework: string, v: Variant = {}) => {
    const run = await visionTrainer(framework, join(dir, `${framework}.pt`), dir, receiver.url, `bench-${framework}-${jobs++}`, v);
    const label = v.backend ?? 'pytorch';
    const expected = splitBackend(label).name;
    if (run.backend !== expected) throw new Error(`${framework}: asked for INFERENCE_BACKEND=${expected}, results.json says ${run.backend} ran`);
    // Against the native loop on the same runtime where it ran (threads included), else the PyTorch one's.
    const same = nativeSettings.get(variantKey(framework, v));
    const theirs = same ?? nativeSettings.get(variantKey(framework, { ...v, backend: 'pytorch' }));
    if (theirs) sameSettings(framework, theirs, run.settings, same !== undefined || expected === 'pytorch');
    if (expected !== 'pytorch' && !printedBackend.has(`${framework}/${label}`)) {
      printedBackend.add(`${framework}/${label}`);
      console.log(`  ${framework} INFERENCE_BACKEND=${label}: ${describeSettings(run.settings)}`);
    }
    return run;
  };
  try {
    console.log(`Preparing ${IMAGES} images (${IMGSZ} x ${(IMGSZ * 3) / 4}) and checkpoints in ${dir}`);
    python(['prepare', dir, String(IMAGES), String(IMGSZ)], env);
    const m = machine();
    console.log(describeMachine(m));
    console.log(
      `batch ${BATCH}, image size ${IMGSZ}, ${REPEATS} runs each, device ${DEVICE}, ${BENCH_THREADS} threads; throughput = images / prediction-loop seconds\n`,
    );
    type Row = {
      framework: string;
      /** Medians in ms per image, [native, vision-trainer]. */
      stageMs: Record<'forward' | 'forwardPlain' | 'preprocess' | 'cpu', [number | null, number | null]>;
      /** native / vision-trainer time: at least 0.98 when the job's forward passes and CPU time match the native loop's. */
      forwardRatio: number | null;
      cpuRatio: number | null;
      native: number[];
      visionTrainer: number[];
      /** The job with the other PREFETCH_NEXT_BATCH than auto chose (prefetchDefault). */
      prefetchFlipped: number[];
      /** What auto chose, and why. */
      prefetchDefault: boolean;
      prefetchReason: string | null;
      /** The job the native loop's way (DECODE_THREADS=1, RETAIN_FREED_MEMORY=false). */
      plain: number[];
      backends: Record<string, number[]>;
      /** The native loop on each graph backend. */
      nativeBackends: Record<string, number[]>;
      ratio: number;
      ratioPlain: number;
      ratioPrefetchFlipped: number;
      /** Images/s with the prefetch over without it (whichever side auto chose). */
      prefetchGain: number;
      speedups: Record<string, number>;
      /** The native loop's speed-up on each graph backend over the native PyTorch loop. */
      nativeSpeedups: Record<string, number>;
      cliWallSeconds: Record<string, number>;
      loads: number[];
    };
    const rows: Row[] = [];
    for (const framework of FRAMEWORKS) {
      const runs = { native: [] as number[], vt: [] as number[], plain: [] as number[], prefetchFlipped: [] as number[] };
      let prefetchDefault = false;
      let prefetchReason: string | null = null;
      const stages = { native: [] as Stages[], vt: [] as Stages[], plain: [] as Stages[] };
      const backends: Record<string, number[]> = Object.fromEntries(BACKENDS.map((b) => [b, []]));
      const nativeBackends: Record<string, number[]> = Object.fromEntries(BACKENDS.map((b) => [b, []]));
      const walls: Record<string, number[]> = { pytorch: [], ...Object.fromEntries(BACKENDS.map((b) => [b, []])) };
      const avgMs: number[] = [];
      const loads: number[] = [];
      for (let i = 0; i < REPEATS; i++) {
        loads.push(Number(loadavg()[0]!.toFixed(2)));
        const nativeRun = native(framework);
        runs.native.push(nativeRun.images_per_second);
        stages.native.push({ forward: nativeRun.forward_seconds, preprocess: nativeRun.preprocess_seconds, cpu: nativeRun.cpu_seconds });
        const vt = await bridged(framework);
        stages.vt.push(vt.stages);
        if (i === 0)
          console.log(
            `  ${framework} vision-trainer:  ${describeSettings(vt.settings)}; decoding on ${vt.decodeThreads} thread(s), GLIBC_TUNABLES ${vt.mallocTunables ?? '(glibc defaults)'}`,
          );
        runs.vt.push(vt.imagesPerSecond);
        prefetchDefault = vt.prefetch;
        prefetchReason = vt.prefetchReason;
        walls.pytorch!.push(vt.wallSeconds);
        avgMs.push(vt.avgMs);
        const plain = await bridged(framework, { plain: true });
        runs.plain.push(plain.imagesPerSecond);
        stages.plain.push(plain.stages);
        runs.prefetchFlipped.push((await bridged(framework, { prefetch: !vt.prefetch })).imagesPerSecond);
        for (const backend of BACKENDS) {
          nativeBackends[backend]!.push(native(framework, { backend }).images_per_second);
          const run = await bridged(framework, { backend });
          backends[backend]!.push(run.imagesPerSecond);
          walls[backend]!.push(run.wallSeconds);
        }
      }
      const n = median(runs.native);
      const v = median(runs.vt);
      const flipped = median(runs.prefetchFlipped);
      const [withPrefetch, withoutPrefetch] = prefetchDefault ? [v, flipped] : [flipped, v];
      const p = median(runs.plain);
      const line = (label: string, xs: number[], extra = '') =>
        console.log(`  ${label.padEnd(34)} ${median(xs).toFixed(1)} images/s   runs: ${xs.map((x) => x.toFixed(1)).join(', ')}${extra}`);
      console.log(`${framework} (${TASKS[framework]})`);
      line('native Python loop', runs.native);
      line('vision-trainer infer', runs.vt, `   (${median(avgMs).toFixed(1)} ms/image in predict)`);
      line("vision-trainer, the native loop's way", runs.plain, ' (1 decoding thread, glibc malloc and libgomp spin defaults)');
      line(`vision-trainer, prefetch ${prefetchDefault ? 'off' : 'on'} (flipped)`, runs.prefetchFlipped);
      console.log(`  PREFETCH_NEXT_BATCH=auto chose ${prefetchDefault ? 'on' : 'off'}: ${prefetchReason ?? '(no reason given)'}`);
      for (const backend of BACKENDS) {
        line(`native Python loop on ${backend}`, nativeBackends[backend]!);
        line(`vision-trainer INFERENCE_BACKEND=${backend}`, backends[backend]!);
      }
      console.log(
        `  vision-trainer whole CLI run ${Object.entries(walls)
          .map(([b, w]) => `${b} ${median(w).toFixed(1)} s`)
          .join(', ')} (start-up, export, model load, ${IMAGES} images, results.json)`,
      );
      console.log(`  throughput ratio: ${(v / n).toFixed(2)}; the native loop's way: ${(p / n).toFixed(2)}`);
      // Less sensitive to other work on the machine than wall time: the forward passes alone and CPU time.
      const perImageMs = (xs: Array<number | null>) => {
        const known = xs.filter((x): x is number => x !== null);
        return known.length === xs.length ? (median(known) * 1000) / IMAGES : null;
      };
      const stageMs: Record<'forward' | 'forwardPlain' | 'preprocess' | 'cpu', [number | null, number | null]> = {
        forward: [perImageMs(stages.native.map((s) => s.forward)), perImageMs(stages.vt.map((s) => s.forward))],
        forwardPlain: [perImageMs(stages.native.map((s) => s.forward)), perImageMs(stages.plain.map((s) => s.forward))],
        preprocess: [perImageMs(stages.native.map((s) => s.preprocess)), perImageMs(stages.vt.map((s) => s.preprocess))],
        cpu: [perImageMs(stages.native.map((s) => s.cpu)), perImageMs(stages.vt.map((s) => s.cpu))],
      };
      const stageRatio = ([native, job]: [number | null, number | null]) => (native !== null && job ? native / job : null);
      for (const [what, pair] of Object.entries(stageMs)) {
        const r = stageRatio(pair);
        console.log(
          `  ${what} ms per image: native ${pair[0]?.toFixed(2) ?? 'n/a'}, vision-trainer ${pair[1]?.toFixed(2) ?? 'n/a'}${r === null ? '' : ` (native / vision-trainer ${r.toFixed(2)})`}`,
        );
      }
      console.log(
        `  throughput ratio, prefetch flipped: ${(flipped / n).toFixed(2)}; prefetch speedup ${(withPrefetch / withoutPrefetch).toFixed(2)}x (on over off; auto chose ${prefetchDefault ? 'on' : 'off'})`,
      );
      const speedups = Object.fromEntries(BACKENDS.map((b) => [b, median(backends[b]!) / v]));
      const nativeSpeedups = Object.fromEntries(BACKENDS.map((b) => [b, median(nativeBackends[b]!) / n]));
      for (const backend of BACKENDS)
        console.log(
          `  ${backend} speedup over pytorch: ${speedups[backend]!.toFixed(2)}x (the native loop's: ${nativeSpeedups[backend]!.toFixed(2)}x; job / native loop on ${backend}: ${(median(backends[backend]!) / median(nativeBackends[backend]!)).toFixed(2)})`,
        );
      console.log('');
      rows.push({
        framework,
        stageMs,
        forwardRatio: stageRatio(stageMs.forward),
        cpuRatio: stageRatio(stageMs.cpu),
        native: runs.native,
        visionTrainer: runs.vt,
        prefetchFlipped: runs.prefetchFlipped,
        prefetchDefault,
        prefetchReason,
        plain: runs.plain,
        backends,
        ratio: v / n,
        ratioPlain: p / n,
        ratioPrefetchFlipped: flipped / n,
        prefetchGain: withPrefetch / withoutPrefetch,
        speedups,
        nativeBackends,
        nativeSpeedups,
        cliWallSeconds: Object.fromEntries(Object.entries(walls).map(([b, w]) => [b, median(w)])),
        loads,
      });
    }

    type SettingRow = { framework: string; batch: number; threads: number; native: number[]; pytorch: number[]; onnx: number[]; load: number };
    const settingRows: SettingRow[] = [];
    const settingBackend = BACKENDS.includes('onnx') ? ['onnx'] : [];
    if (SETTINGS_REPEATS > 0)
      for (const framework of SETTINGS_FRAMEWORKS.filter((f) => FRAMEWORKS.includes(f)))
        for (const threads of SETTINGS.threads)
          for (const batch of SETTINGS.batch) {
            const row: SettingRow = { framework, batch, threads, native: [], pytorch: [], onnx: [], load: Number(loadavg()[0]!.toFixed(2)) };
            for (let i = 0; i < SETTINGS_REPEATS; i++) {
              row.native.push(native(framework, { batch, threads }).images_per_second);
              row.pytorch.push((await bridged(framework, { batch, threads })).imagesPerSecond);
              for (const backend of settingBackend) row.onnx.push((await bridged(framework, { batch, threads, backend })).imagesPerSecond);
            }
            const onnx = row.onnx.length ? `, onnx ${median(row.onnx).toFixed(1)}` : '';
            console.log(
              `settings ${framework} batch ${batch} threads ${threads}: native ${median(row.native).toFixed(1)}, vision-trainer ${median(row.pytorch).toFixed(1)}${onnx} images/s (ratio ${(median(row.pytorch) / median(row.native)).toFixed(2)})`,
            );
            settingRows.push(row);
          }

    const fmt = (xs: number[]) => (xs.length ? spreadText(xs) : 'n/a');
    writeResults(
      'infer',
      { machine: m, device: DEVICE, threads: BENCH_THREADS, images: IMAGES, batch: BATCH, imgsz: IMGSZ, repeats: REPEATS, rows, settings: settingRows },
      [
        '## bench:infer: inference throughput, vision-trainer / a native Python loop, and the inference backends',
        '',
        `${describeMachine(m)}. Device ${DEVICE}, ${BENCH_THREADS} threads on both sides, ${IMAGES} images at ${IMGSZ} px, batch ${BATCH}, ${REPEATS} interleaved runs; images/s of the prediction loop, median [min-max].`,
        '',
        ...table(
          [
            'framework',
            'native',
            'vision-trainer',
            'ratio',
            'forward ms/image (native, vt)',
            'forward ratio',
            'CPU ms/image (native, vt)',
            'CPU ratio',
            "native loop's way",
            'ratio',
            'prefetch flipped (auto chose)',
            'ratio',
            'prefetch on / off',
            ...BACKENDS.flatMap((b) => [b, `${b} / pytorch`]),
            'load at each run',
          ],
          rows.map((r) => [
            r.framework,
            fmt(r.native),
            fmt(r.visionTrainer),
            r.ratio.toFixed(2),
            r.stageMs.forward.map((x) => x?.toFixed(2) ?? 'n/a').join(', '),
            r.forwardRatio?.toFixed(2) ?? 'n/a',
            r.stageMs.cpu.map((x) => x?.toFixed(2) ?? 'n/a').join(', '),
            r.cpuRatio?.toFixed(2) ?? 'n/a',
            fmt(r.plain),
            r.ratioPlain.toFixed(2),
            `${fmt(r.prefetchFlipped)} (${r.prefetchDefault ? 'on' : 'off'})`,
            r.ratioPrefetchFlipped.toFixed(2),
            `${r.prefetchGain.toFixed(2)}x`,
            ...BACKENDS.flatMap((b) => [fmt(r.backends[b]!), `${r.speedups[b]!.toFixed(2)}x`]),
            r.loads.join(', '),
          ]),
        ),
        '',
        ...(BACKENDS.length
          ? [
              'The graph backends in the native loop (the model exported as the job exports it, the same runtime settings) and in the job:',
              '',
              ...table(
                ['framework', 'backend', 'native loop', 'over the native PyTorch loop', 'vision-trainer', 'over the PyTorch job', 'job / native loop'],
                rows.flatMap((r) =>
                  BACKENDS.map((b) => [
                    r.framework,
                    b,
                    fmt(r.nativeBackends[b]!),
                    `${r.nativeSpeedups[b]!.toFixed(2)}x`,
                    fmt(r.backends[b]!),
                    `${r.speedups[b]!.toFixed(2)}x`,
                    (median(r.backends[b]!) / median(r.nativeBackends[b]!)).toFixed(2),
                  ]),
                ),
              ),
              '',
            ]
          : []),
        ...(settingRows.length
          ? [
              `Settings (${SETTINGS_REPEATS} run(s) each, images/s):`,
              '',
              ...table(
                ['framework', 'batch', 'threads', 'native', 'vision-trainer', 'ratio', ...settingBackend, 'load'],
                settingRows.map((r) => [
                  r.framework,
                  String(r.batch),
                  String(r.threads),
                  fmt(r.native),
                  fmt(r.pytorch),
                  (median(r.pytorch) / median(r.native)).toFixed(2),
                  ...settingBackend.map(() => fmt(r.onnx)),
                  String(r.load),
                ]),
              ),
            ]
          : []),
      ],
    );
  } finally {
    await receiver.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
