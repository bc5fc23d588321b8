/**
 * The auto split against CPython itself: thousands of generated cases (sizes 0-5,000; seeds 0,
 * negative, 32-bit boundaries, up to 2^53 - 1; two- and three-part ratios, round and
 * arbitrary) go to one CPython process running the design's `apply_split` verbatim
 * (splits-cpython.py), and every image's split must match what `resolveSplits` gives through
 * each level that auto-splits: the job's SPLIT_STRATEGY, the dataset's split_config `auto`,
 * `partial` (the rest of the images), and the default.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { DatasetError } from '../../src/errors.js';
import type { DatasetImage } from '../../src/datasets/model.js';
import { PythonRandom } from '../../src/datasets/python-random.js';
import { DatasetSplitConfigSchema, type SplitName } from '../../src/datasets/schema.js';
import { resolveSplits, SplitStrategySchema, type SplittableDataset, type SplitStrategy } from '../../src/datasets/splits.js';
import { defaultPythonBin } from '../../src/paths.js';
import { mulberry32 } from '../helpers/random.js';

type Level = 'job' | 'dataset-auto' | 'partial' | 'default';
interface Case {
  n: number;
  seed: number;
  ratio: number[];
  level: Level;
  /** partial: file index → split the dataset fixes (the rest is auto-split). */
  fixed?: Record<string, SplitName>;
  /** How the ids look: numbers in file order, shuffled numbers, or strings. */
  ids: 'ascending' | 'descending' | 'strings';
}

const SEEDS = [
  0,
  1,
  -1,
  42,
  -42,
  7,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32 - 1,
  2 ** 32,
  -(2 ** 32),
  2 ** 32 + 1,
  2 ** 48 + 12345,
  2 ** 53 - 1,
  -(2 ** 53 - 1),
  1234567890123,
];
const ROUND_RATIOS = [
  [0.8, 0.2],
  [0.7, 0.3],
  [0.9, 0.1],
  [0.71, 0.29],
  [0.5, 0.5],
  [0.6, 0.4],
  [0.33, 0.67],
  [0.7, 0.2, 0.1],
  [0.6, 0.2, 0.2],
  [0.8, 0.1, 0.1],
  [0.71, 0.29, 0],
  [0.34, 0.33, 0.33],
];

function generateCases(count: number): Case[] {
  const random = mulberry32(20240611);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const cases: Case[] = [];
  for (let c = 0; c < count; c++) {
    const band = random();
    const n = c < 60 ? c : band < 0.4 ? Math.floor(random() * 31) : band < 0.85 ? 31 + Math.floor(random() * 970) : 1001 + Math.floor(random() * 4000);
    const seedKind = random();
    const seed =
      seedKind < 0.35
        ? pick(SEEDS)
        : seedKind < 0.6
          ? Math.floor(random() * 1000) * (random() < 0.5 ? -1 : 1)
          : seedKind < 0.8
            ? Math.floor(random() * 2 ** 32) * (random() < 0.5 ? -1 : 1)
            : (Math.floor(random() * 2 ** 21) * 2 ** 32 + Math.floor(random() * 2 ** 32)) * (random() < 0.5 ? -1 : 1);
    const ratioKind = random();
    let ratio: number[];
    if (ratioKind < 0.5) ratio = pick(ROUND_RATIOS);
    else if (ratioKind < 0.75) {
      const train = 0.05 + Math.floor(random() * 90) / 100;
      ratio = [train, 1 - train]; // 1 - 0.57 = 0.43000000000000005: the schema allows it, Python gets it exactly
    } else if (ratioKind < 0.9) {
      const train = 0.05 + random() * 0.9; // arbitrary doubles survive JSON both ways
      ratio = [train, 1 - train];
    } else {
      const train = 0.1 + Math.floor(random() * 70) / 100;
      const val = 0.01 + Math.floor(random() * (Math.round((1 - train) * 100) - 1)) / 100; // leaves test >= 0.01
      ratio = [train, val, 1 - train - val];
    }
    const level: Level = pick(['job', 'job', 'job', 'dataset-auto', 'partial', 'default'] as const);
    const item: Case = { n, seed, ratio, level, ids: pick(['ascending', 'descending', 'strings'] as const) };
    if (level === 'partial') {
      const fixed: Record<string, SplitName> = {};
      for (let i = 0; i < n; i++) if (random() < 0.2) fixed[String(i)] = pick(['train', 'val', 'test'] as const);
      item.fixed = fixed;
    }
    cases.push(item);
  }
  return cases;
}

function idsOf(item: Case, index: number): string[] {
  return Array.from({ length: item.n }, (_, i) =>
    item.ids === 'ascending' ? String(i + 1) : item.ids === 'descending' ? String(10 * (item.n - i)) : `case${index}/img-${(i * 7919) % 10007}.jpg`,
  );
}

