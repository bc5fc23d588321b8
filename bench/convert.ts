/**
 * Benchmark: Platform Format → YOLO labels, our TypeScript converter against the design's
 * Python converter (bench/convert_python.py), on the same annotations file.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/convert.js [--images 100000] [--boxes 300000]
 *       [--runs 3] [--out DIR] [--skip-design] [--keep]
 *
 * The dataset is annotations only (no image files): the TypeScript side loads it with
 * `verifyImages: false`. What each row measures, from reading the file to the last label:
 *
 *   TypeScript, labels only      load + validate + split + label files, lists, data.yaml
 *                                (`linkImages: false`): the work the Python sketch does, and more
 *                                (it validates every box; the sketch validates nothing)
 *   TypeScript, with symlinks    the same plus one symlink per image (dangling: no image files),
 *                                which the real layout needs and the sketch does not make
 *   Python, design sketch        the platform design's PlatformToYOLOConverter, its lookup helper
 *                                written as its signature implies (a scan of images per image)
 *   Python, indexed              the same with an id → image dict: what careful Python costs
 *
 * `speedup:` compares the like-for-like pair (TypeScript labels only vs the design sketch).
 * Every run is a fresh process (no JIT warmed by an earlier run), and interpreter start-up is
 * excluded on both sides. Every run writes into its own empty folder.
 * Each row is the best of `--runs` (the design sketch, minutes long, runs once). Files go to
 * /dev/shm when it exists: on a shared VM disk, journal stalls make two identical runs
 * differ by 2-3x, which measures the disk, not the converters; pass --out for a disk.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { convertToYolo } from '../src/datasets/convert/index.js';
import { loadDataset } from '../src/datasets/load.js';
import { PythonRandom } from '../src/datasets/python-random.js';
import { resolveSplits } from '../src/datasets/splits.js';
import { defaultVenvDir, PROJECT_ROOT } from '../src/paths.js';

const { values: args } = parseArgs({
  options: {
    images: { type: 'string', default: '100000' },
    boxes: { type: 'string', default: '300000' },
    out: { type: 'string' },
    runs: { type: 'string', default: '3' },
    'skip-design': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    // Internal: one timed TypeScript run in a child process.
    child: { type: 'string' },
    dataset: { type: 'string' },
  },
});
const imageCount = Number(args.images);
const boxCount = Number(args.boxes);
const runs = Math.max(1, Number(args.runs));

/** A detection dataset: 640x480 images, boxes thrown at random images (some get none), 10 classes. */
function writeAnnotations(path: string): void {
  const generator = new PythonRandom(2024);
  const random = () => generator.random();
  const classes = Array.from({ length: 10 }, (_, id) => ({ id, name: `class_${id}` }));
  const images = Array.from({ length: imageCount }, (_, i) => ({
    id: i + 1,
    file_name: `batch-${i % 100}/img-${String(i + 1).padStart(7, '0')}.jpg`,
    width: 640,
    height: 480,
    annotations: [] as unknown[],
  }));
  const r2 = (v: number) => Math.round(v * 100) / 100;
  for (let b = 0; b < boxCount; b++) {
    const image = images[Math.floor(random() * imageCount)] as (typeof images)[number];
    const w = 10 + random() * 190;
    const h = 10 + random() * 190;
    const classId = Math.floor(random() * 10);
    image.annotations.push({
      id: b + 1,
      class_id: classId,
      class_name: `class_${classId}`,
      bbox: [r2(random() * (640 - w)), r2(random() * (480 - h)), r2(w), r2(h)],
      bbox_format: 'xywh',
      area: r2(w * h),
      iscrowd: 0,
    });
  }
  writeFileSync(path, JSON.stringify({ format_version: '1.0', dataset_id: 'bench', task_type: 'object_detection', classes, images }));
}

async function timeTypeScript(datasetRoot: string, outDir: string, linkImages: boolean): Promise<number> {
  const start = performance.now();
  const dataset = await loadDataset(datasetRoot, { taskType: 'object_detection', verifyImages: false });
  const splits = resolveSplits(dataset);
  await convertToYolo(dataset, splits, outDir, { linkImages });
  return (performance.now() - start) / 1000;
}

