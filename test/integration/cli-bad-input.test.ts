/**
 * Bad input through the real path: the CLI as a child process, SeaweedFS, the callback receiver.
 * Each case must give a clear message, a `failed` completion where the backend is known, a
 * non-zero exit, and nothing written outside the job's work folder.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultPythonBin } from '../../src/paths.js';
import { uploadDataset } from '../helpers/datasets.js';
import { jobEnv } from '../helpers/job-env.js';
import { runCli } from '../helpers/cli.js';
import { useCallbackReceiver } from '../helpers/receiver.js';
import { useS3Server } from '../helpers/s3.js';
import { rewriteAnnotations, writeSyntheticDataset } from '../helpers/synthetic.js';

const s3 = useS3Server();
const backend = useCallbackReceiver();

function env(jobId: string, extra: Record<string, string | undefined> = {}) {
  return jobEnv(s3, backend, jobId, {
    TASK_TYPE: 'object_detection',
    MODEL_NAME: 'yolo11n',
    DATASET_ID: `ds-${jobId}`,
    EPOCHS: '1',
    CALLBACK_MAX_ATTEMPTS: '2',
    ...extra,
  });
}

/** Runs a job in its own WORK_DIR parent and checks nothing was left outside it. */
async function runJob(jobId: string, extra: Record<string, string | undefined> = {}) {
  const parent = mkdtempSync(join(tmpdir(), 'vt-bad-'));
  const workDir = join(parent, 'work');
  // A bad dataset fails in seconds; a process still alive after a minute is hanging (it once
  // waited 100 s on a timer the bridge library left behind).
  const result = await runCli(['train'], env(jobId, { WORK_DIR: workDir, ...extra }), { timeoutMs: 60_000 });
  const done = backend.receiver.received.find((c) => c.kind === 'trainingDone' && c.jobId === jobId)?.body as Record<string, any> | undefined;
  // Config errors stop before a work folder exists; later failures remove theirs.
  const leftInWorkDir = existsSync(workDir) ? readdirSync(workDir) : [];
  expect(leftInWorkDir).toEqual([]);
  return { result, done, parentEntries: readdirSync(parent) };
}

function dataset(_jobId: string) {
  const dir = mkdtempSync(join(tmpdir(), 'vt-ds-'));
  return writeSyntheticDataset(dir, { taskType: 'object_detection', count: 10, seed: 9 });
}

describe('configuration errors', () => {
  it('lists every missing and malformed variable at once, reports `failed`, exits 2, prints no stack trace', async () => {
    const { result, done } = await runJob('cfg-many', { DATASET_ID: undefined, EPOCHS: 'many', TASK_TYPE: 'detection', BATCH_SIZE: '-4' });
    expect(result.code).toBe(2);
    for (const v of ['DATASET_ID', 'EPOCHS="many"', 'TASK_TYPE="detection"', 'BATCH_SIZE="-4"']) expect(result.stderr).toContain(v);
    expect(result.stderr).toMatch(/Invalid train configuration \(4 problems\)/);
    expect(result.stderr).not.toMatch(/\n\s+at .*\(.*:\d+:\d+\)/);
    expect(done?.status).toBe('failed');
    expect(done?.error_message).toContain('EPOCHS="many": must be a whole number');
  });

  it('EPOCHS=0 is refused with what is allowed', async () => {
    const { result, done } = await runJob('cfg-epochs', { EPOCHS: '0' });
    expect(result.code).toBe(2);
    expect(done?.error_message).toContain('EPOCHS="0": must be at least 1');
  });

  it('a secret never appears in the message, even when its variable is the bad one', async () => {
    const { result, done } = await runJob('cfg-secret', { PRETRAINED_WEIGHT_URL: 'not a url sig=s3cr3t-signature-value', EPOCHS: 'x' });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('PRETRAINED_WEIGHT_URL="[REDACTED]"');
    expect(result.stderr + JSON.stringify(done)).not.toContain('s3cr3t-signature-value');
    expect(result.stderr + JSON.stringify(done)).not.toContain(s3.config.secretAccessKey);
  });

  it('without a usable backend the error is still printed and the exit code is 2', async () => {
    const { result } = await runJob('cfg-no-backend', { BACKEND_BASE_URL: 'not-a-url', EPOCHS: '0' });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('BACKEND_BASE_URL="not-a-url": must be an http(s) URL');
  });

  it('hostile ids are refused before anything is sent: no callback to another route, no CR/LF in a header', async () => {
    for (const jobId of ['..', '.', '../done', 'a/b']) {
      const result = await runCli(['train'], env('x', { JOB_ID: jobId }), { timeoutMs: 120_000 });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/JOB_ID="[^"]*": must be letters, digits/);
    }
    // Nothing reached the backend: the id was refused before any callback could be built with it.
    expect(backend.receiver.requests).toEqual([]);

    const trace = await runJob('cfg-trace', { TRACE_ID: 'abc\r\nX-Injected: yes' });
    expect(trace.result.code).toBe(2);
    expect(trace.result.stderr).toContain('TRACE_ID="abc\\r\\nX-Injected: yes": must be printable ASCII');
    // The configuration error still reaches the backend, traced by the job id instead.
    expect(trace.done?.status).toBe('failed');
    const sent = backend.receiver.requests.find((r) => r.path === '/api/v1/jobs/cfg-trace/done');
    expect(sent?.traceId).toBe('cfg-trace');
  });

  it('unknown commands and --help', async () => {
    expect((await runCli(['trian'], {})).code).toBe(2);
    const help = await runCli(['train', '--help'], {});
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/MAX_TRAINING_TIME_SECONDS\n\s+Stop after this many seconds.*\(default: 86400\)/);
  });
});

