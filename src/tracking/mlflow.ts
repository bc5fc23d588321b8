/**
 * MLflow tracking as a subscriber of the training job's event stream: one MLflow run per job,
 * the same for every framework, over MLflow's REST API (Node does the network I/O; Python holds
 * no tracking credentials).
 *
 * - the run is created at the job's first event (experiment MLFLOW_EXPERIMENT_NAME, created
 *   when missing; name MLFLOW_RUN_NAME or JOB_ID; tags: job and trace ids, framework, model);
 * - parameters at `training_started`: the contract's settings, SEED and the resolved
 *   TRAINER_ARGS (`trainer_args.<key>`);
 * - per epoch: `train/<loss>`, `val/<metric>`, `lr`, `epoch_time_seconds`, step = epoch;
 * - artefacts through the server's artifact proxy (`mlflow server --serve-artifacts`):
 *   `validation/best/` (each time an epoch becomes the best: the `best` event, the backend's
 *   is_best or the score) and `validation/last/` at the end,
 *   each with `per_class_metrics.json` (an MLflow table), `confusion_matrix.json` or
 *   `pr_curves.json`, and `metrics.json`; `checkpoints/best.pt`;
 * - at `done`: the best metrics, and the run's status (FINISHED, FAILED, or KILLED for a stop).
 *
 * Every request runs in one background queue: training never waits for MLflow, and a failure
 * is a warning (the token never appears in it). After three operations in a row have failed,
 * tracking switches itself off for the rest of the job. The job's end waits for the queue.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { type Dispatcher, request } from 'undici';
import type { MlflowConfig, TrainConfig } from '../config/schema.js';
import type { JsonValue, Metrics, RunEvent, RunEventOf } from '../events.js';
import type { Logger } from '../log.js';
import { guardedAgent, urlPolicy } from '../net/url-guard.js';
import { describeUrl, redact } from '../redact.js';

const MAX_FAILURES_IN_A_ROW = 3;
const ATTEMPTS = 3;
/** MLflow's limits: a parameter value, a tag value, and entries per log-batch request. */
const MAX_PARAM_CHARS = 6000;
const MAX_TAG_CHARS = 5000;
const MAX_BATCH_METRICS = 1000;
const MAX_BATCH_PARAMS = 100;
const MAX_UNDECIDED = 32;

type Config = TrainConfig & { mlflow: MlflowConfig & { trackingUri: string } };

class MlflowError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly code?: string,
  ) {
    super(message);
  }
}

