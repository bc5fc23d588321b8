/**
 * `vision-trainer doctor`: whether this machine can run jobs as configured, without running
 * one. Each check says what it found and, when it failed, what to do. Nothing secret is printed:
 * credentials and the callback token are reported as set or not set, URLs without their query.
 */
import { mkdtemp, rm, statfs } from 'node:fs/promises';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PythonBridge } from './bridge/python.js';
import { storageFromEnv } from './config/env.js';
import { pythonEnvFor } from './frameworks/index.js';
import { ConfigError, ExitCode, asVisionTrainerError } from './errors.js';
import type { EnvironmentReport } from './frameworks/protocol.js';
import { describeTorch, ENVIRONMENT_REPORT, interpreterProblem, versionDrift } from './jobs/preflight.js';
import { Logger } from './log.js';
import { defaultPythonBin, defaultVenvDir, PROJECT_ROOT, pinnedRequirements, requirementsHash } from './paths.js';
import { describeUrl, redact } from './redact.js';
import { createStorage } from './storage/index.js';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface DoctorCheck {
  name: string;
  status: CheckStatus;
  detail: string;
}

export interface DoctorReport {
  version: string;
  checks: DoctorCheck[];
  /** What Python reported, when the bridge opened. */
  python: EnvironmentReport | null;
}

/** Modules a job imports: each framework, and the export runtimes. */
const IMPORTS = ['ultralytics', 'timm', 'transformers', 'onnxruntime', 'openvino'];
const NETWORK_TIMEOUT_MS = 10_000;
const LOW_DISK_GB = 10;

