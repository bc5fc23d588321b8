/**
 * A local stand-in for the backend's callback endpoints: a real HTTP server that checks each
 * callback the way the backend would (path, bearer token, X-Trace-ID, body schema from the
 * same ENDPOINTS table the client uses), records it, and prints one readable line. Tests use
 * it to see exactly what a job sent, and to make the backend fail on purpose (`failNext`).
 * A developer can run it beside a job:
 *
 *   node dist/src/dev/receiver.js --port 8080 --token dev-token
 *   BACKEND_BASE_URL=http://127.0.0.1:8080 CALLBACK_TOKEN=dev-token vision-trainer train
 *
 * It answers like an idempotent backend: a second delivery with an Idempotency-Key already
 * accepted is answered as before and recorded as a duplicate, not as a new callback.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleepFor } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { ReceiverOutcome } from './outcomes.js';
import { ENDPOINTS, matchCallbackPath, type CallbackKind, type CallbackPayload, type ValidationResponse } from '../callbacks/schemas.js';

export type { ReceiverOutcome };

export interface CallbackReceiverOptions {
  /** 0 (the default) picks a free port. */
  port?: number;
  /** The CALLBACK_TOKEN callers must present as `Authorization: Bearer <token>`. */
  token: string;
  host?: string;
  /** Print one line per request (default true). */
  print?: boolean;
  /** Where printed lines go (default stdout). */
  logger?: (line: string) => void;
  /** Told about every request once it has been answered (status and outcome set), e.g. the dashboard. */
  onRequest?: (request: ReceivedRequest) => void;
  /**
   * Serves requests whose path is not a callback path (the dashboard's pages): returns true
   * when it took the request. Requests it takes are not callbacks and are not recorded.
   */
  serveOther?: (req: IncomingMessage, res: ServerResponse) => boolean;
  /**
   * How a validation callback is answered: `is_best` (left out when undefined: the job then
   * judges the epoch by its score), after `delayMs`. Returning undefined, or leaving this out,
   * answers as a backend tracking the best primary metric per job would.
   */
  answerValidation?: (jobId: string, body: CallbackPayload<'validation'>) => { isBest?: boolean | undefined; delayMs?: number } | undefined;
}

export interface ReceivedRequest {
  method: string;
  path: string;
  kind: CallbackKind | undefined;
  jobId: string | undefined;
  /** The parsed JSON body; the raw text when it is not JSON. */
  body: unknown;
  /** Request headers, lower-cased, with Authorization redacted. */
  headers: Record<string, string>;
  idempotencyKey: string | undefined;
  traceId: string | undefined;
  /** True when the body passed its endpoint's schema. */
  valid: boolean;
  /** Why the request was refused (`path: message` for schema problems). */
  errors: string[];
  /** The status answered; 0 while the answer is still pending. */
  status: number;
  outcome: ReceiverOutcome;
  receivedAt: Date;
}

/**
 * An accepted callback, counted once however many times it was delivered. Without a type
 * argument it is a union discriminated by `kind`, so checking `kind` narrows `body`.
 */
export type ReceivedCallback<K extends CallbackKind = CallbackKind> = K extends CallbackKind
  ? Omit<ReceivedRequest, 'kind' | 'jobId' | 'body' | 'outcome'> & { kind: K; jobId: string; body: CallbackPayload<K>; outcome: 'accepted' }
  : never;

export interface InjectedFailure {
  /** Status to answer (default 503). */
  status?: number;
  /** `Retry-After` value: seconds, or an HTTP-date string. */
  retryAfter?: number | string;
  /** `retry-after-ms` value. */
  retryAfterMs?: number;
  /** Hold the answer this long first (to make a client time out). */
  delayMs?: number;
  /** Only requests for this callback kind consume the failure. */
  kind?: CallbackKind;
}

