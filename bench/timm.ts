/**
 * `npm run bench:timm`: does driving timm through vision-trainer's Python bridge cost training
 * time? The twin of bench/bridge.ts for the loop we own: the same timm training (resnet18 from
 * scratch on the demo's scikit-learn digits, a few seconds per epoch on this CPU) runs natively
 * in Python (bench/native_timm.py calls vision_trainer.timm_train directly) and through the
 * `vision-trainer train` CLI (local storage, a real callback receiver), interleaved, several
 * times. Prints the median per-epoch time of each (first epoch excluded: warm-up), start-up to
 * the first epoch, and `epoch time ratio: X.XX` (bridged/native). Aim: at most 1.01.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCallbackReceiver } from '../src/dev/receiver.js';
import { loadDataset } from '../src/datasets/load.js';
import { resolveSplits } from '../src/datasets/splits.js';
import { convertToImageFolder } from '../src/datasets/convert/classification.js';
import { PROJECT_ROOT, PYTHON_DIR, defaultPythonBin } from '../src/paths.js';

const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const EPOCHS = Number(process.env.BENCH_EPOCHS ?? 4);
const PER_CLASS = Number(process.env.BENCH_PER_CLASS ?? 24);
const IMGSZ = 64;
const BATCH = 16;
const WORKERS = 2;

interface Timing {
  startupSeconds: number;
  epochSeconds: number[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, parse: (line: string) => { kind: 'start' | 'end'; t: number } | undefined): Promise<Timing> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now() / 1000;
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let firstEpochStart: number | undefined;
    const ends: number[] = [];
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const e = parse(line);
        if (e?.kind === 'start' && firstEpochStart === undefined) firstEpochStart = e.t;
        if (e?.kind === 'end') ends.push(e.t);
      }
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    child.on('exit', (code) => {
      if (code !== 0 || firstEpochStart === undefined || ends.length < 2) return reject(new Error(`${cmd} ${args.join(' ')} failed (${code}): ${err}`));
      const epochSeconds = ends.slice(1).map((t, k) => t - ends[k]!);
      resolve({ startupSeconds: firstEpochStart - t0, epochSeconds });
    });
  });
}

async function main(): Promise<void> {
  const scratch = mkdtempSync(join(tmpdir(), 'vt-bench-timm-'));
  const datasetDir = join(scratch, 'dataset');
  const made = spawnSync(defaultPythonBin(), ['-m', 'vision_trainer.sample_data', 'classification', datasetDir, '--per-class', String(PER_CLASS), '--size', String(IMGSZ)], { cwd: PYTHON_DIR, encoding: 'utf8' });
  if (made.status !== 0) throw new Error(made.stderr);
  // The native run trains on exactly what vision-trainer converts (same split seed).
  const dataset = await loadDataset(datasetDir, { taskType: 'image_classification' });
  const folder = await convertToImageFolder(dataset, resolveSplits(dataset), join(scratch, 'imagefolder'));

  const receiver = await startCallbackReceiver({ token: 'bench-token', print: false });
  const baseEnv = { ...process.env, HF_HUB_OFFLINE: '1', PYTHONUNBUFFERED: '1', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
  const native: Timing[] = [];
  const bridged: Timing[] = [];
  for (let r = 0; r < REPEATS; r++) {
    native.push(
      await run(defaultPythonBin(), [join(PROJECT_ROOT, 'bench/native_timm.py'), folder.root, JSON.stringify(folder.classNames), join(scratch, `native-${r}`), String(EPOCHS), String(BATCH), String(IMGSZ), String(WORKERS)], baseEnv, (line) => {
        if (!line.startsWith('{"bench"')) return undefined;
        const e = JSON.parse(line) as { bench: string; t: number };
        return { kind: e.bench === 'epoch_start' ? 'start' : 'end', t: e.t };
      }),
    );
    bridged.push(
      await run(process.execPath, [join(PROJECT_ROOT, 'dist/src/cli.js'), 'train'], {
        ...baseEnv,
        LOG_FORMAT: 'json',
        JOB_ID: `bench-timm-${r}`,
        TRACE_ID: `bench-timm-${r}`,
        // A real receiver: the bridged run pays for its HTTP callbacks as in production.
        BACKEND_BASE_URL: receiver.url,
        CALLBACK_TOKEN: 'bench-token',
        STORAGE_TYPE: 'local',
        LOCAL_STORAGE_PATH: join(scratch, 'storage'),
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
        DEVICE: 'cpu',
        WORK_DIR: join(scratch, 'work'),
      }, (line) => {
        if (!line.startsWith('{')) return undefined;
        const e = JSON.parse(line) as { ts: string; event?: string };
        if (e.event === 'training_started') return { kind: 'start', t: Date.parse(e.ts) / 1000 };
        if (e.event === 'epoch') return { kind: 'end', t: Date.parse(e.ts) / 1000 };
        return undefined;
      }),
    );
    process.stdout.write(`run ${r + 1}/${REPEATS}: native ${median(native[r]!.epochSeconds).toFixed(2)} s/epoch, bridged ${median(bridged[r]!.epochSeconds).toFixed(2)} s/epoch\n`);
  }
  const nativeEpoch = median(native.flatMap((t) => t.epochSeconds));
  const bridgedEpoch = median(bridged.flatMap((t) => t.epochSeconds));
  process.stdout.write(
    [
      `timm resnet18, ${dataset.images.length} images at ${IMGSZ} px, batch ${BATCH}, ${EPOCHS} epochs, ${REPEATS} interleaved runs each`,
      `native   python: median epoch ${nativeEpoch.toFixed(3)} s, start-up to first epoch ${median(native.map((t) => t.startupSeconds)).toFixed(2)} s`,
      `bridged  vision-trainer: median epoch ${bridgedEpoch.toFixed(3)} s, start-up to first epoch ${median(bridged.map((t) => t.startupSeconds)).toFixed(2)} s (includes dataset validation and conversion)`,
      `epoch time ratio: ${(bridgedEpoch / nativeEpoch).toFixed(2)}`,
      '',
    ].join('\n'),
  );
  await receiver.close();
  rmSync(scratch, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
