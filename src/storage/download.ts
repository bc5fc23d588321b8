/**
 * Downloads a file from an http(s) URL, typically a presigned URL for pretrained weights
 * (PRETRAINED_WEIGHT_URL, TEXT_ENCODER_WEIGHT_URL). Weights are large and connections drop, so a dropped transfer
 * continues with a Range request from the bytes already on disk; a server that ignores Range
 * makes it start over. The URL's query string holds the signature: it never appears in a
 * message (describeUrl keeps scheme, host and path only).
 *
 * undici's RetryAgent resumes too, but it fails outright when a server answers a Range request
 * with 200, and it cannot stop a body that grows past a size limit; this loop does both.
 *
 * The URL comes from outside, so it cannot reach inside (src/net/url-guard.ts): every connection,
 * redirects included, is judged where it is made, and redirects are followed here, one checked
 * hop at a time (http(s) only, at most `maxRedirects`).
 */
import { createWriteStream } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { pipeline } from 'node:stream/promises';
import { request, type Dispatcher } from 'undici';
import { ExitCode, StorageError, type VisionTrainerError } from '../errors.js';
import { checkUrl, guardedAgent, UrlRefusedError, urlRefusal, type UrlPolicy } from '../net/url-guard.js';
import { describeUrl, redact } from '../redact.js';
import { formatBytes, writeAtomically } from './files.js';

export interface DownloadUrlOptions {
  /** Refuse downloads larger than this (checked against Content-Length and while streaming). Default 20 GiB. */
  maxBytes?: number;
  /** How long the server may stay silent (connecting, before headers, between body chunks) before the attempt is abandoned. Default 60 s. */
  timeoutMs?: number;
  /** Attempts after a failure that brought no new bytes (5xx, 408, 429, network errors). Default 5. */
  retries?: number;
  /** First backoff delay; doubles per consecutive failure, capped at 30 s. Default 1 s. */
  retryDelayMs?: number;
  /** Which private hosts the URL and its redirects may reach. Default: none (public addresses only). */
  policy?: UrlPolicy;
  /** Redirects followed per request. Default 5. */
  maxRedirects?: number;
  /** The variable the URL came from, for messages. Default PRETRAINED_WEIGHT_URL. */
  variable?: string;
  /** Aborting it ends the transfer and any wait at once; the call rejects with the signal's reason. */
  signal?: AbortSignal | undefined;
}

export interface DownloadUrlResult {
  bytes: number;
  /** How many times an interrupted transfer continued with a Range request. */
  resumed: number;
}

const DEFAULTS = { maxBytes: 20 * 1024 ** 3, timeoutMs: 60_000, retries: 5, retryDelayMs: 1_000, maxRedirects: 5, variable: 'PRETRAINED_WEIGHT_URL' };
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** A failure that another attempt cannot fix (4xx, size limit, a refused URL): thrown straight out of the loop. */
class PermanentFailure extends Error {
  constructor(readonly error: VisionTrainerError) {
    super(error.message);
  }
}

interface Target {
  url: string;
  shown: string;
  variable: string;
  policy: UrlPolicy;
  maxRedirects: number;
}

