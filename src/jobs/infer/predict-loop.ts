/**
 * The heart of an inference job: batches of images through the framework's session, each
 * image's result on its way to results.json, the sample's pictures uploaded and explained in the
 * background, progress reported every PROGRESS_EVERY images.
 */
import { mkdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { BatchOutcome, InferenceSession } from '../../frameworks/adapter.js';
import type { BatchItem, ImageOutcome, XaiProgress } from '../../frameworks/protocol.js';
import type { InferConfig } from '../../config/schema.js';
import type { Dataset } from '../../datasets/model.js';
import type { StopController } from '../stop.js';
import type { InferenceEvent } from '../../events.js';
import type { Logger } from '../../log.js';
import { type ArtifactUploads, artifactName, inSample, visualizationsPrefix, xaiPrefix } from './artifacts.js';
import { groundTruthOf, type ClassMapping, type ImageGroundTruth } from './ground-truth.js';
import type { ImageSource, JobImage } from './inputs.js';
import type { Explainer } from './llm.js';
import { type Explanation, type ImageResult, NO_HEATMAP_METHOD, type PrecisionCheck, type XaiOutcome, type XaiResult } from './results.js';
import type { ResultsWriter } from './results-writer.js';

/** A progress callback goes out every this many images, and at the end. */
export const PROGRESS_EVERY = 10;

/** What a progress event says (the figures of the backend's progress callback). */
export type InferenceProgress = Omit<Extract<InferenceEvent, { type: 'progress' }>, 'type'>;

export interface LoopParts {
  config: InferConfig;
  session: InferenceSession;
  writer: ResultsWriter;
  uploads: ArtifactUploads;
  explainer: Explainer | undefined;
  /** Test runs: the dataset and its classes in the model's terms. */
  truth?: { dataset: Dataset; mapping: ClassMapping } | undefined;
  /** Where the sample's PNGs are written before upload. */
  scratchDir: string;
  stop: StopController;
  logger: Logger;
  onProgress?: ((progress: InferenceProgress) => void) | undefined;
}

/** What the loop measured; `stored` counts the pictures that reached storage. */
export class LoopStats {
  processed = 0;
  predicted = 0;
  inferenceSeconds = 0;
  loopSeconds = 0;
  /** Sums over the batches of Python's stage timings (null once a batch came without them) and CPU time. */
  preprocessSeconds: number | null = 0;
  forwardSeconds: number | null = 0;
  pythonCpuSeconds = 0;
  /** This process's CPU time (user + system) over the loop. */
  nodeCpuSeconds = 0;
  /** INFERENCE_PRECISION=bf16: the first batch compared with float32 (results.json model.inference_backend.precision_check). */
  precisionCheck: PrecisionCheck | null = null;
  stored = { visualizations: 0, heatmaps: 0 };

  get avgInferenceTimeMs(): number | null {
    return this.predicted > 0 ? (this.inferenceSeconds * 1000) / this.predicted : null;
  }
}

export async function predictAll(source: ImageSource, parts: LoopParts, stats: LoopStats): Promise<void> {
  const { config, session, stop, logger } = parts;
  const total = source.total;
  const visDir = join(parts.scratchDir, 'visualizations');
  const xaiDir = join(parts.scratchDir, 'xai');
  await mkdir(visDir, { recursive: true });
  if (config.taskType === 'semantic_segmentation') await mkdir(join(visDir, MASKS), { recursive: true });
  await mkdir(xaiDir, { recursive: true });
  const started = Date.now();
  const cpuStarted = process.cpuUsage();
  let loggedDecile = 0;
  const onExplained = explanationProgress(parts, total, () => stats);

  const submit = (batch: JobImage[], after: JobImage[] | undefined): Submitted => {
    const planned = batch.filter((image) => !image.error && image.path).map((image) => plan(image, total, parts, visDir, xaiDir));
    const prefetch = after?.filter((image) => !image.error && image.path).map((image) => image.path!);
    const call: Promise<BatchOutcome> =
      planned.length > 0
        ? session.predictBatch(
            planned.map((p) => p.item),
            prefetch,
            onExplained,
          )
        : Promise.resolve({ images: [], inferenceSeconds: 0 });
    call.catch(() => {}); // awaited in turn; must not be an unhandled rejection meanwhile
    return { planned, call };
  };
  let inFlight: Submitted | undefined;
  try {
    for await (const window of withAhead(source.batches(config.batchSize), 2)) {
      const [batch, next, afterNext] = window as [JobImage[], JobImage[]?, JobImage[]?];
      stop.throwIfRequested();
      const current = inFlight ?? submit(batch, next);
      // The next batch goes to Python before this one's answer is handled here: Python predicts
      // it while Node checks, writes and reports this one, so Python never waits for Node.
      inFlight = next && !stop.requested ? submit(next, afterNext) : undefined;
      const { planned } = current;
      const outcome = await current.call;
      const predictedHere = outcome.images.filter((o) => !('error' in o)).length;
      stats.inferenceSeconds += outcome.inferenceSeconds;
      addStages(stats, outcome);
      if (outcome.precisionCheck && !stats.precisionCheck) {
        stats.precisionCheck = outcome.precisionCheck;
        logger.info(describePrecisionCheck(outcome.precisionCheck));
      }
      stats.predicted += predictedHere;
      const perImageMs = predictedHere > 0 ? (outcome.inferenceSeconds * 1000) / predictedHere : null;

      const byIndex = new Map(planned.map((p, i) => [p.image.index, { ...p, outcome: outcome.images[i]! }]));
      for (const image of batch) {
        const done = byIndex.get(image.index);
        const problem = image.error ?? (done && 'error' in done.outcome ? done.outcome.error : undefined);
        if (problem !== undefined) logger.warn(`Image ${image.index} (${image.source}) skipped: ${problem}`);
        parts.writer.add(imageResult(parts, stats, image, done, perImageMs));
      }
      for (const image of batch) if (image.temporary && image.path) await rm(image.path, { force: true });

      const before = stats.processed;
      stats.processed += batch.length;
      if (Math.floor(stats.processed / PROGRESS_EVERY) > Math.floor(before / PROGRESS_EVERY) || stats.processed === total) {
        const percent = total > 0 ? Math.min(100, (stats.processed / total) * 100) : 100;
        parts.onProgress?.({ processed: stats.processed, total, percent, avgInferenceTimeMs: stats.avgInferenceTimeMs });
        const ms = stats.avgInferenceTimeMs;
        logger.progress('Inference', stats.processed, total, ms === null ? '' : `${ms.toFixed(1)} ms/image`);
        if (Math.floor(percent / 10) > loggedDecile) {
          loggedDecile = Math.floor(percent / 10);
          logger.info(`Progress: ${stats.processed}/${total} images${ms === null ? '' : `, ${ms.toFixed(1)} ms per image`}`);
        }
      }
    }
  } finally {
    // Left early (a stop, a failure): the batch already handed over finishes before the session closes.
    if (inFlight) await inFlight.call.catch(() => {});
  }
  stats.loopSeconds = (Date.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuStarted);
  stats.nodeCpuSeconds = (cpu.user + cpu.system) / 1e6;
}

export function describePrecisionCheck(check: PrecisionCheck): string {
  if (check.error !== undefined)
    return `INFERENCE_PRECISION=bf16: the comparison with float32 on the first batch failed (${check.error}); the predictions stand`;
  const agreement = check.agreement === null ? 'n/a' : `${(check.agreement * 100).toFixed(1)}%`;
  const difference = check.max_score_difference === null ? 'none compared' : check.max_score_difference.toFixed(4);
  return `INFERENCE_PRECISION=bf16 against ${check.against} on the first ${check.images} image(s): ${check.compared} agree for ${agreement}, largest confidence difference ${difference}`;
}

function addStages(stats: LoopStats, outcome: BatchOutcome): void {
  const stages = outcome.stages;
  if (outcome.images.length === 0) return; // nothing was asked of Python
  const add = (sum: number | null, value: number | null | undefined) => (sum === null || value === null || value === undefined ? null : sum + value);
  stats.preprocessSeconds = add(stats.preprocessSeconds, stages?.preprocessSeconds);
  stats.forwardSeconds = add(stats.forwardSeconds, stages?.forwardSeconds);
  stats.pythonCpuSeconds += stages?.cpuSeconds ?? 0;
}

/** While heatmaps are made, a progress line and event at most this often (and for the first and the last). */
export const EXPLAIN_PROGRESS_MS = 5_000;

/**
 * Progress inside a batch while its sample's heatmaps are made: Python tells after each image.
 * A log line and a progress event (the backend's progress callback, with `explained_images`)
 * for the first and the last heatmap and at most every EXPLAIN_PROGRESS_MS between.
 */
function explanationProgress(parts: LoopParts, total: number, stats: () => LoopStats): ((p: XaiProgress) => void) | undefined {
  const { config, logger } = parts;
  if (!config.enableXai) return undefined;
  let of = 0;
  for (let i = 0; i < total; i++) if (inSample(i, total, config.maxVisualizations)) of++;
  if (of === 0) return undefined;
  let images = 0;
  let seconds = 0;
  let lastReport = 0;
  return (p) => {
    images++;
    seconds += p.seconds;
    const now = Date.now();
    if (images !== 1 && images < of && now - lastReport < EXPLAIN_PROGRESS_MS) return;
    lastReport = now;
    logger.info(`XAI ${p.method}: ${images}/${of} images explained (${(seconds / images).toFixed(1)} s per image)`);
    const s = stats();
    const percent = total > 0 ? Math.min(100, (s.processed / total) * 100) : 100;
    parts.onProgress?.({
      processed: s.processed,
      total,
      percent,
      avgInferenceTimeMs: s.avgInferenceTimeMs,
      explained: { method: p.method, images, of, lastSeconds: p.seconds },
    });
  };
}

/** Semantic segmentation: the predicted class maps (indexed PNGs) go to `visualizations/masks/`. */
const MASKS = 'masks';

/**
 * Each item with up to `ahead` items after it (fewer at the end): `[current, next, ...]`. The
 * items ahead are ready by the time the current one is handed over (their downloads and header
 * checks ran during earlier predictions).
 */
export async function* withAhead<T>(items: AsyncIterable<T>, ahead: number): AsyncGenerator<T[]> {
  const iterator = items[Symbol.asyncIterator]();
  try {
    const window: T[] = [];
    let done = false;
    const fill = async () => {
      while (!done && window.length < ahead + 1) {
        const next = await iterator.next();
        if (next.done) done = true;
        else window.push(next.value);
      }
    };
    await fill();
    while (window.length > 0) {
      yield [...window];
      window.shift();
      await fill();
    }
  } finally {
    // A loop left early (a stop, a failure) ends the source too: its downloads stop.
    await iterator.return?.(undefined);
  }
}

/** A batch handed to Python: what was asked for each image, and the answer to come. */
interface Submitted {
  planned: Planned[];
  call: Promise<BatchOutcome>;
}

interface Planned {
  image: JobImage;
  item: BatchItem;
  truth: ImageGroundTruth | null;
  sampled: boolean;
}

/** What Python is asked for one image: its ground truth, and pictures when it is in the sample. */
function plan(image: JobImage, total: number, parts: LoopParts, visDir: string, xaiDir: string): Planned {
  const { config } = parts;
  const sampled = inSample(image.index, total, config.maxVisualizations);
  const name = artifactName(image.index, image.fileName);
  const truth = parts.truth && image.datasetImage ? groundTruthOf(image.datasetImage, parts.truth.dataset, parts.truth.mapping) : null;
  return {
    image,
    truth,
    sampled,
    item: {
      path: image.path!,
      key: String(image.index),
      ground_truth: truth?.input ?? null,
      visualization_path: sampled && config.saveVisualizations ? join(visDir, name) : null,
      xai_path: sampled && config.enableXai ? join(xaiDir, name) : null,
      // Every image's class map, not only the sample's: it is the prediction itself.
      ...(config.taskType === 'semantic_segmentation' ? { mask_path: join(visDir, MASKS, name) } : {}),
    },
  };
}

/** One image's entry in results.json, once its pictures are stored and its explanation is back. */
async function imageResult(
  parts: LoopParts,
  stats: LoopStats,
  image: JobImage,
  done: (Planned & { outcome: ImageOutcome }) | undefined,
  perImageMs: number | null,
): Promise<ImageResult> {
  const base = { image_path: image.source, index: image.index, image_id: image.imageId, file_name: image.fileName, ground_truth: done?.truth?.record ?? null };
  if (!done || 'error' in done.outcome) {
    const error = image.error ?? (done && 'error' in done.outcome ? done.outcome.error : 'not processed');
    return { ...base, width: null, height: null, error, predictions: null, metrics: null, inference_time_ms: null, visualization_path: null, xai: null };
  }
  const { outcome, item } = done;
  const { config, uploads, explainer } = parts;
  const upload = (localPath: string | null | undefined, prefix: string) =>
    localPath ? uploads.add(localPath, `${prefix}${basename(localPath)}`) : Promise.resolve(null);
  const visualization = upload(item.visualization_path, visualizationsPrefix(config.inferenceType, config.jobId));
  const heatmap = upload(outcome.xai?.error === null ? item.xai_path : null, xaiPrefix(config.inferenceType, config.jobId));
  const mask = upload(item.mask_path, `${visualizationsPrefix(config.inferenceType, config.jobId)}${MASKS}/`);
  const groundTruth = outcome.ground_truth ?? base.ground_truth;
  const explanation: Promise<Explanation | null> =
    explainer && done.sampled
      ? explainer.explain({
          taskType: config.taskType,
          fileName: image.fileName,
          width: outcome.width,
          height: outcome.height,
          predictions: outcome.predictions,
          groundTruth,
          metrics: outcome.metrics,
          xai: outcome.xai,
        })
      : Promise.resolve(null);
  const [visualizationUri, heatmapUri, explained, maskUri] = await Promise.all([visualization, heatmap, explanation, mask]);
  if (visualizationUri) stats.stored.visualizations++;
  if (heatmapUri) stats.stored.heatmaps++;
  return {
    ...base,
    ground_truth: groundTruth,
    width: outcome.width,
    height: outcome.height,
    error: null,
    predictions: maskUri && 'classes' in outcome.predictions ? { ...outcome.predictions, mask_path: maskUri } : outcome.predictions,
    metrics: outcome.metrics,
    inference_time_ms: perImageMs,
    visualization_path: visualizationUri,
    xai: xaiOf(outcome.xai, heatmapUri, explained),
  };
}

/**
 * The design's `xai` member: the heatmap's method, statistics and stored overlay, with the
 * LLM's explanation inside. An image explained without a heatmap (ENABLE_LLM_EXPLANATION alone)
 * gets `method: "none"` and no statistics.
 */
function xaiOf(outcome: XaiOutcome | null, heatmapUri: string | null, explanation: Explanation | null): XaiResult | null {
  if (outcome) return { ...outcome, heatmap_path: heatmapUri, explanation };
  if (!explanation) return null;
  return { method: NO_HEATMAP_METHOD, target_layers: [], target: null, error: null, heatmap_path: null, explanation };
}