function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${NETWORK_TIMEOUT_MS / 1000} s`)), NETWORK_TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function nodeCheck(): DoctorCheck {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  const ok = major > 20 || (major === 20 && minor >= 19);
  return { name: 'node', status: ok ? 'ok' : 'fail', detail: `Node.js ${process.version}${ok ? '' : ': vision-trainer needs Node.js 20.19 or later'}` };
}

function venvGroups(env: NodeJS.ProcessEnv): string[] {
  try {
    return readdirSync(defaultVenvDir(env))
      .filter((f) => f.startsWith('.group-'))
      .map((f) => f.slice('.group-'.length));
  } catch {
    return [];
  }
}

async function pythonChecks(env: NodeJS.ProcessEnv, checks: DoctorCheck[]): Promise<EnvironmentReport | null> {
  const pythonBin = env.PYTHON_BIN?.trim() || undefined;
  const missing = interpreterProblem(pythonBin, env);
  if (missing) {
    checks.push({ name: 'python', status: 'fail', detail: `${missing.variable}${missing.value ? `=${missing.value}` : ''} ${missing.message}` });
    return null;
  }
  const where = pythonBin
    ? `PYTHON_BIN=${pythonBin}`
    : `venv ${defaultVenvDir(env)} (python/requirements.txt ${requirementsHash()}; optional groups: ${venvGroups(env).join(', ') || 'none'})`;
  let bridge: PythonBridge | undefined;
  // The frameworks' caches and settings folders (as a job's work folder holds them), removed after.
  const scratch = await mkdtemp(join(tmpdir(), 'vision-trainer-doctor-'));
  try {
    bridge = await PythonBridge.open({
      pythonBin: defaultPythonBin(env),
      env: pythonEnvFor(undefined, scratch),
      logger: Logger.create({ sink: () => {} }),
      output: () => {},
    });
    const pins = pinnedRequirements();
    const report = await bridge.call(ENVIRONMENT_REPORT, { packages: Object.keys(pins), imports: IMPORTS, device: env.DEVICE?.trim() || 'auto' });
    checks.push({ name: 'python', status: 'ok', detail: `Python ${report.python}, ${where}` });
    const drift = versionDrift(report, pins);
    const missingPackages = drift.filter((d) => d.includes(' missing '));
    checks.push({
      name: 'packages',
      status: missingPackages.length ? 'fail' : drift.length ? 'warn' : 'ok',
      detail: drift.length
        ? `differ from python/requirements.txt: ${drift.join(', ')}${missingPackages.length ? ' (`vision-trainer setup` installs them)' : ''}`
        : `as pinned: ${Object.entries(report.packages)
            .map(([name, version]) => `${name} ${version}`)
            .join(', ')}`,
    });
    const failed = report.imports.filter((i) => i.error);
    checks.push({
      name: 'imports',
      status: failed.length ? 'fail' : 'ok',
      detail: failed.length
        ? failed.map((i) => `${i.module}: ${i.error}`).join('; ')
        : report.imports.map((i) => `${i.module} ${i.seconds.toFixed(1)} s`).join(', '),
    });
    checks.push({
      name: 'torch',
      status: report.torch ? 'ok' : 'fail',
      detail: `${describeTorch(report)}${report.torch ? `, ${report.torch.threads} CPU threads` : ''}`,
    });
    const device = env.DEVICE?.trim() || 'auto';
    const used = report.torch?.gpus.length ? `GPU 0 (${report.torch.gpus[0]!.name})` : report.torch?.mps_available ? 'mps' : 'cpu';
    checks.push({
      name: 'device',
      status: report.device_problem ? 'fail' : 'ok',
      detail: report.device_problem ?? `DEVICE=${device}${device === 'auto' ? `: ${used}` : ''}`,
    });
    return report;
  } catch (err) {
    checks.push({ name: 'python', status: 'fail', detail: `${where}: ${asVisionTrainerError(err).describe()}` });
    return null;
  } finally {
    await bridge?.close();
    await rm(scratch, { recursive: true, force: true });
  }
}

function setOrNot(env: NodeJS.ProcessEnv, names: string[]): string {
  return names.map((n) => `${n} ${env[n]?.trim() ? 'set' : 'not set'}`).join(', ');
}

async function storageCheck(env: NodeJS.ProcessEnv): Promise<DoctorCheck> {
  const configured = ['STORAGE_TYPE', 'S3_ENDPOINT', 'R2_ENDPOINT', 'AWS_ACCESS_KEY_ID', 'R2_ACCESS_KEY_ID', 'BUCKET_NAME', 'LOCAL_STORAGE_PATH'].some((n) =>
    env[n]?.trim(),
  );
  if (!configured) return { name: 'storage', status: 'skip', detail: 'not configured (STORAGE_TYPE, S3_ENDPOINT, AWS_ACCESS_KEY_ID, ...)' };
  let config: ReturnType<typeof storageFromEnv>;
  try {
    config = storageFromEnv(env);
  } catch (err) {
    const problems = err instanceof ConfigError ? err.problems.map((p) => `${p.variable}: ${p.message}`).join('; ') : asVisionTrainerError(err).message;
    return { name: 'storage', status: 'fail', detail: problems };
  }
  const storage = createStorage(config, { maxAttempts: 2 });
  const where =
    config.type === 'local'
      ? `local folder ${config.root}`
      : `${config.type} ${config.endpoint ? describeUrl(config.endpoint) : 'AWS S3'}, bucket ${config.bucket}`;
  if (config.type === 'local' && !existsSync(config.root))
    return { name: 'storage', status: 'warn', detail: `${where} does not exist (jobs create it when they write)` };
  try {
    // A listing proves the bucket exists and the credentials may read it; nothing is written.
    await withTimeout(storage.list('vision-trainer-doctor/'), where);
    const dataset = env.DATASET_ID?.trim();
    let found = '';
    if (dataset && /^[\w.-]+$/.test(dataset)) {
      const zip = await withTimeout(storage.exists(`datasets/${dataset}.zip`), where);
      const prefix = zip ? true : (await withTimeout(storage.list(`datasets/${dataset}/`), where)).length > 0;
      found = `; DATASET_ID ${dataset}: ${zip ? `datasets/${dataset}.zip` : prefix ? `datasets/${dataset}/` : 'not found (neither the zip nor the prefix)'}`;
      if (!zip && !prefix) return { name: 'storage', status: 'warn', detail: `${where}: reachable${found}` };
    }
    const keys = config.type === 'local' ? '' : ` (${setOrNot(env, ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'])})`;
    return { name: 'storage', status: 'ok', detail: `${where}: reachable, listing allowed${keys}${found}` };
  } catch (err) {
    return { name: 'storage', status: 'fail', detail: `${where}: ${asVisionTrainerError(err).describe()}` };
  }
}

async function backendCheck(env: NodeJS.ProcessEnv): Promise<DoctorCheck> {
  const baseUrl = env.BACKEND_BASE_URL?.trim();
  if (!baseUrl) return { name: 'backend', status: 'skip', detail: 'BACKEND_BASE_URL not set (jobs need it unless run with --no-callbacks)' };
  const token = env.CALLBACK_TOKEN?.trim() ? 'CALLBACK_TOKEN set' : 'CALLBACK_TOKEN not set';
  let url: URL;
  try {
    url = new URL(baseUrl);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http(s)');
  } catch {
    return { name: 'backend', status: 'fail', detail: `BACKEND_BASE_URL is not an http(s) URL: ${redact(baseUrl)}` };
  }
  try {
    // No token is sent: any HTTP answer proves the address, TLS and routing; the callbacks' own paths need a job.
    const response = await fetch(url, { method: 'GET', redirect: 'manual', signal: AbortSignal.timeout(NETWORK_TIMEOUT_MS) });
    await response.body?.cancel();
    return {
      name: 'backend',
      status: env.CALLBACK_TOKEN?.trim() ? 'ok' : 'warn',
      detail: `${describeUrl(baseUrl)} answers (HTTP ${response.status}); ${token}`,
    };
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    return { name: 'backend', status: 'fail', detail: `${describeUrl(baseUrl)} does not answer: ${cause?.code ?? cause?.message ?? (err as Error).message}` };
  }
}

async function workDirCheck(env: NodeJS.ProcessEnv): Promise<DoctorCheck> {
  const parent = env.WORK_DIR?.trim() || tmpdir();
  try {
    const probe = await mkdtemp(join(parent, '.vision-trainer-doctor-'));
    await rm(probe, { recursive: true, force: true });
    const fs = await statfs(parent);
    const freeGb = (fs.bavail * fs.bsize) / 1024 ** 3;
    const low = freeGb < LOW_DISK_GB;
    return {
      name: 'work dir',
      status: low ? 'warn' : 'ok',
      detail: `${parent}: writable, ${freeGb.toFixed(1)} GB free${low ? ` (datasets and checkpoints need room: less than ${LOW_DISK_GB} GB)` : ''}`,
    };
  } catch (err) {
    return { name: 'work dir', status: 'fail', detail: `${parent}: ${(err as NodeJS.ErrnoException).code ?? String(err)}; set WORK_DIR to a writable folder` };
  }
}

export async function doctorReport(env: NodeJS.ProcessEnv = process.env): Promise<DoctorReport> {
  const version = (JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  const checks: DoctorCheck[] = [nodeCheck()];
  const [python, storage, backend, work] = await Promise.all([pythonChecks(env, checks), storageCheck(env), backendCheck(env), workDirCheck(env)]);
  checks.push(storage, backend, work);
  return { version, checks, python };
}

/** Prints the report; 0 when nothing failed, 2 (configuration) otherwise. */
export async function runDoctor(env: NodeJS.ProcessEnv, options: { json: boolean; write: (text: string) => void }): Promise<number> {
  const report = await doctorReport(env);
  if (options.json) options.write(`${JSON.stringify(report, null, 2)}\n`);
  else {
    const width = Math.max(...report.checks.map((c) => c.name.length));
    options.write(`vision-trainer ${report.version} doctor\n`);
    for (const c of report.checks) options.write(`  ${c.status.padEnd(4)}  ${c.name.padEnd(width)}  ${c.detail}\n`);
  }
  return report.checks.some((c) => c.status === 'fail') ? ExitCode.config : ExitCode.ok;
}
