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
import { ExitCode, StorageError } from '../../src/errors.js';
import { UrlRefusedError, urlPolicy } from '../../src/net/url-guard.js';
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

  // The storage endpoint's host may be private: it is the one the job trusts.
  const STORAGE_HOST = {
    get policy() {
      return urlPolicy([], s3.server.endpoint);
    },
  };
  const presign = (key: string, options: { expiresIn: number; signingDate?: Date }): Promise<string> =>
    getSignedUrl(client, new GetObjectCommand({ Bucket: s3.server.bucket, Key: key }), options);
  const signatureOf = (url: string): string => new URL(url).searchParams.get('X-Amz-Signature') ?? '';

  it('downloads the object a presigned URL names', async () => {
    const dest = join(work, 'presigned', 'w.pt');
    const result = await downloadUrl(await presign('pretrained/yolo11n.pt', { expiresIn: 300 }), dest, STORAGE_HOST);
    expect(result).toEqual({ bytes: weights.length, resumed: 0 });
    expect((await readFile(dest)).equals(weights)).toBe(true);
    expect(await readdir(join(work, 'presigned'))).toEqual(['w.pt']);
  });

  it('explains an expired URL without printing its signature, and does not retry', async () => {
    const url = await presign('pretrained/yolo11n.pt', { expiresIn: 60, signingDate: new Date(Date.now() - 3_600_000) });
    const err = await failure(downloadUrl(url, join(work, 'expired.pt'), { ...STORAGE_HOST, retryDelayMs: 5_000 }));
    expect(err.message).toMatch(
      /^Downloading http:\/\/127\.0\.0\.1:\d+\/[^ ]+\/pretrained\/yolo11n\.pt\?… was refused \(HTTP 403.*\): the presigned URL is invalid or has expired$/,
    );
    expect(err.hint).toContain('fresh PRETRAINED_WEIGHT_URL');
    expect(err.describe()).not.toContain(signatureOf(url));
    expect(err.describe()).not.toContain('X-Amz-Credential');
    expect(existsSync(join(work, 'expired.pt'))).toBe(false);
  });

  it('explains a tampered URL the same way', async () => {
    const url = await presign('pretrained/yolo11n.pt', { expiresIn: 300 });
    const signature = signatureOf(url);
    const tampered = url.replace(signature, `${signature.slice(0, -6)}000000`);
    const err = await failure(downloadUrl(tampered, join(work, 'tampered.pt'), STORAGE_HOST));
    expect(err.message).toContain('HTTP 403');
    expect(err.describe()).not.toContain(signature.slice(0, 20));
  });

  it('says the URL is wrong when the object does not exist', async () => {
    const err = await failure(downloadUrl(await presign('pretrained/missing.pt', { expiresIn: 300 }), join(work, 'missing.pt'), STORAGE_HOST));
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
  const LOCAL = { policy: urlPolicy(['127.0.0.1']) };

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
    const result = await downloadUrl(`${base}/weights.pt?X-Amz-Signature=abc`, dest, { ...LOCAL, retryDelayMs: 10 });
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
    await downloadUrl(`${base}/weights.pt`, dest, { ...LOCAL, retryDelayMs: 10 });
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
    const result = await downloadUrl(`${base}/weights.pt`, dest, { ...LOCAL, timeoutMs: 500, retryDelayMs: 10 });
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
    await downloadUrl(`${base}/weights.pt`, join(work, 'retried.bin'), { ...LOCAL, retryDelayMs: 10 });
    expect(ranges).toHaveLength(3);

    handler = (_req, res) => {
      res.writeHead(500);
      res.end();
    };
    ranges = [];
    const err = await failure(downloadUrl(`${base}/weights.pt`, join(work, 'never.bin'), { ...LOCAL, retries: 2, retryDelayMs: 10 }));
    expect(err.message).toContain('failed after 3 attempts without progress: HTTP 500');
    expect(ranges).toHaveLength(3);
    expect(existsSync(join(work, 'never.bin'))).toBe(false);
  });

  it('refuses a file over the size limit, from Content-Length or while streaming', async () => {
    handler = (req, res) => sendFrom(req, res, true);
    const announced = await failure(downloadUrl(`${base}/weights.pt`, join(work, 'big.bin'), { ...LOCAL, maxBytes: 102_400 }));
    expect(announced.message).toContain('larger than the limit of 100 KiB (at least 1.0 MiB)');
    expect(ranges).toHaveLength(1);

    handler = (_req, res) => {
      res.writeHead(200); // chunked: no Content-Length to judge by
      res.end(payload);
    };
    const streamed = await failure(downloadUrl(`${base}/weights.pt`, join(work, 'big.bin'), { ...LOCAL, maxBytes: 102_400 }));
    expect(streamed.message).toContain('larger than the limit of 100 KiB');
    expect(existsSync(join(work, 'big.bin'))).toBe(false);
  });

  it('does not retry a 404 and keeps the query string out of the message', async () => {
    handler = (_req, res) => {
      res.writeHead(404);
      res.end('not here');
    };
    const err = await failure(downloadUrl(`${base}/nothing.pt?token=s3cr3t-t0ken-value`, join(work, 'nothing.pt'), LOCAL));
    expect(err.message).toBe(`Downloading ${base}/nothing.pt?… failed (HTTP 404): the URL is wrong or the file was deleted`);
    expect(err.describe()).not.toContain('s3cr3t');
    expect(ranges).toHaveLength(1);
  });

  it('accepts only http and https URLs, refused as a configuration problem', async () => {
    const refused = async (url: string) => {
      const err = await downloadUrl(url, join(work, 'p')).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(UrlRefusedError);
      expect((err as UrlRefusedError).exitCode).toBe(ExitCode.config);
      return (err as Error).message;
    };
    expect(await refused('file:///etc/passwd')).toContain('only http:// and https:// URLs are followed, not file://');
    expect(await refused('ftp://example.com/w.pt')).toContain('not ftp://');
    expect(await refused('not a url')).toContain('not a valid URL');
  });

  it('follows redirects one checked hop at a time: never to metadata or unlisted private addresses, at most 5', async () => {
    const refused = async (url: string) => {
      const err = await downloadUrl(url, join(work, 'redirected.bin'), { ...LOCAL, retryDelayMs: 10 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(UrlRefusedError);
      expect(existsSync(join(work, 'redirected.bin'))).toBe(false);
      return (err as Error).message;
    };
    handler = (req, res) => {
      const to = new URL(req.url!, base).searchParams.get('to');
      if (to) return void res.writeHead(302, { location: to }).end();
      if (req.url!.startsWith('/loop')) return void res.writeHead(307, { location: '/loop' }).end();
      sendFrom(req, res, true);
    };
    const via = (to: string) => `${base}/start.pt?to=${encodeURIComponent(to)}`;
    expect(await refused(via('http://169.254.169.254/latest/meta-data/iam/security-credentials/'))).toMatch(
      /^a redirect of PRETRAINED_WEIGHT_URL http:\/\/127\.0\.0\.1:\d+\/start\.pt\?… to http:\/\/169\.254\.169\.254\/latest\/meta-data\/iam\/security-credentials\/ was refused: 169\.254\.169\.254 is a link-local \/ cloud metadata address/,
    );
    expect(await refused(via('http://[fd00:ec2::254]/latest/meta-data/'))).toMatch(/cloud metadata \(AWS, IPv6\)/);
    expect(await refused(via('http://10.20.30.40/weights.pt'))).toMatch(
      /10\.20\.30\.40 is a private network \(RFC 1918\) address, and 10\.20\.30\.40 is not in ALLOWED_PRIVATE_HOSTS/,
    );
    expect(await refused(via('file:///etc/passwd'))).toMatch(/only http:\/\/ and https:\/\/ URLs are followed/);
    expect(await refused(`${base}/loop`)).toMatch(/redirects more than 5 times/);
    // Without the allow-list even the first hop is refused; with it a redirect to an allowed host is followed.
    expect((await downloadUrl(`${base}/w.pt`, join(work, 'p')).catch((e: Error) => e)) as Error).toBeInstanceOf(UrlRefusedError);
    const result = await downloadUrl(via(`${base}/weights.pt`), join(work, 'followed.bin'), LOCAL);
    expect(result.bytes).toBe(payload.length);
    expect(ranges.length).toBeLessThan(20);
  });
});