/** The runtime's split of one case, one letter per image in file order; or the error it raised. */
function runtimeLetters(item: Case, index: number): string | DatasetError {
  const ids = idsOf(item, index);
  const images: DatasetImage[] = ids.map((id, i) => ({ id, fileName: `${i}.jpg`, path: `/d/images/${i}.jpg`, width: 8, height: 8, objects: [] }));
  const dataset: SplittableDataset = { images };
  let strategy: SplitStrategy | undefined;
  if (item.level === 'job') strategy = SplitStrategySchema.parse(JSON.parse(JSON.stringify({ method: 'auto', ratio: item.ratio, seed: item.seed })));
  if (item.level === 'dataset-auto') dataset.splitConfig = DatasetSplitConfigSchema.parse({ method: 'auto', default_ratio: item.ratio, seed: item.seed });
  if (item.level === 'partial') {
    const listed: Record<string, SplitName> = {};
    for (const [index, split] of Object.entries(item.fixed ?? {})) {
      // Both ways a dataset fixes an image's split: split_config.splits and the image's own field.
      if (Number(index) % 2 === 0) listed[ids[Number(index)] as string] = split;
      else (images[Number(index)] as DatasetImage).split = split;
    }
    dataset.splitConfig = DatasetSplitConfigSchema.parse({ method: 'partial', default_ratio: item.ratio, seed: item.seed, splits: listed });
  }
  try {
    const result = resolveSplits(dataset, strategy);
    return ids.map((id) => ({ train: 't', val: 'v', test: 's' })[result.get(id) as SplitName]).join('');
  } catch (error) {
    if (error instanceof DatasetError) return error;
    throw error;
  }
}

const CASES = generateCases(2000);
let python: { python: string; results: Array<{ letters: string; perm_sha1: string }> };

beforeAll(() => {
  const venvPython = defaultPythonBin();
  const interpreter = existsSync(venvPython) ? venvPython : 'python3';
  const script = join(dirname(fileURLToPath(import.meta.url)), 'splits-cpython.py');
  const run = spawnSync(interpreter, [script], { input: JSON.stringify(CASES), encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, timeout: 120_000 });
  if (run.status !== 0) throw new Error(`${interpreter} ${script} failed (${run.status ?? run.signal}): ${run.stderr}`);
  python = JSON.parse(run.stdout);
  expect(python.results).toHaveLength(CASES.length);
});

describe("the auto split is CPython's random.seed + random.shuffle, bit for bit", () => {
  it('covers sizes 0-5,000, seeds 0 / negative / beyond 32 bits, and every auto-splitting level', () => {
    const sizes = CASES.map((c) => c.n);
    expect(Math.min(...sizes)).toBe(0);
    expect(Math.max(...sizes)).toBeGreaterThan(4500);
    expect(CASES.some((c) => c.seed === 0)).toBe(true);
    expect(CASES.filter((c) => c.seed < 0).length).toBeGreaterThan(400);
    expect(CASES.filter((c) => Math.abs(c.seed) >= 2 ** 32).length).toBeGreaterThan(200);
    expect(CASES.some((c) => c.seed === 2 ** 53 - 1) && CASES.some((c) => c.seed === -(2 ** 53 - 1))).toBe(true);
    expect(new Set(CASES.map((c) => c.level))).toEqual(new Set(['job', 'dataset-auto', 'partial', 'default']));
    expect(CASES.filter((c) => c.ratio.length === 3 && (c.ratio[2] as number) > 0).length).toBeGreaterThan(100);
  });

  it('shuffles exactly as random.shuffle (the whole permutation, every case)', () => {
    const mismatches: string[] = [];
    CASES.forEach((item, index) => {
      const perm = new PythonRandom(item.seed).shuffle(Array.from({ length: item.n }, (_, i) => i));
      const sha1 = createHash('sha1').update(perm.join(',')).digest('hex');
      if (sha1 !== python.results[index]!.perm_sha1) mismatches.push(`case ${index}: n ${item.n}, seed ${item.seed}`);
    });
    expect(mismatches.slice(0, 10)).toEqual([]);
  });

  it("puts every image in the split the design's apply_split puts it in", () => {
    const mismatches: string[] = [];
    let compared = 0;
    let refused = 0;
    CASES.forEach((item, index) => {
      const expected = python.results[index]!.letters;
      const got = runtimeLetters(item, index);
      if (got instanceof DatasetError) {
        // Refused only when the design's split leaves train or val empty, and then always.
        refused++;
        if (expected.includes('t') && expected.includes('v'))
          mismatches.push(
            `case ${index} (${JSON.stringify({ ...item, fixed: undefined })}): refused but Python gives ${expected.slice(0, 40)}: ${got.message}`,
          );
        return;
      }
      compared++;
      if (got !== expected) {
        const at = [...got].findIndex((letter, i) => letter !== expected[i]);
        mismatches.push(
          `case ${index} (${JSON.stringify({ ...item, fixed: undefined })}): first difference at image ${at}: runtime ${got.slice(at, at + 20)}, Python ${expected.slice(at, at + 20)}`,
        );
      }
    });
    expect(mismatches.slice(0, 10)).toEqual([]);
    expect(compared).toBeGreaterThan(1700);
    expect(refused).toBeGreaterThan(0);
  });
});
