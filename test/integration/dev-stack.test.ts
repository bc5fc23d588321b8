/** `vision-trainer dev`: the local stack a developer (and the demo) runs jobs against. */
import { describe, expect, it } from 'vitest';
import { CallbackClient } from '../../src/callbacks/client.js';
import { createStorage } from '../../src/storage/index.js';
import { startCli } from '../helpers/cli.js';

describe('vision-trainer dev', () => {
  it('starts SeaweedFS and the receiver, prints the env to use, serves both, and stops cleanly on Ctrl-C', async () => {
    const run = startCli(['dev'], {}, { timeoutMs: 60_000 });
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`dev did not start: ${out}`)), 45_000);
      run.child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('Ctrl-C stops the stack')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const env = Object.fromEntries([...out.matchAll(/export (\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    expect(Object.keys(env).sort()).toEqual([
      'ALLOWED_PRIVATE_HOSTS',
      'AWS_ACCESS_KEY_ID',
      'AWS_SECRET_ACCESS_KEY',
      'BACKEND_BASE_URL',
      'BUCKET_NAME',
      'CALLBACK_TOKEN',
      'S3_ENDPOINT',
      'STORAGE_TYPE',
    ]);
    expect(env.BUCKET_NAME).toBe('vision-platform');
    expect(out).toContain(`dashboard: ${env.BACKEND_BASE_URL}/`);

    const storage = createStorage({
      type: 'minio',
      endpoint: env.S3_ENDPOINT!,
      accessKeyId: env.AWS_ACCESS_KEY_ID!,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY!,
      bucket: env.BUCKET_NAME!,
    });
    await storage.putJson('hello.json', { ok: true });
    expect(await storage.getJson('hello.json')).toEqual({ ok: true });

    const client = new CallbackClient({
      baseUrl: env.BACKEND_BASE_URL!,
      token: env.CALLBACK_TOKEN!,
      jobId: 'dev-1',
      traceId: 't',
      retry: { completion: { maxAttempts: 1 } },
    });
    await client.trainingDone({ status: 'succeeded', checkpoint_path: 's3://vision-platform/checkpoints/job-dev-1/best.pt' });
    await client.close();

    // Promptly: it once took 15 s (a grace timer kept Node alive after SeaweedFS had stopped).
    const stopping = Date.now();
    run.child.kill('SIGINT');
    const result = await run.done;
    expect(Date.now() - stopping).toBeLessThan(10_000);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/\[job dev-1\] done succeeded/);
    expect(result.stdout).toContain('stopping the local stack');
    expect(result.stdout).toMatch(/stopped in \d+\.\d s\./);
  });
});
