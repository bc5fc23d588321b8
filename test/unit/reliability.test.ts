/**
 * The pieces that keep finished work from being lost, each on its own: the one retry loop
 * (deadline, abort, Retry-After), storage that retries only transient failures and lets a stop
 * end reads at once but uploads only when forced, completion Idempotency-Keys derived from the
 * outcome, which outcomes are final, and the log uploader. The chaos suite
 * (test/integration/chaos.test.ts) drives them together through the CLI.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { completionKey } from '../../src/callbacks/idempotency.js';
import { ExitCode, StorageError } from '../../src/errors.js';
import { LogUploader } from '../../src/jobs/log-upload.js';
import { isFinal } from '../../src/jobs/outcome.js';
import { findResumePoint, recoverBest, trainingStateKey } from '../../src/jobs/train/resume.js';
import { Logger } from '../../src/log.js';
import { backoffDelay, retry } from '../../src/net/retry.js';
import { downloadUrl } from '../../src/storage/download.js';
import { createStorage, type Storage } from '../../src/storage/index.js';
import { RetryingStorage } from '../../src/storage/retrying.js';

describe('retry core', () => {
  it('backs off exponentially with jitter in the upper half of each step, capped', () => {
    const policy = { baseDelayMs: 100, maxDelayMs: 1_000 };
    expect(backoffDelay(1, policy, () => 0)).toBe(50);
    expect(backoffDelay(1, policy, () => 1)).toBe(100);
    expect(backoffDelay(3, policy, () => 1)).toBe(400);
    expect(backoffDelay(10, policy, () => 1)).toBe(1_000);
  });

  it('retries until the attempt succeeds, honouring a delay the server asked for', async () => {
    const waits: number[] = [];
    let calls = 0;
    const value = await retry(
      async () => {
        if (++calls < 3) throw new Error(`fail ${calls}`);
        return 'ok';
      },
      {
        baseDelayMs: 10,
        maxDelayMs: 100,
        retryable: (e) => ((e as Error).message === 'fail 1' ? { afterMs: 77 } : true),
        sleep: async (ms) => void waits.push(ms),
        random: () => 1,
      },
    );
    expect(value).toBe('ok');
    expect(waits).toEqual([77, 20]);
  });

  it('gives up at the deadline, read before every wait, and says how many attempts were made', async () => {
    let now = 0;
    let deadline = 10_000;
    let calls = 0;
    const error = await retry(
      async () => {
        calls++;
        if (calls === 2) deadline = 0; // a stopping job brings the deadline closer
        throw new Error('down');
      },
      {
        baseDelayMs: 1_000,
        maxDelayMs: 1_000,
        deadline: () => deadline,
        retryable: () => true,
        sleep: async (ms) => {
          now += ms;
        },
        now: () => now,
      },
    ).catch((e: unknown) => e as Error & { attempts: number });
    expect(calls).toBe(2);
    expect(error.message).toBe('down');
    expect(error.attempts).toBe(2);
  });

  it('does not retry what is not retryable, and an abort ends the wait with its reason', async () => {
    let calls = 0;
    await expect(
      retry(
        async () => {
          calls++;
          throw new Error('404');
        },
        { baseDelayMs: 1, maxDelayMs: 1, retryable: () => false },
      ),
    ).rejects.toThrow('404');
    expect(calls).toBe(1);

    const controller = new AbortController();
    const running = retry(
      async () => {
        throw new Error('down');
      },
      { baseDelayMs: 60_000, maxDelayMs: 60_000, retryable: () => true, signal: controller.signal },
    );
    controller.abort(new Error('stopped by SIGTERM'));
    await expect(running).rejects.toThrow('stopped by SIGTERM');
  });
});

/** A local storage whose next `failures` calls of `method` fail as an unreachable S3 would (or as given). */
function flaky(
  inner: Storage,
  method: keyof Storage,
  failures: number,
  error = () => new StorageError('cannot reach storage', { transient: true }),
): Storage & { calls: number } {
  let left = failures;
  const state = { calls: 0 };
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'calls') return state.calls;
      const value = Reflect.get(target, prop, receiver);
      if (prop !== method || typeof value !== 'function') return typeof value === 'function' ? value.bind(target) : value;
      return async (...args: unknown[]) => {
        state.calls++;
        if (left-- > 0) throw error();
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as Storage & { calls: number };
}

