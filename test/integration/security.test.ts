/**
 * Untrusted artifacts and inputs through the real path (the CLI as a child process, SeaweedFS,
 * the callback receiver, a weights server on 127.0.0.1):
 *  - a pickle that runs code when loaded, named by CHECKPOINT_PATH (infer, export),
 *    RESUME_CHECKPOINT_PATH or served at PRETRAINED_WEIGHT_URL: refused before any of it runs
 *    (its payload would create a marker file), exit code 9, the global named;
 *  - an official-style ultralytics checkpoint (built from yaml, saved by ultralytics) still
 *    trains, infers and exports;
 *  - the Python child's environment holds none of the job's secrets while it trains;
 *  - PRETRAINED_WEIGHT_URL and its redirects never reach metadata or unlisted private addresses.
 */
import { execFileSync } from 'node:child_process';
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT, defaultPythonBin } from '../../src/paths.js';
import { childPids, runCli, startCli } from '../helpers/cli.js';
import { uploadDataset } from '../helpers/datasets.js';
import { jobEnv } from '../helpers/job-env.js';
import { useCallbackReceiver } from '../helpers/receiver.js';
import { useS3Server } from '../helpers/s3.js';
import { writeSyntheticDataset } from '../helpers/synthetic.js';

const s3 = useS3Server();
const backend = useCallbackReceiver();
const DATASET = 'ds-security';
const CLS_DATASET = 'ds-security-cls';
const OPENAI_KEY = 'sk-security-test-openai-key-0123456789';
const HF_TOKEN = 'hf_securitytesttoken0123456789';

let scratch: string;
let marker: string;
let files: Record<'official.pt' | 'evil-plain.pt' | 'evil-yolo.pt' | 'evil-raw.pkl', string>;
let weights: { server: Server; url: (name: string) => string };
let imageUri: string;
const weightRequests: string[] = [];
/** A loopback server that would answer like an instance-metadata endpoint, on an address nobody allowed. */
let metadata: { server: Server; base: string; hits: string[] } | undefined;

/** Serves the fixture files at /files/<name>, as a presigned weights URL would; /redirect?to=URL redirects. */
async function startWeightsServer(): Promise<{ server: Server; url: (name: string) => string }> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    weightRequests.push(url.pathname);
    const to = url.searchParams.get('to');
    if (url.pathname === '/redirect' && to) return void res.writeHead(302, { location: to }).end();
    const name = url.pathname.replace(/^\/files\//, '');
    const file = Object.entries(files).find(([n]) => n === name)?.[1];
    if (!file) return void res.writeHead(404).end('no such file');
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    createReadStream(file).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return { server, url: (name) => `http://127.0.0.1:${port}/files/${name}?X-Amz-Signature=0123456789abcdef` };
}

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'vt-security-'));
  marker = join(scratch, 'PAYLOAD-RAN');
  const out = execFileSync(defaultPythonBin(), [join(PROJECT_ROOT, 'test/integration/security-fixtures.py'), join(scratch, 'files'), marker], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: process.env.HOME, YOLO_CONFIG_DIR: join(scratch, 'yolo-config'), YOLO_OFFLINE: 'true' },
  });
  files = JSON.parse(out.trim().split('\n').at(-1)!);
  const storage = s3.storage();
  for (const [name, path] of Object.entries(files)) await storage.uploadFile(path, `untrusted/${name}`);
  const ds = writeSyntheticDataset(join(scratch, 'dataset'), { taskType: 'object_detection', count: 16, width: 64, height: 48, seed: 5 });
  await uploadDataset(storage, DATASET, ds.root, 'zip');
  const cls = writeSyntheticDataset(join(scratch, 'dataset-cls'), { taskType: 'image_classification', count: 16, width: 32, height: 32, seed: 5 });
  await uploadDataset(storage, CLS_DATASET, cls.root, 'zip');
  const image = join(ds.root, 'images', (ds.annotations.images as Array<{ file_name: string }>)[0]!.file_name);
  imageUri = await storage.uploadFile(image, `inputs/${basename(image)}`);
  weights = await startWeightsServer();
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(req.url ?? '');
    res.end('{"AccessKeyId":"ASIAFAKE","SecretAccessKey":"stolen"}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.2', resolve));
  metadata = { server, base: `http://127.0.0.2:${(server.address() as { port: number }).port}`, hits };
}, 300_000);

