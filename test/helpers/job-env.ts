/** The environment of a job that uses a test file's SeaweedFS server and callback receiver. */
import type { ReceiverFixture } from './receiver.js';
import type { S3Fixture } from './s3.js';

export function jobEnv(
  s3: S3Fixture,
  backend: ReceiverFixture,
  jobId: string,
  extra: Record<string, string | undefined> = {},
): Record<string, string | undefined> {
  const c = s3.config;
  return {
    ...backend.env(),
    JOB_ID: jobId,
    TRACE_ID: `trace-${jobId}`,
    STORAGE_TYPE: 'minio',
    S3_ENDPOINT: c.endpoint!,
    AWS_ACCESS_KEY_ID: c.accessKeyId,
    AWS_SECRET_ACCESS_KEY: c.secretAccessKey,
    BUCKET_NAME: c.bucket,
    DEVICE: 'cpu',
    NUM_WORKERS: '0',
    BATCH_SIZE: '8',
    IMAGE_SIZE: '32',
    // A backend that fails should not hold a test up for the production two minutes of retries.
    CALLBACK_MAX_ATTEMPTS: '3',
    // Weights and LLM test servers listen on 127.0.0.1; without this the URL guard refuses them.
    ALLOWED_PRIVATE_HOSTS: '127.0.0.1',
    ...extra,
  };
}
