/**
 * Which images train, which validate, which test: the design's three levels of split handling.
 *
 *   1. The job's SPLIT_STRATEGY, unless its method is `use_dataset`.
 *   2. The dataset's `split_config` (`manual`, `auto`, `partial`), or else the images' own
 *      `split` fields.
 *   3. Otherwise auto 0.8/0.2 with seed 42.
 *
 * Auto splits are the design's, bit for bit: CPython's `random.seed(seed)` then
 * `random.shuffle` on the images in annotation-file order, cut at
 * `n_train = int(len * ratio[0])` (see `autoSplit`). A platform's Python tools that apply
 * the design's split therefore agree with this runtime on every image.
 *
 * Images that a `custom` or `manual` split does not mention go to `train`: a partial list
 * most often names the held-out images, and leaving the rest unused would waste data
 * silently. The result's description says how many there were.
 */
import { z } from 'zod';
import { DatasetError } from '../errors.js';
import type { Dataset } from './model.js';
import { PythonRandom } from './python-random.js';
import { SplitNameSchema, SplitRatioSchema, SplitSeedSchema, type DatasetSplitConfig, type SplitName } from './schema.js';

export const DEFAULT_SPLIT_RATIO: readonly number[] = [0.8, 0.2];
export const DEFAULT_SPLIT_SEED = 42;

/** The job's SPLIT_STRATEGY (parsed from its JSON). */
export const SplitStrategySchema = z.discriminatedUnion('method', [
  z.strictObject({
    method: z.literal('auto'),
    ratio: SplitRatioSchema.default([...DEFAULT_SPLIT_RATIO]),
    seed: SplitSeedSchema.optional(),
  }),
  z.strictObject({
    method: z.literal('custom'),
    /** Image id (as a string) → split. */
    custom_splits: z.record(z.string(), SplitNameSchema),
  }),
  z.strictObject({ method: z.literal('use_dataset') }),
]);
export type SplitStrategy = z.infer<typeof SplitStrategySchema>;

/**
 * Image id → split, as converters read it: a Map or a SplitResult. Images it does not
 * mention are left out of the converted dataset.
 */
export interface SplitAssignment {
  get(imageId: string): SplitName | undefined;
}

/** Which of the three levels decided. */
export type SplitLevel = 'job' | 'dataset' | 'default';

export interface SplitResult extends SplitAssignment {
  /** Image id → split, for every image of the dataset. */
  assignment: Map<string, SplitName>;
  counts: Record<SplitName, number>;
  decidedBy: SplitLevel;
  /** One line for the log: which level and method decided, and anything worth knowing. */
  description: string;
}

/** The subset of the model a split needs. */
export type SplittableDataset = Pick<Dataset, 'images' | 'splitConfig'>;

export function resolveSplits(dataset: SplittableDataset, jobStrategy?: SplitStrategy): SplitResult {
  const { fix, ...decision } = decide(dataset, jobStrategy);
  const counts: Record<SplitName, number> = { train: 0, val: 0, test: 0 };
  for (const split of decision.assignment.values()) counts[split]++;
  const { assignment } = decision;
  const result: SplitResult = { ...decision, counts, get: (imageId) => assignment.get(imageId) };
  assertUsable(result, dataset.images.length, fix);
  return result;
}

/** A split before counting, with what the user can change when it leaves a split empty. */
type Decision = Omit<SplitResult, 'counts' | 'get'> & { fix: string };

function decide(dataset: SplittableDataset, job: SplitStrategy | undefined): Decision {
  const ids = dataset.images.map((image) => image.id);
  if (job?.method === 'auto') {
    const seed = job.seed ?? DEFAULT_SPLIT_SEED;
    return {
      assignment: autoSplit(ids, job.ratio, seed),
      decidedBy: 'job',
      description: `SPLIT_STRATEGY (job): auto, ratio ${formatRatio(job.ratio)}, seed ${seed}`,
      fix: "raise the val part of SPLIT_STRATEGY's ratio or add images",
    };
  }
  if (job?.method === 'custom') {
    const listed = new Map(Object.entries(job.custom_splits));
    const assignment = new Map<string, SplitName>();
    let unlisted = 0;
    for (const id of ids) {
      const split = listed.get(id);
      if (split === undefined) unlisted++;
      assignment.set(id, split ?? 'train');
    }
    const unknown = [...listed.keys()].filter((id) => !assignment.has(id));
    return {
      assignment,
      decidedBy: 'job',
      description: `SPLIT_STRATEGY (job): custom, ${listed.size} ids listed${unlisted ? `; ${unlisted} images not listed went to train` : ''}${unknown.length ? `; ${unknown.length} listed ids are not in the dataset (e.g. ${JSON.stringify(unknown.slice(0, 3))})` : ''}`,
      fix: 'list some image ids as "val" in SPLIT_STRATEGY\'s custom_splits (ids are the dataset\'s image ids, as strings)',
    };
  }

  const fromDataset = decideFromDataset(dataset, ids);
  if (fromDataset) return fromDataset;
  const note =
    job?.method === 'use_dataset'
      ? "SPLIT_STRATEGY asks for the dataset's split but the dataset defines none"
      : 'no SPLIT_STRATEGY and the dataset defines no split';
  return {
    assignment: autoSplit(ids, DEFAULT_SPLIT_RATIO, DEFAULT_SPLIT_SEED),
    decidedBy: 'default',
    description: `default: auto, ratio ${formatRatio(DEFAULT_SPLIT_RATIO)}, seed ${DEFAULT_SPLIT_SEED} (${note})`,
    fix: 'add images, or set SPLIT_STRATEGY',
  };
}