export interface CallbackReceiver {
  url: string;
  port: number;
  /** Accepted callbacks in arrival order, duplicates left out. */
  readonly received: ReceivedCallback[];
  /** Every request, whatever its outcome (retries, duplicates, refusals). */
  readonly requests: ReceivedRequest[];
  /** The first accepted callback (already received or still to come) matching; rejects after timeoutMs. */
  waitFor<K extends CallbackKind>(kind: K, timeoutMs?: number): Promise<ReceivedCallback<K>>;
  waitFor(predicate: (callback: ReceivedCallback) => boolean, timeoutMs?: number): Promise<ReceivedCallback>;
  /** The next n matching requests are answered with a failure instead of being processed. */
  failNext(n: number, failure?: InjectedFailure): void;
  /** Forgets everything received, pending failures and best-epoch tracking. */
  reset(): void;
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 10 * 1024 * 1024;

/** A request turned away: the status answered, the outcome recorded and the reason stated. */
interface Refusal {
  status: number;
  outcome: ReceiverOutcome;
  message: string;
}

type Waiter = { matches: (c: ReceivedCallback) => boolean; resolve: (c: ReceivedCallback) => void };

/**
 * What the receiver remembers between requests: what it accepted, the answer it gave per
 * Idempotency-Key (a redelivery is answered the same), the best primary metric per job, the
 * failures queued to inject, and the tests waiting for a callback.
 */
class ReceiverMemory {
  readonly received: ReceivedCallback[] = [];
  readonly requests: ReceivedRequest[] = [];
  private readonly answersByKey = new Map<string, unknown>();
  private readonly bestByJob = new Map<string, number>();
  private failures: InjectedFailure[] = [];
  private waiters: Waiter[] = [];

  queueFailures(n: number, failure: InjectedFailure): void {
    for (let i = 0; i < n; i++) this.failures.push({ ...failure, status: failure.status ?? 503 });
  }

  /** The next queued failure for this kind of callback, removed from the queue. */
  takeFailure(kind: CallbackKind): { failure: InjectedFailure; left: number } | undefined {
    const index = this.failures.findIndex((f) => f.kind === undefined || f.kind === kind);
    if (index === -1) return undefined;
    const [failure] = this.failures.splice(index, 1);
    return failure && { failure, left: this.failures.length };
  }

  previousAnswer(key: string | undefined): { answer: unknown } | undefined {
    return key !== undefined && this.answersByKey.has(key) ? { answer: this.answersByKey.get(key) } : undefined;
  }

  /** Tracks the best primary metric per job: losses and errors improve downwards. */
  isNewBest(jobId: string, body: CallbackPayload<'validation'>): boolean {
    const value = body.primary_metric_value;
    if (value === null) return false;
    const lowerIsBetter = /loss|error/i.test(body.primary_metric_name);
    const best = this.bestByJob.get(jobId);
    const better = best === undefined || (lowerIsBetter ? value < best : value > best);
    if (better) this.bestByJob.set(jobId, value);
    return better;
  }

  accept(callback: ReceivedCallback, answer: unknown): void {
    if (callback.idempotencyKey !== undefined) this.answersByKey.set(callback.idempotencyKey, answer);
    this.received.push(callback);
    for (const waiter of this.waiters.filter((w) => w.matches(callback))) waiter.resolve(callback);
  }

