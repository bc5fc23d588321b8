/**
 * A real `mlflow server` for the tracking tests (PyPI mlflow, the tracking group of the venv):
 * a sqlite store and the artifact proxy (--serve-artifacts) in a temporary folder, on a free
 * loopback port, stopped with its process group after the test file.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { freePort } from '../../src/jobs/distributed.js';
import { defaultPythonBin } from '../../src/paths.js';

export interface MlflowFixture {
  url: string;
  /** One call of MLflow's REST API (`/api/2.0/mlflow/<endpoint>`), its JSON answer. */
  api(endpoint: string, body?: unknown): Promise<any>;
}

export function useMlflowServer(): MlflowFixture {
  const fixture = { url: '' } as MlflowFixture;
  let child: ChildProcess | undefined;
  let dir: string | undefined;
  let log = '';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vt-mlflow-'));
    const port = await freePort();
    const args = [
      '-m',
      'mlflow',
      'server',
      '--backend-store-uri',
      `sqlite:///${join(dir, 'mlflow.db')}`,
      '--artifacts-destination',
      join(dir, 'artifacts'),
      '--serve-artifacts',
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--workers',
      '1',
    ];
    // The job runner (huey consumers: eight processes) serves MLflow's GenAI features, not tracking.
    child = spawn(defaultPythonBin(), args, {
      env: { ...process.env, MLFLOW_SERVER_ENABLE_JOB_EXECUTION: 'false' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    child.stdout!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-8000)));
    child.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-8000)));
    fixture.url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 180_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`mlflow server exited with ${child.exitCode}:\n${log}`);
      const up = await fetch(`${fixture.url}/health`).then(
        (r) => r.ok,
        () => false,
      );
      if (up) break;
      if (Date.now() > deadline) throw new Error(`mlflow server did not answer /health within 180 s:\n${log}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }, 200_000);

  afterAll(async () => {
    if (child?.pid && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      process.kill(-child.pid, 'SIGTERM');
      const timer = setTimeout(() => child?.pid && child.exitCode === null && process.kill(-child.pid, 'SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  fixture.api = async (endpoint, body) => {
    const res = await fetch(
      `${fixture.url}/api/2.0/mlflow/${endpoint}`,
      body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) },
    );
    const json = await res.json();
    if (!res.ok) throw new Error(`${endpoint}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };
  return fixture;
}
