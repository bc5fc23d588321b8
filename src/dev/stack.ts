/**
 * `vision-trainer dev`: the local stack a job needs, on loopback: a real S3-compatible server
 * (SeaweedFS), a callback receiver that validates and prints every callback, and on the
 * receiver's port a live dashboard of every job it has heard from. It prints the environment a
 * job needs to use them and runs until Ctrl-C (or SIGTERM).
 */
import { randomBytes } from 'node:crypto';
import { createStorage } from '../storage/index.js';
import { DashboardArtifacts } from './dashboard/artifacts.js';
import { JobBoard } from './dashboard/board.js';
import { createDashboard, type Dashboard } from './dashboard/server.js';
import { startCallbackReceiver, type CallbackReceiver } from './receiver.js';
import { startS3Server, type S3Server, type S3ServerStop } from './s3server.js';

export interface DevStack {
  s3: S3Server;
  receiver: CallbackReceiver;
  /** The dashboard's address (the receiver's port). */
  dashboardUrl: string;
  board: JobBoard;
  /** The environment variables a job needs to use this stack. */
  env: Record<string, string>;
  /** Stops everything; says whether SeaweedFS had to be killed (see S3Server.stop). */
  stop(): Promise<S3ServerStop>;
}

export async function startDevStack(
  options: { s3Port?: number; receiverPort?: number; token?: string; print?: boolean; dataDir?: string } = {},
): Promise<DevStack> {
  const token = options.token ?? `dev-${randomBytes(12).toString('hex')}`;
  const s3 = await startS3Server({
    bucket: 'vision-platform',
    ...(options.s3Port ? { port: options.s3Port } : {}),
    ...(options.dataDir ? { dataDir: options.dataDir } : {}),
  });
  const board = new JobBoard();
  const storage = createStorage(s3.storageConfig());
  const artifacts = new DashboardArtifacts(board, storage, s3.storageConfig(), (message) => process.stderr.write(`${message}\n`));
  let dashboard: Dashboard | undefined;
  let receiver: CallbackReceiver;
  try {
    dashboard = createDashboard(board, artifacts);
    receiver = await startCallbackReceiver({
      token,
      print: options.print ?? true,
      onRequest: (request) => board.record(request),
      serveOther: dashboard.serve,
      ...(options.receiverPort ? { port: options.receiverPort } : {}),
    });
  } catch (err) {
    await dashboard?.close();
    await artifacts.close();
    await s3.stop();
    throw err;
  }
  const dashboardUrl = `${receiver.url}/`;
  dashboard.setStack({ s3Endpoint: s3.endpoint, bucket: s3.bucket, receiverUrl: receiver.url, dashboardUrl });
  const env = {
    BACKEND_BASE_URL: receiver.url,
    CALLBACK_TOKEN: token,
    STORAGE_TYPE: 'minio',
    S3_ENDPOINT: s3.endpoint,
    AWS_ACCESS_KEY_ID: s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    BUCKET_NAME: s3.bucket,
    // Weights and LLM servers started beside the stack on this machine (the S3 host is allowed anyway).
    ALLOWED_PRIVATE_HOSTS: '127.0.0.1,localhost,::1',
  };
  let stopped: Promise<S3ServerStop> | undefined;
  const live = dashboard;
  return {
    s3,
    receiver,
    dashboardUrl,
    board,
    env,
    stop: () => {
      stopped ??= (async () => {
        await live.close();
        await receiver.close();
        await artifacts.close();
        return s3.stop();
      })();
      return stopped;
    },
  };
}

export { devHelp } from './help.js';

/** `vision-trainer dev`: the ports were parsed by the CLI. */
export async function runDevStack(options: { s3Port?: number | undefined; receiverPort?: number | undefined } = {}): Promise<number> {
  const stack = await startDevStack({ s3Port: options.s3Port, receiverPort: options.receiverPort });
  process.stdout.write(
    [
      'vision-trainer dev: local stack running.',
      `  dashboard: ${stack.dashboardUrl}`,
      `  S3 (SeaweedFS): ${stack.s3.endpoint}  bucket ${stack.s3.bucket}`,
      `  callback receiver: ${stack.receiver.url}`,
      '',
      'Environment for a job (export these, then run `vision-trainer train`):',
      ...Object.entries(stack.env).map(([k, v]) => `  export ${k}=${JSON.stringify(v)}`),
      '',
      'Ctrl-C stops the stack.',
      '',
    ].join('\n'),
  );
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  // A second Ctrl-C while stopping does not wait: SeaweedFS is still stopped by its watchdog
  // when this process is gone (see s3server.ts).
  const force = () => {
    process.stdout.write('stopping now.\n');
    process.exit(130);
  };
  process.once('SIGINT', force);
  process.once('SIGTERM', force);
  process.stdout.write(`\n${signal === 'SIGTERM' ? 'SIGTERM: ' : ''}stopping the local stack...\n`);
  const started = Date.now();
  const { killed, logTail } = await stack.stop();
  if (killed) process.stderr.write(`SeaweedFS did not stop within 5 s of SIGTERM and was killed; the end of its log:\n${logTail}\n`);
  process.stdout.write(`stopped in ${((Date.now() - started) / 1000).toFixed(1)} s.\n`);
  return 0;
}
