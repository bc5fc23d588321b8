/**
 * Chaos through the real path: the CLI as a child process, a real SeaweedFS and a real callback
 * receiver, each behind a fault-injecting HTTP proxy (test/helpers/fault-proxy.ts) whose rules
 * the test changes while the job runs. Every scenario ends with a retried pod (the identical
 * environment again), and asserts what the platform relies on:
 *  - no trained model lost (it is in storage, or in the kept work folder the log names);
 *  - no false "uploaded" claim (every checkpoint path an event or `done` names exists);
 *  - exactly one final outcome per job (one accepted final `done`, the stored outcome.json);
 *  - the right exit code.
 * Faults are keyed to requests (the epoch-1 upload, best.pt, the dataset, `/done`), not to
 * clocks, so the assertions hold on a slow machine. Tiny timm runs (24 images of 32 px).
 */
import { mkdtempSync, readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ChildProcess, spawnSync } from 'node:child_process';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { StoredOutcomeSchema, type StoredOutcome } from '../../src/jobs/outcome.js';
import { defaultPythonBin } from '../../src/paths.js';
import { isAlive, logLines, runCli, startCli as startCliProcess } from '../helpers/cli.js';
import { uploadDataset } from '../helpers/datasets.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { jobEnv } from '../helpers/job-env.js';
import { useCallbackReceiver } from '../helpers/receiver.js';
import { type TemporaryCredentials, useS3Server } from '../helpers/s3.js';
import { writeSyntheticDataset } from '../helpers/synthetic.js';

const s3 = useS3Server();
const backend = useCallbackReceiver();
const DATASET = 'ds-chaos';
let s3Proxy: FaultProxy;
let backendProxy: FaultProxy;
let workRoot: string;

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vt-ds-'));
  writeSyntheticDataset(dir, { taskType: 'image_classification', count: 24, width: 32, height: 32, seed: 21 });
  await uploadDataset(s3.storage(), DATASET, dir, 'zip');
  s3Proxy = await startFaultProxy(Number(new URL(s3.server.endpoint).port));
  backendProxy = await startFaultProxy(Number(new URL(backend.receiver.url).port));
  workRoot = mkdtempSync(join(tmpdir(), 'vt-chaos-work-'));
});
afterAll(async () => {
  await s3Proxy?.close();
  await backendProxy?.close();
});
/** Jobs a scenario started in the background: a failed assertion must not leave one training. */
const started: ChildProcess[] = [];
const startCli = (...args: Parameters<typeof startCliProcess>) => {
  const run = startCliProcess(...args);
  started.push(run.child);
  return run;
};
afterEach(() => {
  for (const child of started.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});
/** How long a scenario waits for a job to reach a point (generous: the machine may be shared). */
const REACH = 400_000;

beforeEach(() => {
  s3Proxy.rule = () => 'pass';
  backendProxy.rule = () => 'pass';
  backendProxy.release();
  s3Proxy.release();
});

const env = (jobId: string, extra: Record<string, string | undefined> = {}) =>
  jobEnv(s3, backend, jobId, {
    S3_ENDPOINT: s3Proxy.endpoint,
    BACKEND_BASE_URL: backendProxy.endpoint,
    TASK_TYPE: 'image_classification',
    MODEL_NAME: 'resnet18',
    DATASET_ID: DATASET,
    EPOCHS: '2',
    CHECKPOINT_FREQUENCY: '1',
    CALLBACK_MAX_ATTEMPTS: '2',
    STORAGE_RETRY_SECONDS: '60',
    LOG_UPLOAD_INTERVAL_SECONDS: '1',
    STOP_GRACE_SECONDS: '5',
    WORK_DIR: workRoot,
    ...extra,
  });

type Body = Record<string, any>;
const callbacks = (jobId: string, from = 0) => backend.receiver.received.slice(from).filter((c) => c.jobId === jobId);
const dones = (jobId: string, from = 0) => callbacks(jobId, from).filter((c) => c.kind === 'trainingDone');
const epochBeats = (jobId: string, from = 0) =>
  callbacks(jobId, from)
    .filter((c) => c.kind === 'heartbeat' && (c.body as Body).batch === undefined)
    .map((c) => (c.body as Body).epoch as number);
const events = (jobId: string, type: string, from = 0) =>
  callbacks(jobId, from)
    .filter((c) => c.kind === 'event' && (c.body as Body).event_type === type)
    .map((c) => (c.body as Body).data as Body);
const keyOf = (uri: string) => uri.replace(`s3://${s3.config.bucket}/`, '');

async function storedOutcome(jobId: string): Promise<StoredOutcome | undefined> {
  const storage = s3.storage();
  const key = `logs/job-${jobId}/outcome.json`;
  return (await storage.exists(key)) ? StoredOutcomeSchema.parse(await storage.getJson(key)) : undefined;
}

/** The kept work folder the log names, and the file it says is only there. */
function keptFiles(stdout: string): string[] {
  const lines = logLines(stdout).map((l) => String(l.msg ?? ''));
  const kept = lines.find((l) => l.startsWith('Work folder kept: '));
  if (!kept) return [];
  return [...kept.matchAll(/: (\/[^;)\s]+\.pt)/g)].map((m) => m[1]!);
}