function decideFromDataset(dataset: SplittableDataset, ids: string[]): Decision | undefined {
  const config: DatasetSplitConfig | undefined = dataset.splitConfig;
  const withOwnSplit = dataset.images.filter((image) => image.split !== undefined).length;
  if (!config && withOwnSplit === 0) return undefined;
  const fix =
    'assign some images to "val" in the dataset (split_config.splits or the images\' split fields), or set SPLIT_STRATEGY={"method":"auto","ratio":[0.8,0.2]}';

  if (config?.method === 'auto') {
    const ratio = config.default_ratio ?? DEFAULT_SPLIT_RATIO;
    const seed = config.seed ?? DEFAULT_SPLIT_SEED;
    return {
      assignment: autoSplit(ids, ratio, seed),
      decidedBy: 'dataset',
      description: `dataset split_config: auto, ratio ${formatRatio(ratio)}, seed ${seed}`,
      fix: "raise the val part of the dataset's split_config.default_ratio, or set SPLIT_STRATEGY",
    };
  }

  // manual, partial, or no split_config but images carrying their own split.
  const listed = new Map(Object.entries(config?.splits ?? {}));
  const assignment = new Map<string, SplitName>();
  const rest: string[] = [];
  for (const image of dataset.images) {
    const split = listed.get(image.id) ?? image.split;
    if (split === undefined) rest.push(image.id);
    else assignment.set(image.id, split);
  }
  const source = config ? `dataset split_config: ${config.method}` : `dataset: the images' own split fields (${withOwnSplit} of ${ids.length} images)`;
  if (rest.length === 0) return { assignment, decidedBy: 'dataset', description: source, fix };
  if (config?.method === 'manual') {
    for (const id of rest) assignment.set(id, 'train');
    return { assignment, decidedBy: 'dataset', description: `${source}; ${rest.length} images without a split went to train`, fix };
  }
  const ratio = config?.default_ratio ?? DEFAULT_SPLIT_RATIO;
  const seed = config?.seed ?? DEFAULT_SPLIT_SEED;
  for (const [id, split] of autoSplit(rest, ratio, seed)) assignment.set(id, split);
  return {
    assignment,
    decidedBy: 'dataset',
    description: `${source}; ${rest.length} images without a split were auto-split ${formatRatio(ratio)} with seed ${seed}`,
    fix,
  };
}

function assertUsable(result: SplitResult, imageCount: number, fix: string): void {
  const empty = result.counts.val === 0 ? 'val' : result.counts.train === 0 ? 'train' : undefined;
  if (!empty) return;
  const { train, val, test } = result.counts;
  throw new DatasetError(
    `The ${empty} split is empty: ${imageCount} image${imageCount === 1 ? '' : 's'} split by ${result.description} gave train ${train}, val ${val}, test ${test}. Training needs images in both train and val. To fix: ${fix}.`,
  );
}

function formatRatio(ratio: readonly number[]): string {
  return ratio.join('/');
}

/**
 * Seeded auto split, as the design's `apply_split`: `random.seed(seed)`,
 * `random.shuffle(images)` on the ids in the order given (annotation-file order; no sorting),
 * then `n_train = int(len * ratio[0])` images train. With two parts the rest validate. With
 * three, `n_val = int(len * ratio[1])` validate and the rest test; a third part of 0 means no
 * test set, so it splits as the two-part ratio does (truncation leftovers go to val, not test).
 * `len * ratio` is the same IEEE double product in JS and Python, and truncation is `int()`'s.
 */
export function autoSplit(ids: readonly string[], ratio: readonly number[], seed: number): Map<string, SplitName> {
  const order = new PythonRandom(seed).shuffle([...ids]);
  const total = order.length;
  const nTrain = Math.min(total, Math.trunc(total * (ratio[0] ?? 0)));
  const withTest = ratio.length >= 3 && (ratio[2] ?? 0) > 0;
  // min(): parts may add up to 1 within the schema's tolerance, so never past the end.
  const nVal = withTest ? Math.min(total - nTrain, Math.trunc(total * (ratio[1] ?? 0))) : total - nTrain;
  const assignment = new Map<string, SplitName>();
  for (const [index, id] of order.entries()) assignment.set(id, index < nTrain ? 'train' : index < nTrain + nVal ? 'val' : 'test');
  return assignment;
}