/** One TypeScript run in a fresh Node process, so that no run profits from another's JIT warm-up. */
function timeTypeScriptCold(datasetRoot: string, outDir: string, linkImages: boolean): number {
  const run = spawnSync(
    process.execPath,
    [fileURLToPath(import.meta.url), '--child', linkImages ? 'linked' : 'labels', '--dataset', datasetRoot, '--out', outDir],
    {
      encoding: 'utf8',
    },
  );
  if (run.status !== 0) throw new Error(`TypeScript run failed (exit ${run.status}):\n${run.stderr}`);
  return Number(run.stdout.trim().split('\n').pop());
}

function timePython(annotationsPath: string, outDir: string, variant: 'design' | 'indexed'): number {
  const python = join(defaultVenvDir(), 'bin', 'python');
  mkdirSync(outDir, { recursive: true });
  const run = spawnSync(python, [join(PROJECT_ROOT, 'bench', 'convert_python.py'), '--annotations', annotationsPath, '--out', outDir, '--variant', variant], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  if (run.status !== 0) throw new Error(`${python} bench/convert_python.py failed (${run.error?.message ?? `exit ${run.status}`}):\n${run.stderr}`);
  return (JSON.parse(run.stdout.trim().split('\n').pop() as string) as { seconds: number }).seconds;
}

function row(label: string, seconds: number): string {
  return `${label.padEnd(44)} ${seconds.toFixed(2).padStart(8)} s ${Math.round(imageCount / seconds)
    .toLocaleString('en-US')
    .padStart(10)} images/s`;
}

/** The best of `runs` timings, each run writing into a fresh folder that is removed afterwards. */
async function best(base: string, name: string, time: (outDir: string) => number | Promise<number>, count = runs): Promise<number> {
  let fastest = Infinity;
  for (let run = 0; run < count; run++) {
    const outDir = join(base, `${name}-${run}`);
    fastest = Math.min(fastest, await time(outDir));
    rmSync(outDir, { recursive: true, force: true });
  }
  return fastest;
}

function defaultBase(): string {
  try {
    return mkdtempSync(join('/dev/shm', 'vt-bench-convert-'));
  } catch {
    return mkdtempSync(join(tmpdir(), 'vt-bench-convert-'));
  }
}

async function main(): Promise<void> {
  const base = args.out ? resolve(args.out) : defaultBase();
  mkdirSync(base, { recursive: true });
  const datasetRoot = join(base, 'dataset');
  mkdirSync(datasetRoot, { recursive: true });
  const annotationsPath = join(datasetRoot, 'annotations.json');
  writeAnnotations(annotationsPath);
  console.log(
    `dataset: ${imageCount.toLocaleString('en-US')} images, ${boxCount.toLocaleString('en-US')} boxes, annotations.json ${(statSync(annotationsPath).size / 1e6).toFixed(1)} MB, written under ${base}; best of ${runs} runs`,
  );

  try {
    const tsLabels = await best(base, 'ts-labels', (out) => timeTypeScriptCold(datasetRoot, out, false));
    console.log(row('TypeScript, labels only', tsLabels));
    const tsLinked = await best(base, 'ts-linked', (out) => timeTypeScriptCold(datasetRoot, out, true));
    console.log(row('TypeScript, labels + image symlinks', tsLinked));
    const pyIndexed = await best(base, 'py-indexed', (out) => timePython(annotationsPath, out, 'indexed'));
    console.log(row('Python, design sketch with an id index', pyIndexed));
    if (!args['skip-design']) {
      const pyDesign = await best(base, 'py-design', (out) => timePython(annotationsPath, out, 'design'), 1);
      console.log(row('Python, design sketch (scan per image)', pyDesign));
      console.log(`speedup: ${(pyDesign / tsLabels).toFixed(2)}x   (TypeScript labels only vs the design's Python)`);
    }
    console.log(`speedup vs indexed Python: ${(pyIndexed / tsLabels).toFixed(2)}x (labels only), ${(pyIndexed / tsLinked).toFixed(2)}x (with symlinks)`);
  } finally {
    if (!args.keep && !args.out) rmSync(base, { recursive: true, force: true });
  }
}

if (args.child) {
  console.log(await timeTypeScript(resolve(args.dataset as string), resolve(args.out as string), args.child === 'linked'));
} else {
  await main();
}