/** What every scenario asserts after each attempt. */
async function assertNothingLost(jobId: string, run: { stdout: string }, from = 0): Promise<void> {
  const storage = s3.storage();
  // No false "uploaded" claim: every checkpoint an event or `done` names is in storage.
  for (const saved of events(jobId, 'checkpoint_saved', from)) expect(await storage.exists(keyOf(saved.checkpoint_path)), saved.checkpoint_path).toBe(true);
  for (const done of dones(jobId, from)) {
    const path = (done.body as Body).checkpoint_path as string | null;
    if (path) expect(await storage.exists(keyOf(path)), path).toBe(true);
  }
  // No trained model lost: a checkpoint storage does not have is in the kept work folder.
  for (const failed of events(jobId, 'checkpoint_upload_failed', from)) expect(existsSync(failed.local_path), failed.local_path).toBe(true);
  for (const file of keptFiles(run.stdout)) expect(existsSync(file), file).toBe(true);
  // At most one final outcome was ever accepted for the job.
  const finals = dones(jobId).filter((d) => (d.body as Body).resumable !== true);
  expect(finals.length).toBeLessThanOrEqual(1);
}

/** A request signed with temporary credentials: their key, and their session token sent and signed. */
function expectTemporary(headers: Record<string, unknown>, temporary: TemporaryCredentials): void {
  expect(String(headers.authorization)).toContain(`Credential=${temporary.accessKeyId}/`);
  expect(String(headers.authorization)).toMatch(/SignedHeaders=[^,]*x-amz-security-token/);
  expect(headers['x-amz-security-token']).toBe(temporary.sessionToken);
}

