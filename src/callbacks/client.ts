/**
 * The callback client jobs use to tell the backend what they are doing.
 *
 * Two kinds of call (docs/contract.md, "Callbacks"):
 * - progress (heartbeat, event, validation, inference and export progress) never throws and
 *   never waits: the body is validated, queued, and delivered in order in the background with
 *   a short retry. When the backend cannot keep up, heartbeats coalesce and the least
 *   important callbacks are dropped first (progress-queue.ts); what was dropped is logged as
 *   one summary line per interval.
 * - completion (training, test-run, inference-job and export done) first lets queued progress
 *   drain, then is retried until delivered; if it never is, CallbackDeliveryError, the one
 *   callback failure that fails the process.
 *
 * Every request carries the bearer token, X-Trace-ID and an Idempotency-Key that stays the
 * same for all attempts of one callback, so a backend can discard a retried duplicate; a
 * completion's key is derived from its content (idempotency.ts), so a retried pod re-sending
 * the same outcome is recognised too.
 */
import { Agent, type Dispatcher } from 'undici';
import { CallbackDeliveryError, VisionTrainerError } from '../errors.js';
import { log, type Logger } from '../log.js';
import { describeUrl, registerSecret } from '../redact.js';
import { completionKey, progressKey } from './idempotency.js';
import { buildPayload, warmUpProgressPayloads } from './payload.js';
import { ProgressQueue, type DropReason } from './progress-queue.js';
import {
  callbackPath,
  pathSegment,
  ValidationResponseSchema,
  type CallbackInput,
  type CallbackKind,
  type CallbackPayload,
  type CompletionStatus,
  type ValidationResponse,
} from './schemas.js';
import {
  CallbackAbortedError,
  CallbackHttpError,
  CallbackTransport,
  COMPLETION_RETRY_POLICY,
  PROGRESS_RETRY_POLICY,
  type CallbackTransportError,
  type FetchLike,
  type RetryNotice,
  type RetryPolicy,
  type TransportRequest,
} from './transport.js';

export interface CallbackClientOptions {
  /** BACKEND_BASE_URL, e.g. `https://api.example.com`; callback paths are appended to it. */
  baseUrl: string;
  /** CALLBACK_TOKEN, sent as `Authorization: Bearer …` and never logged. */
  token: string;
  jobId: string;
  traceId: string;
  /** Replaces undici's fetch (tests, or a runtime with its own). */
  fetch?: FetchLike;
  /** The undici dispatcher to send through; by default the client owns an Agent it closes. */
  dispatcher?: Dispatcher;
  /** Defaults to the process logger at the time of each message. */
  logger?: Logger;
  /** Progress callbacks waiting before the oldest is dropped (default 200). */
  queueLimit?: number;
  retry?: { progress?: Partial<RetryPolicy>; completion?: Partial<RetryPolicy> };
  /** How long a completion waits for queued progress to be delivered before it goes anyway (default 15 s). */
  flushTimeoutMs?: number;
  /** Progress callbacks dropped are summed up in one log line per this many ms (default 30 s). */
  dropSummaryIntervalMs?: number;
}

export interface CallbackClientStats {
  /** Progress callbacks delivered (2xx). */
  delivered: number;
  /** Progress callbacks given up: overflow, failed delivery, or abandoned for a completion. */
  dropped: number;
  /** Waiting or in flight. */
  queued: number;
}

interface QueuedCallback {
  kind: CallbackKind;
  /** Waiting callbacks with the same key replace each other (undefined: never replaced). */
  coalesce: string | undefined;
  /** A validation or a checkpoint event: dropped only when nothing less important waits. */
  vital: boolean;
  request: TransportRequest;
  settle: (response: ValidationResponse | undefined) => void;
}

/** Progress kinds whose newest waiting callback replaces the older one. */
const COALESCING: ReadonlySet<CallbackKind> = new Set(['heartbeat', 'inferenceProgress', 'exportProgress']);

/**
 * What a waiting progress callback may be replaced by: the newest of its kind, and for an
 * export's progress the newest of the same stage. A stage says something a later one does not
 * (that validation ran): a short stage must reach the backend although the next one followed it
 * before the backend answered.
 */
function coalescingKey(kind: CallbackKind, body: unknown): string | undefined {
  if (!COALESCING.has(kind)) return undefined;
  return kind === 'exportProgress' ? `${kind}:${(body as { stage: string }).stage}` : kind;
}
/** Events that say something was saved or lost: kept before plain milestones and heartbeats. */
const VITAL_EVENTS: ReadonlySet<string> = new Set(['checkpoint_saved', 'checkpoint_upload_failed', 'training_resumed']);