export async function downloadUrl(url: string, destPath: string, options: DownloadUrlOptions = {}): Promise<DownloadUrlResult> {
  const { maxBytes, timeoutMs, retries, retryDelayMs, maxRedirects, variable } = { ...DEFAULTS, ...options };
  const policy = options.policy ?? { allowedPrivateHosts: [] };
  const shown = describeUrl(url);
  checkUrl(policy, url, variable);
  const target: Target = { url, shown, variable, policy, maxRedirects };

  const dispatcher = guardedAgent(policy, { connectTimeoutMs: timeoutMs, headersTimeoutMs: timeoutMs, bodyTimeoutMs: timeoutMs });
  const { signal } = options;
  // Destroying the agent ends the request and the body stream under way, wherever the attempt is.
  const onAbort = () => void dispatcher.destroy().catch(() => {});
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await writeAtomically(destPath, async (temp) => {
      let written = 0;
      let highWater = 0;
      let resumed = 0;
      let failuresWithoutProgress = 0;
      for (;;) {
        signal?.throwIfAborted();
        const outcome = await attempt(target, temp, written, maxBytes, dispatcher);
        signal?.throwIfAborted();
        if (outcome.kind === 'done') return { bytes: outcome.written, resumed };
        if (outcome.written > highWater) {
          highWater = outcome.written;
          failuresWithoutProgress = 0;
        } else {
          failuresWithoutProgress += 1;
        }
        if (failuresWithoutProgress > retries) {
          throw new StorageError(`Downloading ${shown} failed after ${retries + 1} attempts without progress: ${outcome.reason}`, {
            hint: 'The server or the network kept failing; retrying the job later may succeed.',
          });
        }
        if (outcome.written > 0) resumed += 1;
        written = outcome.written;
        const delay = failuresWithoutProgress === 0 ? 0 : Math.min(30_000, retryDelayMs * 2 ** (failuresWithoutProgress - 1));
        if (delay > 0) await sleep(delay * (1 + Math.random() * 0.2), undefined, signal ? { signal } : undefined);
      }
    });
  } catch (err) {
    if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : err;
    throw err instanceof PermanentFailure ? err.error : err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    await dispatcher.close().catch(() => {});
  }
}

type AttemptOutcome = { kind: 'done'; written: number } | { kind: 'retry'; written: number; reason: string };

/** The response at the end of the URL's redirects, each hop checked; throws PermanentFailure for a refused one. */
async function follow(target: Target, headers: Record<string, string>, dispatcher: Dispatcher): Promise<Dispatcher.ResponseData | { error: unknown }> {
  let current = target.url;
  for (let hop = 0; ; hop++) {
    const via = hop === 0 ? '' : ` (reached through ${hop} redirect${hop === 1 ? '' : 's'} of ${target.shown})`;
    let response: Dispatcher.ResponseData;
    try {
      response = await request(current, { method: 'GET', headers, dispatcher });
    } catch (err) {
      const refused = urlRefusal(err);
      if (refused)
        throw new PermanentFailure(new UrlRefusedError(`${target.variable} ${describeUrl(current)} was refused${via}: ${refused.message}`, refused.hint ?? ''));
      return { error: err };
    }
    const location = REDIRECTS.has(response.statusCode) ? header(response.headers, 'location') : undefined;
    if (location === undefined) return response;
    await response.body.dump();
    if (hop >= target.maxRedirects) {
      throw new PermanentFailure(
        new UrlRefusedError(`${target.variable} ${target.shown} redirects more than ${target.maxRedirects} times`, 'Point the variable at the final URL.'),
      );
    }
    let next: string;
    try {
      next = new URL(location, current).toString();
    } catch {
      throw new PermanentFailure(new UrlRefusedError(`${target.variable} ${target.shown} redirects to an invalid URL`, 'Point the variable at the final URL.'));
    }
    try {
      checkUrl(target.policy, next, `a redirect of ${target.variable} ${target.shown} to`);
    } catch (err) {
      throw new PermanentFailure(err as UrlRefusedError);
    }
    current = next;
  }
}

