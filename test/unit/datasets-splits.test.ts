import { describe, expect, it } from 'vitest';
import { DatasetError } from '../../src/errors.js';
import type { DatasetImage } from '../../src/datasets/model.js';
import type { DatasetSplitConfig, SplitName } from '../../src/datasets/schema.js';
import { autoSplit, mulberry32, resolveSplits, shuffleInPlace, SplitStrategySchema, type SplittableDataset } from '../../src/datasets/splits.js';

function imagesWithIds(ids: Array<string | number>, split?: (i: number) => SplitName | undefined): DatasetImage[] {
  return ids.map((id, i) => {
    const image: DatasetImage = { id: String(id), fileName: `${id}.png`, path: `/d/images/${id}.png`, width: 10, height: 10, objects: [] };
    const s = split?.(i);
    if (s) image.split = s;
    return image;
  });
}
const range = (n: number, from = 1) => Array.from({ length: n }, (_, i) => i + from);
const dataset = (images: DatasetImage[], splitConfig?: DatasetSplitConfig): SplittableDataset => (splitConfig ? { images, splitConfig } : { images });
const idsIn = (assignment: ReadonlyMap<string, SplitName>, split: SplitName) => [...assignment].filter(([, s]) => s === split).map(([id]) => id).sort();

describe('the seeded shuffle', () => {
  it('is mulberry32, bit for bit', () => {
    const random = mulberry32(42);
    // Integer-only arithmetic: these are the values on every machine and Node version.
    expect([random(), random(), random()].map((v) => Math.round(v * 2 ** 32))).toEqual([2581720956, 1925393290, 3661312704]);
  });

  it('pins the split of ten images with seed 42', () => {
    const assignment = autoSplit(range(10).map(String), [0.8, 0.2], 42);
    // The same as a Python port of mulberry32 + Fisher–Yates gives.
    expect(idsIn(assignment, 'val')).toEqual(['4', '6']);
    expect(idsIn(assignment, 'train')).toHaveLength(8);
  });

  it('gives the same split whatever order the images come in', () => {
    const ids = range(500).map((i) => `img-${i}`);
    const shuffled = [...ids];
    shuffleInPlace(shuffled, mulberry32(7));
    expect(shuffled).not.toEqual(ids);
    const a = resolveSplits(dataset(imagesWithIds(ids)));
    const b = resolveSplits(dataset(imagesWithIds(shuffled)));
    expect([...b.assignment].sort()).toEqual([...a.assignment].sort());
    // Run twice: same result.
    expect([...resolveSplits(dataset(imagesWithIds(ids))).assignment]).toEqual([...a.assignment]);
  });

  it('depends on the seed', () => {
    const ids = range(200).map(String);
    expect(idsIn(autoSplit(ids, [0.8, 0.2], 1), 'val')).not.toEqual(idsIn(autoSplit(ids, [0.8, 0.2], 2), 'val'));
  });

  it('cuts at the ratio, two or three parts', () => {
    const ids = range(100).map(String);
    const two = autoSplit(ids, [0.8, 0.2], 42);
    expect(idsIn(two, 'train')).toHaveLength(80);
    expect(idsIn(two, 'val')).toHaveLength(20);
    const three = autoSplit(ids, [0.71, 0.29, 0], 3);
    expect([idsIn(three, 'train').length, idsIn(three, 'val').length, idsIn(three, 'test').length]).toEqual([71, 29, 0]);
    const tested = autoSplit(ids, [0.7, 0.2, 0.1], 3);
    expect([idsIn(tested, 'train').length, idsIn(tested, 'val').length, idsIn(tested, 'test').length]).toEqual([70, 20, 10]);
  });
});

