/**
 * One real SeaweedFS S3 server per test file: `const s3 = useS3Server();` at the top of a
 * describe block registers beforeAll/afterAll; inside tests, `s3.config` is a ready
 * StorageConfig and `s3.server` the running server (endpoint, keys, bucket).
 */
import { createHash, createHmac } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterAll, beforeAll } from 'vitest';
import { startS3Server, type S3Server, type S3ServerOptions } from '../../src/dev/s3server.js';
import { createStorage, type Storage, type StorageOptions } from '../../src/storage/index.js';
import type { S3StorageConfig } from '../../src/storage/s3.js';

export interface S3Fixture {
  readonly server: S3Server;
  readonly config: S3StorageConfig;
  /** A Storage on this server; options tune paging, part size, retries. */
  storage(options?: StorageOptions): Storage;
  /**
   * Temporary credentials the server itself issues (STS AssumeRole, signed with its static keys):
   * an access key, a secret and a session token that SeaweedFS checks on every request.
   */
  temporaryCredentials(durationSeconds?: number): Promise<TemporaryCredentials>;
}

export interface TemporaryCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
}

/** SHA-256 and HMAC-SHA-256 from node:crypto, in the shape the SigV4 signer takes. */
type Bytes = string | ArrayBuffer | ArrayBufferView;
const bytes = (data: Bytes) =>
  typeof data === 'string' ? data : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
class Sha256 {
  private readonly hash;
  constructor(secret?: Bytes) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: Bytes): void {
    this.hash.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
  reset(): void {}
}

/**
 * SeaweedFS answers STS on its S3 port (`weed mini` enables it; no RoleArn: the caller's own
 * identity, as AWS's GetSessionToken would). The answer is AWS's XML.
 */
async function assumeRole(server: S3Server, durationSeconds: number): Promise<TemporaryCredentials> {
  const url = new URL(server.endpoint);
  const body = new URLSearchParams({
    Action: 'AssumeRole',
    Version: '2011-06-15',
    RoleSessionName: 'vision-trainer-test',
    DurationSeconds: String(durationSeconds),
  }).toString();
  const signer = new SignatureV4({
    service: 'sts',
    region: 'us-east-1',
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    sha256: Sha256,
  });
  const signed = await signer.sign({
    method: 'POST',
    protocol: url.protocol,
    hostname: url.hostname,
    port: Number(url.port),
    path: '/',
    headers: { host: url.host, 'content-type': 'application/x-www-form-urlencoded' },
    body,
  });
  const response = await fetch(new URL('/', url), { method: 'POST', headers: signed.headers, body });
  const xml = await response.text();
  const field = (name: string) => new RegExp(`<${name}>([^<]+)</${name}>`).exec(xml)?.[1];
  const [accessKeyId, secretAccessKey, sessionToken] = [field('AccessKeyId'), field('SecretAccessKey'), field('SessionToken')];
  if (!response.ok || !accessKeyId || !secretAccessKey || !sessionToken)
    throw new Error(`SeaweedFS did not issue temporary credentials (${response.status}): ${xml.slice(0, 500)}`);
  return { accessKeyId, secretAccessKey, sessionToken };
}

export function useS3Server(options: S3ServerOptions = {}): S3Fixture {
  let running: S3Server | undefined;
  beforeAll(async () => {
    running = await startS3Server(options);
  });
  afterAll(async () => {
    await running?.stop();
  });
  const server = (): S3Server => {
    if (running === undefined) throw new Error('useS3Server: the server is only available inside tests (after beforeAll)');
    return running;
  };
  return {
    get server() {
      return server();
    },
    get config() {
      return server().storageConfig();
    },
    storage(storageOptions?: StorageOptions) {
      return createStorage(server().storageConfig(), storageOptions);
    },
    temporaryCredentials(durationSeconds = 3600) {
      return assumeRole(server(), durationSeconds);
    },
  };
}