afterAll(async () => {
  for (const server of [weights?.server, metadata?.server]) await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const uri = (name: string) => `s3://${s3.config.bucket}/untrusted/${name}`;

function env(jobId: string, extra: Record<string, string>) {
  return jobEnv(s3, backend, jobId, {
    TASK_TYPE: 'object_detection',
    MODEL_NAME: 'yolo11n',
    DATASET_ID: DATASET,
    EPOCHS: '1',
    OPENAI_API_KEY: OPENAI_KEY,
    HF_TOKEN,
    ...extra,
  });
}

function doneOf(jobId: string): Record<string, any> | undefined {
  const kinds = ['trainingDone', 'testRunDone', 'inferenceJobDone', 'exportDone'];
  return backend.receiver.received.find((c) => c.jobId === jobId && kinds.includes(c.kind))?.body as Record<string, any> | undefined;
}

/** The job failed with exit code 9, said which global it refused, and the payload never ran. */
function expectRefused(jobId: string, result: { code: number | null; stdout: string; stderr: string }, global = 'posix.system') {
  expect(result.code, result.stdout.slice(-3000) + result.stderr.slice(-2000)).toBe(9);
  expect(existsSync(marker), 'the pickle payload ran').toBe(false);
  const done = doneOf(jobId);
  expect(done?.status).toBe('failed');
  expect(done?.error_message).toMatch(
    new RegExp(`UnsafeArtifactError: .* was refused: loading it would call Python code outside the allow-list \\(${global.replace('.', '\\.')}\\)`),
  );
  expect(done?.error_message).toContain('Nothing in the file was run');
}

describe('a pickle that runs code when loaded is refused on every path', () => {
  it('CHECKPOINT_PATH of an inference job (framework detected from the file, and FRAMEWORK=ultralytics)', async () => {
    const detected = await runCli(
      ['infer'],
      env('sec-infer-detect', { INFERENCE_TYPE: 'inference_job', CHECKPOINT_PATH: uri('evil-plain.pt'), IMAGE_PATHS: JSON.stringify([imageUri]) }),
      { timeoutMs: 180_000 },
    );
    expectRefused('sec-infer-detect', detected);
    const named = await runCli(
      ['infer'],
      env('sec-infer-yolo', {
        INFERENCE_TYPE: 'inference_job',
        FRAMEWORK: 'ultralytics',
        CHECKPOINT_PATH: uri('evil-yolo.pt'),
        IMAGE_PATHS: JSON.stringify([imageUri]),
      }),
      { timeoutMs: 180_000 },
    );
    expectRefused('sec-infer-yolo', named);
  });

  it('CHECKPOINT_PATH of an export job', async () => {
    const result = await runCli(['export'], env('sec-export', { CHECKPOINT_PATH: uri('evil-yolo.pt'), EXPORT_FORMAT: 'onnx' }), { timeoutMs: 180_000 });
    expectRefused('sec-export', result);
  });

  it('RESUME_CHECKPOINT_PATH of a training job', async () => {
    const result = await runCli(['train'], env('sec-resume', { RESUME_CHECKPOINT_PATH: uri('evil-yolo.pt') }), { timeoutMs: 180_000 });
    expectRefused('sec-resume', result);
  });

  it('PRETRAINED_WEIGHT_URL (ultralytics, and a bare pickle for timm)', async () => {
    const yolo = await runCli(['train'], env('sec-pretrained', { PRETRAINED_WEIGHT_URL: weights.url('evil-plain.pt') }), { timeoutMs: 180_000 });
    expectRefused('sec-pretrained', yolo);
    const timm = await runCli(
      ['train'],
      env('sec-pretrained-timm', {
        TASK_TYPE: 'image_classification',
        MODEL_NAME: 'resnet18',
        DATASET_ID: CLS_DATASET,
        PRETRAINED_WEIGHT_URL: weights.url('evil-raw.pkl'),
      }),
      { timeoutMs: 180_000 },
    );
    expectRefused('sec-pretrained-timm', timm);
  });
});

describe('official-style ultralytics checkpoints still work', () => {
  it('trains from one as PRETRAINED_WEIGHT_URL, while the Python child holds none of the secrets', async () => {
    const jobId = 'sec-official-train';
    // Two epochs with a checkpoint after each: epoch-1.pt is an unfinished run, resumed below.
    const run = startCli(['train'], env(jobId, { PRETRAINED_WEIGHT_URL: weights.url('official.pt'), EPOCHS: '2', CHECKPOINT_FREQUENCY: '1' }), {
      timeoutMs: 300_000,
    });
    const python = await pythonChildOf(run.child.pid!);
    const environ = readFileSync(`/proc/${python}/environ`, 'utf8');
    const secrets = [backend.env().CALLBACK_TOKEN, s3.config.accessKeyId, s3.config.secretAccessKey, OPENAI_KEY, HF_TOKEN, '0123456789abcdef'];
    for (const secret of secrets) expect(environ, 'a secret reached Python').not.toContain(secret);
    for (const name of [
      'CALLBACK_TOKEN',
      'AWS_ACCESS_KEY_ID',
      'AWS_SECRET_ACCESS_KEY',
      'OPENAI_API_KEY',
      'HF_TOKEN',
      'PRETRAINED_WEIGHT_URL',
      'BACKEND_BASE_URL',
      'S3_ENDPOINT',
    ]) {
      expect(environ).not.toMatch(new RegExp(`(^|\\0)${name}=`));
    }
    expect(environ).toMatch(/(^|\0)ULTRALYTICS_SAFE_LOAD=1(\0|$)/);
    const result = await run.done;
    expect(result.code, result.stdout.slice(-3000) + result.stderr.slice(-2000)).toBe(0);
    expect(doneOf(jobId)?.status).toBe('succeeded');
  });

  it("resumes the unfinished run it trained (ultralytics' own resume, through the allow-list loader)", async () => {
    const jobId = 'sec-official-resume';
    const resume = `s3://${s3.config.bucket}/checkpoints/job-sec-official-train/epoch-1.pt`;
    const result = await runCli(['train'], env(jobId, { RESUME_CHECKPOINT_PATH: resume, EPOCHS: '2' }), { timeoutMs: 300_000 });
    expect(result.code, result.stdout.slice(-3000) + result.stderr.slice(-2000)).toBe(0);
    const epochs = backend.receiver.received
      .filter((c) => c.jobId === jobId && c.kind === 'heartbeat' && (c.body as { batch?: number }).batch === undefined)
      .map((c) => (c.body as { epoch: number }).epoch);
    expect(epochs).toEqual([2]);
    expect(doneOf(jobId)?.status).toBe('succeeded');
  });

  it('infers with one (framework detected without unpickling) and exports it', async () => {
    const infer = await runCli(
      ['infer'],
      env('sec-official-infer', { INFERENCE_TYPE: 'inference_job', CHECKPOINT_PATH: uri('official.pt'), IMAGE_PATHS: JSON.stringify([imageUri]) }),
      { timeoutMs: 180_000 },
    );
    expect(infer.code, infer.stdout.slice(-3000) + infer.stderr.slice(-2000)).toBe(0);
    expect(doneOf('sec-official-infer')?.status).toBe('succeeded');
    const exported = await runCli(['export'], env('sec-official-export', { CHECKPOINT_PATH: uri('official.pt'), EXPORT_FORMAT: 'onnx', INPUT_SIZE: '64' }), {
      timeoutMs: 240_000,
    });
    expect(exported.code, exported.stdout.slice(-3000) + exported.stderr.slice(-2000)).toBe(0);
    expect(doneOf('sec-official-export')?.status).toBe('succeeded');
  });
});

/** The pythonia interpreter the CLI started (after exec: its command line names interface.py). */
async function pythonChildOf(pid: number): Promise<number> {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    for (const child of childPids(pid)) {
      try {
        if (readFileSync(`/proc/${child}/cmdline`, 'utf8').includes('interface.py')) return child;
      } catch {
        // it ended while we looked
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no Python child of ${pid} within two minutes`);
}

describe('PRETRAINED_WEIGHT_URL cannot reach inside', () => {
  const redirectTo = (to: string) => `${weights.url('x').replace(/\/files\/x\?.*$/, '')}/redirect?to=${encodeURIComponent(to)}`;

  async function refusedJob(jobId: string, url: string, extra: Record<string, string> = {}) {
    const result = await runCli(['train'], env(jobId, { PRETRAINED_WEIGHT_URL: url, ...extra }), { timeoutMs: 180_000 });
    expect(result.code, result.stdout.slice(-3000) + result.stderr.slice(-2000)).toBe(2);
    const done = doneOf(jobId);
    expect(done?.status).toBe('failed');
    expect(done?.error_message).not.toContain('0123456789abcdef');
    return done!.error_message as string;
  }

  it('a redirect to cloud metadata or to an unlisted loopback/private address is refused, once, without retries', async () => {
    const before = weightRequests.length;
    expect(await refusedJob('sec-url-metadata', redirectTo('http://169.254.169.254/latest/meta-data/iam/security-credentials/'))).toMatch(
      /^a redirect of PRETRAINED_WEIGHT_URL http:\/\/127\.0\.0\.1:\d+\/redirect\?… to http:\/\/169\.254\.169\.254\/latest\/meta-data\/iam\/security-credentials\/ was refused: 169\.254\.169\.254 is a link-local \/ cloud metadata address/,
    );
    expect(weightRequests.length - before).toBe(1);
    expect(await refusedJob('sec-url-loopback', redirectTo(`${metadata!.base}/latest/meta-data/iam/security-credentials/`))).toMatch(
      /127\.0\.0\.2 is a loopback address, and 127\.0\.0\.2 is not in ALLOWED_PRIVATE_HOSTS/,
    );
    expect(await refusedJob('sec-url-private', redirectTo('http://10.11.12.13:8080/weights.pt'))).toMatch(
      /10\.11\.12\.13 is a private network \(RFC 1918\) address/,
    );
    expect(metadata!.hits).toEqual([]);
  });

  it('a loopback URL without ALLOWED_PRIVATE_HOSTS is refused, judged by what its name resolves to', async () => {
    const url = weights.url('official.pt').replace('127.0.0.1', 'localhost');
    expect(await refusedJob('sec-url-unlisted', url, { ALLOWED_PRIVATE_HOSTS: '' })).toMatch(
      /PRETRAINED_WEIGHT_URL http:\/\/localhost:\d+\/files\/official\.pt\?… was refused: localhost \((127\.0\.0\.1|::1)\) is a loopback address/,
    );
  });
});

describe('storage credentials', () => {
  it('wrong credentials end the job with exit code 10 (not retried), the secret never shown', async () => {
    const wrong = 'wrong-secret-for-security-test-9876';
    const result = await runCli(['train'], env('sec-bad-keys', { AWS_SECRET_ACCESS_KEY: wrong }), { timeoutMs: 120_000 });
    expect(result.code, result.stdout.slice(-3000)).toBe(10);
    const done = doneOf('sec-bad-keys');
    expect(done?.status).toBe('failed');
    expect(done?.error_message).toMatch(/rejected the credentials \(SignatureDoesNotMatch\)|access denied/);
    expect(result.stdout + result.stderr + JSON.stringify(done)).not.toContain(wrong);
  });
});
