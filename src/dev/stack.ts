/**
 * `vision-trainer dev`: the local stack a job needs, on loopback: a real S3-compatible server
 * (SeaweedFS) and a callback receiver that validates and prints every callback. It prints the
 * environment a job needs to use them and runs until Ctrl-C.
 */
import { randomBytes } from 'node:crypto';
import { startCallbackReceiver, type CallbackReceiver } from './receiver.js';
import { startS3Server, type S3Server } from './s3server.js';

export interface DevStack {
  s3: S3Server;
  receiver: CallbackReceiver;
  /** The environment variables a job needs to use this stack. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

export async function startDevStack(options: { s3Port?: number; receiverPort?: number; token?: string; print?: boolean; dataDir?: string } = {}): Promise<DevStack> {
  const token = options.token ?? `dev-${randomBytes(12).toString('hex')}`;
  const s3 = await startS3Server({ bucket: 'vision-platform', ...(options.s3Port ? { port: options.s3Port } : {}), ...(options.dataDir ? { dataDir: options.dataDir } : {}) });
  let receiver: CallbackReceiver;
  try {
    receiver = await startCallbackReceiver({ token, print: options.print ?? true, ...(options.receiverPort ? { port: options.receiverPort } : {}) });
  } catch (err) {
    await s3.stop();
    throw err;
  }
  const env = {
    BACKEND_BASE_URL: receiver.url,
    CALLBACK_TOKEN: token,
    STORAGE_TYPE: 'minio',
    S3_ENDPOINT: s3.endpoint,
    AWS_ACCESS_KEY_ID: s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    BUCKET_NAME: s3.bucket,
  };
  return {
    s3,
    receiver,
    env,
    stop: async () => {
      await receiver.close();
      await s3.stop();
    },
  };
}

export function devHelp(): string {
  return [
    'vision-trainer dev [--s3-port N] [--receiver-port N]',
    '',
    'Starts, on 127.0.0.1, a SeaweedFS S3 server (bucket vision-platform, fresh credentials) and a',
    'callback receiver that checks every callback against the API schemas and the token and prints',
    'one line per callback. Prints the environment variables a job needs; Ctrl-C stops both.',
  ].join('\n');
}

function portArg(args: string[], name: string): number | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const n = Number(args[i + 1]);
  if (!Number.isInteger(n) || n <= 0 || n > 65535) throw new Error(`${name} needs a port number`);
  return n;
}

export async function runDevStack(args: string[]): Promise<number> {
  const stack = await startDevStack({ s3Port: portArg(args, '--s3-port'), receiverPort: portArg(args, '--receiver-port') });
  process.stdout.write(
    [
      'vision-trainer dev: local stack running.',
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
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  process.stdout.write('\nstopping the local stack...\n');
  await stack.stop();
  return 0;
}