describe('dataset errors', () => {
  it('a missing dataset names both places it looked', async () => {
    const { result, done } = await runJob('ds-missing');
    expect(result.code).toBe(3);
    expect(done?.error_message).toContain('datasets/ds-ds-missing.zip');
    expect(done?.error_message).toContain('datasets/ds-ds-missing/');
  });

  it('a zip entry escaping the folder is refused and nothing is written outside the work folder', async () => {
    const jobId = 'ds-zip-slip';
    const zip = join(mkdtempSync(join(tmpdir(), 'vt-zip-')), 'evil.zip');
    // Python's zipfile writes whatever names it is given, like a hostile uploader would.
    execFileSync(defaultPythonBin(), [
      '-c',
      `import zipfile,sys\nz=zipfile.ZipFile(sys.argv[1],'w')\nz.writestr('annotations.json','{}')\nz.writestr('../../escaped.txt','pwned')\nz.close()`,
      zip,
    ]);
    await s3.storage().uploadFile(zip, `datasets/ds-${jobId}.zip`);
    const { result, done, parentEntries } = await runJob(jobId);
    expect(result.code).toBe(3);
    expect(done?.error_message).toContain('../../escaped.txt');
    expect(parentEntries).toEqual(['work']);
  });

  it('a class id that is not in `classes` names the image and field', async () => {
    const jobId = 'ds-class';
    const ds = dataset(jobId);
    const images = ds.annotations.images as Array<{ id: number; annotations: Array<{ class_id: number }> }>;
    const target = images.find((im) => im.annotations.length > 0)!;
    target.annotations[0]!.class_id = 42;
    rewriteAnnotations(ds);
    await uploadDataset(s3.storage(), `ds-${jobId}`, ds.root, 'zip');
    const { result, done } = await runJob(jobId);
    expect(result.code).toBe(3);
    expect(done?.error_message).toMatch(new RegExp(`image ${target.id}.*annotations\\[0\\]\\.class_id.*42`));
  });

  it('an unreadable image is named', async () => {
    const jobId = 'ds-unreadable';
    const ds = dataset(jobId);
    const first = (ds.annotations.images as Array<{ file_name: string }>)[0]!;
    writeFileSync(join(ds.root, 'images', first.file_name), 'this is not a PNG');
    await uploadDataset(s3.storage(), `ds-${jobId}`, ds.root, 'zip');
    const { result, done } = await runJob(jobId);
    expect(result.code).toBe(3);
    expect(done?.error_message).toContain(first.file_name);
  });

  it('a dataset stored as files: the layout is begun before the images arrive, yet an unreadable or missing image still fails the job, named', async () => {
    const jobId = 'ds-files-bad';
    const ds = dataset(jobId);
    const [first, second] = ds.annotations.images as Array<{ file_name: string }>;
    writeFileSync(join(ds.root, 'images', first!.file_name), 'this is not a PNG');
    rmSync(join(ds.root, 'images', second!.file_name));
    await uploadDataset(s3.storage(), `ds-${jobId}`, ds.root, 'prefix');
    const { result, done } = await runJob(jobId);
    // The early layout (in its worker thread) is stopped when the full check fails the dataset.
    expect(result.stdout).toContain('Writing the dataset layout from the annotations while the images download (in a worker thread)');
    expect(result.code).toBe(3);
    expect(done?.error_message).toContain(first!.file_name);
    expect(done?.error_message).toContain(second!.file_name);
    expect(result.stdout).not.toMatch(/Starting Training/);
  });

  it('a split that leaves val empty says so instead of failing inside the framework', async () => {
    const jobId = 'ds-empty-val';
    const ds = dataset(jobId);
    await uploadDataset(s3.storage(), `ds-${jobId}`, ds.root, 'zip');
    const all = Object.fromEntries((ds.annotations.images as Array<{ id: number }>).map((im) => [String(im.id), 'train']));
    const { result, done } = await runJob(jobId, { SPLIT_STRATEGY: JSON.stringify({ method: 'custom', custom_splits: all }) });
    expect(result.code).toBe(3);
    expect(done?.error_message).toMatch(/val/i);
    expect(done?.error_message).toMatch(/SPLIT_STRATEGY|split/);
  });
});
