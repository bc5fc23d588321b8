/**
 * Export packages as a user gets them: package.zip downloaded from storage and extracted, its
 * runtime wrappers run on the package's sample images (Python with the project's venv, Node with
 * the project's onnxruntime-node standing in for `npm install`, C++ built with CMake against
 * the system OpenCV), and their predictions compared with what the validation step recorded.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { PROJECT_ROOT, defaultPythonBin } from '../../src/paths.js';
import { designProblems } from './design-contract.js';
import type { Storage } from '../../src/storage/types.js';
import { extractZip } from '../../src/storage/zip.js';

export interface PredictionJson {
  bbox?: number[];
  class_id: number;
  class_name: string;
  confidence: number;
  mask?: { size: [number, number]; counts: number[] };
  keypoints?: number[][];
}

export interface ExpectedPredictions {
  thresholds: { default: Record<string, unknown>; validation: Record<string, unknown> & { example_options?: string } };
  images: { image: string; predictions: PredictionJson[]; validation_predictions: PredictionJson[] }[];
}

export interface ExportPackage {
  dir: string;
  metadata: Record<string, any>;
  expected: ExpectedPredictions | undefined;
  /** Sample images, in expected_predictions.json's order. */
  samples: string[];
}

export async function downloadPackage(storage: Storage, jobId: string): Promise<ExportPackage> {
  const root = mkdtempSync(join(tmpdir(), 'vt-package-'));
  const zip = join(root, 'package.zip');
  await storage.downloadFile(`export-jobs/${jobId}/package.zip`, zip);
  const dir = join(root, 'package');
  await extractZip(zip, dir);
  const metadata = JSON.parse(readFileSync(join(dir, 'metadata.json'), 'utf8'));
  // As a backend (or a deployment script) written against the design's metadata.json reads it.
  expect(designProblems('metadata', metadata)).toEqual([]);
  const expectedFile = join(dir, 'samples', 'expected_predictions.json');
  const expected = existsSync(expectedFile) ? (JSON.parse(readFileSync(expectedFile, 'utf8')) as ExpectedPredictions) : undefined;
  return { dir, metadata, expected, samples: expected?.images.map((i) => join(dir, 'samples', i.image)) ?? [] };
}

export interface WrapperLine {
  image: string;
  predictions: PredictionJson[];
}

function parseLines(stdout: string): WrapperLine[] {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as WrapperLine);
}

function run(cmd: string, args: string[], cwd: string, what: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 256 * 1024 ** 2, timeout: 300_000 });
  if (r.status !== 0) throw new Error(`${what} failed (${r.status ?? r.signal}):\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-4000)}`);
  return r.stdout;
}

export function runPythonWrapper(pkg: ExportPackage, options: string[] = []): WrapperLine[] {
  return parseLines(run(defaultPythonBin(), ['example.py', ...options], join(pkg.dir, 'runtimes', 'python'), 'the Python wrapper'));
}