/** Every descendant of a process (Linux /proc). */
function descendants(pid: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // ended while we looked
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [child, parent] of parents) {
      if (parent === p) {
        out.push(child);
        walk(child);
      }
    }
  };
  walk(pid);
  return out;
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('storage outages', { timeout: 1_500_000 }, () => {
  it('S3 down mid-training (temporary credentials from the default chain), backend resets after receiving done; the retry only re-delivers', async () => {
    const jobId = 'chaos-s3-blip';
    // No keys in the environment: the SDK's default chain finds them, here in a profile, as a pod
    // finds its role's: temporary credentials SeaweedFS issued (STS), with their session token.
    const temporary = await s3.temporaryCredentials();
    const credentials = join(workRoot, 'aws-credentials');
    writeFileSync(
      credentials,
      `[chaos]\naws_access_key_id = ${temporary.accessKeyId}\naws_secret_access_key = ${temporary.secretAccessKey}\naws_session_token = ${temporary.sessionToken}\n`,
    );
    const chainEnv = env(jobId, {
      STORAGE_TYPE: 's3',
      AWS_ACCESS_KEY_ID: undefined,
      AWS_SECRET_ACCESS_KEY: undefined,
      AWS_SHARED_CREDENTIALS_FILE: credentials,
      AWS_CONFIG_FILE: join(workRoot, 'no-aws-config'),
      AWS_PROFILE: 'chaos',
      AWS_REGION: 'us-east-1',
      EPOCHS: '3',
    });
    // The storage goes away as the epoch-1 checkpoint is uploaded, for 3 s.
    let outageEnd = 0;
    s3Proxy.rule = ({ path }) => {
      if (outageEnd === 0 && path.includes(`/checkpoints/job-${jobId}/epoch-1.pt`)) outageEnd = Date.now() + 3_000;
      return Date.now() < outageEnd ? 'reset' : 'pass';
    };
    // The backend takes the first `done` but the answer never arrives.
    let doneSeen = false;
    backendProxy.rule = ({ path }) => {
      if (!path.endsWith('/done') || doneSeen) return 'pass';
      doneSeen = true;
      return 'deliver-then-reset';
    };
    const run = await runCli(['train'], chainEnv, { timeoutMs: 600_000 });
    expect(run.code, run.stdout.slice(-3000)).toBe(0);
    expect(outageEnd).toBeGreaterThan(0);
    expect(s3Proxy.seen.filter((r) => r.action === 'reset').length).toBeGreaterThan(0);
    expect(run.stdout).toMatch(/Could not upload .*epoch-1\.pt/);
    // Every request was signed with the profile's temporary key and carried its session token, signed too.
    const ours = s3Proxy.seen.filter((r) => r.path.includes(jobId) || r.path.includes(DATASET));
    expect(ours.length).toBeGreaterThan(0);
    for (const r of ours) expectTemporary(r.headers, temporary);
    expect(run.stdout).not.toContain(temporary.sessionToken);
    expect(epochBeats(jobId)).toEqual([1, 2, 3]);
    const storage = s3.storage();
    for (const epoch of [1, 2, 3]) expect(await storage.exists(`checkpoints/job-${jobId}/epoch-${epoch}.pt`)).toBe(true);
    expect(await storage.exists(`checkpoints/job-${jobId}/best.pt`)).toBe(true);
    // `done` reached the backend twice, as one delivery: the same key, accepted once.
    const doneRequests = backendProxy.seen.filter((r) => r.path.endsWith('/done'));
    expect(doneRequests.length).toBeGreaterThanOrEqual(2);
    expect(new Set(doneRequests.map((r) => r.headers['idempotency-key'])).size).toBe(1);
    expect(dones(jobId).map((d) => (d.body as Body).status)).toEqual(['succeeded']);
    const stored = await storedOutcome(jobId);
    expect(stored).toMatchObject({ final: true, exit_code: 0, idempotency_key: doneRequests[0]!.headers['idempotency-key'] });
    await assertNothingLost(jobId, run);

    const mark = backend.receiver.received.length;
    const retry = await runCli(['train'], chainEnv, { timeoutMs: 300_000 });
    expect(retry.code).toBe(0);
    expect(retry.stdout).toMatch(/already ended/);
    expect(callbacks(jobId, mark)).toEqual([]); // a duplicate of the accepted `done`, nothing new
    expect(backendProxy.seen.filter((r) => r.path.endsWith('/done')).at(-1)!.headers['idempotency-key']).toBe(stored!.idempotency_key);
  });

  it('an AWS_SESSION_TOKEN SeaweedFS did not issue is sent, signed, on every request and refused: exit 10, not retried', async () => {
    const jobId = 'chaos-session-token';
    const run = await runCli(['train'], env(jobId, { AWS_SESSION_TOKEN: 'token-seaweedfs-never-issued' }), { timeoutMs: 300_000 });
    expect(run.code, run.stdout.slice(-3000)).toBe(10);
    const ours = s3Proxy.seen.filter((r) => r.path.includes(jobId));
    expect(ours.length).toBeGreaterThan(0);
    for (const r of ours) {
      expect(r.headers['x-amz-security-token']).toBe('token-seaweedfs-never-issued');
      expect(String(r.headers.authorization)).toMatch(/SignedHeaders=[^,]*x-amz-security-token/);
    }
    expect(run.stdout).not.toContain('token-seaweedfs-never-issued');
    expect(dones(jobId).map((d) => (d.body as Body).status)).toEqual(['failed']);
    expect((dones(jobId)[0]!.body as Body).resumable).toBeUndefined();
  });

  it('S3 down at the final upload: exit 4, the model stays in the kept work folder, `done` names only what is stored; the retry uploads best.pt without training', async () => {
    const jobId = 'chaos-s3-final';
    s3Proxy.rule = ({ path }) => (path.includes(`/checkpoints/job-${jobId}/best.pt`) ? 'reset' : 'pass');
    const run = await runCli(['train'], env(jobId, { STORAGE_RETRY_SECONDS: '3' }), { timeoutMs: 600_000 });
    expect(run.code, run.stdout.slice(-3000)).toBe(4);
    const [done] = dones(jobId);
    expect(done!.body).toMatchObject({ status: 'failed', resumable: true, checkpoint_path: `s3://${s3.config.bucket}/checkpoints/job-${jobId}/epoch-2.pt` });
    const kept = keptFiles(run.stdout);
    expect(kept.length).toBeGreaterThan(0);
    expect(await s3.storage().exists(`checkpoints/job-${jobId}/best.pt`)).toBe(false);
    expect(await storedOutcome(jobId)).toMatchObject({ final: false, exit_code: 4 });
    await assertNothingLost(jobId, run);

    s3Proxy.rule = () => 'pass';
    const mark = backend.receiver.received.length;
    const retry = await runCli(['train'], env(jobId, { STORAGE_RETRY_SECONDS: '3' }), { timeoutMs: 600_000 });
    expect(retry.code, retry.stdout.slice(-3000)).toBe(0);
    expect(epochBeats(jobId, mark)).toEqual([]); // nothing trained again
    expect(events(jobId, 'training_resumed', mark)).toMatchObject([{ finished: true }]);
    expect(dones(jobId, mark).map((d) => (d.body as Body).status)).toEqual(['succeeded']);
    expect(await s3.storage().exists(`checkpoints/job-${jobId}/best.pt`)).toBe(true);
    expect(await storedOutcome(jobId)).toMatchObject({ final: true, exit_code: 0 });
    await assertNothingLost(jobId, retry, mark);
  });

  it('S3 down at SIGTERM: `done` names the last checkpoint really stored, the unstored one is kept; the retry resumes from the stored one', async () => {
    const jobId = 'chaos-s3-sigterm';
    const jobEnvironment = env(jobId, { EPOCHS: '200', STORAGE_RETRY_SECONDS: '5' });
    const run = startCli(['train'], jobEnvironment, { timeoutMs: 600_000 });
    await backend.receiver.waitFor((c) => c.jobId === jobId && c.kind === 'event' && (c.body as Body).event_type === 'checkpoint_saved', REACH);
    s3Proxy.rule = () => 'reset';
    run.child.kill('SIGTERM');
    const stopped = await run.done;
    expect(stopped.code, stopped.stdout.slice(-3000)).toBe(143);
    const [done] = dones(jobId);
    const body = done!.body as Body;
    expect(body).toMatchObject({ status: 'failed', resumable: true });
    const stored = events(jobId, 'checkpoint_saved').map((e) => e.epoch as number);
    const last = Math.max(...stored);
    expect(body.checkpoint_path).toBe(`s3://${s3.config.bucket}/checkpoints/job-${jobId}/epoch-${last}.pt`);
    expect(body.error_message).toContain(`last checkpoint in storage: epoch ${last}`);
    s3Proxy.rule = () => 'pass';
    await assertNothingLost(jobId, stopped);

    const mark = backend.receiver.received.length;
    const retry = startCli(['train'], jobEnvironment, { timeoutMs: 600_000 });
    await backend.receiver.waitFor(
      (c) => c.jobId === jobId && c.kind === 'heartbeat' && (c.body as Body).batch === undefined && backend.receiver.received.indexOf(c) >= mark,
      REACH,
    );
    retry.child.kill('SIGTERM');
    const second = await retry.done;
    expect(second.code).toBe(143);
    const resumedFrom = events(jobId, 'training_resumed', mark).map((e) => e.from_epoch as number);
    // The last checkpoint in storage when the retry started: the first attempt's, or a later one whose upload succeeded after all.
    expect(resumedFrom).toHaveLength(1);
    expect(resumedFrom[0]).toBeGreaterThanOrEqual(last);
    expect(epochBeats(jobId, mark)[0]).toBe(resumedFrom[0]! + 1);
    await assertNothingLost(jobId, second, mark);
  });

  it('SIGTERM while the dataset download hangs: the job stops at once, exit 143; the retry trains (temporary keys and AWS_SESSION_TOKEN in the environment)', async () => {
    const jobId = 'chaos-dataset-hang';
    const temporary = await s3.temporaryCredentials();
    const jobEnvironment = env(jobId, {
      EPOCHS: '1',
      STOP_GRACE_SECONDS: '60',
      AWS_ACCESS_KEY_ID: temporary.accessKeyId,
      AWS_SECRET_ACCESS_KEY: temporary.secretAccessKey,
      AWS_SESSION_TOKEN: temporary.sessionToken,
    });
    s3Proxy.rule = ({ path }) => (path.includes(`/datasets/${DATASET}`) ? 'hang' : 'pass');
    const run = startCli(['train'], jobEnvironment, { timeoutMs: 600_000 });
    await s3Proxy.waitFor((r) => r.path.includes(`/datasets/${DATASET}`) && r.action === 'hang', REACH);
    const signalled = Date.now();
    run.child.kill('SIGTERM');
    const stopped = await run.done;
    // Well inside the 60 s grace period: the download was aborted, not waited for.
    expect(Date.now() - signalled).toBeLessThan(30_000);
    expect(stopped.code, stopped.stdout.slice(-3000)).toBe(143);
    expect(dones(jobId).map((d) => d.body)).toMatchObject([{ status: 'failed', resumable: true, checkpoint_path: null }]);
    expect(epochBeats(jobId)).toEqual([]);
    s3Proxy.release();

    s3Proxy.rule = () => 'pass';

    const mark = backend.receiver.received.length;
    const seen = s3Proxy.seen.length;
    const retry = await runCli(['train'], jobEnvironment, { timeoutMs: 600_000 });
    expect(retry.code, retry.stdout.slice(-3000)).toBe(0);
    expect(dones(jobId, mark).map((d) => (d.body as Body).status)).toEqual(['succeeded']);
    // The whole job (dataset, checkpoints, log, outcome) ran on the temporary keys SeaweedFS checked.
    const ours = s3Proxy.seen.slice(seen).filter((r) => r.path.includes(jobId) || r.path.includes(DATASET));
    expect(ours.some((r) => r.path.includes(`/checkpoints/job-${jobId}/best.pt`))).toBe(true);
    for (const r of ours) expectTemporary(r.headers, temporary);
    expect(retry.stdout).not.toContain(temporary.sessionToken);
    await assertNothingLost(jobId, retry, mark);
  });
});