  waitFor(target: CallbackKind | ((c: ReceivedCallback) => boolean), timeoutMs = 10_000): Promise<ReceivedCallback> {
    const matches = typeof target === 'string' ? (c: ReceivedCallback) => c.kind === target : target;
    const already = this.received.find(matches);
    if (already) return Promise.resolve(already);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        matches,
        resolve: (c) => {
          clearTimeout(timer);
          this.waiters = this.waiters.filter((w) => w !== waiter);
          resolve(c);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        const what = typeof target === 'string' ? `a ${target} callback` : 'a matching callback';
        reject(new Error(`No ${what} within ${timeoutMs} ms; received so far: ${summarise(this.received)}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  reset(): void {
    this.received.length = 0;
    this.requests.length = 0;
    this.answersByKey.clear();
    this.bestByJob.clear();
    this.failures = [];
  }
}

export async function startCallbackReceiver(options: CallbackReceiverOptions): Promise<CallbackReceiver> {
  const host = options.host ?? '127.0.0.1';
  const print = options.print ?? true;
  const emit = options.logger ?? ((line: string) => process.stdout.write(`${line}\n`));
  const say = (line: string) => {
    if (print) emit(line);
  };
  const memory = new ReceiverMemory();
  const shutdown = new AbortController();
  const handle = requestHandler(options, memory, say, shutdown.signal);

  const server = createServer((req, res) => {
    if (options.serveOther && !matchCallbackPath(new URL(req.url ?? '/', 'http://receiver.local').pathname) && options.serveOther(req, res)) return;
    handle(req, res).catch((err: unknown) => {
      say(`[receiver] internal error: ${err instanceof Error ? err.message : String(err)}`);
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(500);
        res.end();
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://${host}:${port}`,
    port,
    received: memory.received,
    requests: memory.requests,
    waitFor: memory.waitFor.bind(memory) as CallbackReceiver['waitFor'],
    failNext: (n, failure = {}) => memory.queueFailures(n, failure),
    reset: () => memory.reset(),
    async close() {
      shutdown.abort();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/**
 * One request, checked in the order a backend checks it: the route, then any injected failure
 * (so a test can fail even a request that would be refused), then the headers, the JSON, a
 * redelivery, the schema; the first check that fails answers.
 */
function requestHandler(options: CallbackReceiverOptions, memory: ReceiverMemory, say: (line: string) => void, shutdown: AbortSignal) {
  const pause = (ms: number | undefined) => (ms ? sleepFor(ms, undefined, { signal: shutdown }).catch(() => undefined) : undefined);

  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://receiver.local').pathname;
    const route = matchCallbackPath(path);
    const record = newRecord(req, path, route);
    // Recorded on arrival, so `requests` is in arrival order even when an answer is delayed;
    // status and outcome are filled in when it is answered (status 0 until then).
    memory.requests.push(record);
    const who = `[job ${route?.jobId ?? '?'}] ${route ? describeKind(route.kind) : `${record.method} ${record.path}`}`;
    const answer = (status: number, outcome: ReceiverOutcome, payload: unknown, errors: string[] = [], extraHeaders: Record<string, string> = {}) => {
      Object.assign(record, { status, outcome, errors });
      if (!res.destroyed) {
        res.writeHead(status, { 'Content-Type': 'application/json', ...extraHeaders });
        res.end(JSON.stringify(payload));
      }
      try {
        options.onRequest?.(record);
      } catch (err) {
        say(`[receiver] onRequest failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    const refuse = ({ status, outcome, message }: Refusal) => {
      say(`${who} REFUSED ${status}: ${message}`);
      answer(status, outcome, { status: 'error', message }, [message]);
    };

    let text: string;
    try {
      text = await readBody(req, MAX_BODY_BYTES);
    } catch {
      return refuse({ status: 413, outcome: 'too_large', message: `body larger than ${MAX_BODY_BYTES} bytes` });
    }
    const json = parseJson(text);
    record.body = json ?? text;
    if (!route) return refuse({ status: 404, outcome: 'not_found', message: 'not a callback path (see ENDPOINTS in src/callbacks/schemas.ts)' });

    const injected = req.method === 'POST' ? memory.takeFailure(route.kind) : undefined;
    if (injected) {
      const { failure, left } = injected;
      await pause(failure.delayMs);
      const status = failure.status ?? 503;
      say(`${who} answered ${status} (injected failure${left ? `, ${left} more queued` : ''})`);
      return answer(status, 'injected_failure', { status: 'error', message: 'injected failure' }, [`injected ${status}`], retryHeaders(failure));
    }

    const refusal =
      headerRefusal(req, record, options.token) ?? (json === undefined ? { status: 400, outcome: 'bad_json', message: 'body is not JSON' } : undefined);
    if (refusal) return refuse(refusal);

    const before = memory.previousAnswer(record.idempotencyKey);
    if (before) {
      say(`${who} duplicate delivery (Idempotency-Key ${record.idempotencyKey?.slice(0, 8)}…), answered as before`);
      return answer(200, 'duplicate', before.answer);
    }

    const parsed = ENDPOINTS[route.kind].schema.safeParse(json);
    if (!parsed.success) {
      const errors = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(body)'}: ${issue.message}`);
      say(`${who} REFUSED 422: ${errors.join('; ')}`);
      return answer(422, 'invalid', { status: 'error', message: 'body does not match the schema', issues: parsed.error.issues }, errors);
    }

    Object.assign(record, { valid: true, body: parsed.data });
    const callback = record as ReceivedCallback;
    let response: unknown = { status: 'ok' };
    let bestNote = '';
    if (callback.kind === 'validation') {
      const chosen = options.answerValidation?.(callback.jobId, callback.body) ?? { isBest: memory.isNewBest(callback.jobId, callback.body) };
      await pause(chosen.delayMs);
      response = chosen.isBest === undefined ? { status: 'ok' } : ({ status: 'ok', is_best: chosen.isBest } satisfies ValidationResponse);
      bestNote = chosen.isBest ? ' (new best)' : '';
    }
    say(`[job ${callback.jobId}] ${describeCallback(callback)}${bestNote}`);
    answer(200, 'accepted', response);
    memory.accept(callback, response);
  };
}

function newRecord(req: IncomingMessage, path: string, route: ReturnType<typeof matchCallbackPath>): ReceivedRequest {
  const headers = recordHeaders(req);
  return {
    method: req.method ?? '?',
    path,
    kind: route?.kind,
    jobId: route?.jobId,
    body: undefined,
    headers,
    idempotencyKey: headers['idempotency-key'],
    traceId: headers['x-trace-id'],
    valid: false,
    errors: [],
    status: 0,
    outcome: 'pending',
    receivedAt: new Date(),
  };
}

/** What the backend refuses before it reads the body: the method, the token, the trace id, the media type. */
function headerRefusal(req: IncomingMessage, record: ReceivedRequest, token: string): Refusal | undefined {
  if (req.method !== 'POST') return { status: 405, outcome: 'method_not_allowed', message: `${req.method} is not allowed; callbacks are POST` };
  if (req.headers.authorization !== `Bearer ${token}`) {
    return { status: 401, outcome: 'unauthorized', message: req.headers.authorization ? 'wrong bearer token' : 'missing Authorization: Bearer header' };
  }
  if (!record.traceId) return { status: 400, outcome: 'missing_trace_id', message: 'missing X-Trace-ID header' };
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
    return {
      status: 415,
      outcome: 'unsupported_media_type',
      message: `Content-Type must be application/json, got ${JSON.stringify(req.headers['content-type'] ?? '')}`,
    };
  }
  return undefined;
}

function retryHeaders(failure: InjectedFailure): Record<string, string> {
  const headers: Record<string, string> = {};
  if (failure.retryAfter !== undefined) headers['Retry-After'] = String(failure.retryAfter);
  if (failure.retryAfterMs !== undefined) headers['retry-after-ms'] = String(failure.retryAfterMs);
  return headers;
}

// ---------------------------------------------------------------------------------------
// One readable line per callback

const KIND_NAMES: Record<CallbackKind, string> = {
  heartbeat: 'heartbeat',
  event: 'event',
  validation: 'validation',
  trainingDone: 'done',
  inferenceProgress: 'inference progress',
  testRunDone: 'test-run done',
  inferenceJobDone: 'inference-job done',
  exportProgress: 'export',
  exportDone: 'export done',
};

function describeKind(kind: CallbackKind): string {
  return KIND_NAMES[kind];
}

/** The body of an accepted callback as one line, e.g. `heartbeat epoch 3/10 (30%) loss=0.52`. */
export function describeCallback(callback: ReceivedCallback): string {
  const name = describeKind(callback.kind);
  switch (callback.kind) {
    case 'heartbeat': {
      const b = callback.body;
      const total = b.total_epochs ?? (b.progress > 0 ? Math.round((b.epoch * 100) / b.progress) : undefined);
      const batch = b.batch === undefined ? '' : `batch ${b.batch}${b.total_batches ? `/${b.total_batches}` : ''}`;
      return join(name, `epoch ${b.epoch}${total ? `/${total}` : ''}`, batch, `(${Math.round(b.progress)}%)`, metricsText(b.metrics));
    }
    case 'event': {
      const b = callback.body;
      return join(name, `${b.event_type}:`, firstLine(b.message));
    }
    case 'validation': {
      const b = callback.body;
      return join(
        name,
        `epoch ${b.epoch}`,
        `${b.primary_metric_name}=${num(b.primary_metric_value)}`,
        `images=${b.num_images_validated}`,
        b.per_class_metrics ? `classes=${b.per_class_metrics.length}` : '',
      );
    }
    case 'trainingDone': {
      const b = callback.body;
      return join(name, b.status, metricsText(b.final_metrics), pathText('checkpoint', b.checkpoint_path), errorText(b.error_message));
    }
    case 'inferenceProgress': {
      const b = callback.body;
      const speed = b.avg_inference_time_ms === null ? '' : `${num(b.avg_inference_time_ms)} ms/image`;
      return join(name, `${b.processed_images}/${b.total_images} (${Math.round(b.progress_percent)}%)`, speed);
    }
    case 'testRunDone': {
      const b = callback.body;
      return join(name, b.status, metricsText(b.overall_metrics), pathText('results', b.results_path), errorText(b.error_message));
    }
    case 'inferenceJobDone': {
      const b = callback.body;
      return join(name, b.status, pathText('results', b.results_path), errorText(b.error_message));
    }
    case 'exportProgress': {
      const b = callback.body;
      return join(name, b.stage, `${Math.round(b.progress_percent)}%:`, firstLine(b.message));
    }
    case 'exportDone': {
      const b = callback.body;
      const size = typeof b.model_info.model_size_mb === 'number' ? `size=${num(b.model_info.model_size_mb)}MB` : '';
      const check = b.validation_metrics?.passed === undefined ? '' : `validation=${b.validation_metrics.passed ? 'passed' : 'failed'}`;
      return join(name, b.status, pathText('model', b.export_path), size, check, errorText(b.error_message));
    }
  }
}

const MAX_METRICS_SHOWN = 8;

function metricsText(metrics: Record<string, number | null>): string {
  const entries = Object.entries(metrics);
  const shown = entries.slice(0, MAX_METRICS_SHOWN).map(([k, v]) => `${k}=${num(v)}`);
  if (entries.length > MAX_METRICS_SHOWN) shown.push(`(+${entries.length - MAX_METRICS_SHOWN} more)`);
  return shown.join(' ');
}

function num(value: number | null | undefined): string {
  if (value === null || value === undefined) return 'null';
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(4)));
}

function pathText(label: string, path: string | null): string {
  return path ? `${label}=${path}` : '';
}

function errorText(message: string | null): string {
  return message ? `error: ${firstLine(message)}` : '';
}

function firstLine(text: string): string {
  const line = text.split('\n', 1)[0] ?? '';
  return line.length > 160 ? `${line.slice(0, 160)}…` : line;
}

function join(...parts: string[]): string {
  return parts.filter(Boolean).join(' ');
}

function summarise(callbacks: ReceivedCallback[]): string {
  if (callbacks.length === 0) return 'nothing';
  const counts = new Map<string, number>();
  for (const c of callbacks) counts.set(c.kind, (counts.get(c.kind) ?? 0) + 1);
  return [...counts].map(([kind, n]) => `${kind}×${n}`).join(', ');
}

// ---------------------------------------------------------------------------------------
// HTTP details

function recordHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    out[name] = name === 'authorization' ? value.toString().replace(/^(\S+\s+).*$/, '$1[REDACTED]') : Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new Error('body too large'));
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

// ---------------------------------------------------------------------------------------
// Run it on its own: node dist/src/dev/receiver.js [--port 8080] [--token T] [--host H]

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { port: { type: 'string', default: '8080' }, token: { type: 'string' }, host: { type: 'string', default: '127.0.0.1' } },
  });
  const token = values.token ?? process.env.CALLBACK_TOKEN;
  const port = Number(values.port);
  if (!token || !Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write('Usage: receiver --token <CALLBACK_TOKEN> [--port 8080] [--host 127.0.0.1]\n(--token may come from CALLBACK_TOKEN)\n');
    process.exitCode = 2;
    return;
  }
  const receiver = await startCallbackReceiver({ port, token, host: values.host });
  process.stdout.write(
    `Callback receiver on ${receiver.url}: set BACKEND_BASE_URL=${receiver.url} and the same CALLBACK_TOKEN for the job. Ctrl-C stops it.\n`,
  );
  const stop = () => void receiver.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
