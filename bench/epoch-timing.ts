/**
 * What bench/bridge.ts (ultralytics) and bench/timm.ts share: the same training run natively in
 * Python and through the `vision-trainer train` CLI, interleaved, several times, with the median
 * per-epoch time of each (first epoch excluded: warm-up), start-up to the first epoch, and
 * `epoch time ratio: X.XX` (bridged/native).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { startCallbackReceiver } from '../src/dev/receiver.js';
import { PROJECT_ROOT, defaultPythonBin } from '../src/paths.js';

export const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
export const EPOCHS = Number(process.env.BENCH_EPOCHS ?? 4);

interface Timing {
  startupSeconds: number;
  epochSeconds: number[];
}

type EpochMark = { kind: 'start' | 'end'; t: number } | undefined;

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, parse: (line: string) => EpochMark): Promise<Timing> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now() / 1000;
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let firstEpochStart: number | undefined;
    const ends: number[] = [];
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let i = buf.indexOf('\n');
      while (i >= 0) {
        const e = parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (e?.kind === 'start' && firstEpochStart === undefined) firstEpochStart = e.t;
        if (e?.kind === 'end') ends.push(e.t);
        i = buf.indexOf('\n');
      }
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-4000);
    });
    child.on('exit', (code) => {
      if (code !== 0 || firstEpochStart === undefined || ends.length < 2) return reject(new Error(`${cmd} ${args.join(' ')} failed (${code}): ${err}`));
      const epochSeconds = ends.slice(1).map((t, k) => t - ends[k]!);
      resolve({ startupSeconds: firstEpochStart - t0, epochSeconds });
    });
  });
}

/** The native scripts print {"bench": "epoch_start" | "epoch_end", "t": seconds} lines. */
function nativeMark(line: string): EpochMark {
  if (!line.startsWith('{"bench"')) return undefined;
  const e = JSON.parse(line) as { bench: string; t: number };
  return { kind: e.bench === 'epoch_start' ? 'start' : 'end', t: e.t };
}

/** The CLI's JSON log lines: training_started, then one `epoch` line per epoch. */
function bridgedMark(line: string): EpochMark {
  if (!line.startsWith('{')) return undefined;
  const e = JSON.parse(line) as { ts: string; event?: string };
  if (e.event === 'training_started') return { kind: 'start', t: Date.parse(e.ts) / 1000 };
  if (e.event === 'epoch') return { kind: 'end', t: Date.parse(e.ts) / 1000 };
  return undefined;
}

export interface Comparison {
  /** e.g. "timm resnet18, 240 images at 64 px, batch 16, 4 epochs". */
  title: string;
  /** Folder for storage and work folders of the bridged runs. */
  scratch: string;
  /** Environment of both runs (offline switches). */
  env: NodeJS.ProcessEnv;
  /** The native run `r`: its script and arguments, run by the venv's Python, and extra environment. */
  native(r: number): { args: string[]; env?: NodeJS.ProcessEnv };
  /** The bridged run `r`: the job's variables (storage, backend and logging are set here). */
  bridged(r: number): Record<string, string>;
}

export async function compareEpochTimes(c: Comparison): Promise<void> {
  const receiver = await startCallbackReceiver({ token: 'bench-token', print: false });
  const env = { ...process.env, PYTHONUNBUFFERED: '1', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...c.env };
  const native: Timing[] = [];
  const bridged: Timing[] = [];
  for (let r = 0; r < REPEATS; r++) {
    const n = c.native(r);
    native.push(await run(defaultPythonBin(), n.args, { ...env, ...n.env }, nativeMark));
    const job = {
      ...env,
      LOG_FORMAT: 'json',
      // A real receiver: the bridged run pays for its HTTP callbacks as in production.
      BACKEND_BASE_URL: receiver.url,
      CALLBACK_TOKEN: 'bench-token',
      STORAGE_TYPE: 'local',
      LOCAL_STORAGE_PATH: join(c.scratch, 'storage'),
      DEVICE: 'cpu',
      WORK_DIR: join(c.scratch, 'work'),
      ...c.bridged(r),
    };
    bridged.push(await run(process.execPath, [join(PROJECT_ROOT, 'dist/src/cli.js'), 'train'], job, bridgedMark));
    process.stdout.write(
      `run ${r + 1}/${REPEATS}: native ${median(native[r]!.epochSeconds).toFixed(2)} s/epoch, bridged ${median(bridged[r]!.epochSeconds).toFixed(2)} s/epoch\n`,
    );
  }
  await receiver.close();
  const nativeEpoch = median(native.flatMap((t) => t.epochSeconds));
  const bridgedEpoch = median(bridged.flatMap((t) => t.epochSeconds));
  const startup = (ts: Timing[]) => median(ts.map((t) => t.startupSeconds)).toFixed(2);
  process.stdout.write(
    [
      `${c.title}, ${REPEATS} interleaved runs each`,
      `native   python: median epoch ${nativeEpoch.toFixed(3)} s, start-up to first epoch ${startup(native)} s`,
      `bridged  vision-trainer: median epoch ${bridgedEpoch.toFixed(3)} s, start-up to first epoch ${startup(bridged)} s (includes dataset validation and conversion)`,
      `epoch time ratio: ${(bridgedEpoch / nativeEpoch).toFixed(2)}`,
      '',
    ].join('\n'),
  );
}

/** Runs a bench's main, reporting a failure on stderr and in the exit code. */
export function runBench(main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
}