describe('backend outages', { timeout: 1_500_000 }, () => {
  it('backend down the whole run: exit 6, the outcome is stored; the retry re-delivers it with the same key and trains nothing', async () => {
    const jobId = 'chaos-backend-down';
    backendProxy.rule = () => 'reset';
    const run = await runCli(['train'], env(jobId, { EPOCHS: '1' }), { timeoutMs: 600_000 });
    expect(run.code, run.stdout.slice(-3000)).toBe(6);
    expect(await s3.storage().exists(`checkpoints/job-${jobId}/best.pt`)).toBe(true);
    const stored = await storedOutcome(jobId);
    expect(stored).toMatchObject({ final: true, callback: 'trainingDone', body: { status: 'succeeded' } });
    expect(callbacks(jobId)).toEqual([]);
    // One summary line per interval for what was dropped, not one per callback.
    const summaries = logLines(run.stdout).filter((l) => /Progress callbacks not delivered/.test(String(l.msg)));
    expect(summaries.length).toBeGreaterThan(0);
    expect(summaries.length).toBeLessThan(5);

    backendProxy.rule = () => 'pass';
    const retry = await runCli(['train'], env(jobId, { EPOCHS: '1' }), { timeoutMs: 300_000 });
    expect(retry.code).toBe(0);
    expect(callbacks(jobId).map((c) => c.kind)).toEqual(['trainingDone']);
    expect(dones(jobId)[0]!.idempotencyKey).toBe(stored!.idempotency_key);
    expect(dones(jobId)[0]!.body).toEqual(stored!.body);
    await assertNothingLost(jobId, retry);
  });

  it('backend down only at done: the progress went through, exit 6; the retry delivers the stored done once', async () => {
    const jobId = 'chaos-backend-done';
    backendProxy.rule = ({ path }) => (path.endsWith('/done') ? { status: 503 } : 'pass');
    const run = await runCli(['train'], env(jobId, { EPOCHS: '1' }), { timeoutMs: 600_000 });
    expect(run.code, run.stdout.slice(-3000)).toBe(6);
    expect(epochBeats(jobId)).toEqual([1]);
    expect(dones(jobId)).toEqual([]);
    const stored = await storedOutcome(jobId);
    expect(stored).toMatchObject({ final: true, body: { status: 'succeeded' } });

    backendProxy.rule = () => 'pass';
    const retry = await runCli(['train'], env(jobId, { EPOCHS: '1' }), { timeoutMs: 300_000 });
    expect(retry.code).toBe(0);
    expect(dones(jobId).map((d) => d.idempotencyKey)).toEqual([stored!.idempotency_key]);
    expect(epochBeats(jobId)).toEqual([1]);
    await assertNothingLost(jobId, retry);

    // RESUME=never starts the job over, its final outcome and checkpoint in storage notwithstanding:
    // no re-delivery, no resume, but the pretrained weights a new start downloads (a resumed run
    // takes its weights from the checkpoint). That download hangs, and a SIGTERM aborts it at once.
    s3Proxy.rule = ({ path }) => (path.startsWith('/weights/') ? 'hang' : 'pass');
    const mark = backend.receiver.received.length;
    const over = startCli(
      ['train'],
      env(jobId, { EPOCHS: '1', RESUME: 'never', PRETRAINED_WEIGHT_URL: `${s3Proxy.endpoint}/weights/resnet18.pt`, STOP_GRACE_SECONDS: '60' }),
      {
        timeoutMs: 300_000,
      },
    );
    await s3Proxy.waitFor((r) => r.path.startsWith('/weights/') && r.action === 'hang', REACH);
    const signalled = Date.now();
    over.child.kill('SIGTERM');
    const stopped = await over.done;
    // Well inside the 60 s grace period: the download was aborted, not waited for.
    expect(Date.now() - signalled).toBeLessThan(30_000);
    expect(stopped.code, stopped.stdout.slice(-3000)).toBe(143);
    expect(stopped.stdout).not.toMatch(/already ended|Resuming job/);
    expect(events(jobId, 'training_resumed', mark)).toEqual([]);
    const [again] = dones(jobId, mark);
    expect(again!.body).toMatchObject({ status: 'failed', resumable: true });
    // This attempt's outcome replaces the stored one.
    expect(await storedOutcome(jobId)).toMatchObject({ final: false, exit_code: 143, idempotency_key: again!.idempotencyKey, body: again!.body });
    s3Proxy.release();
  });

  it('a hanging backend holds nothing up: training ends, `done` goes out after the progress wait; the retry re-delivers', async () => {
    const jobId = 'chaos-backend-hang';
    backendProxy.rule = ({ path }) => (path.endsWith('/done') ? 'pass' : 'hang');
    const run = await runCli(['train'], env(jobId), { timeoutMs: 600_000 });
    expect(run.code, run.stdout.slice(-3000)).toBe(0);
    expect(dones(jobId).map((d) => (d.body as Body).status)).toEqual(['succeeded']);
    expect(await s3.storage().exists(`checkpoints/job-${jobId}/best.pt`)).toBe(true);
    backendProxy.release();
    backendProxy.rule = () => 'pass';

    const retry = await runCli(['train'], env(jobId), { timeoutMs: 300_000 });
    expect(retry.code).toBe(0);
    expect(dones(jobId)).toHaveLength(1);
    await assertNothingLost(jobId, retry);
  });
});

