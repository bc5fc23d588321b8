/**
 * `npm run bench:onnx`: is onnxruntime-node (what export validation and the Node deployment
 * wrapper run) as fast as Python's onnxruntime on the same ONNX model, and what does either gain
 * over PyTorch eager? Two models (YOLO11n detection at 320 px, batch 4; ResNet-18 at 224 px,
 * batch 8; random weights: speed does not depend on them) are exported once, then run for
 * BENCH_SECONDS each by:
 *
 *   onnxruntime-node    in this process, through the Node wrapper's session options
 *   python onnxruntime  bench/onnx_python.py, the same session options and thread count
 *   pytorch eager       bench/onnx_python.py, the module the ONNX file was exported from
 *
 * interleaved BENCH_REPEATS times. Prints the median images/second of each and
 * `node/python ratio: X.XX` per model (aim: at least 1.00), and checks that both onnxruntimes
 * computed the same outputs.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { PROJECT_ROOT, PYTHON_DIR, defaultPythonBin } from '../src/paths.js';

const THREADS = Number(process.env.BENCH_THREADS ?? availableParallelism());
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const SCRIPT = join(PROJECT_ROOT, 'bench', 'onnx_python.py');
const MODELS: Record<string, number[]> = { yolo11n: [4, 3, 320, 320], resnet18: [8, 3, 224, 224] };

interface Measurement {
  batches: number;
  seconds: number;
  checksum: number;
  version?: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function python(args: string[]): string {
  const r = spawnSync(defaultPythonBin(), [SCRIPT, ...args], {
    encoding: 'utf8',
    env: { ...process.env, PYTHONPATH: [PYTHON_DIR, process.env.PYTHONPATH].filter(Boolean).join(delimiter), YOLO_CONFIG_DIR: join(tmpdir(), 'vt-bench-yolo') },
    maxBuffer: 64 * 1024 ** 2,
  });
  if (r.status !== 0) throw new Error(`python ${args.join(' ')} failed: ${r.stderr.slice(-3000)}`);
  return r.stdout.trim().split('\n').at(-1)!;
}

async function runNode(model: string, inputFile: string, shape: number[]): Promise<Measurement> {
  // The options of runtime/node/model_wrapper.ts, with the thread count pinned like Python's.
  const session = await ort.InferenceSession.create(model, {
    graphOptimizationLevel: 'all',
    executionProviders: ['cpu'],
    executionMode: 'sequential',
    intraOpNumThreads: THREADS,
    interOpNumThreads: 1,
  });
  const bytes = readFileSync(inputFile);
  const input = new ort.Tensor('float32', new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4), shape);
  const feeds = { [session.inputNames[0]!]: input };
  let output = (await session.run(feeds))[session.outputNames[0]!]!;
  for (let i = 0; i < 2; i++) output = (await session.run(feeds))[session.outputNames[0]!]!;
  let batches = 0;
  const started = performance.now();
  while (performance.now() - started < SECONDS * 1000) {
    output = (await session.run(feeds))[session.outputNames[0]!]!;
    batches++;
  }
  const seconds = (performance.now() - started) / 1000;
  let checksum = 0;
  for (const v of output.data as Float32Array) checksum += v;
  await session.release();
  return { batches, seconds, checksum };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vt-bench-onnx-'));
  try {
    process.stdout.write(`exporting ${Object.keys(MODELS).join(', ')} to ONNX...\n`);
    python(['export', dir]);
    process.stdout.write(`onnxruntime-node ${ort.env.versions.node}; ${THREADS} threads everywhere; ${SECONDS} s per run, ${REPEATS} interleaved repeats\n\n`);
    const rows: string[] = [];
    for (const [name, shape] of Object.entries(MODELS)) {
      const model = join(dir, `${name}.onnx`);
      const input = join(dir, `${name}.input.bin`);
      const rates = { node: [] as number[], python: [] as number[], torch: [] as number[] };
      let diff = 0;
      for (let r = 0; r < REPEATS; r++) {
        const node = await runNode(model, input, shape);
        const py = JSON.parse(python(['run', model, input, String(THREADS), String(SECONDS), 'onnxruntime'])) as Measurement;
        const torch = JSON.parse(python(['run', model, input, String(THREADS), String(SECONDS), 'pytorch'])) as Measurement;
        const perSecond = (m: Measurement) => (m.batches * shape[0]!) / m.seconds;
        rates.node.push(perSecond(node));
        rates.python.push(perSecond(py));
        rates.torch.push(perSecond(torch));
        diff = Math.max(diff, Math.abs(node.checksum - py.checksum) / Math.max(1, Math.abs(py.checksum)));
        process.stdout.write(
          `${name} repeat ${r + 1}: node ${perSecond(node).toFixed(1)}, python ${perSecond(py).toFixed(1)} (${py.version}), pytorch ${perSecond(torch).toFixed(1)} (${torch.version}) images/s\n`,
        );
      }
      const [n, p, t] = [median(rates.node), median(rates.python), median(rates.torch)];
      rows.push(
        `${name.padEnd(9)} ${`${shape[0]}x${shape[2]}px`.padEnd(9)} ${n.toFixed(1).padStart(16)} ${p.toFixed(1).padStart(18)} ${t.toFixed(1).padStart(13)}   ` +
          `node/python ratio: ${(n / p).toFixed(2)}   onnx/pytorch: ${(n / t).toFixed(2)}   outputs agree: ${diff < 1e-4 ? 'yes' : `no (relative checksum difference ${diff.toExponential(2)})`}`,
      );
    }
    process.stdout.write(`\nmodel     batch     onnxruntime-node  python onnxruntime  pytorch eager   (images/s, median)\n${rows.join('\n')}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