/** One request: continues from `written` bytes when there are any, returns how far it got. */
async function attempt(target: Target, temp: string, written: number, maxBytes: number, dispatcher: Dispatcher): Promise<AttemptOutcome> {
  const { shown } = target;
  const headers: Record<string, string> = { 'accept-encoding': 'identity' };
  if (written > 0) headers.range = `bytes=${written}-`;
  const followed = await follow(target, headers, dispatcher);
  if ('error' in followed) return { kind: 'retry', written, reason: networkReason(followed.error) };
  const response = followed;
  const status = response.statusCode;
  let start: number;
  let total: number | undefined;
  if (status === 206 && written > 0) {
    const range = parseContentRange(header(response.headers, 'content-range'));
    if (range?.start !== written) {
      await response.body.dump();
      return { kind: 'retry', written: 0, reason: 'the server answered the Range request with a different range; starting over' };
    }
    start = written;
    total = range.total;
  } else if (status === 200) {
    start = 0; // A fresh transfer, or a server that ignored Range: either way the file starts over.
    const length = header(response.headers, 'content-length');
    total = length === undefined ? undefined : Number(length);
  } else if (status === 416 && written > 0) {
    await response.body.dump();
    return { kind: 'retry', written: 0, reason: 'the server refused to continue the transfer (HTTP 416); starting over' };
  } else {
    const detail = await errorDetail(response);
    if (status === 408 || status === 429 || status >= 500) return { kind: 'retry', written, reason: `HTTP ${status}${detail}` };
    throw new PermanentFailure(httpError(shown, status, detail, target.variable));
  }

  if (total !== undefined && Number.isFinite(total) && total > maxBytes) {
    await response.body.dump();
    throw new PermanentFailure(tooLarge(shown, total, maxBytes));
  }
  let position = start;
  try {
    await pipeline(
      response.body,
      async function* countBytes(chunks: AsyncIterable<Buffer>) {
        for await (const chunk of chunks) {
          position += chunk.length;
          if (position > maxBytes) throw new PermanentFailure(tooLarge(shown, position, maxBytes));
          yield chunk;
        }
      },
      createWriteStream(temp, { flags: start > 0 ? 'a' : 'w' }),
    );
  } catch (err) {
    if (err instanceof PermanentFailure) throw err;
    return { kind: 'retry', written: position, reason: `the connection broke after ${formatBytes(position)} (${networkReason(err)})` };
  }
  if (total !== undefined && position < total) {
    return { kind: 'retry', written: position, reason: `the connection closed after ${formatBytes(position)} of ${formatBytes(total)}` };
  }
  return { kind: 'done', written: position };
}

function httpError(shown: string, status: number, detail: string, variable: string): StorageError {
  const secretNote = 'The query string (which holds the signature) is not shown.';
  if (status === 401 || status === 403) {
    // The same URL stays refused: retrying the job with it cannot help.
    return new StorageError(`Downloading ${shown} was refused (HTTP ${status}${detail}): the presigned URL is invalid or has expired`, {
      exitCode: ExitCode.storageAccessDenied,
      hint: `Ask the platform for a fresh ${variable}; presigned URLs expire and break when altered. ${secretNote}`,
    });
  }
  if (status === 404) {
    return new StorageError(`Downloading ${shown} failed (HTTP 404${detail}): the URL is wrong or the file was deleted`, {
      hint: `Check that the weight file exists and the URL points at it. ${secretNote}`,
    });
  }
  return new StorageError(`Downloading ${shown} was rejected (HTTP ${status}${detail})`, { hint: `Check the URL. ${secretNote}` });
}

function tooLarge(shown: string, bytes: number, maxBytes: number): StorageError {
  return new StorageError(`Downloading ${shown} stopped: the file is larger than the limit of ${formatBytes(maxBytes)} (at least ${formatBytes(bytes)})`, {
    hint: 'Check that the URL points at the intended weight file, or raise the download size limit.',
  });
}

/** S3-style XML errors carry <Code> and <Message>; only those are kept (other fields echo the signature). */
async function errorDetail(response: Dispatcher.ResponseData): Promise<string> {
  let text = '';
  try {
    for await (const chunk of response.body) {
      text += chunk.toString();
      if (text.length > 8192) break;
    }
  } catch {
    return '';
  } finally {
    response.body.destroy();
  }
  const code = /<Code>([^<]{1,100})<\/Code>/.exec(text)?.[1];
  const message = /<Message>([^<]{1,200})<\/Message>/.exec(text)?.[1];
  const parts = [code, message].filter((p): p is string => p !== undefined);
  return parts.length ? ` ${redact(parts.join(': '))}` : '';
}

function networkReason(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { code?: string } };
  const code = e.code ?? e.cause?.code;
  // undici messages do not contain the URL, but pass them through redact all the same.
  return redact(code ? `${code}: ${e.message ?? ''}`.trim() : (e.message ?? String(err)));
}

function header(headers: Dispatcher.ResponseData['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function parseContentRange(value: string | undefined): { start: number; total: number | undefined } | undefined {
  const match = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value?.trim() ?? '');
  if (!match) return undefined;
  return { start: Number(match[1]), total: match[3] === '*' ? undefined : Number(match[3]) };
}