/** Callbacks dropped since the last summary line, by label and reason. */
class DropTally {
  private counts = new Map<string, number>();
  private lastError: string | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly intervalMs: number,
    private readonly write: (line: string) => void,
  ) {}

  add(label: string, reason: DropReason, error?: string): void {
    const what = `${label} (${REASONS[reason]})`;
    this.counts.set(what, (this.counts.get(what) ?? 0) + 1);
    if (error) this.lastError = error;
    if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.intervalMs);
      this.timer.unref();
    }
  }

  /** Writes the summary of what was dropped since the last one, if anything was. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.counts.size === 0) return;
    const parts = [...this.counts].map(([what, n]) => `${n} ${what}`);
    const error = this.lastError ? `; last error: ${this.lastError}` : '';
    this.counts = new Map();
    this.lastError = undefined;
    this.write(`Progress callbacks not delivered (the backend is slow or unreachable): ${parts.join(', ')}${error}`);
  }
}

const REASONS: Record<DropReason, string> = {
  coalesced: 'replaced by a newer one',
  overflow: 'queue full',
  abandoned: 'given up for the completion',
  failed: 'delivery failed',
};

const LABELS: Record<CallbackKind, string> = {
  heartbeat: 'heartbeat',
  event: 'event',
  validation: 'validation',
  trainingDone: 'training completion',
  inferenceProgress: 'inference progress',
  testRunDone: 'test-run completion',
  inferenceJobDone: 'inference-job completion',
  exportProgress: 'export progress',
  exportDone: 'export completion',
};

const DEFAULT_QUEUE_LIMIT = 200;
const DEFAULT_FLUSH_TIMEOUT_MS = 15_000;
const DEFAULT_DROP_SUMMARY_MS = 30_000;

export class CallbackClient {
  readonly jobId: string;
  private readonly baseUrl: string;
  private readonly headers: Readonly<Record<string, string>>;
  private readonly transport: CallbackTransport;
  private readonly ownedAgent: Agent | undefined;
  private readonly progressPolicy: RetryPolicy;
  private readonly completionPolicy: RetryPolicy;
  private readonly flushTimeoutMs: number;
  private readonly queue: ProgressQueue<QueuedCallback>;
  private readonly injectedLogger: Logger | undefined;
  private readonly counts = { delivered: 0, dropped: 0 };
  private readonly drops: DropTally;
  private closed = false;

  constructor(options: CallbackClientOptions) {
    registerSecret(options.token);
    checkOptions(options);
    this.jobId = options.jobId;
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.headers = Object.freeze({
      Authorization: `Bearer ${options.token}`,
      'X-Trace-ID': options.traceId,
      'Content-Type': 'application/json',
      'User-Agent': 'vision-trainer',
    });
    this.injectedLogger = options.logger;
    this.ownedAgent = options.dispatcher || options.fetch ? undefined : new Agent();
    const dispatcher = options.dispatcher ?? this.ownedAgent;
    this.transport = new CallbackTransport({ ...(options.fetch ? { fetch: options.fetch } : {}), ...(dispatcher ? { dispatcher } : {}) });
    this.progressPolicy = { ...PROGRESS_RETRY_POLICY, ...options.retry?.progress };
    this.completionPolicy = { ...COMPLETION_RETRY_POLICY, ...options.retry?.completion };
    this.flushTimeoutMs = options.flushTimeoutMs ?? DEFAULT_FLUSH_TIMEOUT_MS;
    this.drops = new DropTally(options.dropSummaryIntervalMs ?? DEFAULT_DROP_SUMMARY_MS, (line) => this.logger.warn(line));
    this.queue = new ProgressQueue<QueuedCallback>({
      limit: options.queueLimit ?? DEFAULT_QUEUE_LIMIT,
      coalesceKey: (item) => item.coalesce,
      // Heartbeats and progress first, then milestones, then validations and checkpoint events.
      priority: (item) => (item.vital ? 2 : COALESCING.has(item.kind) ? 0 : 1),
      deliver: (item, signal) => this.deliverProgress(item, signal),
      onDropped: (item, reason) => this.onDropped(item, reason),
    });
    warmUpProgressPayloads();
  }

  // --- progress: never throw, never wait ------------------------------------------------

  /** Per-epoch training progress with the real losses and the latest validation metrics. */
  heartbeat(input: CallbackInput<'heartbeat'>): void {
    void this.enqueue('heartbeat', input);
  }

  /** A milestone: `dataset_downloaded`, `checkpoint_saved`, … */
  event(input: CallbackInput<'event'>): void {
    void this.enqueue('event', input);
  }

  /**
   * One validated epoch. The promise resolves with the backend's answer (whether this epoch
   * is the new best), or undefined when it was not delivered; it never rejects, so callers
   * need not await it.
   */
  validation(input: CallbackInput<'validation'>): Promise<ValidationResponse | undefined> {
    return this.enqueue('validation', input);
  }

  inferenceProgress(input: CallbackInput<'inferenceProgress'>): void {
    void this.enqueue('inferenceProgress', input);
  }

  exportProgress(input: CallbackInput<'exportProgress'>): void {
    void this.enqueue('exportProgress', input);
  }

  // --- completion: delivered or CallbackDeliveryError -------------------------------------

  trainingDone(input: CallbackInput<'trainingDone'>): Promise<void> {
    return this.complete('trainingDone', input);
  }

  /**
   * Sends a completion body built before (and stored: src/jobs/outcome.ts) with the key it
   * was stored with. Queued progress is given its chance first; the completion is retried
   * until delivered, else CallbackDeliveryError.
   */
  deliverCompletion<K extends CallbackKind>(kind: K, body: CallbackPayload<K>, idempotencyKey: string): Promise<void> {
    return this.deliver(kind, body, idempotencyKey);
  }

  testRunDone(input: CallbackInput<'testRunDone'>): Promise<void> {
    return this.complete('testRunDone', input);
  }

  inferenceJobDone(input: CallbackInput<'inferenceJobDone'>): Promise<void> {
    return this.complete('inferenceJobDone', input);
  }

  exportDone(input: CallbackInput<'exportDone'>): Promise<void> {
    return this.complete('exportDone', input);
  }

  // --- lifecycle ------------------------------------------------------------------------

  /** Waits until queued progress callbacks are delivered or dropped; false when timeoutMs ran out first. */
  flush(timeoutMs: number = this.flushTimeoutMs): Promise<boolean> {
    return this.queue.flush(timeoutMs);
  }

  /**
   * Gives queued progress up to timeoutMs, drops what is left, and releases connections.
   * Progress calls after this are ignored; completions are refused.
   */
  async close(timeoutMs: number = this.flushTimeoutMs): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!(await this.queue.flush(timeoutMs))) this.abandonQueue('the client is closing');
    this.drops.flush();
    await this.ownedAgent?.destroy();
  }

  stats(): CallbackClientStats {
    return { ...this.counts, queued: this.queue.size };
  }

  // --- internals ------------------------------------------------------------------------

  private get logger(): Logger {
    return this.injectedLogger ?? log();
  }

  private enqueue<K extends CallbackKind>(kind: K, input: CallbackInput<K>): Promise<ValidationResponse | undefined> {
    try {
      if (this.closed) {
        this.logger.warn(`Callback client is closed: ${LABELS[kind]} callback not sent`, { callback: kind });
        return Promise.resolve(undefined);
      }
      const body = this.buildBody(kind, input);
      const vital = kind === 'validation' || (kind === 'event' && VITAL_EVENTS.has((input as CallbackInput<'event'>).event_type));
      const coalesce = coalescingKey(kind, body);
      return new Promise((settle) => this.queue.push({ kind, coalesce, vital, request: this.request(kind, body, progressKey()), settle }));
    } catch (err) {
      // A progress callback must not stop the work, not even when the code building it is wrong.
      const message = err instanceof VisionTrainerError ? err.describe() : String(err);
      this.logger.error(`${LABELS[kind]} callback not sent: ${message}`, { callback: kind });
      return Promise.resolve(undefined);
    }
  }

  private async deliverProgress(item: QueuedCallback, signal: AbortSignal): Promise<void> {
    const label = LABELS[item.kind];
    try {
      const response = await this.transport.send(item.request, this.progressPolicy, {
        signal,
        onRetry: (notice) => this.logger.debug(retryLine(label, notice), { callback: item.kind }),
      });
      this.counts.delivered++;
      item.settle(item.kind === 'validation' ? this.parseValidationResponse(response.body) : undefined);
    } catch (err) {
      const error = err as CallbackTransportError;
      if (error instanceof CallbackAbortedError) return this.onDropped(item, 'abandoned');
      this.counts.dropped++;
      this.drops.add(label, 'failed', `${error.message} (${attemptsText(error.attempts)})`);
      item.settle(undefined);
    }
  }

  private parseValidationResponse(body: string): ValidationResponse | undefined {
    try {
      const parsed = ValidationResponseSchema.safeParse(JSON.parse(body));
      if (parsed.success) return parsed.data;
    } catch {
      // fall through: a backend that accepts the callback but answers oddly is not fatal
    }
    this.logger.debug('Validation callback accepted, but the answer is not {status, is_best}', { body: body.slice(0, 200) });
    return undefined;
  }

  private onDropped(item: QueuedCallback, reason: DropReason): void {
    this.counts.dropped++;
    item.settle(undefined);
    // The completion's own line says when progress was given up for it.
    if (reason !== 'abandoned') this.drops.add(LABELS[item.kind], reason);
  }

  private abandonQueue(why: string): void {
    const dropped = this.queue.abandon();
    this.logger.warn(`Gave up on ${dropped} queued progress callback${dropped === 1 ? '' : 's'} (and any in flight): ${why}`);
  }

  private async complete<K extends CallbackKind>(kind: K, input: CallbackInput<K>): Promise<void> {
    if (this.closed) throw new VisionTrainerError(`The ${LABELS[kind]} callback was sent after CallbackClient.close(); send completions before closing.`);
    const body = this.buildBody(kind, input);
    return this.deliver(kind, body, completionKey(this.jobId, kind, body as object));
  }

  private async deliver(kind: CallbackKind, body: unknown, idempotencyKey: string): Promise<void> {
    const label = LABELS[kind];
    if (this.closed) throw new VisionTrainerError(`The ${label} callback was sent after CallbackClient.close(); send completions before closing.`);
    if (!(await this.queue.flush(this.flushTimeoutMs))) {
      this.abandonQueue(`the ${label} is due and progress was not delivered within ${this.flushTimeoutMs} ms`);
    }
    this.drops.flush();
    const request = this.request(kind, body, idempotencyKey);
    const what = `the ${label} callback (status ${(body as { status: CompletionStatus }).status})`;
    try {
      const response = await this.transport.send(request, this.completionPolicy, {
        onRetry: (notice) => this.logger.warn(retryLine(label, notice), { callback: kind }),
      });
      this.logger.info(`Delivered ${what} after ${attemptsText(response.attempts)}`, { callback: kind });
    } catch (err) {
      const error = err as CallbackTransportError;
      throw new CallbackDeliveryError(
        `Could not deliver ${what} after ${attemptsText(error.attempts)}: ${error.message}. ` +
          'The backend does not know how this job ended. Check that BACKEND_BASE_URL is reachable from the job and that CALLBACK_TOKEN is valid; a retried job reports again.',
        { ...(error instanceof CallbackHttpError ? { status: error.status } : {}), cause: error },
      );
    }
  }

  /** Validated wire body; NaN/Infinity metrics are sent as null with a warning naming them. */
  private buildBody<K extends CallbackKind>(kind: K, input: CallbackInput<K>): unknown {
    const { body, nonFinite } = buildPayload(kind, input);
    if (nonFinite.length > 0) {
      this.logger.warn(`${LABELS[kind]} callback: non-finite numbers sent as null: ${nonFinite.join(', ')}`, { callback: kind });
    }
    return body;
  }

  private request(kind: CallbackKind, body: unknown, idempotencyKey: string): TransportRequest {
    return {
      url: `${this.baseUrl}${callbackPath(kind, this.jobId)}`,
      headers: { ...this.headers, 'Idempotency-Key': idempotencyKey },
      body: JSON.stringify(body),
    };
  }
}