describe('resolveSplits: the three levels', () => {
  const config: DatasetSplitConfig = { method: 'manual', splits: { '1': 'val', '2': 'val', '3': 'train' } };

  it('level 1: the job\'s auto strategy wins over the dataset\'s split', () => {
    const result = resolveSplits(dataset(imagesWithIds(range(20)), config), { method: 'auto', ratio: [0.5, 0.5], seed: 9 });
    expect(result.decidedBy).toBe('job');
    expect(result.counts).toEqual({ train: 10, val: 10, test: 0 });
    expect(result.description).toBe('SPLIT_STRATEGY (job): auto, ratio 0.5/0.5, seed 9');
    expect(result.assignment).toEqual(autoSplit(range(20).map(String), [0.5, 0.5], 9));
  });

  it('level 1: custom splits, with ids given as strings matching numeric image ids', () => {
    const result = resolveSplits(dataset(imagesWithIds(range(5))), { method: 'custom', custom_splits: { '2': 'val', '4': 'test', '99': 'val' } });
    expect(result.decidedBy).toBe('job');
    expect(Object.fromEntries(result.assignment)).toEqual({ '1': 'train', '2': 'val', '3': 'train', '4': 'test', '5': 'train' });
    expect(result.description).toMatch(/custom, 3 ids listed; 3 images not listed went to train; 1 listed ids are not in the dataset \(e\.g\. \["99"\]\)/);
    // A SplitResult reads like the assignment itself.
    expect(result.get('2')).toBe('val');
  });

  it('level 2: use_dataset reads split_config (manual); unlisted images go to train', () => {
    const result = resolveSplits(dataset(imagesWithIds(range(5)), config), { method: 'use_dataset' });
    expect(result.decidedBy).toBe('dataset');
    expect(Object.fromEntries(result.assignment)).toEqual({ '1': 'val', '2': 'val', '3': 'train', '4': 'train', '5': 'train' });
    expect(result.description).toBe('dataset split_config: manual; 2 images without a split went to train');
  });

  it('level 2 without a job strategy; split_config auto uses its ratio and seed', () => {
    const result = resolveSplits(dataset(imagesWithIds(range(10)), { method: 'auto', default_ratio: [0.6, 0.4], seed: 5 }));
    expect(result.decidedBy).toBe('dataset');
    expect(result.counts).toEqual({ train: 6, val: 4, test: 0 });
    expect(result.assignment).toEqual(autoSplit(range(10).map(String), [0.6, 0.4], 5));
  });

  it('level 2: partial keeps the listed images and the images\' own fields, and auto-splits the rest', () => {
    const images = imagesWithIds(range(12), (i) => (i === 11 ? 'test' : undefined));
    const result = resolveSplits(dataset(images, { method: 'partial', default_ratio: [0.5, 0.5], seed: 1, splits: { '1': 'val' } }));
    expect(result.assignment.get('1')).toBe('val');
    expect(result.assignment.get('12')).toBe('test');
    const rest = range(10, 2).map(String);
    const auto = autoSplit(rest, [0.5, 0.5], 1);
    for (const id of rest) expect(result.assignment.get(id)).toBe(auto.get(id));
    expect(result.description).toMatch(/partial; 10 images without a split were auto-split 0\.5\/0\.5 with seed 1/);
  });

  it('level 2: the images\' own split fields, without split_config', () => {
    const result = resolveSplits(dataset(imagesWithIds(range(4), (i) => (i < 3 ? 'train' : 'val'))));
    expect(result.decidedBy).toBe('dataset');
    expect(Object.fromEntries(result.assignment)).toEqual({ '1': 'train', '2': 'train', '3': 'train', '4': 'val' });
    expect(result.description).toBe("dataset: the images' own split fields (4 of 4 images)");
  });

  it('level 3: auto 0.8/0.2 with seed 42, also when use_dataset finds no split', () => {
    const images = imagesWithIds(range(10));
    const none = resolveSplits(dataset(images));
    expect(none.decidedBy).toBe('default');
    expect(none.assignment).toEqual(autoSplit(range(10).map(String), [0.8, 0.2], 42));
    expect(none.description).toMatch(/^default: auto, ratio 0\.8\/0\.2, seed 42 \(no SPLIT_STRATEGY/);
    const asked = resolveSplits(dataset(images), { method: 'use_dataset' });
    expect(asked.decidedBy).toBe('default');
    expect(asked.description).toMatch(/SPLIT_STRATEGY asks for the dataset's split but the dataset defines none/);
  });
});

describe('resolveSplits: unusable splits', () => {
  it('an empty val split says how many images, which strategy, and what to change', () => {
    const run = () => resolveSplits(dataset(imagesWithIds(range(6))), { method: 'custom', custom_splits: { '1': 'train' } });
    expect(run).toThrow(DatasetError);
    expect(run).toThrow(/The val split is empty: 6 images split by SPLIT_STRATEGY \(job\): custom, 1 ids listed; 5 images not listed went to train gave train 6, val 0, test 0/);
    expect(run).toThrow(/To fix: list some image ids as "val" in SPLIT_STRATEGY's custom_splits/);
    expect(run).toThrow(expect.objectContaining({ exitCode: 3 }));
  });

  it('a dataset whose own splits put nothing in val', () => {
    expect(() => resolveSplits(dataset(imagesWithIds(range(3), () => 'train')))).toThrow(/val split is empty[\s\S]*assign some images to "val" in the dataset/);
  });

  it('one image cannot be split', () => {
    expect(() => resolveSplits(dataset(imagesWithIds([1])))).toThrow(/The train split is empty: 1 image split by default/);
  });
});

describe('SplitStrategySchema (SPLIT_STRATEGY)', () => {
  it('accepts the three methods and fills the default ratio', () => {
    expect(SplitStrategySchema.parse({ method: 'auto', ratio: [0.7, 0.2, 0.1], seed: 3 })).toEqual({ method: 'auto', ratio: [0.7, 0.2, 0.1], seed: 3 });
    expect(SplitStrategySchema.parse({ method: 'auto' })).toEqual({ method: 'auto', ratio: [0.8, 0.2] });
    expect(SplitStrategySchema.parse({ method: 'custom', custom_splits: { '1': 'val', abc: 'test' } })).toMatchObject({ method: 'custom' });
    expect(SplitStrategySchema.parse({ method: 'use_dataset' })).toEqual({ method: 'use_dataset' });
  });

  it.each([
    [{ method: 'auto', ratio: [0.8, 0.3] }, /add up to 1/],
    [{ method: 'auto', ratio: [1] }, /two parts/],
    [{ method: 'auto', ratio: [0.5, 0.2, 0.2, 0.1] }, /two parts/],
    [{ method: 'auto', ratio: [1, 0] }, /above 0/],
    [{ method: 'auto', ratio: [0.8, 0.2], seed: -1 }, /seed/],
    [{ method: 'auto', ratio: [0.8, 0.2], seed: 1.5 }, /seed/],
    [{ method: 'custom', custom_splits: { '1': 'holdout' } }, /custom_splits/],
    [{ method: 'random' }, /method/],
    [{ method: 'auto', ratios: [0.8, 0.2] }, /ratios/],
  ])('rejects %j', (input, message) => {
    const parsed = SplitStrategySchema.safeParse(input);
    expect(parsed.success).toBe(false);
    const text = parsed.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n');
    expect(text).toMatch(message);
  });
});