export class MlflowTracker {
  private queue: Promise<void> = Promise.resolve();
  private failuresInARow = 0;
  private off = false;
  private started = false;
  private runId: string | undefined;
  /** The run's folder under the artifact proxy, e.g. `1/<run id>/artifacts`; undefined without a proxy. */
  private artifactRoot: string | undefined;
  private lastValidation: RunEventOf<'validation'> | undefined;
  /** Validations whose epoch's best/not-best decision may still come (`best` events arrive in epoch order). */
  private readonly undecided = new Map<number, RunEventOf<'validation'>>();
  private readonly base: string;
  private readonly dispatcher: Dispatcher;
  private readonly authorization: string | undefined;

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
  ) {
    this.base = config.mlflow.trackingUri.replace(/\/+$/, '');
    // The tracking server is the operator's, as the storage endpoint is: its host is allowed by
    // name on a private network; cloud-metadata and link-local addresses stay refused.
    this.dispatcher = guardedAgent(urlPolicy(config.allowedPrivateHosts, config.mlflow.trackingUri), {
      connectTimeoutMs: 10_000,
      headersTimeoutMs: 60_000,
      bodyTimeoutMs: 60_000,
    });
    const { token, username, password } = config.mlflow;
    this.authorization = token ? `Bearer ${token}` : username && password ? `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` : undefined;
  }

  /** The subscriber: never throws; returns the queue at `done` so the job waits for it. */
  readonly onEvent = (event: RunEvent): Promise<void> | undefined => {
    if (this.off) return undefined;
    if (!this.started) {
      this.started = true;
      this.enqueue('start the run', () => this.startRun());
    }
    switch (event.type) {
      case 'milestone':
        if (event.name === 'training_started') this.enqueue('log parameters', () => this.logParams(event.data));
        return undefined;
      case 'epoch':
        this.enqueue(`log epoch ${event.epoch}`, () => this.logEpoch(event));
        return undefined;
      case 'validation':
        this.lastValidation = event;
        this.undecided.set(event.epoch, event);
        // Decisions wait for the backend's answer, a few epochs at most; never hold a long run's history.
        if (this.undecided.size > MAX_UNDECIDED) this.undecided.delete(this.undecided.keys().next().value as number);
        return undefined;
      case 'best': {
        const validation = this.undecided.get(event.epoch);
        for (const epoch of [...this.undecided.keys()]) if (epoch <= event.epoch) this.undecided.delete(epoch);
        if (validation) this.enqueue('upload the best validation', () => this.uploadValidation('validation/best', validation));
        return undefined;
      }
      case 'checkpoint':
        if (event.reason === 'best' && event.localPath) {
          const file = event.localPath;
          this.enqueue('upload best.pt', () => this.uploadFile('checkpoints/best.pt', file));
        }
        return undefined;
      case 'done':
        this.enqueue('finish the run', () => this.finish(event));
        return this.queue;
      default:
        return undefined;
    }
  };

  private enqueue(what: string, task: () => Promise<void>): void {
    this.queue = this.queue.then(async () => {
      if (this.off || (what !== 'start the run' && !this.runId)) return;
      try {
        await task();
        this.failuresInARow = 0;
      } catch (err) {
        this.failuresInARow++;
        const why = redact(err instanceof Error ? err.message : String(err));
        this.logger.warn(`MLflow: could not ${what}: ${why}; training goes on`);
        if (!this.runId || this.failuresInARow >= MAX_FAILURES_IN_A_ROW) {
          this.off = true;
          this.logger.warn(`MLflow tracking is off for the rest of this job (${describeUrl(this.base)})`);
        }
      }
    });
  }

  private async startRun(): Promise<void> {
    const c = this.config;
    const experimentId = await this.experimentId(c.mlflow.experimentName);
    const tags: Record<string, string> = {
      'mlflow.source.name': 'vision-trainer',
      'mlflow.source.type': 'JOB',
      job_id: c.jobId,
      trace_id: c.traceId,
      framework: c.framework,
      model_name: c.modelName,
      task_type: c.taskType,
      dataset_id: c.datasetId,
    };
    const answer = (await this.call('POST', 'runs/create', {
      experiment_id: experimentId,
      run_name: c.mlflow.runName ?? c.jobId,
      start_time: Date.now(),
      tags: Object.entries(tags).map(([key, value]) => ({ key, value })),
    })) as { run: { info: { run_id: string; artifact_uri?: string } } };
    this.runId = answer.run.info.run_id;
    const uri = answer.run.info.artifact_uri ?? '';
    const proxied = /^mlflow-artifacts:(?:\/\/[^/]*)?\/(.*)$/.exec(uri);
    this.artifactRoot = proxied?.[1]?.replace(/\/+$/, '');
    if (!this.artifactRoot)
      this.logger.warn(
        `MLflow: the run's artefacts live at ${redact(uri)}, which the job cannot reach through the tracking server; start the server with --serve-artifacts to receive them`,
      );
    this.logger.info(`MLflow: run ${this.runId} in experiment "${c.mlflow.experimentName}" at ${describeUrl(this.base)}`);
  }

  private async experimentId(name: string): Promise<string> {
    try {
      const found = (await this.call('GET', `experiments/get-by-name?experiment_name=${encodeURIComponent(name)}`)) as {
        experiment: { experiment_id: string };
      };
      return found.experiment.experiment_id;
    } catch (err) {
      if (!(err instanceof MlflowError && err.code === 'RESOURCE_DOES_NOT_EXIST')) throw err;
    }
    try {
      return ((await this.call('POST', 'experiments/create', { name })) as { experiment_id: string }).experiment_id;
    } catch (err) {
      // Another job created it meanwhile.
      if (!(err instanceof MlflowError && err.code === 'RESOURCE_ALREADY_EXISTS')) throw err;
      return ((await this.call('GET', `experiments/get-by-name?experiment_name=${encodeURIComponent(name)}`)) as { experiment: { experiment_id: string } })
        .experiment.experiment_id;
    }
  }

  private async logParams(data: Record<string, JsonValue>): Promise<void> {
    const c = this.config;
    const params: Record<string, unknown> = {
      framework: c.framework,
      model_name: c.modelName,
      task_type: c.taskType,
      dataset_id: c.datasetId,
      snapshot_id: c.snapshotId,
      epochs: c.epochs,
      batch_size: c.batchSize,
      learning_rate: c.learningRate ?? 'default',
      image_size: c.imageSize,
      device: data.device ?? c.device,
      seed: c.seed ?? 'default',
      pretrained: c.pretrainedWeightUrl ? 'yes' : 'no',
      resumed: c.resumeCheckpointPath ? 'yes' : 'no',
      split_strategy: c.splitStrategy,
    };
    const trainerArgs = (data.trainer_args ?? {}) as Record<string, JsonValue>;
    for (const [key, value] of Object.entries(trainerArgs)) params[`trainer_args.${key}`] = value;
    const list = Object.entries(params)
      .filter(([, v]) => v !== undefined)
      .map(([key, v]) => ({ key, value: (typeof v === 'string' ? v : JSON.stringify(v)).slice(0, MAX_PARAM_CHARS) }));
    for (let i = 0; i < list.length; i += MAX_BATCH_PARAMS)
      await this.call('POST', 'runs/log-batch', { run_id: this.runId, params: list.slice(i, i + MAX_BATCH_PARAMS) });
  }

  private async logEpoch(e: RunEventOf<'epoch'>): Promise<void> {
    const values: Metrics = {};
    for (const [k, v] of Object.entries(e.losses)) values[`train/${k}`] = v;
    for (const [k, v] of Object.entries(e.metrics)) values[`val/${k}`] = v;
    values.lr = e.learningRate;
    values.epoch_time_seconds = e.epochTimeSeconds;
    await this.logMetrics(values, e.epoch);
  }

  private async logMetrics(values: Metrics, step: number): Promise<void> {
    const timestamp = Date.now();
    const metrics = Object.entries(values)
      .filter((entry): entry is [string, number] => typeof entry[1] === 'number' && Number.isFinite(entry[1]))
      .map(([key, value]) => ({ key: metricKey(key), value, timestamp, step }));
    for (let i = 0; i < metrics.length; i += MAX_BATCH_METRICS)
      await this.call('POST', 'runs/log-batch', { run_id: this.runId, metrics: metrics.slice(i, i + MAX_BATCH_METRICS) });
  }

  private async uploadValidation(folder: string, v: RunEventOf<'validation'>): Promise<void> {
    const columns = ['class_id', 'class_name', 'precision', 'recall', 'f1', 'ap', 'support'];
    const rows = v.perClassMetrics.map((row) => columns.map((c) => (row as Record<string, unknown>)[c] ?? null));
    // MLflow's table artefact format (what mlflow.log_table writes), shown as a table by its UI.
    await this.uploadJson(`${folder}/per_class_metrics.json`, { columns, data: rows });
    const summary = {
      epoch: v.epoch,
      primary_metric_name: v.primaryMetricName,
      primary_metric_value: v.primaryMetricValue,
      metrics: v.metrics,
      num_images_validated: v.numImagesValidated,
    };
    await this.uploadJson(`${folder}/metrics.json`, summary);
    if (v.confusionMatrix) {
      const classNames = v.perClassMetrics.map((row) => row.class_name);
      await this.uploadJson(`${folder}/confusion_matrix.json`, {
        epoch: v.epoch,
        class_names: classNames,
        rows_are: 'true classes',
        matrix: v.confusionMatrix,
      });
    }
    if (v.prCurves) await this.uploadJson(`${folder}/pr_curves.json`, { epoch: v.epoch, curves: v.prCurves });
  }

  private async finish(done: RunEventOf<'done'>): Promise<void> {
    const best: Metrics = {};
    for (const [k, v] of Object.entries(done.finalMetrics)) best[k] = v;
    await this.logMetrics(best, done.bestEpoch ?? 0);
    if (this.lastValidation) await this.uploadValidation('validation/last', this.lastValidation);
    const status = done.status === 'succeeded' ? 'FINISHED' : done.exitCode === 143 ? 'KILLED' : 'FAILED';
    if (done.errorMessage) {
      await this.call('POST', 'runs/set-tag', { run_id: this.runId, key: 'error_message', value: redact(done.errorMessage).slice(0, MAX_TAG_CHARS) });
    }
    await this.call('POST', 'runs/update', { run_id: this.runId, status, end_time: Date.now() });
  }

  private async uploadJson(path: string, value: unknown): Promise<void> {
    const body = Buffer.from(JSON.stringify(value, null, 1));
    await this.putArtifact(path, body, body.length, 'application/json');
  }

  private async uploadFile(path: string, file: string): Promise<void> {
    const { size } = await stat(file);
    await this.putArtifact(path, () => createReadStream(file), size, 'application/octet-stream');
  }

  private async putArtifact(path: string, body: Buffer | (() => NodeJS.ReadableStream), size: number, contentType: string): Promise<void> {
    if (!this.artifactRoot) return;
    const target = `${this.artifactRoot}/${path}`.split('/').map(encodeURIComponent).join('/');
    await this.send('PUT', `${this.base}/api/2.0/mlflow-artifacts/artifacts/${target}`, body, { 'content-type': contentType, 'content-length': String(size) });
  }

  /** One REST call of the tracking API (`/api/2.0/mlflow/<endpoint>`), answered with its JSON. */
  private async call(method: 'GET' | 'POST', endpoint: string, json?: unknown): Promise<unknown> {
    const body = json === undefined ? undefined : Buffer.from(JSON.stringify(json));
    const text = await this.send(method, `${this.base}/api/2.0/mlflow/${endpoint}`, body, body ? { 'content-type': 'application/json' } : {});
    return text ? JSON.parse(text) : {};
  }

  /** A request with retries on 5xx, 429 and network errors; an MLflow error answer is thrown as MlflowError. */
  private async send(method: string, url: string, body: Buffer | (() => NodeJS.ReadableStream) | undefined, headers: Record<string, string>): Promise<string> {
    const allHeaders = { ...headers, ...(this.authorization ? { authorization: this.authorization } : {}) };
    let last: unknown;
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      try {
        const payload = typeof body === 'function' ? body() : body;
        const res = await request(url, { method: method as Dispatcher.HttpMethod, headers: allHeaders, body: payload as never, dispatcher: this.dispatcher });
        const text = await res.body.text();
        if (res.statusCode < 300) return text;
        const error = mlflowError(res.statusCode, text, method, url);
        if (res.statusCode < 500 && res.statusCode !== 429) throw error;
        last = error;
      } catch (err) {
        if (err instanceof MlflowError && err.status !== undefined && err.status < 500 && err.status !== 429) throw err;
        last = err;
      }
      if (attempt < ATTEMPTS) await new Promise((r) => setTimeout(r, 500 * 2 ** (attempt - 1)));
    }
    throw last instanceof Error ? last : new Error(String(last));
  }
}

function mlflowError(status: number, text: string, method: string, url: string): MlflowError {
  let code: string | undefined;
  let message = text.slice(0, 300);
  try {
    const parsed = JSON.parse(text) as { error_code?: string; message?: string };
    code = parsed.error_code;
    message = parsed.message ?? message;
  } catch {
    // not JSON: the text itself says what went wrong
  }
  return new MlflowError(`${method} ${describeUrl(url)} answered ${status}${code ? ` ${code}` : ''}: ${message}`, status, code);
}

/** MLflow allows letters, digits and `_ - . / space` in metric names. */
function metricKey(name: string): string {
  return name.replace(/[^A-Za-z0-9_\-./ ]/g, '_');
}

export function mlflowTracker(config: TrainConfig, logger: Logger): ((event: RunEvent) => Promise<void> | undefined) | undefined {
  if (!config.mlflow?.trackingUri) return undefined;
  return new MlflowTracker(config as Config, logger).onEvent;
}
