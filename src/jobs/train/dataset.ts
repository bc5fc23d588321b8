/**
 * The training dataset: downloaded, validated and written in the layout the framework reads.
 *
 * The layout (label files, image links, lists) needs only the annotations, and writing it is
 * tens of thousands of small files: seconds of disk work on a large dataset. So for a dataset
 * stored as files, or as a zip without SNAPSHOT_ID, it is written from the annotations while the images still download
 * (`onAnnotations`), in a worker thread so that its synchronous file calls do not hold up the
 * download (./layout.ts). Nothing is trusted on that account: once every file is there the dataset is
 * loaded and every image verified exactly as before, and the early layout is kept only when it
 * came from the very same annotations text, with no image whose name in the layout depends on
 * its file's header. Otherwise (a zip with SNAPSHOT_ID, DATASET_PATH, a failed early attempt) the layout is
 * written after the download, as it always was.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadDataset, readAnnotationsFile } from '../../datasets/load.js';
import { resolveSplits } from '../../datasets/splits.js';
import type { FrameworkAdapter, PreparedDataset } from '../../frameworks/index.js';
import { ANNOTATIONS_FILE } from '../../storage/dataset.js';
import type { StagedAnnotations } from '../../storage/types.js';
import type { RunEvent } from '../../events.js';
import { BesidePreflight } from '../beside-preflight.js';
import type { JobContext } from '../context.js';
import { fetchDataset } from '../stages.js';
import { type LayoutRun, startLayout } from './layout.js';

type Ctx = Pick<JobContext<'train', RunEvent>, 'config' | 'events' | 'logger' | 'storage' | 'stop' | 'work'>;

/** Called once the layout is written from the annotations, while the images still download. */
export type OnEarlyLayout = (layout: PreparedDataset) => void;

export async function prepareTrainingDataset(
  ctx: Ctx,
  adapter: FrameworkAdapter,
  signal?: AbortSignal,
  onEarlyLayout?: OnEarlyLayout,
): Promise<PreparedDataset> {
  const early = new EarlyLayout(ctx, adapter, ctx.work.sub('data'), onEarlyLayout);
  try {
    return await downloadAndPrepare(ctx, adapter, early, signal);
  } catch (err) {
    // Nothing may still be writing into the work folder when a failed job's close removes it.
    await early.stop();
    throw err;
  }
}

/**
 * The dataset's download and layout, begun while the preflight still imports torch and checks the
 * model (../beside-preflight.ts): abandoned when a check fails, a failure meanwhile reported when
 * its result is awaited.
 */
export function trainingDatasetBesidePreflight(ctx: Ctx, adapter: FrameworkAdapter, onEarlyLayout?: OnEarlyLayout): BesidePreflight<PreparedDataset> {
  return new BesidePreflight((signal) => prepareTrainingDataset(ctx, adapter, signal, onEarlyLayout));
}

async function downloadAndPrepare(ctx: Ctx, adapter: FrameworkAdapter, early: EarlyLayout, signal: AbortSignal | undefined): Promise<PreparedDataset> {
  const { config, events, logger } = ctx;
  void events.emit({ type: 'stage', stage: 'downloading_dataset', message: 'Downloading dataset' });
  logger.stage('Downloading Dataset');
  const d = await fetchDataset(config, ctx.storage, config.datasetId, ctx.work.sub('dataset'), { onAnnotations: (staged) => early.start(staged), signal });
  if (d.source === 'local') {
    void events.emit({ type: 'milestone', name: 'dataset_downloaded', message: `Using local dataset ${d.root}`, data: { source: 'local' } });
  } else {
    const data = { source: d.source, files: d.files, bytes: d.bytes, ...(d.snapshotKey ? { snapshot: d.snapshotKey } : {}) };
    void events.emit({ type: 'milestone', name: 'dataset_downloaded', message: 'Dataset downloaded successfully', data });
  }
  ctx.stop.throwIfRequested();

  void events.emit({ type: 'stage', stage: 'preparing_dataset', message: 'Validating and converting dataset' });
  logger.stage('Preparing Dataset');
  const text = await readAnnotationsFile(join(d.root, ANNOTATIONS_FILE));
  const dataset = await loadDataset(d.root, { taskType: config.taskType, annotationsText: text });
  const splits = resolveSplits(dataset, config.splitStrategy);
  const prepared = (await early.result(text, d.root)) ?? (await adapter.training.prepareDataset(dataset, splits, early.dataDir));
  void events.emit({
    type: 'milestone',
    name: 'dataset_prepared',
    message: `Dataset ready: ${dataset.images.length} images, ${dataset.classes.length} classes (${splits.description})`,
    data: { images: dataset.images.length, classes: prepared.classNames, splits: prepared.counts, split_source: splits.description },
  });
  ctx.stop.throwIfRequested();
  return prepared;
}

interface EarlyResult {
  text: string;
  root: string;
  prepared: PreparedDataset;
}

/** The layout written from the staged annotations while the images download; undefined when it was not (or could not be). */
class EarlyLayout {
  private started: Promise<EarlyResult | undefined> | undefined;
  private run: LayoutRun | undefined;

  constructor(
    private readonly ctx: Ctx,
    private readonly adapter: FrameworkAdapter,
    readonly dataDir: string,
    private readonly onWritten?: OnEarlyLayout,
  ) {}

  /** The download's onAnnotations: resolves once the staged file is read (the download may then move it). */
  start(staged: StagedAnnotations): Promise<void> | undefined {
    // A retried download calls again: the first attempt's layout stands or falls by the text check at the end.
    if (this.started) return undefined;
    const read = readFile(staged.path, 'utf8');
    this.started = read
      .then((text) => this.write(text, staged.root))
      .catch((err: unknown) => {
        this.ctx.logger.debug('the dataset layout could not be written before the images arrived; it is written after the download', { error: String(err) });
        return undefined;
      });
    return read.then(() => undefined);
  }

  private async write(text: string, root: string): Promise<EarlyResult | undefined> {
    const { config, logger } = this.ctx;
    const started = performance.now();
    this.run = startLayout(
      { framework: this.adapter.framework, taskType: config.taskType, splitStrategy: config.splitStrategy, text, root, dataDir: this.dataDir },
      this.adapter,
    );
    const where = this.run.thread === 'worker' ? 'in a worker thread' : "on the download's thread";
    logger.info(`Writing the dataset layout from the annotations while the images download (${where})`);
    const reply = await this.run.reply;
    if (!reply.written) return undefined;
    logger.info(`Dataset layout written from the annotations while the images download (${((performance.now() - started) / 1000).toFixed(1)} s, ${where})`, {
      images: reply.images,
    });
    this.onWritten?.(reply.prepared);
    return { text, root, prepared: reply.prepared };
  }

  /** Stops a layout still being written (the job failed): nothing may write into the work folder once it is closed. */
  async stop(): Promise<void> {
    await this.run?.stop();
    await this.started;
  }

  /** The early layout, when it was written from exactly these annotations for this root. */
  async result(text: string, root: string): Promise<PreparedDataset | undefined> {
    const done = await this.started;
    return done && done.text === text && done.root === root ? done.prepared : undefined;
  }
}
