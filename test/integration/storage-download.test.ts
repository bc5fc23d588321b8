import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { StorageError } from '../../src/errors.js';
import { downloadUrl } from '../../src/storage/index.js';
import { useS3Server } from '../helpers/s3.js';

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'vt-download-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function failure(promise: Promise<unknown>): Promise<StorageError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StorageError);
  return err as StorageError;
}

describe('downloadUrl with presigned URLs from SeaweedFS', () => {
  const s3 = useS3Server();
  const weights = randomBytes(3 * 1024 * 1024);
  let client: S3Client;
  beforeAll(async () => {
    const source = join(work, 'yolo11n.pt');
    await writeFile(source, weights);
    await s3.storage().uploadFile(source, 'pretrained/yolo11n.pt');
    client = new S3Client({ endpoint: s3.server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: s3.server });
  });
  afterAll(() => client.destroy());

  const presign = (key: string, options: { expiresIn: number; signingDate?: Date }): Promise<string> =>
    getSignedUrl(client, new GetObjectCommand({ Bucket: s3.server.bucket, Key: key }), options);
  const signatureOf = (url: string): string => new URL(url).searchParams.get('X-Amz-Signature') ?? '';

  it('downloads the object a presigned URL names', async () => {
    const dest = join(work, 'presigned', 'w.pt');
    const result = await downloadUrl(await presign('pretrained/yolo11n.pt', { expiresIn: 300 }), dest);
    expect(result).toEqual({ bytes: weights.length, resumed: 0 });
    expect((await readFile(dest)).equals(weights)).toBe(true);
    expect(await readdir(join(work, 'presigned'))).toEqual(['w.pt']);
  });

  it('explains an expired URL without printing its signature, and does not retry', async () => {
    const url = await presign('pretrained/yolo11n.pt', { expiresIn: 60, signingDate: new Date(Date.now() - 3_600_000) });
    const err = await failure(downloadUrl(url, join(work, 'expired.pt'), { retryDelayMs: 5_000 }));
    expect(err.message).toMatch(/^Downloading http:\/\/127\.0\.0\.1:\d+\/[^ ]+\/pretrained\/yolo11n\.pt\?… was refused \(HTTP 403.*\): the presigned URL is invalid or has expired$/);
    expect(err.hint).toContain('fresh PRETRAINED_WEIGHT_URL');
    expect(err.describe()).not.toContain(signatureOf(url));
    expect(err.describe()).not.toContain('X-Amz-Credential');
    expect(existsSync(join(work, 'expired.pt'))).toBe(false);
  });

  it('explains a tampered URL the same way', async () => {
    const url = await presign('pretrained/yolo11n.pt', { expiresIn: 300 });
    const signature = signatureOf(url);
    const tampered = url.replace(signature, `${signature.slice(0, -6)}000000`);
    const err = await failure(downloadUrl(tampered, join(work, 'tampered.pt')));
    expect(err.message).toContain('HTTP 403');
    expect(err.describe()).not.toContain(signature.slice(0, 20));
  });

  it('says the URL is wrong when the object does not exist', async () => {
    const err = await failure(downloadUrl(await presign('pretrained/missing.pt', { expiresIn: 300 }), join(work, 'missing.pt')));
    expect(err.message).toContain('HTTP 404');
    expect(err.message).toContain('the URL is wrong or the file was deleted');
  });
});

