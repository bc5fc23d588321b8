/**
 * One real SeaweedFS S3 server per test file: `const s3 = useS3Server();` at the top of a
 * describe block registers beforeAll/afterAll; inside tests, `s3.config` is a ready
 * StorageConfig and `s3.server` the running server (endpoint, keys, bucket).
 */
import { afterAll, beforeAll } from 'vitest';
import { startS3Server, type S3Server, type S3ServerOptions } from '../../src/dev/s3server.js';
import { createStorage, type Storage, type StorageOptions } from '../../src/storage/index.js';
import type { S3StorageConfig } from '../../src/storage/s3.js';

export interface S3Fixture {
  readonly server: S3Server;
  readonly config: S3StorageConfig;
  /** A Storage on this server; options tune paging, part size, retries. */
  storage(options?: StorageOptions): Storage;
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
  };
}
