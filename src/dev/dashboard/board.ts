/**
 * The dashboard's model: every request the receiver answered, folded into one view per job
 * (stage, progress and ETA, per-epoch and per-batch curves, the latest validation, checkpoints,
 * test-run and export results) and one log line per request. Only accepted callbacks change a
 * job's state; refused ones are counted and logged with the reasons the receiver gave.
 *
 * What storage holds (checkpoint sizes, results.json, export metadata) is added later by
 * `artifacts.ts` through the `set*` methods; the board itself never does I/O.
 */
import type { CallbackKind, CallbackPayload } from '../../callbacks/schemas.js';
import { describeCallback, type ReceivedCallback, type ReceivedRequest } from '../receiver.js';
import type { CheckpointView, InferenceResultsView, JobFamily, JobView, LogEntry, Series } from './view.js';

const FAMILY_OF: Record<CallbackKind, JobFamily> = {
  heartbeat: 'training',
  event: 'training',
  validation: 'training',
  trainingDone: 'training',
  inferenceProgress: 'inference',
  testRunDone: 'inference',
  inferenceJobDone: 'inference',
  exportProgress: 'export',
  exportDone: 'export',
};

/** Bounds that keep a long session's memory and SSE messages small. */
export const LIMITS = { batchPoints: 5_000, milestones: 200, logEntries: 5_000, snapshotLog: 500 };

export function jobKey(family: JobFamily, jobId: string): string {
  return `${family}:${jobId}`;
}

interface TrainingState {
  perEpoch: Map<number, Record<string, number | null>>;
  startedAt: number | null;
  startEpoch: number;
}

interface InferenceState {
  firstProgress: { at: number; processed: number } | null;
}

export type BoardListener = (change: { job?: JobView; log?: LogEntry }) => void;

export class JobBoard {
  private readonly jobs = new Map<string, JobView>();
  private readonly training = new Map<string, TrainingState>();
  private readonly inference = new Map<string, InferenceState>();
  private readonly log: LogEntry[] = [];
  private readonly requests = new Map<number, ReceivedRequest>();
  private readonly listeners = new Set<BoardListener>();
  private seq = 0;

