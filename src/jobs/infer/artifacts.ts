/**
 * Where a job's outputs go (docs/contract.md, "Storage layout"):
 *
 *   {test_runs|inference_jobs}/{JOB_ID}/results.json
 *   {test_runs|inference_jobs}/{JOB_ID}/visualizations/{index}-{name}.png
 *   {test_runs|inference_jobs}/{JOB_ID}/xai/{index}-{name}.png
 *
 * and how images are picked for drawing and explaining when there are more than
 * MAX_VISUALIZATIONS, and how the PNGs are uploaded without holding up prediction.
 */
import { rm } from 'node:fs/promises';
import type { InferConfig } from '../../config/schema.js';
import type { Logger } from '../../log.js';
import type { Storage } from '../../storage/types.js';
import { Limiter } from './limiter.js';

export type InferenceType = InferConfig['inferenceType'];

/** PNG uploads in flight at once. */
export const UPLOAD_CONCURRENCY = 4;

export function jobPrefix(inferenceType: InferenceType, jobId: string): string {
  return `${inferenceType === 'test_run' ? 'test_runs' : 'inference_jobs'}/${jobId}`;
}

export const resultsKey = (type: InferenceType, jobId: string) => `${jobPrefix(type, jobId)}/results.json`;
export const visualizationsPrefix = (type: InferenceType, jobId: string) => `${jobPrefix(type, jobId)}/visualizations/`;
export const xaiPrefix = (type: InferenceType, jobId: string) => `${jobPrefix(type, jobId)}/xai/`;

/** `{index}-{stem}.png`: sorted like the job's image list, readable, and safe as a key. */
export function artifactName(index: number, fileName: string): string {
  const stem = (fileName.split('/').at(-1) ?? '').replace(/\.[^.]*$/, '');
  const safe = stem
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/^[._]+/, '')
    .slice(0, 80);
  return `${String(index).padStart(6, '0')}${safe ? `-${safe}` : ''}.png`;
}

/**
 * Whether image `index` of `total` is in the sample of at most `max`: all of them when they fit,
 * else `max` indices spread evenly over the list (the same on every run).
 */
export function inSample(index: number, total: number, max: number): boolean {
  if (max <= 0 || index >= total) return false;
  if (total <= max) return true;
  // Sample i is image floor(i * total / max); is `index` one of them?
  const i = Math.ceil((index * max) / total);
  return i < max && Math.floor((i * total) / max) === index;
}

/**
 * Background uploads with bounded concurrency. Each local PNG is removed after its upload; the
 * promise from `add` resolves to the object's URI, or null when the upload failed (a lost
 * picture is logged, it does not fail the job).
 */
export class ArtifactUploads {
  private readonly limiter: Limiter;
  private readonly all = new Set<Promise<unknown>>();
  failed = 0;
  uploaded = 0;

  constructor(
    private readonly storage: Storage,
    private readonly logger: Logger,
    concurrency = UPLOAD_CONCURRENCY,
  ) {
    this.limiter = new Limiter(concurrency);
  }

  add(localPath: string, key: string): Promise<string | null> {
    const task = this.limiter.run(async () => {
      try {
        const uri = await this.storage.uploadFile(localPath, key, { contentType: 'image/png' });
        this.uploaded++;
        return uri;
      } catch (err) {
        this.failed++;
        this.logger.warn(`could not upload ${key}; the image's result says so and the job goes on: ${(err as Error).message}`);
        return null;
      } finally {
        await rm(localPath, { force: true });
      }
    });
    this.all.add(task);
    void task.finally(() => this.all.delete(task));
    return task;
  }

  async drain(): Promise<void> {
    while (this.all.size > 0) await Promise.all([...this.all]);
  }
}
