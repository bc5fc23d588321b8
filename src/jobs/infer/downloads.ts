/**
 * An inference job's inputs, fetched while the preflight imports torch: the checkpoint (with the
 * prompt detector and the exported model where named) and the images, side by side.
 *
 * The session can open before the last image arrives: what it is opened with (ImagePlan: the
 * number of images, a test run's classes) comes from the dataset's annotations as soon as they
 * are on disk, so loading the model and exporting its graph overlap the images' download. The
 * images are still verified in full when they are all there, and the job checks that they give
 * the same plan (inputs.ts: `samePlan`).
 *
 * Order of failures: a model that cannot be fetched is reported before anything the images do,
 * as when the two came one after the other. `stop` aborts every download and resolves once none
 * writes any more: nothing may write into the work folder once a failed job closes it.
 */
import type { InferConfig } from '../../config/schema.js';
import type { GraphModel } from '../../frameworks/protocol.js';
import type { Logger } from '../../log.js';
import type { Storage } from '../../storage/types.js';
import { type LocalFile, fetchCheckpoint } from '../stages.js';
import { fetchGraphModel } from './graph-model.js';
import { type ImagePlan, type JobImages, imagePlan, imagesForJob } from './inputs.js';

export interface ModelFiles {
  checkpoint: LocalFile;
  prompt: LocalFile | undefined;
  graphModel: GraphModel | undefined;
}

interface Ctx {
  config: InferConfig;
  storage: Storage;
  logger: Logger;
  work: { sub(name: string): string };
}

export class InferenceDownloads {
  private readonly abort = new AbortController();
  private model: Promise<ModelFiles> | undefined;
  private images: Promise<JobImages> | undefined;
  private readonly early: Promise<ImagePlan>;
  private tellPlan: (plan: ImagePlan) => void = () => {};

  constructor(private readonly ctx: Ctx) {
    this.early = new Promise((resolve) => {
      this.tellPlan = resolve;
    });
  }

  /** Starts both downloads (once); after `stop` it starts nothing. */
  start(): void {
    if (this.model || this.abort.signal.aborted) return;
    const { config, storage, logger, work } = this.ctx;
    const signal = this.abort.signal;
    logger.stage(config.inferenceType === 'test_run' ? 'Loading Test Dataset' : 'Preparing Images');
    this.images = imagesForJob(config, storage, work, logger, { signal, onPlan: (plan) => this.tellPlan(plan) });
    this.model = fetchModel(this.ctx, signal);
    // Each is awaited by `ready` or `allImages`, or settled by `stop`; neither may go unhandled meanwhile.
    this.images.catch(() => {});
    this.model.catch(() => {});
  }

  /**
   * The model's files and the plan to open the session with: from the annotations while the images
   * still download where they give one, else from the downloaded images. The model's failure first.
   */
  async ready(): Promise<{ model: ModelFiles; plan: ImagePlan; early: boolean }> {
    this.start();
    const model = await (this.model as Promise<ModelFiles>);
    const images = this.images as Promise<JobImages>;
    const done = images.then((i) => ({ plan: imagePlan(i), early: false }));
    return { model, ...(await Promise.race([done, this.early.then((plan) => ({ plan, early: true }))])) };
  }

  /** Every image, downloaded and verified. */
  allImages(): Promise<JobImages> {
    this.start();
    return this.images as Promise<JobImages>;
  }

  async stop(reason: string): Promise<void> {
    this.abort.abort(new Error(reason));
    await Promise.allSettled([this.model, this.images]);
  }
}

async function fetchModel(ctx: Ctx, signal: AbortSignal): Promise<ModelFiles> {
  const { config, storage, logger, work } = ctx;
  logger.stage('Downloading Checkpoint');
  const checkpoint = await fetchCheckpoint(storage, { variable: 'CHECKPOINT_PATH', uri: config.checkpointPath, mode: 'infer' }, work.sub('checkpoint'), signal);
  logger.info(`Checkpoint downloaded: ${config.checkpointPath} (${(checkpoint.bytes / 1024 / 1024).toFixed(1)} MB)`);
  const prompt = config.promptCheckpointPath
    ? await fetchCheckpoint(
        storage,
        { variable: 'PROMPT_CHECKPOINT_PATH', uri: config.promptCheckpointPath, mode: 'infer' },
        work.sub('prompt-checkpoint'),
        signal,
      )
    : undefined;
  if (prompt) logger.info(`Prompt detector downloaded: ${config.promptCheckpointPath} (${(prompt.bytes / 1024 / 1024).toFixed(1)} MB)`);
  const graphModel = config.inferenceModelPath ? await fetchGraphModel(config, storage, work.sub('exported-model'), signal) : undefined;
  if (graphModel)
    logger.info(`Exported model downloaded: ${graphModel.uri} (its metadata.json: ${graphModel.framework}, ${graphModel.class_names.length} classes)`);
  return { checkpoint, prompt, graphModel };
}
