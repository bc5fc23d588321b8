import { describe, expect, it } from 'vitest';
import { DatasetError } from '../../src/errors.js';
import type { DatasetImage } from '../../src/datasets/model.js';
import { PythonRandom } from '../../src/datasets/python-random.js';
import { DatasetSplitConfigSchema, type DatasetSplitConfig, type SplitName } from '../../src/datasets/schema.js';
import { autoSplit, resolveSplits, SplitStrategySchema, type SplittableDataset } from '../../src/datasets/splits.js';

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
const idsIn = (assignment: ReadonlyMap<string, SplitName>, split: SplitName) =>
  [...assignment]
    .filter(([, s]) => s === split)
    .map(([id]) => id)
    .sort();

describe("the seeded shuffle (CPython's random, pinned here; the integration test compares thousands of cases with CPython)", () => {
  it('draws what CPython draws', () => {
    // random.Random(2**40 + 3): getrandbits(32) x3, random(), randrange(1000) x3 (= _randbelow).
    const random = new PythonRandom(2 ** 40 + 3);
    expect([random.getrandbits(32), random.getrandbits(32), random.getrandbits(32)]).toEqual([943978446, 261273136, 2359950418]);
    expect(random.random()).toBe(0.8337623036996417);
    expect([random.randbelow(1000), random.randbelow(1000), random.randbelow(1000)]).toEqual([579, 311, 924]);
  });

  it("gives the design's split of ten images with seed 42: val {1, 2}", () => {
    // random.seed(42); random.shuffle([1..10]) = [8, 4, 3, 9, 6, 7, 10, 5, 1, 2]; int(10 * 0.8) = 8.
    const assignment = autoSplit(range(10).map(String), [0.8, 0.2], 42);
    expect(idsIn(assignment, 'val')).toEqual(['1', '2']);
    expect(idsIn(assignment, 'train')).toHaveLength(8);
  });

  it('shuffles the images in file order, not sorted: another order is another split, as in Python', () => {
    // random.seed(42); random.shuffle([10, 9, ..., 1]) = [3, 7, 8, 2, 5, 4, 1, 6, 10, 9].
    const reversed = range(10).reverse().map(String);
    expect(idsIn(autoSplit(reversed, [0.8, 0.2], 42), 'val')).toEqual(['10', '9'].sort());
    expect(idsIn(resolveSplits(dataset(imagesWithIds(range(10).reverse()))).assignment, 'val')).toEqual(['10', '9'].sort());
    // Run twice: same result.
    const ids = range(500).map((i) => `img-${i}`);
    expect([...resolveSplits(dataset(imagesWithIds(ids))).assignment]).toEqual([...resolveSplits(dataset(imagesWithIds(ids))).assignment]);
  });

  it('splits a negative seed as its absolute value (CPython seeds with abs())', () => {
    expect(autoSplit(range(10).map(String), [0.8, 0.2], -42)).toEqual(autoSplit(range(10).map(String), [0.8, 0.2], 42));
    expect(idsIn(autoSplit(range(200).map(String), [0.8, 0.2], 2 ** 32 + 42), 'val')).not.toEqual(
      idsIn(autoSplit(range(200).map(String), [0.8, 0.2], 42), 'val'),
    );
  });

  it('depends on the seed', () => {
    const ids = range(200).map(String);
    expect(idsIn(autoSplit(ids, [0.8, 0.2], 1), 'val')).not.toEqual(idsIn(autoSplit(ids, [0.8, 0.2], 2), 'val'));
  });

  it("cuts at int(len * ratio[0]) with Python's double product; a third part takes int(len * ratio[1]) for val, the rest test", () => {
    const ids = range(100).map(String);
    const two = autoSplit(ids, [0.8, 0.2], 42);
    expect(idsIn(two, 'train')).toHaveLength(80);
    expect(idsIn(two, 'val')).toHaveLength(20);
    // 100 * 0.57 = 56.99999999999999 in IEEE doubles: Python's int() gives 56, so does the runtime.
    const truncated = autoSplit(ids, [0.57, 0.43], 7);
    expect([idsIn(truncated, 'train').length, idsIn(truncated, 'val').length]).toEqual([56, 44]);
    const tested = autoSplit(ids, [0.7, 0.2, 0.1], 3);
    expect([idsIn(tested, 'train').length, idsIn(tested, 'val').length, idsIn(tested, 'test').length]).toEqual([70, 20, 10]);
    // 100 * 0.29 = 28.999999999999996: val gets 28, the leftover image goes to test.
    const leftover = autoSplit(ids, [0.6, 0.29, 0.11], 3);
    expect([idsIn(leftover, 'train').length, idsIn(leftover, 'val').length, idsIn(leftover, 'test').length]).toEqual([60, 28, 12]);
    // A test part of 0 means no test set: the two-part split, leftovers to val.
    const noTest = autoSplit(ids, [0.71, 0.29, 0], 3);
    expect([idsIn(noTest, 'train').length, idsIn(noTest, 'val').length, idsIn(noTest, 'test').length]).toEqual([71, 29, 0]);
    expect(noTest).toEqual(autoSplit(ids, [0.71, 0.29], 3));
    // The same images train whatever the number of parts: only the cut points differ.
    expect(idsIn(tested, 'train')).toEqual(idsIn(autoSplit(ids, [0.7, 0.3], 3), 'train'));
  });

  it('splits zero and one image without failing (resolveSplits then reports the empty split)', () => {
    expect(autoSplit([], [0.8, 0.2], 42).size).toBe(0);
    expect([...autoSplit(['a'], [0.8, 0.2], 42)]).toEqual([['a', 'val']]);
  });
});