describe('retrying storage', () => {
  let work: string;
  let local: Storage;
  const lines: string[] = [];
  const logger = Logger.create({ format: 'text', sink: (line) => lines.push(line) });
  beforeEach(async () => {
    work = await mkdtemp(join(tmpdir(), 'vt-retrying-'));
    local = createStorage({ type: 'local', root: join(work, 'bucket'), bucket: 'b' });
    await writeFile(join(work, 'f.pt'), 'weights');
    lines.length = 0;
  });
  afterEach(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('rides out a transient outage: the upload succeeds after retries, each one logged', async () => {
    const inner = flaky(local, 'uploadFile', 2);
    const storage = new RetryingStorage(inner, { budgetMs: 60_000, baseDelayMs: 1, maxDelayMs: 2, logger });
    const uri = await storage.uploadFile(join(work, 'f.pt'), 'checkpoints/job-1/epoch-1.pt');
    expect(uri).toMatch(/epoch-1\.pt$/);
    expect(inner.calls).toBe(3);
    expect(lines.filter((l) => /Could not upload .* \(attempt \d\)/.test(l))).toHaveLength(2);
  });

  it('gives up when the budget is spent, saying how long it tried; a permanent failure is not retried', async () => {
    const down = flaky(local, 'putJson', 1_000);
    const storage = new RetryingStorage(down, { budgetMs: 30, baseDelayMs: 5, maxDelayMs: 5 });
    const error = await storage.putJson('logs/job-1/outcome.json', {}).then(
      () => undefined,
      (e: unknown) => e as StorageError,
    );
    expect(error).toBeInstanceOf(StorageError);
    expect(error!.message).toMatch(/gave up after \d+ attempts over \d+ s/);
    expect(error!.exitCode).toBe(ExitCode.storage);
    expect(down.calls).toBeGreaterThan(1);

    const refused = flaky(local, 'exists', 5, () => new StorageError('denied', { exitCode: ExitCode.storageAccessDenied }));
    await expect(new RetryingStorage(refused, { budgetMs: 60_000, baseDelayMs: 1 }).exists('x')).rejects.toThrow('denied');
    expect(refused.calls).toBe(1);
  });

  it('a stop abandons reads at once; uploads keep trying until the stop is forced', async () => {
    const stop = new AbortController();
    const force = new AbortController();
    const reads = flaky(local, 'downloadFile', 1_000);
    const writes = flaky(local, 'uploadFile', 1_000);
    const settings = { budgetMs: 600_000, baseDelayMs: 5, maxDelayMs: 5, downloads: stop.signal, uploads: force.signal };
    const download = new RetryingStorage(reads, settings).downloadFile('datasets/x.zip', join(work, 'x.zip')).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    const upload = new RetryingStorage(writes, settings).uploadFile(join(work, 'f.pt'), 'checkpoints/job-1/epoch-1.pt').then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    stop.abort(new Error('stopped by SIGTERM'));
    expect((await download)?.message).toBe('stopped by SIGTERM');
    const before = writes.calls;
    await new Promise((r) => setTimeout(r, 50));
    expect(writes.calls).toBeGreaterThan(before); // still trying: it saves work
    force.abort(new Error('stopped by SIGTERM (forced)'));
    expect((await upload)?.message).toBe('stopped by SIGTERM (forced)');
  });
});

describe('durable outcome', () => {
  const body = {
    status: 'failed',
    final_metrics: { best_epoch: 2 },
    checkpoint_path: 's3://b/checkpoints/job-1/epoch-2.pt',
    timestamp: '2026-01-01T00:00:00Z',
  };

  it('the completion key is derived from the job and the content, not the timestamp or key order', () => {
    const key = completionKey('job-1', 'trainingDone', body);
    expect(key).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const reordered = { timestamp: '2027-05-05T00:00:00Z', checkpoint_path: body.checkpoint_path, final_metrics: { best_epoch: 2 }, status: 'failed' };
    expect(completionKey('job-1', 'trainingDone', reordered)).toBe(key);
    expect(completionKey('job-2', 'trainingDone', body)).not.toBe(key);
    expect(completionKey('job-1', 'trainingDone', { ...body, status: 'succeeded' })).not.toBe(key);
    expect(completionKey('job-1', 'trainingDone', { ...body, checkpoint_path: 's3://b/checkpoints/job-1/epoch-3.pt' })).not.toBe(key);
  });

  it('final: succeeded, or a failure a retry cannot fix; a stop, storage or delivery failure, or a time limit with a checkpoint is not', () => {
    expect(isFinal({ status: 'succeeded', exitCode: 0 })).toBe(true);
    for (const code of [
      ExitCode.config,
      ExitCode.dataset,
      ExitCode.framework,
      ExitCode.outOfMemory,
      ExitCode.storageAccessDenied,
      ExitCode.unsafeArtifact,
      ExitCode.timeLimit,
    ])
      expect(isFinal({ status: 'failed', exitCode: code }), `exit ${code}`).toBe(true);
    for (const code of [ExitCode.storage, ExitCode.callbackUndelivered, ExitCode.terminated])
      expect(isFinal({ status: 'failed', exitCode: code }), `exit ${code}`).toBe(false);
    expect(isFinal({ status: 'failed', exitCode: ExitCode.timeLimit }, true)).toBe(false);
  });
});

describe('log uploads', () => {
  it('uploads the whole file on demand and at the end; a failing interval is one warning, not one per try', async () => {
    const work = await mkdtemp(join(tmpdir(), 'vt-logs-'));
    try {
      const local = createStorage({ type: 'local', root: join(work, 'bucket'), bucket: 'b' });
      await mkdir(join(work, 'job'));
      const file = join(work, 'job', 'job.log');
      await writeFile(file, 'line 1\n');
      const lines: string[] = [];
      const logger = Logger.create({ format: 'text', sink: (line) => lines.push(line) });
      const down = flaky(local, 'putBytes', 2);
      const uploader = new LogUploader(file, 'test_runs/job-1/job.log', down, logger);
      await uploader.upload();
      await uploader.upload();
      expect(lines.filter((l) => /Log upload failed/.test(l))).toHaveLength(1);
      await writeFile(file, 'line 1\nline 2\n');
      await uploader.upload();
      expect(lines.some((l) => /Log uploads work again/.test(l))).toBe(true);
      expect(await readFile(join(work, 'bucket', 'test_runs', 'job-1', 'job.log'), 'utf8')).toBe('line 1\nline 2\n');
      await writeFile(file, 'line 1\nline 2\nline 3\n');
      expect(await uploader.finish(local)).toBe(true);
      expect(await readFile(join(work, 'bucket', 'test_runs', 'job-1', 'job.log'), 'utf8')).toBe('line 1\nline 2\nline 3\n');
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});

describe('URL downloads', () => {
  it('a stop ends a download whose server went silent mid-body, at once, with the stop as the reason, and leaves no file', async () => {
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': '1000000' });
      res.write(Buffer.alloc(1000)); // then silence
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const work = await mkdtemp(join(tmpdir(), 'vt-url-abort-'));
    try {
      const controller = new AbortController();
      const dest = join(work, 'weights.pt');
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/weights.pt`;
      const started = Date.now();
      const download = downloadUrl(url, dest, { policy: { allowedPrivateHosts: ['127.0.0.1'] }, timeoutMs: 60_000, signal: controller.signal });
      setTimeout(() => controller.abort(new Error('stopped by SIGTERM')), 200);
      await expect(download).rejects.toThrow('stopped by SIGTERM');
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(existsSync(dest)).toBe(false);
    } finally {
      server.closeAllConnections();
      server.close();
      await rm(work, { recursive: true, force: true });
    }
  });
});

describe('automatic resume without a best in state.json', () => {
  it("takes the best epoch the latest checkpoint records when that epoch's checkpoint is stored", async () => {
    const work = await mkdtemp(join(tmpdir(), 'vt-resume-'));
    try {
      const storage = createStorage({ type: 'local', root: join(work, 'bucket'), bucket: 'b' });
      // An attempt killed after storing epochs 1-3 but before state.json ever recorded a best (here: no state at all).
      for (const epoch of [1, 2, 3]) {
        await mkdir(join(work, 'bucket', 'checkpoints', 'job-j'), { recursive: true });
        await writeFile(join(work, 'bucket', 'checkpoints', 'job-j', `epoch-${epoch}.pt`), `weights ${epoch}`);
      }
      const warnings: string[] = [];
      const earlier = (await findResumePoint(storage, 'j', 5, (m) => warnings.push(m)))!;
      expect(earlier).toMatchObject({ latest: { epoch: 3, complete: false }, best: undefined, finished: false });
      expect(earlier.stored.map((c) => c.epoch)).toEqual([3, 2, 1]);
      expect(recoverBest(earlier, { epoch: 2, value: 0.75 })).toEqual({ epoch: 2, value: 0.75, score: 0.75, metrics: {}, key: 'checkpoints/job-j/epoch-2.pt' });
      // Nothing to recover: the checkpoint records no best, or one whose file is not stored.
      expect(recoverBest(earlier, { epoch: null, value: null })).toBeUndefined();
      expect(recoverBest(earlier, { epoch: 7, value: 0.9 })).toBeUndefined();
      // The latest is a stop's checkpoint (epoch cut short): its weights are not epoch 3's.
      expect(recoverBest(earlier, { epoch: 3, value: 0.8 })).toBeUndefined();
      // A state that names a best keeps it; its best is not replaced.
      await storage.putJson(trainingStateKey('j'), {
        schema_version: 1,
        job_id: 'j',
        epochs: 5,
        checkpoints: [{ epoch: 3, key: 'checkpoints/job-j/epoch-3.pt', complete: true }],
        best: { epoch: 1, value: 0.5, score: 0.5, metrics: { accuracy: 0.5 }, key: 'checkpoints/job-j/epoch-1.pt' },
        seconds: 12,
        updated_at: new Date().toISOString(),
      });
      const withState = (await findResumePoint(storage, 'j', 5, (m) => warnings.push(m)))!;
      expect(withState.best?.epoch).toBe(1);
      expect(recoverBest(withState, { epoch: 2, value: 0.75 })).toBeUndefined();
      expect(recoverBest({ ...withState, best: undefined }, { epoch: 3, value: 0.8 })?.key).toBe('checkpoints/job-j/epoch-3.pt');
      expect(warnings).toEqual([]);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});
