/**
 * The command line as a user runs it on a workstation, through the real path (the compiled CLI
 * as a child process, the venv, SeaweedFS, the callback receiver): the preflight refuses a job
 * before its dataset is used (the download begun beside it is abandoned), `--no-callbacks` with `--env-file` and `NAME=value` trains without a
 * backend, and `vision-trainer doctor` reports the machine without printing a secret.
 */
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { logLines, runCli } from '../helpers/cli.js';
import { useCallbackReceiver } from '../helpers/receiver.js';
import { useS3Server } from '../helpers/s3.js';
import { writeSyntheticDataset } from '../helpers/synthetic.js';

const s3 = useS3Server();
const backend = useCallbackReceiver();

/** A local-storage job with nothing in storage: any download attempt would fail with exit 3. */
function localEnv(extra: Record<string, string> = {}): Record<string, string> {
  const root = mkdtempSync(join(tmpdir(), 'vt-local-cli-'));
  return {
    STORAGE_TYPE: 'local',
    LOCAL_STORAGE_PATH: join(root, 'storage'),
    WORK_DIR: join(root, 'work'),
    JOB_ID: 'local-1',
    TASK_TYPE: 'image_classification',
    FRAMEWORK: 'timm',
    MODEL_NAME: 'resnet18',
    DATASET_ID: 'not-uploaded',
    EPOCHS: '1',
    DEVICE: 'cpu',
    ...extra,
  };
}

describe('preflight: refused before the dataset is used', () => {
  it('no Python to run: exit 2 naming PYTHON_BIN and the setup command', async () => {
    const r = await runCli(['train', '--no-callbacks'], localEnv({ PYTHON_BIN: '/nonexistent/bin/python' }), { timeoutMs: 60_000 });
    expect(r.code).toBe(2);
    expect(r.stdout + r.stderr).toMatch(/PYTHON_BIN=\\?"\/nonexistent\/bin\/python\\?": is not an executable file/);
    expect(r.stdout + r.stderr).toContain('npx vision-trainer setup');
    expect(r.stdout + r.stderr).not.toMatch(/Downloading|not-uploaded\.zip/);
  });

  it('a MODEL_NAME the framework does not know: exit 2 from the model check, not the error of the download begun beside it', async () => {
    const r = await runCli(['train', '--no-callbacks', 'MODEL_NAME=resnet_does_not_exist'], localEnv(), { timeoutMs: 180_000 });
    expect(r.code).toBe(2);
    expect(r.stdout + r.stderr).toMatch(/MODEL_NAME=\\?"resnet_does_not_exist\\?": is not a timm model/);
    const stages = logLines(r.stdout)
      .map((l) => l.stage)
      .filter(Boolean);
    expect(stages).toContain('Preflight');
    expect(r.stdout + r.stderr).not.toMatch(/not-uploaded/);
  });
});

describe('--no-callbacks, --env-file and NAME=value', () => {
  it('trains a tiny timm model without a backend; the checkpoint reaches storage; exit 0', async () => {
    const env = localEnv();
    const data = writeSyntheticDataset(mkdtempSync(join(tmpdir(), 'vt-local-ds-')), { taskType: 'image_classification', count: 24, seed: 3 });
    const file = join(mkdtempSync(join(tmpdir(), 'vt-envfile-')), 'job.env');
    // The file carries the job; the environment only storage and work folder; an argument overrides EPOCHS=5.
    writeFileSync(
      file,
      [
        '# a local job',
        'JOB_ID=local-train',
        'TASK_TYPE=image_classification',
        'FRAMEWORK=timm',
        'MODEL_NAME=resnet18',
        'DATASET_ID=local',
        'EPOCHS=5',
        'IMAGE_SIZE=32',
        'BATCH_SIZE=8',
        'NUM_WORKERS=0',
        'DEVICE=cpu',
        `DATASET_PATH="${data.root}"`,
        '',
      ].join('\n'),
    );
    const r = await runCli(
      ['train', '--no-callbacks', '--env-file', file, 'EPOCHS=1'],
      { STORAGE_TYPE: 'local', LOCAL_STORAGE_PATH: env.LOCAL_STORAGE_PATH!, WORK_DIR: env.WORK_DIR! },
      { timeoutMs: 300_000 },
    );
    expect(r.code, r.stderr.slice(-2000)).toBe(0);
    const lines = logLines(r.stdout);
    expect(lines.some((l) => String(l.msg ?? l.message ?? '').includes('--no-callbacks: no HTTP callbacks are sent'))).toBe(true);
    expect(lines.filter((l) => l.stage === 'Preflight').length).toBe(1);
    // The local store keeps object keys as paths (under the bucket's folder).
    const stored = readdirSync(env.LOCAL_STORAGE_PATH!, { recursive: true }).map(String);
    expect(stored.some((p) => p.endsWith(join('checkpoints', 'job-local-train', 'best.pt')))).toBe(true);
  });
});

describe('vision-trainer doctor', () => {
  it('reports the venv, frameworks, device, storage and backend; prints no secret; exit 0', async () => {
    const c = s3.config;
    const file = join(mkdtempSync(join(tmpdir(), 'vt-doctor-')), 'storage.env');
    writeFileSync(file, `AWS_ACCESS_KEY_ID=${c.accessKeyId}\nAWS_SECRET_ACCESS_KEY=${c.secretAccessKey}\n`);
    const args = ['doctor', '--json', '--env-file', file, 'STORAGE_TYPE=minio', `S3_ENDPOINT=${c.endpoint}`, `BUCKET_NAME=${c.bucket}`, 'DEVICE=cpu'];
    const r = await runCli(args, { ...backend.env() }, { timeoutMs: 240_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { checks: Array<{ name: string; status: string; detail: string }>; python: { torch: { version: string } } };
    const check = (name: string) => report.checks.find((k) => k.name === name);
    for (const name of ['node', 'python', 'packages', 'imports', 'torch', 'device', 'storage', 'backend', 'work dir'])
      expect(check(name)?.status, name).toMatch(/ok|warn/);
    expect(check('imports')?.detail).toMatch(/ultralytics [\d.]+ s, timm [\d.]+ s, transformers/);
    expect(check('storage')?.detail).toContain(`bucket ${c.bucket}: reachable, listing allowed (AWS_ACCESS_KEY_ID set, AWS_SECRET_ACCESS_KEY set)`);
    expect(check('backend')?.detail).toMatch(/answers \(HTTP \d+\); CALLBACK_TOKEN set/);
    expect(report.python.torch.version).toMatch(/^2\./);
    for (const secret of [c.secretAccessKey, c.accessKeyId, backend.env().CALLBACK_TOKEN]) expect(r.stdout + r.stderr).not.toContain(secret);

    // Wrong credentials are a failed check (exit 2), still without the secret.
    const wrong = await runCli(
      [
        'doctor',
        'STORAGE_TYPE=minio',
        `S3_ENDPOINT=${c.endpoint}`,
        `BUCKET_NAME=${c.bucket}`,
        'AWS_ACCESS_KEY_ID=nobody',
        'AWS_SECRET_ACCESS_KEY=wrong-secret-123',
      ],
      { PYTHON_BIN: '/nonexistent/python' },
      { timeoutMs: 120_000 },
    );
    expect(wrong.code).toBe(2);
    expect(wrong.stdout).toMatch(/fail\s+python\s+PYTHON_BIN=\/nonexistent\/python is not an executable file/);
    expect(wrong.stdout).toMatch(/fail\s+storage/);
    expect(wrong.stdout + wrong.stderr).not.toContain('wrong-secret-123');
  });
});
