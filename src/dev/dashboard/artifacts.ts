/**
 * What the dashboard reads from the dev stack's own S3 server: which checkpoints a training job
 * left (and their sizes), a test run's or inference job's results.json (for its annotated
 * images and Grad-CAM overlays), and an export's metadata.json. Reads are triggered by the
 * callbacks that announce those objects, so the page shows storage as it is, not as claimed.
 *
 * Images are streamed to the browser from `/artifacts/{key}`, for keys that a results.json this
 * class parsed pointed at and nothing else: the page cannot be used to read arbitrary objects.
 */
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { InferenceResultsSchema, type ImageResult, type InferenceResults } from '../../jobs/infer/results.js';
import type { S3StorageConfig } from '../../storage/s3.js';
import type { Storage } from '../../storage/types.js';
import type { JobBoard } from './board.js';
import type { InferenceResultsView, LogEntry, ResultImageView } from './view.js';

/** Images listed per test run or inference job (they carry at most MAX_VISUALIZATIONS pictures anyway). */
export const MAX_IMAGES_SHOWN = 48;
export const ARTIFACTS_ROUTE = '/artifacts/';

const IMAGE_TYPES: Record<string, string> = { png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', webp: 'image/webp' };

export class DashboardArtifacts {
  private readonly client: S3Client;
  private readonly servable = new Set<string>();
  private readonly pendingLists = new Map<string, NodeJS.Timeout>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private closed = false;

  constructor(
    private readonly board: JobBoard,
    private readonly storage: Storage,
    config: S3StorageConfig,
    private readonly warn: (message: string) => void,
  ) {
    this.client = new S3Client({
      endpoint: config.endpoint,
      region: config.region ?? 'us-east-1',
      forcePathStyle: true,
      ...(config.accessKeyId && config.secretAccessKey ? { credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey } } : {}),
      maxAttempts: 2,
    });
    board.subscribe(({ log }) => {
      if (log?.outcome === 'accepted' && log.jobKey) this.onCallback(log);
    });
  }

  /** The dashboard URL of an object of this stack's bucket, registering it as servable. */
  urlOf(uri: string | null): string | null {
    if (!uri) return null;
    let key: string;
    try {
      key = this.storage.parseUri(uri);
    } catch {
      return null; // another bucket or scheme: not this stack's to serve
    }
    const extension = /\.([a-z0-9]+)$/i.exec(key)?.[1]?.toLowerCase() ?? '';
    if (!IMAGE_TYPES[extension]) return null;
    this.servable.add(key);
    return ARTIFACTS_ROUTE + key.split('/').map(encodeURIComponent).join('/');
  }

  /** Streams `/artifacts/{key}` when the key is one urlOf() handed out; answers 404 otherwise. */
  async serve(pathname: string, res: ServerResponse, headOnly: boolean): Promise<void> {
    let key: string;
    try {
      key = pathname.slice(ARTIFACTS_ROUTE.length).split('/').map(decodeURIComponent).join('/');
    } catch {
      key = '';
    }
    if (!this.servable.has(key)) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('not an artifact of a job this dashboard has seen\n');
      return;
    }
    const extension = /\.([a-z0-9]+)$/i.exec(key)![1]!.toLowerCase();
    try {
      const object = await this.client.send(new GetObjectCommand({ Bucket: this.storage.bucket, Key: key }));
      res.writeHead(200, {
        'Content-Type': IMAGE_TYPES[extension]!,
        ...(object.ContentLength !== undefined ? { 'Content-Length': String(object.ContentLength) } : {}),
        'Cache-Control': 'no-store',
        'X-Content-Type-Options': 'nosniff',
      });
      const body = object.Body as Readable | undefined;
      if (headOnly || !body) {
        body?.destroy();
        res.end();
        return;
      }
      body.on('error', () => res.destroy());
      body.pipe(res);
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404 ? 404 : 502;
      if (!res.headersSent) res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(`${status === 404 ? 'not in storage' : 'storage error'}: ${(err as Error).message}\n`);
    }
  }

  /** Waits for the reads in flight (tests), then stops the S3 client. */
  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.pendingLists.values()) clearTimeout(timer);
    this.pendingLists.clear();
    await Promise.allSettled([...this.inFlight]);
    this.client.destroy();
  }

  private onCallback(log: LogEntry): void {
    const key = log.jobKey!;
    if (log.kind === 'trainingDone' || (log.kind === 'event' && eventType(this.board.request(log.seq)?.body) === 'checkpoint_saved'))
      this.scheduleCheckpointList(key);
    else if (log.kind === 'testRunDone' || log.kind === 'inferenceJobDone') this.track(this.loadResults(key));
    else if (log.kind === 'exportDone') this.track(this.loadExportMetadata(key));
  }

  private track(task: Promise<void>): void {
    const guarded = task.catch((err: unknown) => this.warn(`dashboard: ${(err as Error).message}`));
    this.inFlight.add(guarded);
    void guarded.finally(() => this.inFlight.delete(guarded));
  }

  /** Several checkpoint events arrive together at the end of a run: one listing for all of them. */
  private scheduleCheckpointList(key: string): void {
    if (this.closed) return;
    clearTimeout(this.pendingLists.get(key));
    const timer = setTimeout(() => {
      this.pendingLists.delete(key);
      this.track(this.listCheckpoints(key));
    }, 250);
    timer.unref();
    this.pendingLists.set(key, timer);
  }

  private async listCheckpoints(key: string): Promise<void> {
    const job = this.board.job(key);
    if (!job?.training) return;
    const prefixes = new Set([`checkpoints/job-${job.id}/`]);
    for (const checkpoint of job.training.checkpoints) {
      try {
        const objectKey = this.storage.parseUri(checkpoint.uri);
        prefixes.add(objectKey.slice(0, objectKey.lastIndexOf('/') + 1));
      } catch {
        // Not in this stack's bucket: it stays listed as not found here.
      }
    }
    const found = new Map<string, number>();
    for (const prefix of prefixes) {
      if (!prefix) continue;
      for (const object of await this.storage.list(prefix)) found.set(this.storage.uri(object.key), object.size);
    }
    this.board.setStoredCheckpoints(key, found);
  }

  private async loadResults(key: string): Promise<void> {
    const job = this.board.job(key);
    const uri = job?.inference?.resultsPath;
    if (!job || !uri) return;
    let doc: InferenceResults;
    try {
      const parsed = InferenceResultsSchema.safeParse(await this.storage.getJson(this.storage.parseUri(uri)));
      if (!parsed.success) {
        const problems = parsed.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
        throw new Error(`${uri} does not match the results.json schema: ${problems.join('; ')}`);
      }
      doc = parsed.data;
    } catch (err) {
      this.board.setInferenceResults(key, {
        error: (err as Error).message,
        numImages: 0,
        failedImages: 0,
        avgInferenceTimeMs: null,
        confusionMatrixLabels: null,
        images: [],
      });
      return;
    }
    const pictured = doc.results.filter((r) => r.visualization_path !== null || r.xai?.heatmap_path);
    const view: InferenceResultsView = {
      error: null,
      numImages: doc.num_images,
      failedImages: doc.failed_images,
      avgInferenceTimeMs: doc.timing.avg_inference_time_ms,
      confusionMatrixLabels: doc.metrics?.confusion_matrix_labels ?? null,
      images: pictured.slice(0, MAX_IMAGES_SHOWN).map((r) => this.imageView(r)),
    };
    this.board.setInferenceResults(key, view);
  }

  private imageView(r: ImageResult): ResultImageView {
    return {
      index: r.index,
      fileName: r.file_name,
      visualizationUrl: this.urlOf(r.visualization_path),
      heatmapUrl: this.urlOf(r.xai?.heatmap_path ?? null),
      xaiMethod: r.xai?.method ?? null,
      xaiError: r.xai?.error ?? null,
      prediction: describePredictions(r),
      groundTruth: describeGroundTruth(r),
      correct: isCorrect(r),
      error: r.error,
    };
  }

  private async loadExportMetadata(key: string): Promise<void> {
    const done = this.board.job(key)?.export?.done;
    if (!done) return;
    const reported = [done.export_path, done.package_path, done.metadata_path].filter((u): u is string => !!u);
    const stored: Record<string, number | null> = {};
    for (const uri of reported) stored[uri] = null;
    const folders = new Set<string>();
    for (const uri of reported) {
      try {
        const objectKey = this.storage.parseUri(uri);
        folders.add(objectKey.slice(0, objectKey.lastIndexOf('/') + 1));
      } catch {
        // Another bucket: shown as not found here.
      }
    }
    for (const folder of folders) {
      if (!folder) continue;
      for (const object of await this.storage.list(folder)) {
        const uri = this.storage.uri(object.key);
        if (uri in stored) stored[uri] = object.size;
      }
    }
    const uri = done.metadata_path;
    if (!uri) return this.board.setExportMetadata(key, stored, null, null);
    try {
      this.board.setExportMetadata(key, stored, await this.storage.getJson(this.storage.parseUri(uri)), null);
    } catch (err) {
      this.board.setExportMetadata(key, stored, null, `could not read ${uri}: ${(err as Error).message}`);
    }
  }
}

