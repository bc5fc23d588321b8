/**
 * Object GETs outside the SDK (src/storage/s3-get.ts) against a scripted HTTP server: what the
 * SDK did for these requests has to hold here too (addressing, signing headers, retries,
 * errors). The real signature check is SeaweedFS's, in test/integration/storage-s3.test.ts.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { S3ServiceException } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { bucketLocation, encodeSegment, S3Getter } from '../../src/storage/s3-get.js';

describe('bucketLocation: the URL the SDK would use', () => {
  const at = (config: Parameters<typeof bucketLocation>[0]) => {
    const { origin, bucketPath } = bucketLocation(config);
    return `${origin.origin}${bucketPath}`;
  };
  it('AWS: virtual-hosted, path-style for names that cannot be a host, China regions', () => {
    expect(at({ endpoint: undefined, region: 'eu-west-1', bucket: 'my-bucket', forcePathStyle: false })).toBe('https://my-bucket.s3.eu-west-1.amazonaws.com');
    expect(at({ endpoint: undefined, region: 'us-east-1', bucket: 'my.dotted.bucket', forcePathStyle: false })).toBe(
      'https://s3.us-east-1.amazonaws.com/my.dotted.bucket',
    );
    expect(at({ endpoint: undefined, region: 'cn-north-1', bucket: 'b-1', forcePathStyle: false })).toBe('https://b-1.s3.cn-north-1.amazonaws.com.cn');
  });
  it('S3-compatible endpoints: path-style, keeping a path prefix and the port', () => {
    expect(at({ endpoint: 'http://127.0.0.1:8333', region: 'us-east-1', bucket: 'data', forcePathStyle: true })).toBe('http://127.0.0.1:8333/data');
    expect(at({ endpoint: 'https://storage.example.com/s3/', region: 'auto', bucket: 'data', forcePathStyle: true })).toBe(
      'https://storage.example.com/s3/data',
    );
    expect(at({ endpoint: 'https://acct.r2.cloudflarestorage.com', region: 'auto', bucket: 'data', forcePathStyle: false })).toBe(
      'https://data.acct.r2.cloudflarestorage.com',
    );
  });
  it('encodes key segments as S3 canonicalises them', () => {
    expect(encodeSegment("a b(1)!'*+~é")).toBe('a%20b%281%29%21%27%2A%2B~%C3%A9');
  });
});

describe('S3Getter against a scripted server', () => {
  let server: Server;
  let endpoint: string;
  let requests: IncomingMessage[];
  let answer: (req: IncomingMessage, res: ServerResponse, index: number) => void;
  const getter = (maxAttempts = 3) =>
    new S3Getter({
      endpoint,
      region: 'us-east-1',
      bucket: 'data',
      forcePathStyle: true,
      credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' },
      maxAttempts,
    });

  beforeAll(async () => {
    server = createServer((req, res) => {
      requests.push(req);
      answer(req, res, requests.length - 1);
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  beforeEach(() => {
    requests = [];
  });
  afterAll(async () => {
    await new Promise((done) => server.close(done));
  });

  const xmlError = (res: ServerResponse, status: number, code: string) => {
    res.writeHead(status, { 'content-type': 'application/xml' });
    res.end(`<?xml version="1.0"?><Error><Code>${code}</Code><Message>scripted ${code}</Message></Error>`);
  };

  it('signs a path-style GET with the range and version it asks for', async () => {
    answer = (_req, res) => {
      res.writeHead(206, { 'content-length': 3, etag: '"v1"' });
      res.end('abc');
    };
    const response = await getter().get('images/a b.jpg', { range: { start: 10, end: 13 }, ifMatch: '"v1"' });
    expect(response).toMatchObject({ status: 206, contentLength: 3, etag: '"v1"' });
    expect(await response.body.text()).toBe('abc');
    const [req] = requests;
    expect(req?.url).toBe('/data/images/a%20b.jpg');
    expect(req?.headers.range).toBe('bytes=10-12');
    expect(req?.headers['if-match']).toBe('"v1"');
    expect(req?.headers['x-amz-content-sha256']).toBe('UNSIGNED-PAYLOAD');
    expect(req?.headers.authorization).toMatch(
      /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/us-east-1\/s3\/aws4_request, SignedHeaders=[^,]*if-match;[^,]*range;[^,]*, Signature=[0-9a-f]{64}$/,
    );
  });

  it('retries 503 and SlowDown with backoff, not 404 or 403', async () => {
    answer = (_req, res, index) => (index < 2 ? xmlError(res, 503, 'SlowDown') : res.end('ok'));
    expect(await (await getter().get('k')).body.text()).toBe('ok');
    expect(requests).toHaveLength(3);

    requests = [];
    answer = (_req, res) => xmlError(res, 404, 'NoSuchKey');
    const missing = await getter()
      .get('k')
      .catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(S3ServiceException);
    expect(missing).toMatchObject({ name: 'NoSuchKey', message: 'scripted NoSuchKey', $metadata: { httpStatusCode: 404 } });
    expect(requests).toHaveLength(1);

    requests = [];
    answer = (_req, res) => xmlError(res, 403, 'SignatureDoesNotMatch');
    expect(
      await getter()
        .get('k')
        .catch((e: unknown) => e),
    ).toMatchObject({ name: 'SignatureDoesNotMatch', $metadata: { httpStatusCode: 403 } });
    expect(requests).toHaveLength(1);
  });

  it('gives up after maxAttempts, and names a server that ignores Range instead of using its bytes', async () => {
    answer = (_req, res) => xmlError(res, 500, 'InternalError');
    expect(
      await getter(2)
        .get('k')
        .catch((e: unknown) => e),
    ).toMatchObject({ name: 'InternalError' });
    expect(requests).toHaveLength(2);

    requests = [];
    answer = (_req, res) => res.end('0123456789');
    const ignored = await getter()
      .get('k', { range: { start: 4, end: 8 } })
      .catch((e: unknown) => e);
    expect(ignored).toMatchObject({ name: 'RangeNotHonoured' });
    expect((ignored as Error).message).toContain('asked for bytes 4-7, the server sent the whole object (HTTP 200)');
    // A range that is the whole object may come back as a plain 200.
    expect(await (await getter().get('k', { range: { start: 0, end: 10 } })).body.text()).toBe('0123456789');
  });
});