describe('resolveSplits: the three levels', () => {
  const config: DatasetSplitConfig = { method: 'manual', splits: { '1': 'val', '2': 'val', '3': 'train' } };

  it("level 1: the job's auto strategy wins over the dataset's split", () => {
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

  it("level 2: partial keeps the listed images and the images' own fields, and auto-splits the rest", () => {
    const images = imagesWithIds(range(12), (i) => (i === 11 ? 'test' : undefined));
    const result = resolveSplits(dataset(images, { method: 'partial', default_ratio: [0.5, 0.5], seed: 1, splits: { '1': 'val' } }));
    expect(result.assignment.get('1')).toBe('val');
    expect(result.assignment.get('12')).toBe('test');
    const rest = range(10, 2).map(String);
    const auto = autoSplit(rest, [0.5, 0.5], 1);
    for (const id of rest) expect(result.assignment.get(id)).toBe(auto.get(id));
    expect(result.description).toMatch(/partial; 10 images without a split were auto-split 0\.5\/0\.5 with seed 1/);
  });

  it("level 2: the images' own split fields, without split_config", () => {
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
    expect(run).toThrow(
      /The val split is empty: 6 images split by SPLIT_STRATEGY \(job\): custom, 1 ids listed; 5 images not listed went to train gave train 6, val 0, test 0/,
    );
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

  it('takes any seed a JSON number holds exactly: 0, negative, up to 2^53 - 1', () => {
    for (const seed of [0, -1, -42, 2 ** 32, 2 ** 53 - 1, -(2 ** 53 - 1)]) {
      expect(SplitStrategySchema.parse(JSON.parse(`{"method":"auto","seed":${seed}}`))).toMatchObject({ seed });
      expect(DatasetSplitConfigSchema.parse({ method: 'auto', seed })).toMatchObject({ seed });
    }
    // A literal past 2^53 is rounded by JSON.parse already; the schema still refuses it.
    expect(SplitStrategySchema.safeParse(JSON.parse('{"method":"auto","seed":9007199254740993}')).success).toBe(false);
    expect(DatasetSplitConfigSchema.safeParse({ method: 'partial', seed: 2 ** 60 }).error?.issues[0]?.message).toMatch(/the seed must be an integer/);
  });

  it.each([
    [{ method: 'auto', ratio: [0.8, 0.3] }, /add up to 1/],
    [{ method: 'auto', ratio: [1] }, /two parts/],
    [{ method: 'auto', ratio: [0.5, 0.2, 0.2, 0.1] }, /two parts/],
    [{ method: 'auto', ratio: [1, 0] }, /above 0/],
    [{ method: 'auto', ratio: [0.8, 0.2], seed: 1.5 }, /seed: the seed must be an integer between -\(2\^53 - 1\) and 2\^53 - 1/],
    [{ method: 'auto', ratio: [0.8, 0.2], seed: 2 ** 53 }, /seed: the seed must be an integer .* larger JSON numbers are rounded/],
    [{ method: 'auto', ratio: [0.8, 0.2], seed: -(2 ** 53) }, /seed: the seed must be an integer/],
    [{ method: 'auto', ratio: [0.8, 0.2], seed: 1e300 }, /seed: the seed must be an integer/],
    [{ method: 'auto', ratio: [0.8, 0.2], seed: '42' }, /seed: the seed must be an integer/],
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