/** Config validation normally catches these; a client built by hand gets the same clear words. */
function checkOptions(options: CallbackClientOptions): void {
  let protocol: string | undefined;
  try {
    protocol = new URL(options.baseUrl).protocol;
  } catch {
    // reported below
  }
  if (protocol !== 'http:' && protocol !== 'https:') {
    throw new VisionTrainerError(
      `Callback base URL ${JSON.stringify(describeUrl(options.baseUrl))} is not an http(s) URL; set BACKEND_BASE_URL to e.g. https://api.example.com`,
    );
  }
  if (!options.jobId) throw new VisionTrainerError('CallbackClient needs a jobId (JOB_ID): every callback path contains it');
  pathSegment(options.jobId, 'JOB_ID');
  // A CR/LF in a header value would be refused by every request (or split the header).
  if (!/^[\x20-\x7e]*$/.test(options.traceId))
    throw new VisionTrainerError('CallbackClient traceId (TRACE_ID) must be printable ASCII: it is sent as the X-Trace-ID header');
  if (!options.token) throw new VisionTrainerError('CallbackClient needs a token (CALLBACK_TOKEN) for the Authorization header');
}

function attemptsText(attempts: number): string {
  return `${attempts} attempt${attempts === 1 ? '' : 's'}`;
}

function retryLine(label: string, notice: RetryNotice): string {
  return `${label} callback attempt ${notice.attempt}/${notice.maxAttempts} failed (${notice.error.message}); retrying in ${(notice.delayMs / 1000).toFixed(1)} s`;
}
