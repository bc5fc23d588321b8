import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VisionTrainerError } from '../../src/errors.js';
import { spawnTiedToParent, startS3Server, weedBinaryPath, type S3Server } from '../../src/dev/s3server.js';
import { createStorage } from '../../src/storage/index.js';

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'vt-s3server-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function refusesConnections(endpoint: string): Promise<boolean> {
  return fetch(`${endpoint}/healthz`).then(
    () => false,
    () => true,
  );
}

describe('startS3Server', () => {
  it('runs two servers side by side, each enforcing its own credentials, and stops them cleanly', async () => {
    const servers: S3Server[] = await Promise.all([startS3Server({ bucket: 'first' }), startS3Server({ bucket: 'second' })]);
    try {
      const [a, b] = servers as [S3Server, S3Server];
      expect(a.endpoint).not.toBe(b.endpoint);
      for (const server of servers) {
        expect(server.startupMs).toBeLessThan(30_000);
        const storage = createStorage(server.storageConfig());
        await storage.putJson('hello.json', { bucket: server.bucket });
        expect(await storage.getJson('hello.json')).toEqual({ bucket: server.bucket });
        // Anonymous requests are refused: the identity file is in force.
        expect((await fetch(`${server.endpoint}/${server.bucket}/hello.json`)).status).toBe(403);
      }
      // One server's keys mean nothing to the other.
      const crossed = createStorage({ ...b.storageConfig(), accessKeyId: a.accessKeyId, secretAccessKey: a.secretAccessKey }, { maxAttempts: 1 });
      await expect(crossed.getJson('hello.json')).rejects.toThrow(/rejected the credentials/);
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
    }
    for (const server of servers) {
      expect(await refusesConnections(server.endpoint)).toBe(true);
      expect(existsSync(server.dataDir)).toBe(false);
      const port = new URL(server.endpoint).port;
      expect((await readdir('/tmp')).filter((n) => n.startsWith('seaweedfs-') && n.includes(`-${port}.sock`))).toEqual([]);
    }
  });

  it('keeps a given data folder, so objects survive a restart', async () => {
    const dataDir = join(work, 'persistent');
    const keys = { accessKeyId: 'VTPERSISTENT0001', secretAccessKey: 'persistent-secret-0123456789' };
    const first = await startS3Server({ dataDir, ...keys });
    try {
      await createStorage(first.storageConfig()).putJson('kept.json', { kept: true });
    } finally {
      await first.stop();
    }
    expect(existsSync(dataDir)).toBe(true);
    const second = await startS3Server({ dataDir, ...keys });
    try {
      expect(second.endpoint).not.toBe(first.endpoint);
      expect(await createStorage(second.storageConfig()).getJson('kept.json')).toEqual({ kept: true });
    } finally {
      await second.stop();
    }
  });

  it('refuses a port that is taken', async () => {
    const blocker = createServer();
    await new Promise<void>((done) => blocker.listen(0, '127.0.0.1', done));
    try {
      const port = (blocker.address() as AddressInfo).port;
      await expect(startS3Server({ port })).rejects.toThrow(`port ${port}: the port is in use`);
    } finally {
      blocker.close();
    }
  });

  it('points at `npm run setup` when weed is not installed', () => {
    expect(() => weedBinaryPath({ VISION_TRAINER_CACHE: join(work, 'no-cache') })).toThrow(VisionTrainerError);
    expect(() => weedBinaryPath({ VISION_TRAINER_CACHE: join(work, 'no-cache') })).toThrow(/bin\/weed does not exist/);
    try {
      weedBinaryPath({ VISION_TRAINER_CACHE: join(work, 'no-cache') });
    } catch (err) {
      expect((err as VisionTrainerError).hint).toContain('npm run setup');
    }
  });
});

describe('spawnTiedToParent', () => {
  it('stops the child and removes its folder when the pipe from this process closes, as it does when Node dies', async () => {
    const runDir = await mkdtemp(join(work, 'orphan-'));
    const pidFile = join(runDir, 'sleeper.pid');
    const watchdog = spawnTiedToParent('sh', ['-c', `echo $$ > ${pidFile}; exec sleep 300`], {
      logFile: join(work, 'sleeper.log'),
      removeWhenOrphaned: [runDir],
    });
    let sleeper = 0;
    for (let i = 0; i < 50 && !sleeper; i++) {
      await sleep(100);
      sleeper = Number(await readFile(pidFile, 'utf8').catch(() => '0'));
    }
    expect(isAlive(sleeper)).toBe(true);

    const exited = new Promise((done) => watchdog.once('exit', done));
    watchdog.stdin?.destroy(); // what the kernel does to the pipe when this process dies, even by SIGKILL
    await exited;
    expect(isAlive(sleeper)).toBe(false);
    for (let i = 0; i < 50 && existsSync(runDir); i++) await sleep(100);
    expect(existsSync(runDir)).toBe(false);
  });
});