export function runNodeWrapper(pkg: ExportPackage, options: string[] = []): WrapperLine[] {
  const dir = join(pkg.dir, 'runtimes', 'node');
  // Offline stand-in for `npm install` in the package: the project's own onnxruntime-node.
  if (!existsSync(join(dir, 'node_modules'))) symlinkSync(join(PROJECT_ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  return parseLines(run(process.execPath, ['example.mjs', ...options], dir, 'the Node wrapper'));
}

/**
 * Builds runtimes/cpp with CMake. OpenCV is a system package: when it is missing the test
 * fails (never skips) with the command that installs it.
 */
export function buildCppWrapper(pkg: ExportPackage): string {
  const probe = spawnSync('pkg-config', ['--modversion', 'opencv4'], { encoding: 'utf8' });
  const tools = ['cmake', 'g++'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
  if (probe.status !== 0 || tools.length) {
    throw new Error(
      `The C++ wrapper test needs OpenCV's development files, CMake and g++ (missing: ${[probe.status !== 0 ? 'libopencv-dev (pkg-config opencv4)' : '', ...tools].filter(Boolean).join(', ')}). ` +
        'Run `npm run setup`: it installs libopencv-dev, cmake and g++ where apt-get is available (as root).',
    );
  }
  const src = join(pkg.dir, 'runtimes', 'cpp');
  const build = join(src, 'build');
  run('cmake', ['-S', src, '-B', build, '-DCMAKE_BUILD_TYPE=Release'], src, 'cmake configure');
  run('cmake', ['--build', build, '-j', '2'], src, 'cmake build');
  return join(build, 'example');
}

export function runCppWrapper(binary: string, pkg: ExportPackage, options: string[] = []): WrapperLine[] {
  return parseLines(
    run(binary, [...options, join(pkg.dir, pkg.metadata.model.file), join(pkg.dir, 'metadata.json'), ...pkg.samples], pkg.dir, 'the C++ wrapper'),
  );
}

/** The example options that reproduce the validation step's thresholds. */
export const validationOptions = (pkg: ExportPackage): string[] => pkg.expected?.thresholds.validation.example_options?.split(' ') ?? [];

function decodeRle(rle: { size: [number, number]; counts: number[] }): Uint8Array {
  const out = new Uint8Array(rle.size[0] * rle.size[1]);
  let pos = 0;
  rle.counts.forEach((n, i) => {
    if (i % 2) out.fill(1, pos, pos + n);
    pos += n;
  });
  return out;
}

export function maskIoU(a: { size: [number, number]; counts: number[] }, b: { size: [number, number]; counts: number[] }): number {
  const x = decodeRle(a);
  const y = decodeRle(b);
  let inter = 0;
  let union = 0;
  for (let i = 0; i < x.length; i++) {
    inter += x[i]! & y[i]!;
    union += x[i]! | y[i]!;
  }
  return union === 0 ? 1 : inter / union;
}

function boxIoU(a: number[], b: number[]): number {
  const w = Math.min(a[2]!, b[2]!) - Math.max(a[0]!, b[0]!);
  const h = Math.min(a[3]!, b[3]!) - Math.max(a[1]!, b[1]!);
  const inter = Math.max(0, w) * Math.max(0, h);
  const union = (a[2]! - a[0]!) * (a[3]! - a[1]!) + (b[2]! - b[0]!) * (b[3]! - b[1]!) - inter;
  return union > 0 ? inter / union : 1;
}

export interface Tolerance {
  /** Largest difference in box corners and keypoints, pixels. */
  pixels: number;
  confidence: number;
  maskIoU: number;
}

/** The same runtime (onnxruntime) or the same model file: the same numbers. */
export const SAME_RUNTIME: Tolerance = { pixels: 1e-3, confidence: 1e-5, maskIoU: 0.999 };
/** OpenCV's DNN module computes the same graph with its own kernels. */
export const OTHER_RUNTIME: Tolerance = { pixels: 0.05, confidence: 2e-3, maskIoU: 0.95 };

function expectSamePrediction(a: PredictionJson, e: PredictionJson, t: Tolerance, where: string): void {
  expect(a.class_id, where).toBe(e.class_id);
  expect(a.class_name, where).toBe(e.class_name);
  expect(Math.abs(a.confidence - e.confidence), `${where}: confidence ${a.confidence} vs ${e.confidence}`).toBeLessThanOrEqual(t.confidence);
  if (e.bbox) e.bbox.forEach((v, k) => expect(Math.abs(a.bbox![k]! - v), `${where}: bbox ${a.bbox} vs ${e.bbox}`).toBeLessThanOrEqual(t.pixels));
  if (e.mask) expect(maskIoU(a.mask!, e.mask), `${where}: mask IoU`).toBeGreaterThanOrEqual(t.maskIoU);
  if (e.keypoints) {
    e.keypoints.forEach((k, j) =>
      k.forEach((v, m) => expect(Math.abs(a.keypoints![j]![m]! - v), `${where}: keypoint ${j}`).toBeLessThanOrEqual(m < 2 ? t.pixels : t.confidence)),
    );
  }
}

/**
 * How far apart two predictions of one class are: the largest difference of any box or keypoint
 * coordinate, then of confidence. Box overlap alone cannot pair them: a pose model can emit two
 * near-identical boxes (both kept by NMS) whose keypoints differ by pixels, and pairing those
 * crosswise would report a disagreement that is not there.
 */
function distance(a: PredictionJson, e: PredictionJson): number {
  let far = Math.abs(a.confidence - e.confidence);
  e.bbox?.forEach((v, k) => {
    far = Math.max(far, Math.abs((a.bbox?.[k] ?? Number.POSITIVE_INFINITY) - v));
  });
  e.keypoints?.forEach((point, j) => {
    for (const m of [0, 1]) far = Math.max(far, Math.abs((a.keypoints?.[j]?.[m] ?? Number.POSITIVE_INFINITY) - point[m]!));
  });
  if (e.mask && a.mask) far = Math.max(far, 1 - maskIoU(a.mask, e.mask));
  return far;
}

/** Every prediction names one of the model's dataset class ids (metadata.json), with that class's name. */
export function expectDatasetClassIds(lines: WrapperLine[], metadata: Record<string, any>): void {
  const { class_ids: ids, class_names: names } = metadata.model as { class_ids: number[]; class_names: string[] };
  const predictions = lines.flatMap((l) => l.predictions);
  expect(predictions.length).toBeGreaterThan(0);
  for (const p of predictions) {
    expect(ids).toContain(p.class_id);
    expect(p.class_name).toBe(names[ids.indexOf(p.class_id)]);
  }
}

/**
 * Every image's predictions match the expected ones. Predictions whose confidence sits within
 * `margin` of the confidence threshold may appear on one side only (another runtime's rounding
 * can put them either side); all others must pair up one to one.
 */
export function expectSamePredictions(
  actual: WrapperLine[],
  expected: { predictions: PredictionJson[] }[],
  t: Tolerance,
  label: string,
  confidenceThreshold = 0,
  margin = 0,
): void {
  expect(actual.length, `${label}: images`).toBe(expected.length);
  expected.forEach((exp, i) => {
    const got = actual[i]!.predictions;
    // Another runtime may also resolve an NMS tie the other way: of two overlapping boxes with
    // equal scores, which one survives is not defined, so tied predictions are not paired.
    const tied = (p: PredictionJson, list: PredictionJson[]) =>
      margin > 0 && list.some((q) => q !== p && Math.abs(q.confidence - p.confidence) <= t.confidence && !!p.bbox && !!q.bbox && boxIoU(p.bbox, q.bbox) > 0.5);
    const kept = (list: PredictionJson[]) => list.filter((p) => p.confidence > confidenceThreshold + margin && !tied(p, list));
    const [a, e] = [kept(got), kept(exp.predictions)];
    expect(a.length, `${label}, image ${i}: predictions above the threshold margin`).toBe(e.length);
    if (margin === 0) {
      e.forEach((p, k) => expectSamePrediction(a[k]!, p, t, `${label}, image ${i}, prediction ${k}`));
      return;
    }
    const unused = new Set(a.map((_, k) => k));
    e.forEach((p, k) => {
      const match = [...unused].filter((j) => a[j]!.class_id === p.class_id).sort((x, y) => distance(a[x]!, p) - distance(a[y]!, p))[0];
      expect(match, `${label}, image ${i}: no match for prediction ${k} ${JSON.stringify({ ...p, mask: undefined })}`).toBeDefined();
      unused.delete(match!);
      expectSamePrediction(a[match!]!, p, t, `${label}, image ${i}, prediction ${k}`);
    });
  });
}