describe('downloadUrl over unreliable HTTP', () => {
  const payload = randomBytes(1024 * 1024);
  let server: Server;
  let base: string;
  let handler: (req: IncomingMessage, res: ServerResponse, index: number) => void;
  let ranges: Array<string | undefined>;

  beforeAll(async () => {
    server = createServer((req, res) => {
      ranges.push(req.headers.range);
      handler(req, res, ranges.length - 1);
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterEach(() => {
    ranges = [];
    server.closeAllConnections();
  });
  afterAll(async () => {
    await new Promise((done) => server.close(done));
  });
  ranges = [];

  /** Sends `bytes` of the payload under a full Content-Length, then drops the connection. */
  function sendPartThenDrop(res: ServerResponse, bytes: number): void {
    res.writeHead(200, { 'content-length': payload.length });
    res.write(payload.subarray(0, bytes), () => setTimeout(() => res.socket?.destroy(), 20));
  }

  function sendFrom(req: IncomingMessage, res: ServerResponse, honourRange: boolean): void {
    const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
    if (honourRange && start > 0) {
      res.writeHead(206, { 'content-range': `bytes ${start}-${payload.length - 1}/${payload.length}`, 'content-length': payload.length - start });
      res.end(payload.subarray(start));
    } else {
      res.writeHead(200, { 'content-length': payload.length });
      res.end(payload);
    }
  }

  it('continues a dropped transfer with a Range request', async () => {
    handler = (req, res, index) => (index === 0 ? sendPartThenDrop(res, 400_000) : sendFrom(req, res, true));
    const dest = join(work, 'resumed.bin');
    const result = await downloadUrl(`${base}/weights.pt?X-Amz-Signature=abc`, dest, { retryDelayMs: 10 });
    expect(result).toEqual({ bytes: payload.length, resumed: 1 });
    expect(ranges[0]).toBeUndefined();
    const resumedFrom = Number(/^bytes=(\d+)-$/.exec(ranges[1] ?? '')?.[1]);
    expect(resumedFrom).toBeGreaterThan(0);
    expect(resumedFrom).toBeLessThanOrEqual(400_000);
    expect((await readFile(dest)).equals(payload)).toBe(true);
  });

  it('starts over when the server ignores Range', async () => {
    handler = (req, res, index) => (index === 0 ? sendPartThenDrop(res, 300_000) : sendFrom(req, res, false));
    const dest = join(work, 'restarted.bin');
    await downloadUrl(`${base}/weights.pt`, dest, { retryDelayMs: 10 });
    expect(ranges).toHaveLength(2);
    expect(ranges[1]).toMatch(/^bytes=\d+-$/);
    expect((await readFile(dest)).equals(payload)).toBe(true);
  });

  it('gives up on a silent server after timeoutMs and continues where it stopped', async () => {
    handler = (req, res, index) => {
      if (index > 0) return sendFrom(req, res, true);
      res.writeHead(200, { 'content-length': payload.length });
      res.write(payload.subarray(0, 200_000)); // ...and then nothing more
    };
    const dest = join(work, 'stalled.bin');
    const result = await downloadUrl(`${base}/weights.pt`, dest, { timeoutMs: 500, retryDelayMs: 10 });
    expect(result.resumed).toBe(1);
    expect((await readFile(dest)).equals(payload)).toBe(true);
  });

  it('retries server errors with backoff', async () => {
    handler = (req, res, index) => {
      if (index < 2) {
        res.writeHead(503);
        res.end('busy');
      } else sendFrom(req, res, true);
    };
    await downloadUrl(`${base}/weights.pt`, join(work, 'retried.bin'), { retryDelayMs: 10 });
    expect(ranges).toHaveLength(3);

    handler = (_req, res) => {
      res.writeHead(500);
      res.end();
    };
    ranges = [];
    const err = await failure(downloadUrl(`${base}/weights.pt`, join(work, 'never.bin'), { retries: 2, retryDelayMs: 10 }));
    expect(err.message).toContain('failed after 3 attempts without progress: HTTP 500');
    expect(ranges).toHaveLength(3);
    expect(existsSync(join(work, 'never.bin'))).toBe(false);
  });

  it('refuses a file over the size limit, from Content-Length or while streaming', async () => {
    handler = (req, res) => sendFrom(req, res, true);
    const announced = await failure(downloadUrl(`${base}/weights.pt`, join(work, 'big.bin'), { maxBytes: 102_400 }));
    expect(announced.message).toContain('larger than the limit of 100 KiB (at least 1.0 MiB)');
    expect(ranges).toHaveLength(1);

    handler = (_req, res) => {
      res.writeHead(200); // chunked: no Content-Length to judge by
      res.end(payload);
    };
    const streamed = await failure(downloadUrl(`${base}/weights.pt`, join(work, 'big.bin'), { maxBytes: 102_400 }));
    expect(streamed.message).toContain('larger than the limit of 100 KiB');
    expect(existsSync(join(work, 'big.bin'))).toBe(false);
  });

  it('does not retry a 404 and keeps the query string out of the message', async () => {
    handler = (_req, res) => {
      res.writeHead(404);
      res.end('not here');
    };
    const err = await failure(downloadUrl(`${base}/nothing.pt?token=s3cr3t-t0ken-value`, join(work, 'nothing.pt')));
    expect(err.message).toBe(`Downloading ${base}/nothing.pt?… failed (HTTP 404): the URL is wrong or the file was deleted`);
    expect(err.describe()).not.toContain('s3cr3t');
    expect(ranges).toHaveLength(1);
  });

  it('accepts only http and https URLs', async () => {
    expect((await failure(downloadUrl('file:///etc/passwd', join(work, 'p')))).message).toContain('only http:// and https:// URLs are supported, not file://');
    expect((await failure(downloadUrl('ftp://example.com/w.pt', join(work, 'p')))).message).toContain('not ftp://');
    expect((await failure(downloadUrl('not a url', join(work, 'p')))).message).toContain('not a valid URL');
  });
});