describe('killed outright', { timeout: 1_500_000 }, () => {
  // ultralytics here, so its own resume (through the allow-list checkpoint loader) is what the retry runs.
  it('SIGKILL of Node: Python and its data-loader workers end, the log up to the last interval is in storage; the retry resumes to the end with the best of both attempts (ultralytics)', async () => {
    const jobId = 'chaos-sigkill';
    const EPOCHS = 5;
    const jobEnvironment = env(jobId, { EPOCHS: String(EPOCHS), NUM_WORKERS: '1', MODEL_NAME: 'yolo11n-cls' });
    const run = startCli(['train'], jobEnvironment, { timeoutMs: 600_000 });
    await backend.receiver.waitFor(
      (c) => c.jobId === jobId && c.kind === 'heartbeat' && (c.body as Body).batch === undefined && (c.body as Body).epoch >= 2,
      REACH,
    );
    const family = descendants(run.child.pid!);
    expect(family.length).toBeGreaterThan(0);
    run.child.kill('SIGKILL');
    const killed = await run.done;
    expect(killed.signal).toBe('SIGKILL');
    await until(() => family.every((pid) => !isAlive(pid)), 30_000, `the processes ${family.join(', ')} to end`);
    // The log went up after epoch 1 at the latest (every epoch, every second).
    const log = join(mkdtempSync(join(tmpdir(), 'vt-chaos-log-')), 'training.log');
    await s3.storage().downloadFile(`logs/job-${jobId}/training.log`, log);
    expect(readFileSync(log, 'utf8')).toMatch(new RegExp(`epoch 1/${EPOCHS}`));
    expect(dones(jobId)).toEqual([]);

    // The retried pod: the identical environment, run to the end.
    const mark = backend.receiver.received.length;
    const retry = await runCli(['train'], jobEnvironment, { timeoutMs: 600_000 });
    expect(retry.code, retry.stdout.slice(-3000)).toBe(0);
    const [resumed] = events(jobId, 'training_resumed', mark);
    expect(resumed!.from_epoch).toBeGreaterThanOrEqual(1);
    expect(await s3.storage().exists(keyOf(resumed!.checkpoint_path))).toBe(true);
    // The earlier attempt's best came with the resume (state.json), and only the epochs left were trained.
    expect(resumed!.best_epoch).toEqual(expect.any(Number));
    const from = resumed!.from_epoch as number;
    expect(epochBeats(jobId, mark)).toEqual(Array.from({ length: EPOCHS - from }, (_, i) => from + 1 + i));
    const [done] = dones(jobId, mark);
    expect(dones(jobId, mark)).toHaveLength(1);
    const final = (done!.body as Body).final_metrics as Body;
    expect(done!.body).toMatchObject({ status: 'succeeded' });
    // The best epoch of the whole job: the earlier attempt's, or a later one that beat it; its
    // accuracy is the one its validation reported, and best.pt holds that epoch's weights.
    expect(final.best_epoch).toEqual(expect.any(Number));
    expect(final.best_epoch === resumed!.best_epoch || final.best_epoch > from).toBe(true);
    const accuracy = new Map<number, number>();
    for (const c of callbacks(jobId).filter((c) => c.kind === 'validation')) accuracy.set((c.body as Body).epoch, (c.body as Body).metrics.accuracy);
    expect(final.best_accuracy).toBe(accuracy.get(final.best_epoch));
    const folder = mkdtempSync(join(tmpdir(), 'vt-chaos-best-'));
    await s3.storage().downloadFile(`checkpoints/job-${jobId}/best.pt`, join(folder, 'best.pt'));
    await s3.storage().downloadFile(`checkpoints/job-${jobId}/epoch-${final.best_epoch}.pt`, join(folder, 'epoch.pt'));
    // best.pt is stamped with the chosen epoch (markBest), so its weights are compared, not its bytes.
    const read = spawnSync(
      defaultPythonBin(),
      [
        '-c',
        [
          'import json, sys, torch',
          'from ultralytics.nn.tasks import torch_safe_load',
          'best, epoch = (torch_safe_load(p)[0] for p in sys.argv[1:3])',
          'a, b = ((c.get("ema") or c["model"]).state_dict() for c in (best, epoch))',
          'same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)',
          'print(json.dumps({"stamped": best["vision_trainer_best"]["epoch"], "same_weights": same}))',
        ].join('\n'),
        join(folder, 'best.pt'),
        join(folder, 'epoch.pt'),
      ],
      { encoding: 'utf8', timeout: 120_000 },
    );
    expect(read.status, read.stderr).toBe(0);
    expect(JSON.parse(read.stdout.trim().split('\n').at(-1)!)).toEqual({ stamped: final.best_epoch, same_weights: true });
    await assertNothingLost(jobId, retry, mark);
  });
});