  subscribe(listener: BoardListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  allJobs(): JobView[] {
    return [...this.jobs.values()].sort((a, b) => a.firstSeen.localeCompare(b.firstSeen));
  }

  job(key: string): JobView | undefined {
    return this.jobs.get(key);
  }

  recentLog(limit = LIMITS.snapshotLog): LogEntry[] {
    return this.log.slice(-limit);
  }

  /** The request behind a log line, whole (headers with the token redacted, body as received). */
  request(seq: number): ReceivedRequest | undefined {
    return this.requests.get(seq);
  }

  /** Folds one answered request into the board. */
  record(request: ReceivedRequest): void {
    const seq = ++this.seq;
    const family = request.kind ? FAMILY_OF[request.kind] : undefined;
    const key = family && request.jobId !== undefined ? jobKey(family, request.jobId) : null;
    const entry: LogEntry = {
      seq,
      at: request.receivedAt.toISOString(),
      method: request.method,
      path: request.path,
      kind: request.kind ?? null,
      jobKey: key,
      jobId: request.jobId ?? null,
      status: request.status,
      outcome: request.outcome,
      valid: request.valid,
      errors: request.errors,
      summary:
        request.outcome === 'accepted' ? describeCallback(request as ReceivedCallback) : request.errors.join('; ') || `${request.method} ${request.path}`,
    };
    this.log.push(entry);
    this.requests.set(seq, request);
    if (this.log.length > LIMITS.logEntries) {
      const dropped = this.log.shift()!;
      this.requests.delete(dropped.seq);
    }

    let job: JobView | undefined;
    if (family && key && request.jobId !== undefined) {
      job = this.jobs.get(key) ?? this.newJob(key, request.jobId, family, entry.at);
      job.lastSeen = entry.at;
      job.requestCounts[request.outcome] = (job.requestCounts[request.outcome] ?? 0) + 1;
      if (request.outcome === 'accepted') this.apply(job, request as ReceivedCallback);
    }
    this.emit({ ...(job ? { job } : {}), log: entry });
  }

  /** Objects found in storage under a job's checkpoint folder (key → size), as URIs. */
  setStoredCheckpoints(key: string, objects: Map<string, number>): void {
    const job = this.jobs.get(key);
    if (!job?.training) return;
    for (const [uri, size] of objects) {
      if (!/\.(pt|pth|safetensors|bin|ckpt)$/i.test(uri)) continue;
      let checkpoint = job.training.checkpoints.find((c) => c.uri === uri);
      if (!checkpoint) {
        checkpoint = { uri, epoch: epochFromName(uri), reason: null, isBest: /\/best\.[^/]+$/.test(uri), metrics: {}, sizeBytes: null, inStorage: false };
        job.training.checkpoints.push(checkpoint);
      }
      checkpoint.sizeBytes = size;
      checkpoint.inStorage = true;
    }
    for (const checkpoint of job.training.checkpoints) {
      if (!objects.has(checkpoint.uri)) {
        checkpoint.inStorage = false;
        checkpoint.sizeBytes = null;
      }
    }
    sortCheckpoints(job.training.checkpoints);
    this.emit({ job });
  }

  setInferenceResults(key: string, results: InferenceResultsView): void {
    const job = this.jobs.get(key);
    if (!job?.inference) return;
    job.inference.results = results;
    this.emit({ job });
  }

  setExportMetadata(key: string, stored: Record<string, number | null>, metadata: unknown, error: string | null): void {
    const job = this.jobs.get(key);
    if (!job?.export) return;
    job.export.stored = stored;
    job.export.metadata = metadata;
    job.export.metadataError = error;
    this.emit({ job });
  }

  private emit(change: { job?: JobView; log?: LogEntry }): void {
    for (const listener of this.listeners) listener(change);
  }

  private newJob(key: string, id: string, family: JobFamily, at: string): JobView {
    const job: JobView = {
      key,
      id,
      family,
      label: family === 'training' ? 'training' : family === 'export' ? 'export' : 'inference',
      status: 'running',
      stage: 'started',
      progress: null,
      etaSeconds: null,
      etaAt: null,
      firstSeen: at,
      lastSeen: at,
      errorMessage: null,
      milestones: [],
      requestCounts: {},
      training: null,
      inference: null,
      export: null,
    };
    if (family === 'training') {
      job.training = {
        taskType: null,
        totalEpochs: null,
        epoch: 0,
        batch: null,
        totalBatches: null,
        epochs: { x: [], values: {} },
        batches: { x: [], values: {} },
        primaryMetricName: null,
        bestEpoch: null,
        bestValue: null,
        latestValidation: null,
        checkpoints: [],
        finalMetrics: null,
        checkpointPath: null,
      };
      this.training.set(key, { perEpoch: new Map(), startedAt: null, startEpoch: 0 });
    } else if (family === 'inference') {
      job.inference = {
        type: null,
        processed: 0,
        total: 0,
        avgInferenceTimeMs: null,
        done: null,
        resultsPath: null,
        visualizationsPath: null,
        xaiResultsPath: null,
        results: null,
        perClassMetrics: [],
      };
      this.inference.set(key, { firstProgress: null });
    } else {
      job.export = { stage: null, message: null, stages: [], done: null, stored: {}, metadata: null, metadataError: null };
    }
    this.jobs.set(key, job);
    return job;
  }

  private apply(job: JobView, callback: ReceivedCallback): void {
    const now = callback.receivedAt.getTime();
    switch (callback.kind) {
      case 'heartbeat':
        return this.heartbeat(job, callback.body, now);
      case 'event':
        return this.event(job, callback.body, now);
      case 'validation':
        return this.validation(job, callback.body);
      case 'trainingDone': {
        const t = job.training!;
        const b = callback.body;
        this.finish(job, b.status, b.error_message);
        t.finalMetrics = b.final_metrics;
        t.checkpointPath = b.checkpoint_path;
        if (b.checkpoint_path) upsertCheckpoint(t.checkpoints, { uri: b.checkpoint_path, isBest: true, reason: 'best' });
        const bestEpoch = b.final_metrics.best_epoch;
        if (typeof bestEpoch === 'number') t.bestEpoch = bestEpoch;
        return;
      }
      case 'inferenceProgress':
        return this.inferenceProgress(job, callback.body, now);
      case 'testRunDone':
      case 'inferenceJobDone': {
        const i = job.inference!;
        const b = callback.body;
        i.type = callback.kind === 'testRunDone' ? 'test_run' : 'inference_job';
        job.label = i.type === 'test_run' ? 'test run' : 'inference job';
        if (callback.kind === 'testRunDone') {
          i.done = callback.body;
          i.perClassMetrics = callback.body.per_class_metrics;
        }
        i.resultsPath = b.results_path;
        i.visualizationsPath = b.visualizations_path;
        i.xaiResultsPath = b.xai_results_path;
        this.finish(job, b.status, b.error_message);
        return;
      }
      case 'exportProgress': {
        const e = job.export!;
        const b = callback.body;
        e.stage = b.stage;
        e.message = b.message;
        e.stages.push({ stage: b.stage, percent: b.progress_percent, message: b.message, at: callback.receivedAt.toISOString() });
        job.progress = b.progress_percent;
        job.stage = `${b.stage}: ${b.message}`;
        return;
      }
      case 'exportDone': {
        const e = job.export!;
        e.done = callback.body;
        this.finish(job, callback.body.status, callback.body.error_message);
        return;
      }
    }
  }

  private finish(job: JobView, status: 'succeeded' | 'failed', errorMessage: string | null): void {
    job.status = status;
    job.errorMessage = errorMessage;
    job.stage = status === 'succeeded' ? 'succeeded' : `failed: ${firstLine(errorMessage ?? 'no message')}`;
    if (status === 'succeeded') job.progress = 100;
    job.etaSeconds = null;
    job.etaAt = null;
  }

  private heartbeat(job: JobView, body: CallbackPayload<'heartbeat'>, now: number): void {
    const t = job.training!;
    const state = this.training.get(job.key)!;
    if (state.startedAt === null) {
      state.startedAt = now;
      state.startEpoch = Math.max(0, body.epoch - 1);
    }
    if (body.total_epochs !== undefined) t.totalEpochs = body.total_epochs;
    t.epoch = body.epoch;
    job.progress = body.progress;
    const total = t.totalEpochs ?? '?';
    if (body.batch !== undefined) {
      t.batch = body.batch;
      t.totalBatches = body.total_batches ?? null;
      job.stage = `training: epoch ${body.epoch}/${total}, batch ${body.batch}${body.total_batches ? `/${body.total_batches}` : ''}`;
      if (body.eta_seconds !== undefined) setEta(job, body.eta_seconds, now);
      if (body.total_batches) this.addBatchPoint(t, body.epoch - 1 + body.batch / body.total_batches, body.metrics);
      return;
    }
    // An epoch heartbeat: the epoch is over, its metrics are final.
    t.batch = null;
    const merged = { ...(state.perEpoch.get(body.epoch) ?? {}), ...body.metrics };
    state.perEpoch.set(body.epoch, merged);
    t.epochs = toSeries(state.perEpoch);
    const finished = t.totalEpochs !== null && body.epoch >= t.totalEpochs;
    job.stage = finished ? `training: all ${total} epochs done; saving checkpoints` : `training: epoch ${body.epoch}/${total} done`;
    const trained = body.epoch - state.startEpoch;
    if (t.totalEpochs !== null && trained > 0) setEta(job, finished ? null : ((now - state.startedAt) / 1000 / trained) * (t.totalEpochs - body.epoch), now);
  }

  private addBatchPoint(t: NonNullable<JobView['training']>, x: number, metrics: Record<string, number | null>): void {
    // Only training losses: a batch heartbeat repeats the latest validation's metrics too.
    const losses = Object.entries(metrics).filter(([name]) => /loss/i.test(name) && !/^val/i.test(name));
    if (losses.length === 0) return;
    const series = t.batches;
    if (series.x.length >= LIMITS.batchPoints) {
      series.x.shift();
      for (const values of Object.values(series.values)) values.shift();
    }
    const n = series.x.length;
    series.x.push(x);
    for (const [name, value] of losses) {
      series.values[name] ??= new Array<number | null>(n).fill(null);
      series.values[name].push(value);
    }
    for (const values of Object.values(series.values)) if (values.length < n + 1) values.push(null);
  }

  private event(job: JobView, body: CallbackPayload<'event'>, now: number): void {
    const t = job.training!;
    job.milestones.push({ at: new Date(now).toISOString(), type: body.event_type, message: body.message });
    if (job.milestones.length > LIMITS.milestones) job.milestones.shift();
    const data = body.data;
    switch (body.event_type) {
      case 'dataset_downloaded':
        job.stage = 'dataset downloaded';
        break;
      case 'dataset_prepared':
        job.stage = 'dataset prepared';
        break;
      case 'weights_downloaded':
        job.stage = 'pretrained weights downloaded';
        break;
      case 'text_encoder_downloaded':
        job.stage = 'text encoder downloaded';
        break;
      case 'training_started': {
        job.stage = 'training started';
        if (typeof data.epochs === 'number') t.totalEpochs = data.epochs;
        const state = this.training.get(job.key)!;
        state.startedAt = now;
        break;
      }
      case 'stop_requested':
        job.stage = `stopping: ${body.message}`;
        break;
      case 'checkpoint_saved': {
        if (typeof data.checkpoint_path !== 'string') break;
        upsertCheckpoint(t.checkpoints, {
          uri: data.checkpoint_path,
          epoch: typeof data.epoch === 'number' ? data.epoch : null,
          reason: typeof data.reason === 'string' ? data.reason : null,
          isBest: data.is_best === true,
          metrics: metricsOf(data.metrics),
        });
        break;
      }
      default:
        break;
    }
  }

  private validation(job: JobView, body: CallbackPayload<'validation'>): void {
    const t = job.training!;
    const state = this.training.get(job.key)!;
    t.taskType = body.task_type;
    t.latestValidation = body;
    t.primaryMetricName = body.primary_metric_name;
    // A validation's own losses are validation losses: named as the epoch heartbeat names them
    // (val_loss), so they do not overwrite the training loss of the same epoch.
    const metrics = Object.fromEntries(
      Object.entries(body.metrics).map(([name, value]) => [/loss/i.test(name) && !/^val/i.test(name) ? `val_${name}` : name, value]),
    );
    state.perEpoch.set(body.epoch, { ...(state.perEpoch.get(body.epoch) ?? {}), ...metrics, [body.primary_metric_name]: body.primary_metric_value });
    t.epochs = toSeries(state.perEpoch);
    const value = body.primary_metric_value;
    if (value !== null) {
      const lowerIsBetter = /loss|error/i.test(body.primary_metric_name);
      if (t.bestValue === null || (lowerIsBetter ? value < t.bestValue : value > t.bestValue)) {
        t.bestValue = value;
        t.bestEpoch = body.epoch;
      }
    }
  }

  private inferenceProgress(job: JobView, body: CallbackPayload<'inferenceProgress'>, now: number): void {
    const i = job.inference!;
    const state = this.inference.get(job.key)!;
    i.processed = body.processed_images;
    i.total = body.total_images;
    i.avgInferenceTimeMs = body.avg_inference_time_ms;
    job.progress = body.progress_percent;
    job.stage = `predicting: ${body.processed_images}/${body.total_images} images`;
    state.firstProgress ??= { at: now, processed: body.processed_images };
    const left = body.total_images - body.processed_images;
    const seen = body.processed_images - state.firstProgress.processed;
    if (seen > 0) setEta(job, ((now - state.firstProgress.at) / 1000 / seen) * left, now);
    else if (body.avg_inference_time_ms !== null) setEta(job, (body.avg_inference_time_ms / 1000) * left, now);
  }
}

function setEta(job: JobView, seconds: number | null, now: number): void {
  job.etaSeconds = seconds === null ? null : Math.max(0, seconds);
  job.etaAt = seconds === null ? null : new Date(now).toISOString();
}

function toSeries(perEpoch: Map<number, Record<string, number | null>>): Series {
  const x = [...perEpoch.keys()].sort((a, b) => a - b);
  const names = new Set<string>();
  for (const metrics of perEpoch.values()) for (const name of Object.keys(metrics)) names.add(name);
  const values: Record<string, Array<number | null>> = {};
  for (const name of names) values[name] = x.map((epoch) => perEpoch.get(epoch)?.[name] ?? null);
  return { x, values };
}

function upsertCheckpoint(list: CheckpointView[], found: Partial<CheckpointView> & { uri: string }): void {
  const existing = list.find((c) => c.uri === found.uri);
  if (existing) {
    // best.pt is rewritten each time a better epoch comes: the latest report describes it.
    if (found.epoch !== undefined && found.epoch !== null) existing.epoch = found.epoch;
    if (found.reason) existing.reason = found.reason;
    if (found.metrics && Object.keys(found.metrics).length) existing.metrics = found.metrics;
    existing.isBest ||= found.isBest ?? false;
  } else {
    list.push({ epoch: epochFromName(found.uri), reason: null, isBest: false, metrics: {}, sizeBytes: null, inStorage: false, ...found });
  }
  sortCheckpoints(list);
}

function sortCheckpoints(list: CheckpointView[]): void {
  list.sort((a, b) => Number(b.isBest) - Number(a.isBest) || (b.epoch ?? -1) - (a.epoch ?? -1) || a.uri.localeCompare(b.uri));
}

function epochFromName(uri: string): number | null {
  const match = /epoch-(\d+)\.[^/]+$/.exec(uri);
  return match ? Number(match[1]) : null;
}

function metricsOf(value: unknown): Record<string, number | null> {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return {};
  return Object.fromEntries(Object.entries(value).filter((e): e is [string, number | null] => e[1] === null || typeof e[1] === 'number'));
}

function firstLine(text: string): string {
  const line = text.split('\n', 1)[0] ?? '';
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}