function eventType(body: unknown): unknown {
  return body && typeof body === 'object' ? (body as { event_type?: unknown }).event_type : undefined;
}

const percent = (confidence: number) => `${Math.round(confidence * 100)}%`;

function describePredictions(r: ImageResult): string {
  const p = r.predictions;
  if (!p) return r.error ? 'not processed' : 'no predictions';
  if ('boxes' in p) {
    if (p.boxes.length === 0) return 'nothing detected';
    const shown = p.boxes.slice(0, 4).map((b) => `${b.class_name} ${percent(b.confidence)}`);
    return `${p.boxes.length} detected: ${shown.join(', ')}${p.boxes.length > 4 ? ', …' : ''}`;
  }
  if ('classes' in p) return describeShares(p.classes);
  return `${p.class_name} ${percent(p.confidence)}`;
}

function describeGroundTruth(r: ImageResult): string | null {
  const g = r.ground_truth;
  if (!g) return null;
  if ('objects' in g)
    return `${g.objects.length} object${g.objects.length === 1 ? '' : 's'}: ${[...new Set(g.objects.map((o) => o.class_name))].join(', ') || 'none'}`;
  if ('classes' in g) return describeShares(g.classes);
  return g.class_name;
}

/** A semantic map's classes, largest first. */
function describeShares(classes: Array<{ class_name: string; pixel_fraction: number }>): string {
  if (classes.length === 0) return 'no labelled pixels';
  const shown = [...classes].sort((a, b) => b.pixel_fraction - a.pixel_fraction).slice(0, 4);
  return shown.map((c) => `${c.class_name} ${percent(c.pixel_fraction)}`).join(', ') + (classes.length > 4 ? ', …' : '');
}

function isCorrect(r: ImageResult): boolean | null {
  const e = r.metrics;
  if (!e) return null;
  if ('correct' in e) return e.correct;
  if ('pixel_accuracy' in e) return null; // a map is neither right nor wrong: its IoUs say how good
  if ('objects' in e) return e.objects.every((o) => o.iou >= 0.5); // SAM 2: every prompted mask covers its object
  return e.missed.length === 0 && e.false_positives.length === 0 && e.wrong_class.length === 0;
}
